"""S3 that applies a request and loses its answer, or breaks an answer off half-way.

Every test runs through :mod:`datastore.testing.faulty_s3`, a real proxy in front of SeaweedFS: the
request really takes effect, then the client gets ``500 InternalError`` (S3's "may or may not
have been applied") and botocore retries it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from datastore.errors import AlreadyDeleted
from datastore.reading.verify import verify
from datastore.store import deletion, layout, open_store, versions
from datastore.testing.faulty_s3 import Fault, FaultyS3, faulty_s3
from datastore.testing.servers import S3Server
from datastore_flows.local_folder import create_from_local
from tests.conftest import make_tree, use_s3_env

RECORD_PUT = r"/names/[^/]+/versions/\d+\.json"


@pytest.fixture
def proxy(seaweed: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultyS3]:
    """A fault proxy in front of SeaweedFS, with DATASTORE_STORE on a fresh bucket through it."""
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    seaweed.client().create_bucket(Bucket=bucket)
    with faulty_s3(seaweed, seed=7) as p:
        use_s3_env(p.server(), monkeypatch, DATASTORE_STORE=f"s3://{bucket}/store")
        yield p


def _record(create_id: str) -> versions.VersionRecord:
    return versions.VersionRecord(name="ds", version=0, status="succeeded", kind="local", source="/src", files=1,
                                  bytes=1, digest="d", created_at=versions.now_iso(), flow_run_id=None,
                                  create_id=create_id)


def test_a_commit_whose_answer_is_lost_is_one_version(proxy: FaultyS3) -> None:
    # Every record PUT takes effect and answers 500: botocore's retry then meets 412. Without
    # reading the record back, each commit would take a second number.
    fault = Fault("500-after", 1.0, method="PUT", path=RECORD_PUT)
    proxy.faults.append(fault)
    store = open_store()
    ids = [uuid.uuid4().hex for _ in range(3)]
    got = [versions.commit(store, _record(i), 50).version for i in ids]
    assert got == [1, 2, 3]
    assert fault.injected >= 3
    proxy.faults.clear()
    assert versions.live_numbers(store, "ds") == [1, 2, 3]
    assert [versions.read_record(store, "ds", v).create_id for v in got] == ids


def test_a_commit_still_moves_on_when_another_creator_holds_the_number(proxy: FaultyS3) -> None:
    store = open_store()
    other = _record("someone-else")
    other.version = 1
    store.put_bytes(layout.record_key("ds", 1), json.dumps(other.to_json()).encode(), if_absent=True)
    proxy.faults.append(Fault("500-after", 1.0, method="PUT", path=RECORD_PUT))
    assert versions.commit(store, _record("mine"), 50).version == 2
    assert versions.read_record(store, "ds", 1).create_id == "someone-else"


def test_a_delete_whose_answer_is_lost_succeeds_once(proxy: FaultyS3) -> None:
    store = open_store()
    versions.commit(store, _record("a"), 50)
    fault = Fault("500-after", 1.0, method="PUT", path=r"/names/ds/deleted/")
    proxy.faults.append(fault)
    rec = deletion.delete_version(store, "ds", 1)  # was: AlreadyDeleted by its own retry
    assert rec.deleted_at and fault.injected >= 1
    with pytest.raises(AlreadyDeleted, match="datastore 'ds' version 1 was already deleted"):
        deletion.delete_version(store, "ds", 1)


@pytest.mark.usefixtures("prefect_api")
def test_n_creates_through_lossy_s3_make_exactly_n_versions(proxy: FaultyS3, tmp_path: Path) -> None:
    # A few percent of every request lose their answer after taking effect, and every third
    # record PUT: the faults the issue saw (4 creates made 6 versions).
    proxy.faults += [Fault("500-after", 0.34, method="PUT", path=RECORD_PUT),
                     Fault("500-after", 0.03, method="PUT"),
                     Fault("503-before", 0.03)]
    trees = {}
    for i in range(4):
        trees[i] = {f"f{j}.txt": f"create {i} file {j}\n".encode() * (j + 1) for j in range(20)}
        rec = create_from_local(str(make_tree(tmp_path / f"src{i}", trees[i])), name=f"ds{i}")
        assert rec["version"] == 1, rec
    assert sum(f.injected for f in proxy.faults) > 0
    proxy.faults.clear()
    store = open_store()
    assert {r.name: r.version for r in versions.list_records(store)} == {f"ds{i}": 1 for i in range(4)}
    for r in versions.list_records(store):
        report = verify(store, r)
        assert report.ok and report.files == 20, report.to_json()


@pytest.mark.parametrize("read", ["range", "whole", "stream"])
def test_an_answer_reset_half_way_is_read_again(proxy: FaultyS3, read: str) -> None:
    store = open_store()
    data = bytes(range(256)) * 4096  # 1 MiB
    store.put_bytes("data/blob", data)
    # The first two answers break off in the middle (IncompleteRead), then the network heals:
    # transient, so retried, never "check the store settings".
    fault = Fault("reset", 1.0, method="GET", path=r"/data/blob", limit=2)
    proxy.faults.append(fault)
    if read == "range":
        assert store.get_range("data/blob", 1000, 500_000) == data[1000:501_000]
    elif read == "whole":
        assert store.get_bytes("data/blob") == data
    else:
        with store.open_read("data/blob") as body:
            assert body.read() == data
    assert fault.injected == 2


def test_an_answer_that_keeps_breaking_fails_with_one_transient_line(proxy: FaultyS3) -> None:
    from datastore.errors import TransientError

    store = open_store()
    store.put_bytes("data/blob", b"x" * 100_000)
    proxy.faults.append(Fault("reset", 1.0, method="GET", path=r"/data/blob"))
    with pytest.raises(TransientError) as info:
        store.get_range("data/blob", 0, 100_000)
    line = str(info.value)
    assert "broke in the middle of an answer" in line and "check the store settings" not in line
    assert "\n" not in line


def test_an_answer_to_another_request_is_never_data(proxy: FaultyS3) -> None:
    from datastore.errors import MismatchedAnswer

    store = open_store()
    data = bytes(range(256)) * 64
    store.put_bytes("data/blob", data)
    assert store.get_range("data/blob", 0, 100) == data[:100]
    # The next answer is the previous request's: same object, same length, other bytes. The
    # Content-Range gives it away; the retry on a new request reads the right bytes.
    fault = Fault("cross", 1.0, method="GET", path=r"/data/blob", limit=1)
    proxy.faults.append(fault)
    assert store.get_range("data/blob", 100, 100) == data[100:200]
    assert fault.injected == 1
    fault.limit = None  # every answer crossed: an error naming the request, never bytes
    with pytest.raises(MismatchedAnswer, match=r"data/blob bytes 200-299.*content-range 100-199 where 200-299"):
        store.get_range("data/blob", 200, 100)
    assert fault.injected == 1 + 5  # every try of the retry budget was refused
