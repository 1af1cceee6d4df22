"""Creations in flight and recently failed: what ``datastore status`` and ``list`` show next to versions.

A creation writes ``runs/<run-id>.json`` when it starts, rewrites it every few seconds with its
phase and progress, and removes it when it commits (the version record then tells the story) or
finds the source unchanged. A failure rewrites it with ``status: failed`` and the one-line
reason, so a user can see *why* hours later; ``gc`` removes failed records older than
``DATASTORE_FAILED_RETENTION``.

A ``processing`` record can outlive its creation: the process was killed outright, or it failed
but could not rewrite the record (a full disk refuses even that small write). Readers therefore
judge it, in this order:

* a **local copy** of the failed record: when the store refuses the failed record, the writer
  keeps it under ``$XDG_CACHE_HOME/datastore/runs/`` and readers on that machine show it, with
  the real reason;
* the **writer process**: each record names its process by pid plus boot id, pid namespace and
  start time (Linux), so a reader in the same pid namespace of the same boot knows at once
  whether that very process still runs (a reused pid has another start time); one that ended
  without recording an outcome is shown as failed ("the creation stopped: …");
* the **heartbeat**: anywhere else, a record not renewed for ``DATASTORE_LEASE_TTL`` (the same
  clock leases use) is shown as failed.

Readers never rewrite records: the judgement is made each time one is read.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from datastore.errors import ObjectNotFound
from datastore.model.records import JsonRecord
from datastore.store import Store, layout


@functools.lru_cache(maxsize=1)
def _pid_space() -> str | None:
    """Boot id and pid namespace of this process: where a pid names one process (Linux only)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            boot = fh.read().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


def process_identity(pid: int) -> str | None:
    """``<boot id>/<pid namespace>/<start time>`` of a running process, None if none runs (or unknown).

    The start time (clock ticks since boot) tells a process from a later one that got its pid.
    """
    space = _pid_space()
    if space is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may hold spaces or ')'.
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):  # a zombie has ended, only its parent has not reaped it
        return None
    return f"{space}/{fields[19]}"  # field 22 of the line: starttime


def same_process(pid: int, identity: str | None) -> bool:
    """Whether ``pid`` is still the process that :func:`process_identity` named ``identity``.

    Unknowable cases (no identity recorded, another machine or pid namespace) count as running:
    only a heartbeat can tell them.
    """
    if not identity or identity.rpartition("/")[0] != _pid_space():
        return True
    return process_identity(pid) == identity


def _writer_ended(rec: RunRecord) -> bool:
    """Whether the process that writes ``rec`` is known to have ended (False when it cannot be told)."""
    if not rec.process or rec.process.rpartition("/")[0] != _pid_space():
        return False  # another machine or pid namespace (or an older writer): only the heartbeat can tell
    return process_identity(rec.pid) != rec.process


@dataclass
class RunRecord(JsonRecord):
    """One creation that has not committed (yet): ``processing`` or ``failed``.

    Fields mirror :class:`datastore.store.versions.VersionRecord` where they mean the same thing, so
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
    # The writer process as :func:`process_identity` names it; set for records made by this
    # process (see __post_init__); None or "" when unknown (no /proc, or an older writer's record).
    process: str | None = None
    silent: bool = False  # set when read: a processing record whose writer is gone (not stored)

    def __post_init__(self) -> None:
        if self.process is None and self.pid == os.getpid():
            self.process = process_identity(self.pid)

    @classmethod
    def from_json(cls, data: dict) -> RunRecord:
        """Build from a stored record, ignoring fields a newer writer may have added."""
        # A stored record without "process" must not get the reader's own (see __post_init__).
        return super().from_json({"process": ""} | data)

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


def local_dir() -> Path:
    """Where records the store refused are kept on this machine (XDG cache, beside the work dir)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "datastore" / "runs"


def _local_path(store: Store, run_id: str) -> Path:
    # One folder for every store: the store's URL is hashed in so runs of two stores never meet.
    return local_dir() / f"{hashlib.sha256(store.url.encode()).hexdigest()[:16]}-{run_id}.json"


