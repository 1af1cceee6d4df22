"""The local creation flow end to end, through a real Prefect API (test harness)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from datastore.errors import ResumeLimit, StoreUnavailable
from datastore.reading import reader
from datastore.store import LocalStore, open_store, versions
from datastore_flows.local_folder import create_from_local
from tests.conftest import make_tree

pytestmark = pytest.mark.usefixtures("prefect_api")


def task_runs_of(flow_run_id: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def assert_round_trip(record: dict, tree: dict[str, bytes]) -> None:
    store = open_store()
    rec = versions.read_record(store, record["name"], record["version"])
    got = {e.path: reader.read_file(store, rec, e) for e in reader.entries(store, rec)}
    assert got == tree


def small_tree(n: int, size: int = 10_240, seed: int = 0) -> dict[str, bytes]:
    rnd = hashlib.sha256(str(seed).encode()).digest()
    return {f"d{i // 100:03d}/f{i:05d}.bin": (rnd + i.to_bytes(4, "big")) * (size // 36) for i in range(n)}


def fail_once_at(src: Path, name: str, rel: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run a create of ``src`` that fails reading ``rel``; return the data bytes it left stored."""
    from datastore.creation.sources import local as local_transfer
    from datastore.errors import SourceUnreadable

    real_read = local_transfer.read_small

    def failing(full: str, path: str):
        if path == rel:
            raise SourceUnreadable(path, "simulated")
        return real_read(full, path)

    with monkeypatch.context() as mp:
        mp.setattr(local_transfer, "read_small", failing)
        with pytest.raises(SourceUnreadable):
            create_from_local(str(src), name=name)
    return sum(o.size for o in open_store().list("data/"))


def test_ten_thousand_small_files_use_few_task_runs(tmp_path: Path, local_store: str) -> None:
    tree = small_tree(10_000)
    make_tree(tmp_path / "src", tree)
    record = create_from_local(str(tmp_path / "src"), name="many")
    assert record["files"] == 10_000 and record["bytes"] == sum(map(len, tree.values()))
    runs = task_runs_of(record["flow_run_id"])
    assert 3 <= len(runs) <= 20, [r.name for r in runs]
    assert all(r.state.is_completed() for r in runs)
    # Named for what they do, as the UI's graph shows them.
    names = [r.name for r in sorted(runs, key=lambda r: r.start_time)]
    assert names[0] == "scan" and names[-1] == "commit", names
    n = len(names) - 2
    # Transfers run concurrently: their start order is not theirs to keep, their numbers are.
    transfers = sorted(names[1:-1], key=lambda x: int(re.match(r"transfer (\d+)/", x)[1]))
    assert [re.sub(r" · .*", "", x) for x in transfers] == [f"transfer {i}/{n}" for i in range(1, n + 1)], names
    assert sum(int(re.search(r" · ([\d,]+) files · ", x)[1].replace(",", "")) for x in transfers) == 10_000, names
    # packed: far fewer objects than files
    data_objects = list(open_store().list("data/"))
    assert len(data_objects) <= 10
    assert_round_trip(record, tree)


