"""Creations in flight and recently failed: what ``datastore status`` and ``list`` show next to versions.

A creation writes ``runs/<run-id>.json`` when it starts, rewrites it every few seconds with its
phase and progress, and removes it when it commits (the version record then tells the story) or
finds the source unchanged. A failure rewrites it with ``status: failed`` and the one-line
reason, so a user can see *why* hours later; ``gc`` removes failed records older than
``DATASTORE_FAILED_RETENTION``. A process killed outright leaves a ``processing`` record that
stops being renewed: readers report it as failed once its heartbeat is older than
``DATASTORE_LEASE_TTL`` (the same clock leases use).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field

from datastore import layout
from datastore.errors import ObjectNotFound
from datastore.store import Store

@dataclass
class RunRecord:
    """One creation that has not committed (yet): ``processing`` or ``failed``.

    Fields mirror :class:`datastore.versions.VersionRecord` where they mean the same thing, so
    ``list --json`` can print both kinds of rows in one array.
    """

    run_id: str
    name: str
    kind: str
    source: str  # credential-free
    status: str = "processing"
    flow_run_id: str | None = None
    flow_run_name: str | None = None
    parent_flow_run_id: str | None = None  # the periodic run, when this creation is its subflow
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    phase: str = "starting"
    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    reason: str | None = None
    finished_at: float | None = None
    silent: bool = False  # set when read: a processing record whose heartbeat stopped (not stored)

    def to_json(self) -> dict:
        """Plain dict for storage and ``--json``."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> RunRecord:
        """Build from a stored record, ignoring fields a newer writer may have added."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def progress_text(self) -> str:
        """``transferring 120/1,000 files, 12.0/100.0 MiB (12%)`` style summary."""
        parts = [self.phase]
        if self.files_total:
            parts.append(f"{self.files_done:,}/{self.files_total:,} files")
        if self.bytes_total:
            pct = 100 * self.bytes_done / self.bytes_total
            parts.append(f"{self.bytes_done / 2**20:.1f}/{self.bytes_total / 2**20:.1f} MiB ({pct:.0f}%)")
        return ", ".join(parts)

    def percent(self) -> float:
        """Progress by bytes (files when there are no bytes), 0..100."""
        if self.bytes_total:
            return min(100.0, 100 * self.bytes_done / self.bytes_total)
        if self.files_total:
            return min(100.0, 100 * self.files_done / self.files_total)
        return 0.0


def write(store: Store, rec: RunRecord) -> None:
    """Store (replace) a run record, stamping ``updated_at``."""
    rec.updated_at = time.time()
    body = {k: v for k, v in rec.to_json().items() if k != "silent"}  # judged when read, never stored
    store.put_bytes(layout.run_key(rec.run_id), json.dumps(body, sort_keys=True).encode())


def remove(store: Store, run_id: str) -> None:
    """Forget a run (it committed, or found nothing to commit)."""
    store.delete(layout.run_key(run_id))


def _load(store: Store, key: str, stale_after: float, now: float) -> RunRecord | None:
    try:
        rec = RunRecord.from_json(json.loads(store.get_bytes(key)))
    except (ObjectNotFound, ValueError, TypeError):
        return None  # removed meanwhile, or written by something else
    if rec.status == "processing" and now - rec.updated_at > stale_after:
        rec.status, rec.silent = "failed", True
        rec.reason = (f"no heartbeat since {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(rec.updated_at))} UTC "
                      f"(process {rec.pid} on {rec.host} was killed or lost): run the same create again, "
                      "it resumes what was transferred")
        rec.finished_at = rec.updated_at
    return rec


def read(store: Store, run_id: str, stale_after: float) -> RunRecord | None:
    """The record of one run (None when it committed, or never started), silence judged as in :func:`read_all`."""
    return _load(store, layout.run_key(run_id), stale_after, time.time())


def read_all(store: Store, stale_after: float, now: float | None = None) -> list[RunRecord]:
    """Every run record, oldest first, with silent ``processing`` ones reported as failed.

    Args:
        store: The store.
        stale_after: Seconds without a heartbeat after which a ``processing`` record is taken
            to be a creation whose process died (it is shown as failed, not rewritten).
        now: The current time (for tests).
    """
    now = time.time() if now is None else now
    found = [r for obj in store.list(layout.RUNS) if (r := _load(store, obj.key, stale_after, now)) is not None]
    return sorted(found, key=lambda r: r.started_at)


def recent(store: Store, stale_after: float, retention: float, name: str | None = None) -> list[RunRecord]:
    """Runs still processing plus those that failed within ``retention`` seconds (optionally of one name)."""
    now = time.time()
    return [r for r in read_all(store, stale_after, now)
            if (name is None or r.name == name)
            and (r.status == "processing" or now - (r.finished_at or r.updated_at) <= retention)]


def expire(store: Store, stale_after: float, retention: float, dry_run: bool = False) -> list[str]:
    """Remove failed (and long-silent) run records older than ``retention``; returns their keys."""
    now = time.time()
    old = [layout.run_key(r.run_id) for r in read_all(store, stale_after, now)
           if r.status == "failed" and now - (r.finished_at or r.updated_at) > retention]
    if not dry_run:
        for key in old:
            store.delete(key)
    return old

