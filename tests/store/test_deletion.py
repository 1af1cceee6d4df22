"""Deleting versions: exact numbering, tombstones, and leases that block (or stop blocking) a delete."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest

from datastore.errors import AlreadyDeleted, DatastoreNotFound, VersionInUse
from datastore.reading.verify import verify
from datastore.store import layout, leases, open_store, versions
from datastore.store.deletion import delete_all, delete_version
from datastore_flows.local_folder import create_from_local
from tests.conftest import make_tree

pytestmark = pytest.mark.usefixtures("prefect_api")


def all_live_verify(name: str) -> list[int]:
    store = open_store()
    live = versions.live_numbers(store, name)
    for v in live:
        assert verify(store, versions.read_record(store, name, v)).ok
    return live


@pytest.mark.parametrize("store_fixture", ["local_store", "seaweed_store"])
def test_numbers_are_never_reused(tmp_path: Path, store_fixture: str, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue(store_fixture)
    src = make_tree(tmp_path / "src", {f"f{i}.txt": f"file {i}".encode() for i in range(20)})

    def create() -> int:
        (src / "changing.txt").write_text(uuid.uuid4().hex)  # versions share the 20 unchanged files
        return create_from_local(str(src), name="nums")["version"]

    store = open_store()
    assert [create() for _ in range(4)] == [1, 2, 3, 4]
    delete_version(store, "nums", 3)
    assert all_live_verify("nums") == [1, 2, 4]
    assert create() == 5
    delete_version(store, "nums", 5)  # the newest
    assert all_live_verify("nums") == [1, 2, 4]
    assert create() == 6
    assert [r.version for r in delete_all(store, "nums")] == [1, 2, 4, 6]
    assert all_live_verify("nums") == []
    assert create() == 7
    assert all_live_verify("nums") == [7]
    shown = versions.read_record(store, "nums", 3)
    assert shown.deleted_at is not None  # show of a deleted version says when
    assert [r.version for r in versions.list_records(store, "nums")] == [7]  # list hides deleted ones
    with pytest.raises(AlreadyDeleted, match=r"datastore 'nums' version 3 was already deleted \(at 20"):
        delete_version(store, "nums", 3)
    with pytest.raises(DatastoreNotFound, match="datastore 'nums' version 99 does not exist"):
        delete_version(store, "nums", 99)
    with pytest.raises(DatastoreNotFound, match="datastore 'nope' version 1 does not exist"):
        delete_version(store, "nope", 1)


def test_a_flow_run_holding_a_lease_blocks_delete_until_it_finishes(tmp_path: Path, local_store: str) -> None:
    from prefect import flow

    src = make_tree(tmp_path / "src", {"a.txt": b"a"})
    create_from_local(str(src), name="held")
    store = open_store()
    holding, finish = threading.Event(), threading.Event()
    seen: dict = {}

    @flow(name="reader-flow", flow_run_name="reads-held")
    def reader() -> None:
        from prefect.runtime import flow_run

        seen["id"] = flow_run.id
        with leases.acquire(store, "held", 1, ttl=30):
            holding.set()
            finish.wait(60)

    t = threading.Thread(target=reader)
    t.start()
    assert holding.wait(60)
    with pytest.raises(VersionInUse, match=rf"datastore 'held' version 1 is in use by flow run 'reads-held' "
                                           rf"\({seen['id']}\): wait until it finishes"):
        delete_version(store, "held", 1)
    finish.set()
    t.join(60)
    assert delete_version(store, "held", 1).deleted_at


def test_leases_of_crashed_runs_and_dead_processes_do_not_block(tmp_path: Path, local_store: str) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    src = make_tree(tmp_path / "src", {"a.txt": b"a"})
    create_from_local(str(src), name="crashy")
    create_from_local(str(src), name="crashy")
    store = open_store()

    @flow(name="crashed-reader")
    def crashed_reader() -> None:  # pragma: no cover - never run, only registered
        pass

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(crashed_reader, name="killed-reader")
        client.set_flow_run_state(run.id, Crashed(), force=True)
    # What a reader killed with -9 leaves behind: its lease, heartbeat still fresh.
    body = {"kind": "flow-run", "flow_run_id": str(run.id), "flow_run_name": "killed-reader",
            "host": "h", "pid": 1, "expires_at": time.time() + 3600}
    store.put_bytes(f"{layout.lease_prefix('crashy', 1)}x.json", json.dumps(body).encode())
    assert delete_version(store, "crashy", 1).deleted_at
    assert list(store.list(layout.lease_prefix("crashy", 1))) == []  # the stale lease was cleaned up
    # A plain process whose heartbeat stopped (expired) does not block either.
    expired = {"kind": "process", "host": "h", "pid": 2, "expires_at": time.time() - 1}
    store.put_bytes(f"{layout.lease_prefix('crashy', 2)}y.json", json.dumps(expired).encode())
    live = {"kind": "process", "host": "otherhost", "pid": 3, "expires_at": time.time() + 3600}
    store.put_bytes(f"{layout.lease_prefix('crashy', 2)}z.json", json.dumps(live).encode())
    with pytest.raises(VersionInUse, match="in use by process 3 on otherhost"):
        delete_version(store, "crashy", 2)
    store.delete(f"{layout.lease_prefix('crashy', 2)}z.json")
    assert delete_version(store, "crashy", 2).deleted_at


def test_a_lease_on_a_deleted_version_is_refused(tmp_path: Path, local_store: str) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": b"a"})
    create_from_local(str(src), name="gone")
    store = open_store()
    delete_version(store, "gone", 1)
    with pytest.raises(DatastoreNotFound):
        leases.acquire(store, "gone", 1, ttl=30)
    assert list(store.list(layout.lease_prefix("gone", 1))) == []


def test_use_datastore_in_a_flow_holds_the_version(tmp_path: Path, local_store: str) -> None:
    from prefect import flow

    from datastore import use_datastore

    src = make_tree(tmp_path / "src", {"a.txt": b"alpha", "d/b.txt": b"beta"})
    create_from_local(str(src), name="inuse")
    store = open_store()
    inside, finish = threading.Event(), threading.Event()
    seen: dict = {}

    @flow(name="trainer", flow_run_name="train-on-inuse")
    def trainer() -> None:
        with use_datastore("inuse") as path:
            seen["files"] = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
            seen["a"] = (path / "a.txt").read_bytes()
            seen["path"] = path
            inside.set()
            finish.wait(60)

    t = threading.Thread(target=trainer)
    t.start()
    assert inside.wait(60)
    with pytest.raises(VersionInUse, match="is in use by flow run 'train-on-inuse'"):
        delete_version(store, "inuse", 1)
    finish.set()
    t.join(60)
    assert seen["files"] == ["a.txt", "d/b.txt"] and seen["a"] == b"alpha"
    assert not seen["path"].exists()  # the temporary mount is gone with the lease
    assert delete_version(store, "inuse", 1).deleted_at
