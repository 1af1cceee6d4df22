"""The one creation pipeline: prepare → scan → transfer batches → commit, for every source.

A creation path (local folder, S3 prefix, HTTP archive) differs only by its :class:`Source`:
how it lists candidates, when a file counts as unchanged, how a small file is fetched (in
parallel for remote sources), how a large one is opened as a stream, and whether it can be
copied server-side. Everything else is written here once, so all paths keep the same
invariants: nothing is transferred over quota, every byte that passes through is hashed by the
one stream-and-hash loop (:func:`datastore.model.hashing.copy_hashed`; a packed file by
:func:`~datastore.model.hashing.hash_bytes`), whole and per block for files larger than a block
(:data:`~datastore.model.manifest.BLOCK_BYTES`), a retried batch writes
the same content-addressed objects, and nothing is visible until the one put-if-absent of the
record.
"""

from __future__ import annotations

import logging
import sqlite3
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from datastore import failpoints
from datastore.creation.packer import BatchBuilder
from datastore.creation.plan import PlanSummary, already_done, batches, read_plan, write_plans
from datastore.errors import DataMissing, EmptySource, SourceChanged
from datastore.model.details import LocalDetail, SourceDetail
from datastore.model.hashing import Hashed, chunks, copy_hashed
from datastore.model.kinds import Kind
from datastore.model.manifest import BLOCK_BYTES, PART_ITEMS, Entry, ManifestWriter, Skipped
from datastore.model.naming import derive_name, validate_name
from datastore.model.plan import Candidate, New, PlanItem, Reused
from datastore.model.progress import NO_PROGRESS, Reporter
from datastore.settings import Settings
from datastore.store import Store, layout, manifests, open_store, versions
from datastore.store import index as tree_index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CreateJob:
    """Everything the tasks of one creation need, small enough to pass as a task parameter."""

    name: str
    kind: Kind
    source: str  # credential-free, normalized
    store: str
    staging: str
    create_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.time)
    detail: SourceDetail = field(default_factory=LocalDetail)

    @property
    def source_detail(self) -> dict:
        """The detail as the version record stores it."""
        return self.detail.to_json()


def prepare(source: str, name: str | None, kind: str, settings: Settings,
            detail: SourceDetail | None = None) -> CreateJob:
    """Validate everything that can be validated before any data moves.

    Raises:
        InvalidName: ``name`` breaks the rule, or none can be derived from ``source``.
        StoreError: the store cannot be used (missing bucket, bad credentials, not writable).
        QuotaExceeded: the quota is already full.
    """
    kind = Kind(kind)
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
        detail=detail if detail is not None else LocalDetail(),
    )


# --- what a source supplies -------------------------------------------------------------------


class LargeRead(Protocol):
    """One read of a large file, as a stream (``read(n)``), with what to check after it."""

    size: int  # the bytes expected (sizes the store's upload parts)
    mtime_ns: int | None  # the stamp to record for reuse (None: do not trust one)

    def read(self, n: int = -1, /) -> bytes:
        """The next bytes (``b""`` at the end)."""

    def intact(self, read: int) -> bool:
        """After ``read`` bytes: False if the file changed meanwhile and must be read again.

        Raises:
            SourceChanged: it changed in a way reading again cannot fix.
        """


@dataclass(frozen=True, slots=True)
class SmallRead:
    """A small file's bytes and the stamp to record for reuse."""

    data: bytes
    mtime_ns: int | None = None


@dataclass(frozen=True, slots=True)
class ServerCopy:
    """A large file the store copied from the source itself (its bytes never passed through here)."""

    key: str
    etag: str
    written: int


class Source(Protocol):
    """What the pipeline asks of a creation path (see the module docstring).

    Attributes:
        empty_hint: The hint of the :class:`EmptySource` error for a scan that finds no file
            (None: the error's default).
        fetch_workers: Small files fetched ahead in parallel per batch (0: read one by one,
            in plan order, when the builder wants them).
        read_attempts: How many times a large file that changed while read is read again.
    """

    empty_hint: str | None
    fetch_workers: int
    read_attempts: int

    def candidates(self) -> Iterable[Candidate | Skipped]:
        """Every file of the source (and what is skipped, and why), in path order."""

    def unchanged(self, candidate: Candidate, previous: Entry) -> bool:
        """Whether the previous version's entry of the same path still holds this file's bytes."""

    def fetch_small(self, candidate: Candidate) -> SmallRead:
        """A small file's bytes.

        Raises:
            SourceChanged: it changed since the scan.
        """

    def open_large(self, candidate: Candidate) -> AbstractContextManager[LargeRead]:
        """A large file opened as a stream (one attempt)."""

    def server_copy(self, store: Store, candidate: Candidate) -> ServerCopy | None:
        """Copy a large file into ``store`` without passing through here, if this source and store can."""


