"""Status records of creations in flight: heartbeat, silent processes, failure retention."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from datastore.store import inflight, open_store


def test_a_silent_processing_record_reads_as_failed_and_old_failures_expire(local_store: str) -> None:
    store = open_store(local_store)
    live = inflight.RunRecord(run_id="live", name="a", kind="local", source="/a", phase="transferring",
                              files_done=3, files_total=10, bytes_done=300, bytes_total=1000)
    inflight.write(store, live)
    silent = inflight.RunRecord(run_id="silent", name="b", kind="local", source="/b", pid=4242, host="box")
    inflight.write(store, silent)
    old = inflight.RunRecord(run_id="old", name="c", kind="s3-copy", source="s3://x/c", status="failed",
                             reason="boom", finished_at=time.time() - 10_000)
    inflight.write(store, old)

    later = time.time() + 60  # the live one is 60 s old, within a 120 s heartbeat allowance
    rows = {r.run_id: r for r in inflight.read_all(store, stale_after=120, now=later)}
    assert rows["live"].status == "processing" and not rows["live"].silent
    assert rows["live"].progress_text() == "transferring, 3/10 files, 0.0/0.0 MiB (30%)"
    assert rows["live"].percent() == 30.0

    much_later = time.time() + 500
    rows = {r.run_id: r for r in inflight.read_all(store, stale_after=120, now=much_later)}
    assert rows["silent"].status == "failed" and rows["silent"].silent
    assert "process 4242 on box was killed or lost" in (rows["silent"].reason or "")
    assert "run the same create again" in (rows["silent"].reason or "")

    assert [r.run_id for r in inflight.recent(store, 120, retention=3600)] == ["live", "silent"]
    assert [r.run_id for r in inflight.recent(store, 120, retention=3600, name="b")] == ["silent"]
    assert inflight.expire(store, 120, retention=3600, dry_run=True) == ["runs/old.json"]
    assert store.exists("runs/old.json")
    assert inflight.expire(store, 120, retention=3600) == ["runs/old.json"]
    assert not store.exists("runs/old.json")
    inflight.remove(store, "live")
    assert inflight.read(store, "live", 120) is None


def _stopped(rec: inflight.RunRecord) -> str:
    last = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(rec.updated_at))
    return (f"the creation stopped: process {rec.pid} on {rec.host} ended without recording the outcome "
            f"(last update {last} UTC; a full store or a kill does this): run the same create again, "
            "it resumes what was transferred")


@pytest.mark.skipif(inflight.process_identity(os.getpid()) is None, reason="needs Linux /proc to name processes")
def test_a_processing_record_whose_process_ended_reads_as_failed_at_once(local_store: str) -> None:
    store = open_store(local_store)
    child = subprocess.Popen(["sleep", "60"])
    try:
        rec = inflight.RunRecord(run_id="child", name="a", kind="local", source="/a", pid=child.pid,
                                 process=inflight.process_identity(child.pid))
        inflight.write(store, rec)
        assert inflight.read(store, "child", stale_after=120).status == "processing"  # it runs
    finally:
        child.kill()
        child.wait()
    got = inflight.read(store, "child", stale_after=120)  # long before the heartbeat would expire
    assert (got.status, got.silent) == ("failed", True)
    assert got.reason == _stopped(got)
    assert [r.status for r in inflight.recent(store, 120, retention=3600, name="a")] == ["failed"]

    # The same pid, now another process (its start time differs): ended too.
    space = inflight.process_identity(os.getpid()).rsplit("/", 1)[0]
    reused = inflight.RunRecord(run_id="reused", name="b", kind="local", source="/b", process=f"{space}/1")
    inflight.write(store, reused)
    assert inflight.read(store, "reused", stale_after=120).reason == _stopped(reused)
    # This very process: still running, so still processing.
    inflight.write(store, inflight.RunRecord(run_id="me", name="c", kind="local", source="/c"))
    assert inflight.read(store, "me", stale_after=120).status == "processing"
    # Another machine (or pid namespace), or a record without the field: only the heartbeat can tell.
    for run_id, process in (("elsewhere", "other-boot/pid:[1]/5"), ("older", "")):
        inflight.write(store, inflight.RunRecord(run_id=run_id, name="d", kind="local", source="/d", pid=child.pid,
                                                 process=process))
        assert inflight.read(store, run_id, stale_after=120).status == "processing"


def test_a_failed_record_the_store_refused_is_shown_from_the_local_copy(
        local_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store = open_store(local_store)
    rec = inflight.RunRecord(run_id="full", name="a", kind="local", source="/a")
    inflight.write(store, rec)  # what the store keeps: the record of the start
    rec.status, rec.reason, rec.finished_at = "failed", "store '/s' is full (no space left on device): free it", 1.0
    kept = inflight.write_local(store, rec)
    assert kept.parent == tmp_path / "cache" / "datastore" / "runs"
    got = inflight.read(store, "full", stale_after=120)
    assert (got.status, got.reason) == ("failed", "store '/s' is full (no space left on device): free it")
    other = open_store(str(tmp_path / "other-store"))  # the copy belongs to its own store only
    inflight.write(other, inflight.RunRecord(run_id="full", name="a", kind="local", source="/a"))
    assert inflight.read(other, "full", stale_after=120).status == "processing"
    assert inflight.expire(store, 120, retention=3600) == ["runs/full.json"]
    assert not kept.exists() and inflight.read(store, "full", stale_after=120) is None


def test_dismiss_failed_removes_only_the_failures_asked_for(local_store: str) -> None:
    store = open_store(local_store)
    t = time.time()
    recs = [inflight.RunRecord(run_id="a1", name="a", kind="local", source="/a", status="failed", started_at=t - 30),
            inflight.RunRecord(run_id="a2", name="a", kind="local", source="/other", status="failed", started_at=t - 20),
            inflight.RunRecord(run_id="a3", name="a", kind="local", source="/a", status="failed", started_at=t + 5),
            inflight.RunRecord(run_id="a4", name="a", kind="local", source="/a", started_at=t - 10),  # processing
            inflight.RunRecord(run_id="b1", name="b", kind="local", source="/a", status="failed", started_at=t - 30)]
    for rec in recs:
        inflight.write(store, rec)
    # What a commit of /a that started at t does: earlier failures of /a only.
    assert [r.run_id for r in inflight.dismiss_failed(store, 120, "a", source="/a", before=t)] == ["a1"]
    assert sorted(r.run_id for r in inflight.read_all(store, 120)) == ["a2", "a3", "a4", "b1"]
    # What 'delete --all' does: every failure of the name, never a creation still processing.
    assert sorted(r.run_id for r in inflight.dismiss_failed(store, 120, "a")) == ["a2", "a3"]
    assert sorted(r.run_id for r in inflight.read_all(store, 120)) == ["a4", "b1"]
