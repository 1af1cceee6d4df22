"""The steps every creation path shares: prepare (validate, quota) and commit.

A creation path (local folder, S3 prefix, HTTP archive) supplies the scan and the batch transfer;
this module supplies the beginning and the end, so all paths keep the same invariants: nothing is
transferred over quota, and nothing is visible until the one put-if-absent of the record.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datastore import failpoints
from datastore.errors import DatastoreError
from datastore.model.manifest import Entry, ManifestWriter
from datastore.model.naming import derive_name, validate_name
from datastore.reading import reader
from datastore.settings import Settings
from datastore.store import Store, layout, open_store, versions


@dataclass(frozen=True)
class CreateJob:
    """Everything the tasks of one creation need, small enough to pass as a task parameter."""

    name: str
    kind: str
    source: str  # credential-free, normalized
    store: str
    staging: str
    create_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.time)
    source_detail: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """Plain dict (for logs and artifacts)."""
        return asdict(self)


def prepare(source: str, name: str | None, kind: str, settings: Settings, source_detail: dict | None = None) -> CreateJob:
    """Validate everything that can be validated before any data moves.

    Raises:
        InvalidName: ``name`` breaks the rule, or none can be derived from ``source``.
        StoreError: the store cannot be used (missing bucket, bad credentials, not writable).
        QuotaExceeded: the quota is already full.
    """
    name = validate_name(name) if name is not None else derive_name(source)
    store = open_store(settings.store, settings)
    store.check_writable()
    versions.check_quota(store, settings.max_versions)
    return CreateJob(
        name=name,
        kind=kind,
        source=source,
        store=store.url,
        staging=layout.staging_prefix(name, kind, source),
        source_detail=source_detail or {},
    )


def previous_entries(store: Store, job: CreateJob) -> Iterator[Entry]:
    """Entries of the newest live version of the same name and source (empty if none), streamed."""
    prev = versions.latest_live(store, job.name)
    if prev is None or prev.source != job.source or prev.kind != job.kind or not prev.manifest:
        return iter(())
    return reader.entries(store, prev)


def _check_present(store: Store, keys: set[str]) -> None:
    """Every data object the new version points at must exist before it becomes visible.

    Reused objects belong to earlier versions; if those were deleted and ``gc`` reclaimed the
    data while this creation ran past its grace period, committing would publish a broken
    version. One HEAD per distinct object (packs keep that to a handful per 1,000 files).
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=16) as pool:
        present = dict(zip(keys, pool.map(store.exists, keys)))
    missing = sorted(k for k, ok in present.items() if not ok)
    if missing:
        raise DatastoreError(f"data object {missing[0]!r} this version needs is gone from the store "
                             f"({len(missing)} missing; reclaimed by gc while the creation ran?)",
                             "run the same create again: it transfers what is missing")


@dataclass(frozen=True)
class Unchanged:
    """What :func:`commit` returns when ``if_changed`` found the newest version identical."""

    newest: versions.VersionRecord


def commit(store: Store, job: CreateJob, batch_keys: list[str], uploaded: int, settings: Settings,
           flow_run_id: str | None, if_changed: bool = False) -> versions.VersionRecord | Unchanged:
    """Concatenate the batch manifests, store the manifest, then commit the version record.

    Args:
        store: The store.
        job: The creation.
        batch_keys: Finished batch manifests, in path order.
        uploaded: Data bytes written by this creation.
        settings: Settings.
        flow_run_id: The Prefect flow run committing (recorded).
        if_changed: Commit only when the manifest digest differs from the newest live version
            of the name (periodic re-uploads); otherwise commit nothing and return
            :class:`Unchanged` with the version compared against.

    Raises:
        QuotaExceeded: the quota filled up while this creation was transferring.
    """
    with tempfile.TemporaryDirectory(prefix="datastore-commit-") as tmp:
        # The manifest goes through a local file so a million entries never sit in memory.
        out = Path(tmp) / "manifest.jsonl.gz"
        objects: set[str] = set()  # distinct data objects (packs, large files): few per batch
        with ManifestWriter(out) as writer:
            for key in batch_keys:
                for item in reader.manifest_items(store, key):
                    writer.add(item)
                    if isinstance(item, Entry) and item.object:
                        objects.add(item.object)
            summary = writer.close()
        if if_changed:
            newest = versions.latest_live(store, job.name)
            if newest is not None and newest.digest == summary.digest:
                return Unchanged(newest)
        _check_present(store, objects)
        mkey = layout.manifest_key(job.create_id)
        store.put_file(mkey, out)
    failpoints.hit("before-commit")
    record = versions.VersionRecord(
        name=job.name,
        version=0,
        status="succeeded",
        kind=job.kind,
        source=job.source,
        files=summary.files,
        bytes=summary.bytes,
        digest=summary.digest,
        created_at=versions.now_iso(),
        flow_run_id=flow_run_id,
        bytes_uploaded=uploaded,
        skipped=summary.skipped,
        manifest=mkey,
        source_detail=job.source_detail,
        duration_s=round(time.time() - job.started, 3),
        create_id=job.create_id,
    )
    return versions.commit(store, record, settings.max_versions)