def write_local(store: Store, rec: RunRecord) -> Path:
    """Keep ``rec`` on this machine because ``store`` refused it (full disk); readers here use it.

    Raises:
        OSError: this machine cannot keep it either.
    """
    path = _local_path(store, rec.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in rec.to_json().items() if k != "silent"}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(body, fh, sort_keys=True)
        os.replace(tmp, path)  # readers see the whole record or none
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def _read_local(store: Store, run_id: str) -> RunRecord | None:
    try:
        rec = RunRecord.from_json(json.loads(_local_path(store, run_id).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    return rec if rec.run_id == run_id and rec.status == "failed" else None


def _load(store: Store, key: str, stale_after: float, now: float) -> RunRecord | None:
    try:
        rec = RunRecord.from_json(json.loads(store.get_bytes(key)))
    except (ObjectNotFound, ValueError, TypeError):
        return None  # removed meanwhile, or written by something else
    if rec.status != "processing":
        return rec
    kept = _read_local(store, rec.run_id)
    if kept is not None:  # it failed, and the store would not take the failed record
        return kept
    last = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(rec.updated_at))
    if _writer_ended(rec):
        rec.status, rec.silent = "failed", True
        rec.reason = (f"the creation stopped: process {rec.pid} on {rec.host} ended without recording the outcome "
                      f"(last update {last} UTC; a full store or a kill does this): run the same create again, "
                      "it resumes what was transferred")
        rec.finished_at = rec.updated_at
    elif now - rec.updated_at > stale_after:
        rec.status, rec.silent = "failed", True
        rec.reason = (f"no heartbeat since {last} UTC "
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


def dismiss_failed(store: Store, stale_after: float, name: str, *, source: str | None = None,
                   before: float | None = None) -> list[RunRecord]:
    """Remove the failed run records of ``name``; returns them.

    Args:
        store: The store.
        stale_after: As in :func:`read_all` (a silent record counts as failed, as it is shown).
        name: The datastore name.
        source: Only failures of this (credential-free) source.
        before: Only failures that started before this POSIX time (a creation that commits
            dismisses the failures it supersedes, not one that started after it).
    """
    gone = [r for r in read_all(store, stale_after)
            if r.name == name and r.status == "failed" and (source is None or r.source == source)
            and (before is None or r.started_at < before)]
    for rec in gone:
        store.delete(layout.run_key(rec.run_id))
        _local_path(store, rec.run_id).unlink(missing_ok=True)
    return gone


def expire(store: Store, stale_after: float, retention: float, dry_run: bool = False) -> list[str]:
    """Remove failed (and long-silent) run records older than ``retention``; returns their keys."""
    now = time.time()
    gone = [r.run_id for r in read_all(store, stale_after, now)
            if r.status == "failed" and now - (r.finished_at or r.updated_at) > retention]
    if not dry_run:
        for run_id in gone:
            store.delete(layout.run_key(run_id))
            _local_path(store, run_id).unlink(missing_ok=True)
    return [layout.run_key(run_id) for run_id in gone]



@dataclass(frozen=True)
class StatusRow:
    """One line of ``status`` (and a non-version row of ``list``): a creation in flight or failed.

    Made from a status record here, or from a Prefect run the store has no record of (a run
    still queued, or one that failed before it started; see :mod:`datastore.orchestration.status`).
    """

    name: str
    status: str  # processing | failed
    kind: str
    source: str
    since: str  # ISO time it started (or was queued)
    detail: str  # progress, or the reason it failed
    flow_run_id: str | None
    files: int = 0
    bytes: int = 0

    def to_json(self) -> dict:
        """Shaped like a version record (no ``version``/``digest`` yet), plus ``detail``."""
        return {"name": self.name, "version": None, "status": self.status, "kind": self.kind, "source": self.source,
                "files": self.files, "bytes": self.bytes, "digest": None, "created_at": self.since,
                "flow_run_id": self.flow_run_id, "detail": self.detail}


def iso(ts: float) -> str:
    """A POSIX time as the ISO 8601 UTC text rows and records use."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def status_rows(found: list[RunRecord]) -> list[StatusRow]:
    """The rows of status records (see :func:`recent`): progress while processing, else the reason."""
    return [StatusRow(r.name, r.status, r.kind, r.source, iso(r.started_at),
                      r.progress_text() if r.status == "processing" else (r.reason or "failed"),
                      r.flow_run_id, r.files_done, r.bytes_done) for r in found]
