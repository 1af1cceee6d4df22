"""Garbage collection: reclaim data no live version references, never what a creation in flight needs.

What is kept:

* everything a **live version** references: its record, its manifest, and every data object
  its manifest points at (versions share packs and large objects, so this is a set union);
* everything a **creation in flight** references: a staging folder (``staging/<name>/<id>/``)
  with any object younger than the grace period counts as in flight, and the data objects its
  plans and batch manifests name are kept, however old they are;
* any object younger than the grace period (``DATASTORE_GC_GRACE``, default 1 hour), because a
  creation may have written it but not yet recorded it anywhere.

What is reclaimed: data objects and manifests that nothing above references (deleted versions,
creations that never committed), and staging folders idle for longer than the grace period.
Records and tombstones are never removed: they keep version numbers from being reused.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from datastore.model import plan
from datastore.model.manifest import Entry
from datastore.store import ObjectInfo, Store, layout, versions
from datastore.store.manifests import entries, manifest_items


@dataclass
class Report:
    """What a collection found and (unless a dry run) removed."""

    objects: int = 0
    bytes: int = 0
    kept_objects: int = 0
    kept_bytes: int = 0
    reclaimed: list[str] = field(default_factory=list)  # the first keys, for the dry-run listing
    incomplete: list[str] = field(default_factory=list)  # unfinished writes of killed creations

    def to_json(self) -> dict:
        """Machine-readable form (``gc --json``)."""
        return {"objects": self.objects, "bytes": self.bytes, "kept_objects": self.kept_objects,
                "kept_bytes": self.kept_bytes, "reclaimed": self.reclaimed, "incomplete": self.incomplete}


def _objects_of_plan(data: bytes) -> Iterator[str]:
    """Data objects a plan points at: those of its reused entries (new files have none yet)."""
    for item in plan.decode(data):
        if isinstance(item, plan.Reused) and item.entry.object:
            yield item.entry.object


def _live_references(store: Store) -> tuple[set[str], set[str]]:
    """(manifest keys, data keys) of every live version."""
    manifests: set[str] = set()
    data: set[str] = set()
    for rec in versions.list_records(store):
        if rec.manifest:
            manifests.update(rec.manifest_objects)
            for e in entries(store, rec):
                if e.object:
                    data.add(e.object)
    return manifests, data


def _staging_folders(store: Store) -> dict[str, list[ObjectInfo]]:
    """Staging objects grouped by creation folder ``staging/<name>/<source-id>/`` (one listing)."""
    folders: dict[str, list[ObjectInfo]] = defaultdict(list)
    for obj in store.list(layout.STAGING):
        folders[layout.staging_folder(obj.key)].append(obj)
    return folders


def _staging(store: Store, grace_s: float, now: float) -> tuple[set[str], list[ObjectInfo]]:
    """Data keys referenced by creations in flight, and the staging objects of idle ones."""
    keep: set[str] = set()
    idle: list[ObjectInfo] = []
    for objs in _staging_folders(store).values():
        if max(o.modified for o in objs) < now - grace_s:
            idle.extend(objs)
            continue
        for o in objs:
            keep.update(_references_of(store, o.key))  # empty if removed meanwhile
    return keep, idle


def reclaim_version(store: Store, record: versions.VersionRecord) -> Report:
    """Reclaim at once the data only a just-deleted version used (``delete`` calls this).

    Kept: anything a live version references, and anything any staged creation references,
    whatever its age (a creation may be about to reuse it). If a creation read the deleted
    version's manifest but has not staged its plan yet, its commit finds the object missing and
    fails with a clear error instead of publishing a broken version (see ``creation.commit``).
    """
    report = Report()
    if not record.manifest:
        return report
    try:
        mine = {e.object for e in entries(store, record) if e.object}
    except FileNotFoundError:
        # A concurrent gc saw the tombstone first and reclaimed the manifest (and with it this
        # version's own data): the delete is done, there is nothing left for it to reclaim.
        return report
    _, live_data = _live_references(store)
    # The deleted version's own staging folder, untouched since its commit, is its leftover
    # (kept for resume) and does not protect anything; written to after the commit, it belongs
    # to a re-run in flight. Every other staging folder protects what it names, whatever its age.
    own = layout.staging_prefix(record.name, record.kind, record.source)
    committed = datetime.fromisoformat(record.created_at).timestamp()
    staged: set[str] = set()
    leftovers: list[str] = []
    for prefix, objs in _staging_folders(store).items():
        if prefix == own and max(o.modified for o in objs) <= committed:
            leftovers.extend(o.key for o in objs)
            continue
        for o in objs:
            staged.update(_references_of(store, o.key))
    for key in leftovers:
        store.delete(key)
    for key in sorted(mine - live_data - staged):
        try:
            size = store.head(key).size
        except FileNotFoundError:
            continue
        store.delete(key)
        report.objects += 1
        report.bytes += size
        if len(report.reclaimed) < 1000:
            report.reclaimed.append(key)
    for key in record.manifest_objects:
        store.delete(key)
    return report


def _references_of(store: Store, key: str) -> set[str]:
    try:
        if layout.is_plan_key(key):
            return set(_objects_of_plan(store.get_bytes(key)))
        return {e.object for e in manifest_items(store, key) if isinstance(e, Entry) and e.object}
    except FileNotFoundError:
        return set()


def collect(store: Store, grace_s: float, dry_run: bool = False, listing: int = 1000) -> Report:
    """Reclaim unreferenced data, manifests and idle staging older than ``grace_s`` seconds.

    The references are gathered *before* the candidates are listed, so an object written after
    the references were read is younger than the grace period and is kept.
    """
    now = time.time()
    live_manifests, live_data = _live_references(store)
    staged_data, idle_staging = _staging(store, grace_s, now)
    report = Report()

    def reclaim(obj: ObjectInfo) -> None:
        report.objects += 1
        report.bytes += obj.size
        if len(report.reclaimed) < listing:
            report.reclaimed.append(obj.key)
        if not dry_run:
            store.delete(obj.key)

    for obj in store.list(layout.MANIFESTS):
        if obj.key in live_manifests or obj.modified >= now - grace_s:
            report.kept_objects += 1
            report.kept_bytes += obj.size
        else:
            reclaim(obj)
    for obj in store.list(layout.DATA):
        if obj.key in live_data or obj.key in staged_data or obj.modified >= now - grace_s:
            report.kept_objects += 1
            report.kept_bytes += obj.size
        else:
            reclaim(obj)
    for obj in idle_staging:
        reclaim(obj)
    # Unfinished writes (local temp files, S3 multipart uploads) of creations that died: older
    # than the grace, so an upload in flight is never aborted under a running creation.
    report.incomplete = store.reclaim_incomplete(now - grace_s, dry_run=dry_run)
    return report