# --- scan ---------------------------------------------------------------------------------------


def previous_entries(store: Store, job: CreateJob) -> Iterator[Entry]:
    """Entries of the newest live version of the same name and source (empty if none), streamed."""
    prev = versions.latest_live(store, job.name)
    if prev is None or prev.source != job.source or prev.kind != job.kind or not prev.manifest:
        return iter(())
    return manifests.entries(store, prev)


def scan(source: Source, job: CreateJob, settings: Settings, progress: Reporter = NO_PROGRESS) -> PlanSummary:
    """List the source, merge with the previous version, and store the batch plans.

    Raises:
        EmptySource: nothing to store (no plan is left behind).
        SourceUnreadable: a file or directory cannot be read.
    """
    store = open_store(job.store, settings)
    prev = previous_entries(store, job)
    hint = {"hint": source.empty_hint} if source.empty_hint else {}
    return write_plans(store, job.staging, batches(source.candidates(), prev, source.unchanged, settings),
                       on_batch=progress.add_total, empty=lambda skipped: EmptySource(job.source, skipped, **hint))


# --- transfer -----------------------------------------------------------------------------------


def _small(item: PlanItem, settings: Settings) -> Candidate | None:
    """The candidate of a new file small enough to be packed (None for anything else)."""
    return item.candidate if isinstance(item, New) and item.size < settings.large_file_bytes else None


def _fetched(plan: list[PlanItem], source: Source, settings: Settings) -> Iterator[tuple[PlanItem, SmallRead | None]]:
    """Plan items in order, each small new file with its bytes.

    With ``fetch_workers`` the bytes are fetched ahead in parallel: at most ``2 * fetch_workers``
    files and ``2 * pack_bytes`` bytes are in flight or waiting. Without, each is read when its
    turn comes.
    """
    if source.fetch_workers <= 0:
        for item in plan:
            c = _small(item, settings)
            yield item, source.fetch_small(c) if c is not None else None
        return
    window: deque[tuple[PlanItem, int, Future | None]] = deque()
    max_bytes = 2 * settings.pack_bytes
    held = 0
    pool = ThreadPoolExecutor(max_workers=source.fetch_workers, thread_name_prefix="fetch")
    try:
        for item in plan:
            c = _small(item, settings)
            size = c.size if c is not None else 0
            held += size
            window.append((item, size, pool.submit(source.fetch_small, c) if c is not None else None))
            while window and (len(window) > 2 * source.fetch_workers or held > max_bytes):
                it, n, fut = window.popleft()
                held -= n
                yield it, fut.result() if fut else None
        while window:
            it, _, fut = window.popleft()
            yield it, fut.result() if fut else None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _stream_large(store: Store, source: Source, c: Candidate, settings: Settings) -> tuple[Hashed, str, int, int | None]:
    """Stream one large file into its own object, hashing on the way; read it again if it changed.

    Returns:
        What was read (size, sha256, block hashes), the object key, the bytes written, the mtime to record.
    """
    for _ in range(source.read_attempts):
        with source.open_large(c) as stream:
            writer = store.blob_writer(stream.size)
            try:
                got = copy_hashed(chunks(stream, settings.part_bytes), writer.write, block_bytes=BLOCK_BYTES)
                if not stream.intact(got.size):
                    writer.abort()
                    continue
                return got, writer.commit(got.sha256), writer.written, stream.mtime_ns
            except BaseException:
                writer.abort()
                raise
    raise SourceChanged(c.path, f"size or mtime differed across {source.read_attempts} reads")


def transfer_batch(source: Source, job: CreateJob, plan_key: str, settings: Settings,
                   progress: Reporter = NO_PROGRESS) -> tuple[str, int]:
    """Transfer the new files of one batch plan and write its batch manifest.

    A batch whose manifest already exists (an earlier, interrupted run of the same create got
    this far) is not transferred again.

    Returns:
        The batch manifest key and the data bytes written to the store by this call.

    Raises:
        SourceChanged: a file changed or vanished after the scan.
        SourceUnreadable: a file cannot be read.
    """
    store = open_store(job.store, settings)
    bkey = layout.batch_key(job.staging, layout.plan_hash_of(plan_key))
    plan = read_plan(store, plan_key)
    if already_done(store, bkey, plan, progress):
        return bkey, 0
    builder = BatchBuilder(store, settings, progress)
    for item, small in _fetched(plan, source, settings):
        match item:
            case Reused(entry=entry):
                builder.reuse(entry)
            case Skipped(path=path, reason=reason):
                builder.skip(path, reason)
            case New(candidate=c) if small is not None:
                builder.small(c.path, small.data, small.mtime_ns, c.detail)
            case New(candidate=c):
                copied = source.server_copy(store, c)
                if copied is not None:
                    builder.blob(c.path, c.size, None, copied.key, copied.written, source=c.detail, etag=copied.etag)
                else:
                    got, key, written, mtime = _stream_large(store, source, c, settings)
                    builder.blob(c.path, got.size, got.sha256, key, written, mtime, c.detail, blocks=got.blocks)
    return bkey, builder.finish(bkey)


