"""Version records: allocation by put-if-absent, listing, quota.

A version exists exactly when its record exists and no tombstone does. Records are never
removed (deletion adds a tombstone), so ``next = max(every record ever written) + 1`` can never
hand out a number twice, even after the newest or every version is deleted. Two creators racing
for the same number both try ``put-if-absent``; one wins, the other moves on to the next number.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

from datastore.errors import DatastoreNotFound, ObjectNotFound, QuotaExceeded, VersionDeleted
from datastore.model.records import JsonRecord
from datastore.store import Store, layout

STATUSES = ("processing", "succeeded", "failed")
KINDS = ("local", "s3-copy", "s3-reference", "http-archive")


@dataclass
class VersionRecord(JsonRecord):
    """What a committed version is; also the ``--json`` output of ``create``, ``list``, ``show``."""

    name: str
    version: int
    status: str
    kind: str
    source: str
    files: int
    bytes: int
    digest: str
    created_at: str
    flow_run_id: str | None
    bytes_uploaded: int = 0
    skipped: int = 0
    manifest: str = ""
    #: The manifest's table of contents ("" for versions committed before there was one).
    manifest_toc: str = ""
    #: The manifest's tree index, stored by the commit of a large version ("" when there is none:
    #: a reader builds it), and that file's sha256, which a reader checks before using it.
    manifest_index: str = ""
    manifest_index_sha256: str = ""
    source_detail: dict = field(default_factory=dict)
    duration_s: float | None = None
    deleted_at: str | None = None
    #: The creation that committed this record: a commit whose answer was lost reads the
    #: record back and knows it by this id (see :func:`commit`).
    create_id: str | None = None

    @property
    def manifest_objects(self) -> tuple[str, ...]:
        """The store objects that describe this version (manifest, its TOC and index, where it has them)."""
        return tuple(k for k in (self.manifest, self.manifest_toc, self.manifest_index) if k)



def now_iso() -> str:
    """UTC timestamp in ISO 8601 with a ``Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def scan_versions(store: Store, name: str | None = None) -> dict[str, dict[str, set[int]]]:
    """Every record and tombstone number, per name: ``{name: {"versions": {...}, "deleted": {...}}}``."""
    prefix = f"{layout.NAMES}{name}/" if name else layout.NAMES
    found: dict[str, dict[str, set[int]]] = defaultdict(lambda: {"versions": set(), "deleted": set()})
    for obj in store.list(prefix):
        parsed = layout.parse_version_key(obj.key)
        if parsed:
            n, kind, v = parsed
            found[n][kind].add(v)
    return dict(found)


def live_numbers(store: Store, name: str) -> list[int]:
    """Live version numbers of ``name``, ascending."""
    s = scan_versions(store, name).get(name)
    return sorted(s["versions"] - s["deleted"]) if s else []


def _live(scan: dict[str, dict[str, set[int]]]) -> int:
    return sum(len(s["versions"] - s["deleted"]) for s in scan.values())


def count_live(store: Store) -> int:
    """Live versions across all names (what the quota counts)."""
    return _live(scan_versions(store))


def check_quota(store: Store, limit: int, scan: dict[str, dict[str, set[int]]] | None = None) -> int:
    """Raise :class:`QuotaExceeded` when one more version would pass ``limit``; return the count.

    Args:
        scan: A fresh :func:`scan_versions` of the whole store, to save listing it again.
    """
    live = _live(scan if scan is not None else scan_versions(store))
    if live >= limit:
        raise QuotaExceeded(live, limit)
    return live


def _load(store: Store, name: str, version: int) -> VersionRecord:
    try:
        return VersionRecord.from_json(json.loads(store.get_bytes(layout.record_key(name, version))))
    except ObjectNotFound:
        raise DatastoreNotFound(name, version) from None


def read_record(store: Store, name: str, version: int) -> VersionRecord:
    """Read one record (live or deleted; ``deleted_at`` says which)."""
    rec = _load(store, name, version)
    try:
        tomb = json.loads(store.get_bytes(layout.tombstone_key(name, version)))
        rec.deleted_at = tomb.get("deleted_at")
    except ObjectNotFound:
        pass
    return rec


def resolve(store: Store, name: str, version: int | None = None) -> VersionRecord:
    """The record of ``name`` at ``version``, or the newest live one when ``version`` is None."""
    if version is not None:
        return read_record(store, name, version)
    rec = latest_live(store, name)
    if rec is None:
        raise DatastoreNotFound(name)
    return rec


def resolve_live(store: Store, name: str, version: int | None = None) -> VersionRecord:
    """Like :func:`resolve`, for reading the version's files: a deleted version is refused.

    Raises:
        DatastoreNotFound: no such name or version.
        VersionDeleted: ``version`` was deleted (its files may already be reclaimed).
    """
    rec = resolve(store, name, version)
    if rec.deleted_at:
        raise VersionDeleted(name, rec.version, rec.deleted_at)
    return rec


def latest_live(store: Store, name: str) -> VersionRecord | None:
    """Newest live version of ``name``, or None."""
    live = live_numbers(store, name)
    return _load(store, name, live[-1]) if live else None  # known live: no tombstone to read


def list_records(store: Store, name: str | None = None) -> list[VersionRecord]:
    """Live records, by name then version (one listing, one GET per record)."""
    return [_load(store, n, v) for n, s in sorted(scan_versions(store, name).items())
            for v in sorted(s["versions"] - s["deleted"])]


def committed_by(store: Store, name: str, flow_run_id: str) -> VersionRecord | None:
    """The version of ``name`` that flow run ``flow_run_id`` already committed, or None.

    A resumed flow run (its worker was lost, the run rescheduled, another worker took it up)
    asks this before committing: if the lost execution got as far as its commit, the version
    stands and must not be committed again under the next number. One listing, then one GET
    per version, newest first; only resumed runs pay it.
    """
    mine = scan_versions(store, name).get(name)
    for number in sorted(mine["versions"] if mine else (), reverse=True):
        record = _load(store, name, number)
        if record.flow_run_id == flow_run_id:
            return record
    return None


def commit(store: Store, record: VersionRecord, quota: int, max_attempts: int = 10_000) -> VersionRecord:
    """Give ``record`` the next free number of its name and make it visible atomically.

    All data and the manifest must be durable before this is called: the record is the single
    put-if-absent that makes the version exist. Exactly once: when S3 applied the put but its
    answer was lost, the retry meets a taken number; the record there is read back, and if it
    carries this creation's ``create_id`` the commit is done (not repeated under the next number).

    Raises:
        QuotaExceeded: the quota is full at commit time (it is also checked before transfer).
    """
    if not record.create_id:
        raise ValueError("a committed record needs the create_id of its creation")
    for _ in range(max_attempts):
        scan = scan_versions(store)  # one listing serves both the number and the quota
        mine = scan.get(record.name)
        record.version = (max(mine["versions"]) if mine and mine["versions"] else 0) + 1
        check_quota(store, quota, scan)
        body = json.dumps(record.to_json(), indent=1, sort_keys=True).encode()
        if store.put_new(layout.record_key(record.name, record.version), body):
            return record
        # Another creator holds this number (put_new compared the bytes); the next one is ours to try.
    raise RuntimeError(f"could not allocate a version number for {record.name!r}")  # pragma: no cover
