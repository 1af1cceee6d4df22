"""Status records of creations in flight: heartbeat, silent processes, failure retention."""

from __future__ import annotations

import time

from datastore import inflight
from datastore.store import open_store


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