@pytest.mark.parametrize("store_fixture", ["local_store", "seaweed_store", "moto_store"])
def test_unchanged_folder_reuses_everything(tmp_path: Path, store_fixture: str, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue(store_fixture)
    tree = small_tree(300, 2000) | {"big.bin": os.urandom(3 * 1024 * 1024 + 5), "empty": b""}
    src = make_tree(tmp_path / "src", tree)
    os.environ["DATASTORE_LARGE_FILE_BYTES"] = str(1024 * 1024)
    try:
        # mtimes older than the racy window, as a folder at rest would be
        for p in src.rglob("*"):
            os.utime(p, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
        first = create_from_local(str(src), name="same")
        second = create_from_local(str(src), name="same")
        assert (first["version"], second["version"]) == (1, 2)
        assert second["digest"] == first["digest"]
        assert first["bytes_uploaded"] >= first["bytes"]
        assert second["bytes_uploaded"] == 0
        assert_round_trip(second, tree)

        # one file changes: only it is sent again
        (src / "d001/f00150.bin").write_bytes(b"changed!")
        tree["d001/f00150.bin"] = b"changed!"
        third = create_from_local(str(src), name="same")
        assert third["version"] == 3 and third["digest"] != first["digest"]
        assert 0 < third["bytes_uploaded"] <= 8
        assert_round_trip(third, tree)
        assert_round_trip(first, small_tree(300, 2000) | {"big.bin": tree["big.bin"], "empty": b""})
    finally:
        del os.environ["DATASTORE_LARGE_FILE_BYTES"]


def test_large_files_go_multipart_on_s3(tmp_path: Path, seaweed_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASTORE_LARGE_FILE_BYTES", str(1024 * 1024))
    monkeypatch.setenv("DATASTORE_PART_BYTES", str(5 * 1024 * 1024))
    tree = {"big/a.bin": os.urandom(12 * 1024 * 1024 + 3), "small.txt": b"tiny"}
    record = create_from_local(str(make_tree(tmp_path / "src", tree)), name="big")
    assert record["files"] == 2 and record["bytes_uploaded"] == sum(map(len, tree.values()))
    store = open_store()
    rec = versions.read_record(store, "big", 1)
    by_path = {e.path: e for e in reader.entries(store, rec)}
    head = store.client.head_object(Bucket=store.bucket, Key=store._k(by_path["big/a.bin"].object))
    assert head["ETag"].strip('"').endswith("-3")  # three parts: a multipart upload
    assert_round_trip(record, tree)


def test_skipped_items_are_recorded_and_counted(tmp_path: Path, local_store: str) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": b"a"})
    os.symlink(tmp_path / "nowhere", src / "dangling")
    os.mkfifo(src / "pipe")
    record = create_from_local(str(src), name="skips")
    assert record["files"] == 1 and record["skipped"] == 2
    from datastore.model.manifest import Skipped

    skipped = [i for i in reader.manifest_items(open_store(), record["manifest"]) if isinstance(i, Skipped)]
    assert skipped == [Skipped("dangling", "broken symlink"), Skipped("pipe", "special file (FIFO)")]


def test_transient_store_failure_is_retried_without_duplicating_data(
    tmp_path: Path, local_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = small_tree(2500, 1000)
    src = make_tree(tmp_path / "src", tree)
    real_put = LocalStore.put_bytes
    failed: list[str] = []

    def flaky(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        # the first pack of every batch is stored, then the batch fails before its manifest
        if "/batches/" in key and key not in failed:
            failed.append(key)
            raise StoreUnavailable(self.url, "simulated timeout")
        real_put(self, key, data, if_absent=if_absent)

    monkeypatch.setattr(LocalStore, "put_bytes", flaky)
    record = create_from_local(str(src), name="flaky")
    assert len(failed) == 3  # three batches, each failed once and was retried
    runs = task_runs_of(record["flow_run_id"])
    assert sum(r.run_count for r in runs if r.name.startswith("transfer")) == 6
    store = open_store()
    referenced = {e.object for e in reader.entries(store, versions.read_record(store, "flaky", 1))}
    stored = {o.key for o in store.list("data/")}
    assert stored == referenced  # the retries wrote the same content-addressed packs, nothing extra
    assert_round_trip(record, tree)


def test_rerun_after_failure_resumes_finished_batches(
    tmp_path: Path, local_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = small_tree(4000, 1000)
    src = make_tree(tmp_path / "src", tree)
    first = fail_once_at(src, "resume", "d039/f03950.bin", monkeypatch)  # in the last batch
    store = open_store()
    assert versions.live_numbers(store, "resume") == []  # nothing visible
    assert first > 0
    record = create_from_local(str(src), name="resume")
    total = sum(o.size for o in store.list("data/"))
    assert record["version"] == 1
    assert record["bytes_uploaded"] == total - first < record["bytes"]
    assert_round_trip(record, tree)


def test_committed_version_has_a_details_artifact(tmp_path: Path, local_store: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    src = make_tree(tmp_path / "My_Data.v2", {"a.txt": b"a" * 10, "b/c.txt": b"c"})
    record = create_from_local(str(src))
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["datastore-my-data-v2"])))
    assert len(arts) == 1 and str(arts[0].flow_run_id) == record["flow_run_id"]
    text = arts[0].data
    for fragment in ("my_data.v2 version 1", f"| source | {src} |", "| files | 2 |", record["digest"], "| kind | local |"):
        assert fragment in text, text


def test_a_source_of_only_skipped_entries_leaves_no_plans(tmp_path: Path, local_store: str) -> None:
    from datastore.errors import EmptySource

    src = tmp_path / "src"
    src.mkdir()
    os.symlink(tmp_path / "nowhere", src / "dangling")  # skipped: the scan stores a plan with one skip line
    with pytest.raises(EmptySource, match=r"contains no files \(1 entries skipped"):
        create_from_local(str(src), name="onlyskips")
    store = open_store()
    assert [o.key for o in store.list("staging/")] == []
    assert versions.live_numbers(store, "onlyskips") == []


def test_a_bad_setting_fails_the_run_not_the_import(tmp_path: Path, local_store: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    from datastore.errors import DatastoreError

    env = os.environ | {"DATASTORE_WORKERS": "many"}
    done = subprocess.run([sys.executable, "-c", "import datastore_flows.local_folder"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    src = make_tree(tmp_path / "src", {"a.txt": b"a"})
    monkeypatch.setenv("DATASTORE_WORKERS", "many")
    with pytest.raises(DatastoreError, match=r"DATASTORE_WORKERS='many' is not a whole number"):
        create_from_local(str(src), name="badsetting")


def test_transfer_batches_in_flight_are_bounded_by_workers(tmp_path: Path, local_store: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from datastore.creation.sources import local

    monkeypatch.setenv("DATASTORE_WORKERS", "2")
    monkeypatch.setenv("DATASTORE_BATCH_FILES", "1")
    tree = {f"f{i}.txt": bytes([65 + i]) * 10 for i in range(6)}
    src = make_tree(tmp_path / "src", tree)
    real_read = local.read_small
    lock = threading.Lock()
    active = [0, 0]  # now, most

    def slow(full: str, rel: str):
        with lock:
            active[0] += 1
            active[1] = max(active)
        time.sleep(0.3)
        try:
            return real_read(full, rel)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(local, "read_small", slow)
    record = create_from_local(str(src), name="bounded")
    assert active[1] == 2  # six one-file batches, two at a time
    assert_round_trip(record, tree)


def test_many_batches_share_a_few_readable_task_runs_and_resume_per_batch(
    tmp_path: Path, local_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATASTORE_BATCH_FILES", "10")
    monkeypatch.setenv("DATASTORE_TRANSFER_TASKS", "3")
    tree = small_tree(100, 1000)  # 10 batches of 10 files -> task runs of 3, 3 and 4 batches
    src = make_tree(tmp_path / "src", tree)
    first = fail_once_at(src, "grouped", "d000/f00095.bin", monkeypatch)  # the last batch of the last run
    store = open_store()
    record = create_from_local(str(src), name="grouped")
    assert_round_trip(record, tree)
    # The re-run moved only the failed batch, its 10 files (the others' manifests were kept).
    last = sum(len(data) for path, data in sorted(tree.items())[90:])
    assert record["bytes_uploaded"] == sum(o.size for o in store.list("data/")) - first == last
    names = sorted(r.name for r in task_runs_of(record["flow_run_id"]) if r.name.startswith("transfer"))
    assert names == ["transfer 1/3 · 30 files · 28.5 KiB", "transfer 2/3 · 30 files · 28.5 KiB",
                     "transfer 3/3 · 40 files · 38.0 KiB"]


def test_a_run_lost_too_often_fails_instead_of_resuming_again(local_store: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": b"a"})
    monkeypatch.setenv("DATASTORE_MAX_RESUMES", "1")
    # Prefect's own override of prefect.runtime: this run has started 3 times (resumed twice).
    monkeypatch.setenv("PREFECT__RUNTIME__FLOW_RUN__RUN_COUNT", "3")
    with pytest.raises(ResumeLimit) as info:
        create_from_local(str(src), name="lost")
    assert str(info.value) == (
        "the creation of 'lost' was lost and resumed 2 times; not resuming again: look at the earlier runs' worker "
        "logs (out of memory? a machine lost?), fix that, and run the creation again (finished batches are reused), "
        "or raise DATASTORE_MAX_RESUMES")
    assert versions.live_numbers(open_store(), "lost") == []
    monkeypatch.setenv("PREFECT__RUNTIME__FLOW_RUN__RUN_COUNT", "2")  # resumed once: within the limit
    assert create_from_local(str(src), name="lost")["version"] == 1
