"""Garbage collection: only unreferenced data goes, never what a live version or a creation in flight needs."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from datastore.creation.pipeline import commit, prepare
from datastore.creation.sources import local as local_transfer
from datastore.errors import DatastoreError
from datastore.reading import reader
from datastore.reading.verify import verify
from datastore.settings import Settings
from datastore.store import open_store, versions
from datastore.store.deletion import delete_version
from datastore.store.gc import collect, reclaim_version
from datastore_flows.local_folder import create_from_local
from tests.conftest import make_tree

pytestmark = pytest.mark.usefixtures("prefect_api")


def referenced_bytes(store) -> int:  # noqa: ANN001
    keys = {e.object for r in versions.list_records(store) for e in reader.entries(store, r) if e.object}
    return sum(store.head(k).size for k in keys)


def data_bytes(store) -> int:  # noqa: ANN001
    return sum(o.size for o in store.list("data/"))


def age(root: Path, prefix: str, seconds: float = 7200) -> None:
    """Make everything under ``prefix`` of a local store look ``seconds`` old."""
    old = time.time() - seconds
    for p in (root / prefix).rglob("*"):
        os.utime(p, (old, old))


@pytest.mark.parametrize("store_fixture", ["local_store", "seaweed_store"])
def test_delete_then_gc_keeps_exactly_what_live_versions_reference(
        tmp_path: Path, store_fixture: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    request.getfixturevalue(store_fixture)
    monkeypatch.setenv("DATASTORE_LARGE_FILE_BYTES", str(1024 * 1024))
    monkeypatch.setenv("DATASTORE_INDEX_FILES", "1")  # every version stores its tree index too
    src = make_tree(tmp_path / "src", {f"shared/{i}.txt": os.urandom(3000) for i in range(50)}
                    | {"big.bin": os.urandom(3 * 1024 * 1024)})
    for i in range(3):
        (src / "changing.bin").write_bytes(os.urandom(200_000 + i))
        # Settled mtimes: each version reuses the shared files and packs only its own
        # changing.bin, so version 2 has data no other version references (racy mtimes would
        # re-pack shared files with it, and version 3 could then reuse that pack).
        age(tmp_path, "src")
        create_from_local(str(src), name="gcme")
    store = open_store()
    delete_version(store, "gcme", 2)
    young = collect(store, grace_s=3600)  # everything is younger than the grace period: nothing goes
    assert young.objects == 0 and young.kept_objects > 0
    dry = collect(store, grace_s=0, dry_run=True)
    assert dry.objects > 0 and data_bytes(store) > referenced_bytes(store)
    report = collect(store, grace_s=0)
    assert report.objects == dry.objects and report.bytes == dry.bytes
    assert data_bytes(store) == referenced_bytes(store)  # only referenced data is left
    assert list(store.list("staging/")) == []
    for v in (1, 3):
        assert verify(store, versions.read_record(store, "gcme", v)).ok
    # The manifests left are the live versions', each with its table of contents and tree index.
    live = [versions.read_record(store, "gcme", v) for v in (1, 3)]
    assert [len(r.manifest_objects) for r in live] == [3, 3]
    assert sorted(o.key for o in store.list("manifests/")) == sorted(k for r in live for k in r.manifest_objects)
    assert collect(store, grace_s=0).objects == 0  # a second pass finds nothing


def test_gc_never_robs_a_creation_in_flight(tmp_path: Path, local_store: str) -> None:
    src = make_tree(tmp_path / "src", {f"f{i}.txt": os.urandom(1000) for i in range(30)})
    age(tmp_path, "src")  # settled mtimes, so the next scan reuses version 1's packs
    create_from_local(str(src), name="flight")
    store = open_store()
    settings = Settings.from_env()
    (src / "new.txt").write_bytes(b"new")
    job = prepare(str(src), "flight", "local", settings)
    plan = local_transfer.scan(job, settings)  # plans reuse version 1's packs
    assert plan.new_files == 1
    delete_version(store, "flight", 1)
    age(Path(local_store), "data")
    age(Path(local_store), "manifests")
    report = collect(store, grace_s=60)  # v1's data is old and unreferenced by live versions …
    assert not any(k.startswith("data/") for k in report.reclaimed)  # … but the staged plan needs it
    results = [local_transfer.transfer_batch(job, k, settings) for k in plan.plan_keys]
    rec = commit(store, job, [k for k, _ in results], sum(u for _, u in results), settings, None)
    assert rec.version == 2 and verify(store, rec).ok
    assert reader.read_file(store, rec, next(e for e in reader.entries(store, rec) if e.path == "f3.txt")) == \
        (src / "f3.txt").read_bytes()


def test_commit_refuses_when_reused_data_vanished(tmp_path: Path, local_store: str) -> None:
    src = make_tree(tmp_path / "src", {f"f{i}.txt": os.urandom(1000) for i in range(10)})
    age(tmp_path, "src")
    create_from_local(str(src), name="vanish")
    store = open_store()
    settings = Settings.from_env()
    (src / "new.txt").write_bytes(b"new")
    job = prepare(str(src), "vanish", "local", settings)
    plan = local_transfer.scan(job, settings)
    results = [local_transfer.transfer_batch(job, k, settings) for k in plan.plan_keys]
    old = next(e.object for e in reader.entries(store, versions.read_record(store, "vanish", 1)))
    store.delete(old)  # as if gc had reclaimed it with a too-short grace period
    with pytest.raises(DatastoreError, match=r"data object 'data/p-\w+' this version needs is gone from the store"):
        commit(store, job, [k for k, _ in results], 0, settings, None)
    assert versions.live_numbers(store, "vanish") == [1]


def test_delete_and_gc_during_a_create(tmp_path: Path, seaweed_store: str) -> None:
    src = make_tree(tmp_path / "src", {f"s/{i}.txt": os.urandom(2000) for i in range(200)})
    age(tmp_path, "src")
    for _ in range(2):
        create_from_local(str(src), name="busy")
    store = open_store()
    (src / "more.txt").write_bytes(os.urandom(50_000))
    results: list = []
    t = threading.Thread(target=lambda: results.append(create_from_local(str(src), name="busy")))
    t.start()
    delete_version(store, "busy", 1)  # shares every packed file with 2 and with the running create
    during = collect(store, grace_s=3600)
    t.join(300)
    assert results and results[0]["version"] == 3
    assert during.objects == 0
    for v in versions.live_numbers(store, "busy"):
        assert verify(store, versions.read_record(store, "busy", v)).ok
    collect(store, grace_s=0)
    assert data_bytes(store) == referenced_bytes(store)
    assert [verify(store, versions.read_record(store, "busy", v)).ok for v in (2, 3)] == [True, True]


def test_delete_reclaims_what_only_that_version_used_at_once(tmp_path: Path, seaweed_store: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASTORE_INDEX_FILES", "31")  # version 2 (31 files) stores its tree index, 1 does not
    src = make_tree(tmp_path / "src", {f"shared/{i}.txt": os.urandom(3000) for i in range(30)})
    age(tmp_path, "src")
    create_from_local(str(src), name="prompt")  # v1: the shared files
    (src / "only-v2.bin").write_bytes(os.urandom(400_000))
    age(tmp_path, "src")
    create_from_local(str(src), name="prompt")  # v2: reuses v1's pack, adds its own
    store = open_store()
    before = data_bytes(store)
    rec = delete_version(store, "prompt", 2)
    freed = reclaim_version(store, rec)
    assert freed.objects >= 1 and freed.bytes >= 400_000
    assert rec.manifest_toc and rec.manifest_index and not versions.read_record(store, "prompt", 1).manifest_index
    assert not any(store.exists(k) for k in (rec.manifest, rec.manifest_toc, rec.manifest_index))
    assert data_bytes(store) == before - freed.bytes == referenced_bytes(store)
    assert verify(store, versions.read_record(store, "prompt", 1)).ok


def test_a_delete_whose_version_gc_reclaimed_first_still_succeeds(tmp_path: Path, local_store: str) -> None:
    """Found by the soak (tests/service/test_soak.py): a gc between the tombstone and the delete's
    own reclaim took the manifest, and ``delete`` failed (ObjectNotFound) although it had deleted."""
    src = make_tree(tmp_path / "src", {"a.bin": os.urandom(5000)})
    create_from_local(str(src), name="raced")
    store = open_store()
    rec = delete_version(store, "raced", 1)
    assert collect(store, grace_s=0).objects >= 2  # the manifest and the pack: gc got there first
    freed = reclaim_version(store, rec)
    assert (freed.objects, freed.bytes) == (0, 0)
    assert versions.read_record(store, "raced", 1).deleted_at and data_bytes(store) == 0


@pytest.mark.parametrize("store_fixture", ["local_store", "seaweed_store", "moto_store"])
def test_gc_drops_unfinished_writes_of_dead_creations(request: pytest.FixtureRequest, store_fixture: str) -> None:
    request.getfixturevalue(store_fixture)
    store = open_store()
    # What a creation killed mid-write leaves: a temporary file / an open multipart upload.
    if store_fixture == "local_store":
        tmp = Path(store.url) / ".tmp"
        tmp.mkdir(parents=True)
        (tmp / "dead").write_bytes(b"x" * 1000)
        os.utime(tmp / "dead", (time.time() - 7200, time.time() - 7200))
        (tmp / "alive").write_bytes(b"y")
    else:
        from datastore.backends import s3

        client = s3.client()
        key = f"{store.prefix}data/u-killed"
        up = client.create_multipart_upload(Bucket=store.bucket, Key=key)["UploadId"]
        client.upload_part(Bucket=store.bucket, Key=key, UploadId=up, PartNumber=1, Body=b"z" * 1000)

    def open_uploads() -> list[str]:
        if store_fixture == "local_store":
            return sorted(os.listdir(Path(store.url) / ".tmp"))
        from datastore.backends import s3

        return [u["Key"] for u in s3.client().list_multipart_uploads(Bucket=store.bucket,
                                                                     Prefix=store.prefix).get("Uploads", [])]

    before = open_uploads()
    if store_fixture == "local_store":
        young = collect(store, grace_s=3600)
        assert young.incomplete == [".tmp/dead"]  # 2 h old; "alive" is younger than the grace
        assert open_uploads() == ["alive"]
    else:
        if store_fixture == "seaweed_store":  # moto reports a fixed 2010 "Initiated" for every upload
            young = collect(store, grace_s=3600)
            assert young.incomplete == [] and open_uploads() == before  # an upload in flight is never aborted
        dry = collect(store, grace_s=0, dry_run=True)
        assert len(dry.incomplete) == 1 and "data/u-killed" in dry.incomplete[0] and open_uploads() == before
        done = collect(store, grace_s=0)
        assert done.incomplete == dry.incomplete and open_uploads() == []
