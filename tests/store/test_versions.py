from __future__ import annotations

import json
import threading
import uuid

import pytest

from datastore.errors import DatastoreNotFound, QuotaExceeded
from datastore.store import layout, open_store, versions
from datastore.store.versions import VersionRecord


def _record(name: str = "ds") -> VersionRecord:
    return VersionRecord(name=name, version=0, status="succeeded", kind="local", source="/src", files=1, bytes=1,
                         digest="d", created_at=versions.now_iso(), flow_run_id=None, create_id=uuid.uuid4().hex)


def test_numbers_start_at_one_and_increase(any_store: str) -> None:
    store = open_store()
    assert [versions.commit(store, _record(), 50).version for _ in range(3)] == [1, 2, 3]
    assert versions.live_numbers(store, "ds") == [1, 2, 3]
    assert versions.resolve(store, "ds").version == 3


def test_numbers_are_never_reused_after_deletion(local_store: str) -> None:
    store = open_store()
    for _ in range(3):
        versions.commit(store, _record(), 50)
    # a deletion (lifecycle issue) writes a tombstone; records are never removed
    for n in (3, 2, 1):
        store.put_bytes(layout.tombstone_key("ds", n), json.dumps({"deleted_at": versions.now_iso()}).encode())
    assert versions.live_numbers(store, "ds") == []
    assert versions.commit(store, _record(), 50).version == 4
    assert versions.read_record(store, "ds", 2).deleted_at is not None


def test_concurrent_commits_each_get_their_own_number(any_store: str) -> None:
    store = open_store()
    got: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(3):
            n = versions.commit(store, _record(), 100).version
            with lock:
                got.append(n)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 19))


def test_quota_counts_live_versions_across_names(local_store: str) -> None:
    store = open_store()
    versions.commit(store, _record("a"), 3)
    versions.commit(store, _record("b"), 3)
    versions.commit(store, _record("b"), 3)
    with pytest.raises(QuotaExceeded, match="3 live versions exist and the limit is 3") as info:
        versions.commit(store, _record("c"), 3)
    assert "datastore delete" in str(info.value)
    assert versions.live_numbers(store, "c") == []


def test_missing_name_or_version(local_store: str) -> None:
    store = open_store()
    with pytest.raises(DatastoreNotFound, match="datastore 'nope' does not exist"):
        versions.resolve(store, "nope")
    versions.commit(store, _record(), 5)
    with pytest.raises(DatastoreNotFound, match="version 7"):
        versions.resolve(store, "ds", 7)
