"""The store: one interface over a local directory and an S3 bucket prefix.

Keys are ``/``-separated strings relative to the store root. The layout of keys is owned by
:mod:`datastore.layout`; this module only moves bytes, and keeps two promises on both backends:

* ``put_bytes(..., if_absent=True)`` is an atomic put-if-absent (S3 ``If-None-Match: *``, local
  ``link(2)`` of a complete temporary file), which is what makes version commits atomic;
* an object becomes visible complete or not at all (temporary file + rename locally, single PUT
  or completed multipart upload on S3).
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from datastore.errors import (
    AlreadyExists,
    DatastoreError,
    ObjectNotFound,
)
from datastore.store import layout

DATA_PREFIX = layout.DATA


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object."""

    key: str
    size: int
    modified: float
    etag: str | None = None


class BlobWriter(ABC):
    """Streams one large object into the store; the key is decided by :meth:`commit`."""

    written: int = 0

    @abstractmethod
    def write(self, chunk: bytes) -> None:
        """Append ``chunk``."""

    @abstractmethod
    def commit(self, sha256: str) -> str:
        """Make the object durable and visible; return its key."""

    @abstractmethod
    def abort(self) -> None:
        """Drop everything written so far (safe to call more than once)."""


class Store(ABC):
    """Where datastore data, manifests and version records live."""

    url: str

    @abstractmethod
    def check_writable(self) -> None:
        """Fail early, with a clear error, when the store cannot be used."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes | bytearray, *, if_absent: bool = False) -> None:
        """Write a whole object. With ``if_absent`` raise :class:`AlreadyExists` if taken."""

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Upload a local file as one object (streamed)."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read a whole object."""

    @abstractmethod
    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at ``offset``."""

    @abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """A sequential reader of an object (close it, or use it as a context manager)."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Size (and ETag on S3) of ``key``.

        Raises:
            ObjectNotFound: no such key.
        """

    @abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """All objects under ``prefix``, paginated (never all in memory).

        No order is promised: S3 lists in byte order, but SeaweedFS lists directory by directory.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` (missing keys are fine)."""

    @abstractmethod
    def blob_writer(self, size_hint: int = 0) -> BlobWriter:
        """A writer for one large data object (``size_hint``: expected bytes, to size S3 parts)."""

    def reclaim_incomplete(self, older_than: float, dry_run: bool = False) -> list[str]:
        """Drop writes a killed process left unfinished before ``older_than`` (epoch seconds).

        Such writes are invisible (no key) but cost space: temporary files of the local store,
        unfinished multipart uploads on S3. Returns what was (or would be) dropped.
        """
        return []

    def put_new(self, key: str, data: bytes) -> bool:
        """Put-if-absent that survives lost answers: whether ``key`` now holds exactly ``data``.

        S3 may apply a request and still fail to answer (a 500 "may or may not have been
        applied", a reset connection); the retry of a put-if-absent that took effect then meets
        ``412`` as if another writer had won. So after a conflict or a transient failure the
        object is read back: the same bytes are ours (``data`` must hold something unique to
        the writer, such as a creation id), other bytes are another writer's.

        Returns:
            True when ``key`` holds ``data`` (written by this call, perhaps on an earlier try);
            False when another writer's bytes are there.

        Raises:
            TransientError: the store kept failing and nothing is there (safe to try again).
        """
        for attempt in range(5):
            try:
                self.put_bytes(key, data, if_absent=True)
                return True
            except AlreadyExists:
                pass
            except DatastoreError as exc:
                if not exc.transient or attempt == 4:
                    raise
            try:
                return self.get_bytes(key) == bytes(data)
            except ObjectNotFound:
                time.sleep(random.uniform(0, 0.1 * 2**attempt))  # not applied after all: put again
        raise AssertionError("unreachable")  # pragma: no cover

    def put_pack(self, data: bytes | bytearray, address: str) -> tuple[str, bool]:
        """Store a pack of small files under its content address ``data/p-<address>``.

        The caller derives ``address`` from what determines the bytes (see
        :func:`datastore.creation.packer.pack_address`), so a retried batch writes the same key and never
        duplicates data. Packs have their own ``p-`` namespace so no pack can ever take the key of
        a large file stored under its sha256.

        Returns:
            The key, and whether bytes were written (False when identical bytes were there).
        """
        key = layout.pack_key(address)
        try:
            self.put_bytes(key, data, if_absent=True)
        except AlreadyExists:
            return key, False
        return key, True


