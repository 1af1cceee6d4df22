"""The S3-copy creation path: what :mod:`datastore.creation.pipeline` needs of an S3 prefix.

Small objects (under ``large_file_bytes``) are fetched in parallel (``fetch_workers`` per batch,
each GET pinned by VersionId or ``If-Match``) and packed like local files, so 10,000 objects
become a handful of store objects and every file gets a sha256. Large objects are copied
server-side (``CopyObject``; ``UploadPartCopy`` parts above ``copy_multipart_bytes``) when the
store is on S3 and the source is read with the store's own credentials; otherwise (a local store,
or a source read with a block's keys the store cannot use) they stream through this process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import BinaryIO

from datastore.backends.s3_source import S3Source
from datastore.creation import pipeline
from datastore.creation.pipeline import CreateJob, ServerCopy, SmallRead
from datastore.creation.plan import PlanSummary
from datastore.creation.sources import s3
from datastore.errors import SourceChanged
from datastore.model.manifest import Entry, Skipped
from datastore.model.plan import Candidate
from datastore.model.progress import NO_PROGRESS, Reporter
from datastore.settings import Settings
from datastore.store import S3Store, Store, layout


def unchanged(c: Candidate, e: Entry) -> bool:
    """Same key (path), size and ETag as the previous version's entry: reuse its stored bytes."""
    return bool(e.source) and e.object is not None and c.size == e.size and e.source.get("etag") == c.stamp


class _LargeObject:
    """One GET of a large pinned object (see :class:`datastore.creation.pipeline.LargeRead`)."""

    mtime_ns = None

    def __init__(self, body: BinaryIO, c: Candidate) -> None:
        self.body = body
        self.candidate = c
        self.size = c.size

    def read(self, n: int = -1, /) -> bytes:
        return self.body.read(n)

    def intact(self, read: int) -> bool:
        # A pinned GET cannot come back different on a second try: the object changed, say so.
        if read != self.size:
            raise SourceChanged(self.candidate.detail["key"], f"listed with {self.size} bytes, read {read}")
        return True


class S3CopySource:
    """An S3 prefix to copy, for :mod:`datastore.creation.pipeline`."""

    empty_hint = s3.EMPTY_HINT
    read_attempts = 1

    def __init__(self, job: CreateJob, settings: Settings) -> None:
        self.job = job
        self.settings = settings
        self.fetch_workers = settings.fetch_workers

    @cached_property
    def src(self) -> S3Source:
        """The prefix, opened on first use (a batch an earlier run finished never opens it)."""
        return s3.open_source(self.job)

    def candidates(self) -> Iterator[Candidate | Skipped]:
        for item in s3.listed(self.src, self.job, self.settings):
            if isinstance(item, Skipped):
                yield item
            else:
                rel, obj = item
                yield Candidate(rel, obj.size, obj.etag, obj.pin())

    def unchanged(self, candidate: Candidate, previous: Entry) -> bool:
        return unchanged(candidate, previous)

    def fetch_small(self, candidate: Candidate) -> SmallRead:
        data = self.src.get(candidate.detail)
        if len(data) != candidate.size:
            raise SourceChanged(candidate.detail["key"], f"listed with {candidate.size} bytes, read {len(data)}")
        return SmallRead(data)

    @contextmanager
    def open_large(self, candidate: Candidate) -> Iterator[_LargeObject]:
        with self.src.open(candidate.detail) as body:
            yield _LargeObject(body, candidate)

    def server_copy(self, store: Store, candidate: Candidate) -> ServerCopy | None:
        # The store's client must be allowed to read the source: only with the same credentials.
        if not isinstance(store, S3Store) or self.src.block is not None:
            return None
        pin = candidate.detail
        key = layout.copy_key(self.src.bucket, pin)
        etag, copied = store.copy_in(self.src.copy_source(pin), pin["etag"], candidate.size, key)
        return ServerCopy(key, etag, copied)


def scan(job: CreateJob, settings: Settings, progress: Reporter = NO_PROGRESS) -> PlanSummary:
    """List the prefix (paginated, sorted with bounded memory), merge with the previous version, store plans.

    Raises:
        EmptySource: no object under the prefix can be a file.
    """
    return pipeline.scan(S3CopySource(job, settings), job, settings, progress)


def transfer_batch(job: CreateJob, plan_key: str, settings: Settings,
                   progress: Reporter = NO_PROGRESS) -> tuple[str, int]:
    """Copy the new objects of one batch plan and write its batch manifest.

    Returns:
        The batch manifest key and the data bytes written to the store by this call.

    Raises:
        SourceChanged: an object changed or vanished after the listing (named by its key).
    """
    return pipeline.transfer_batch(S3CopySource(job, settings), job, plan_key, settings, progress)