# --- commit -------------------------------------------------------------------------------------


def _check_present(store: Store, keys: set[str]) -> None:
    """Every data object the new version points at must exist before it becomes visible.

    Reused objects belong to earlier versions; if those were deleted and ``gc`` reclaimed the
    data while this creation ran past its grace period, committing would publish a broken
    version. One HEAD per distinct object (packs keep that to a handful per 1,000 files).
    """
    with ThreadPoolExecutor(max_workers=16) as pool:
        present = dict(zip(keys, pool.map(store.exists, keys)))
    missing = sorted(k for k, ok in present.items() if not ok)
    if missing:
        raise DataMissing(missing)


@dataclass(frozen=True)
class Unchanged:
    """What :func:`commit` returns when ``if_changed`` found the newest version identical."""

    newest: versions.VersionRecord


def commit(store: Store, job: CreateJob, batch_keys: list[str], uploaded: int, settings: Settings,
           flow_run_id: str | None, if_changed: bool = False,
           resumed: bool = False) -> versions.VersionRecord | Unchanged:
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
        resumed: The flow run ran before (a lost worker's run taken up again, or a retry of the
            flow): if that earlier execution committed, its version is returned, not doubled.

    Raises:
        QuotaExceeded: the quota filled up while this creation was transferring.
    """
    if resumed and flow_run_id:
        earlier = versions.committed_by(store, job.name, str(flow_run_id))
        if earlier is not None:
            return earlier
    with tempfile.TemporaryDirectory(prefix="datastore-commit-") as tmp:
        # The manifest goes through a local file so a million entries never sit in memory.
        out = Path(tmp) / "manifest.jsonl.gz"
        objects: set[str] = set()  # distinct data objects (packs, large files): few per batch
        with ManifestWriter(out, part_items=PART_ITEMS) as writer:
            for key in batch_keys:
                for item in manifests.manifest_items(store, key):
                    writer.add(item)
                    if isinstance(item, Entry) and item.object:
                        objects.add(item.object)
            summary = writer.close()
        if if_changed:
            newest = versions.latest_live(store, job.name)
            if newest is not None and newest.digest == summary.digest:
                return Unchanged(newest)
        record = versions.VersionRecord(
            name=job.name,
            version=0,
            status="succeeded",
            kind=job.kind.value,
            source=job.source,
            files=summary.files,
            bytes=summary.bytes,
            digest=summary.digest,
            created_at="",
            flow_run_id=flow_run_id,
            bytes_uploaded=uploaded,
            skipped=summary.skipped,
            manifest=layout.manifest_key(job.create_id),
            manifest_toc=layout.manifest_toc_key(job.create_id),
            source_detail=job.source_detail,
            create_id=job.create_id,
        )
        index = Path(tmp) / "index.sqlite"
        # Built before the checks below, so that the time between checking the data and
        # committing the record (what gc's grace period must cover) stays what it was.
        big = settings.index_files and summary.files >= settings.index_files
        index_sha = _build_index(record, out, index, store.url) if big else None
        _check_present(store, objects)
        store.put_file(record.manifest, out)
        store.put_bytes(record.manifest_toc, writer.toc.encode())
        if index_sha:
            record.manifest_index = layout.manifest_index_key(job.create_id, index_sha)
            record.manifest_index_sha256 = index_sha
            store.put_file(record.manifest_index, index)
    failpoints.hit("before-commit")
    record.created_at = versions.now_iso()
    record.duration_s = round(time.time() - job.started, 3)
    return versions.commit(store, record, settings.max_versions)


def _build_index(record: versions.VersionRecord, manifest: Path, out: Path, store_url: str) -> str | None:
    """Build the tree index of the manifest just written into ``out``; its sha256, or None when it was not built.

    A mount's first open of a large version then downloads this file (checked against the sha256
    the commit records) instead of parsing the manifest and sorting a million rows on
    every machine. The index is an optimization: a failure to build it (a full scratch disk) is
    logged and the version is committed without one; mounts then build it from the manifest.
    """
    try:
        with open(manifest, "rb") as fh:
            tree_index.build(fh, out, record, store_url)
        with open(out, "rb") as fh:
            return copy_hashed(chunks(fh, 4 << 20)).sha256
    except (OSError, sqlite3.Error) as exc:
        log.warning("%s: the tree index was not built (%s); mounts will build it from the manifest", record.name, exc)
        return None
    store.put_file(record.manifest_index, tmp)

