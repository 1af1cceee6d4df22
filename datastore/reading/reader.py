"""Reading a committed version back: its entries, and each file's bytes, checked.

:class:`Reader` is the one read path of a version. ``mount``/``download``
(:mod:`datastore.reading.download`), ``verify`` (:mod:`datastore.reading.verify`), the fsspec
protocol (:mod:`datastore.reading.filesystem`) and the coming FUSE mount all read through it:

* :meth:`Reader.read` — one whole file, checked (sha256 where known, size, and for a
  ``--no-copy`` entry exactly the pinned VersionId/ETag);
* :meth:`Reader.read_range` — ``length`` bytes at ``offset`` of one file, never past its end
  (a FUSE ``read(offset, size)`` or an fsspec ranged read); a range that covers the whole file
  is checked like :meth:`Reader.read`;
* :meth:`Reader.read_block` / :meth:`Reader.check_block` — block ``i`` of a file (the
  :data:`~datastore.model.manifest.BLOCK_BYTES` piece at ``i * BLOCK_BYTES``), one ranged read,
  checked against the block's hash in the manifest (what a mount serving parts of a large file
  verifies every byte with);
* :meth:`Reader.stream` — a large file in bounded chunks (hash them with
  :func:`datastore.model.hashing.copy_hashed`, then :meth:`Reader.check`);
* :meth:`Reader.runs` / :meth:`Reader.read_run` — neighbouring packed files planned into
  coalesced ranged reads (one GET for many small files), and their checked pieces.

Where the bytes are is decided here once: a copied entry (``object`` set) is read from the
store, a referenced one (``--no-copy``) from its source bucket, pinned; a pinned object that is
gone or different is a :class:`~datastore.errors.ReferenceBroken`, never other bytes.

Fork safety: a Reader holds no S3 client. The store and the source look their client up per
request (:func:`datastore.backends.s3.client`), and those are replaced in a forked child, so a
Reader made before a fork (a PyTorch ``DataLoader``'s dataset) reads correctly in the workers.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from datastore.errors import (
    BlocksNotRecorded,
    ChecksumMismatch,
    DatastoreNotFound,
    DeletedWhileReading,
    InvalidRange,
    ObjectNotFound,
    ReferenceBroken,
    SourceChanged,
)
from datastore.model.details import S3Detail
from datastore.model.hashing import Hashed, chunks
from datastore.model.manifest import Entry, ManifestPart, ManifestToc, read_entries
from datastore.store import Store
from datastore.store.manifests import entries, manifest_items  # noqa: F401 - part of the reading API
from datastore.store import versions
from datastore.store.versions import VersionRecord

MiB = 1024 * 1024

COALESCE_GAP = 1 * MiB
"""Largest hole between two entries of one object that is read through rather than split."""

MAX_READ = 8 * MiB
"""Largest coalesced ranged read; files this big or bigger are streamed, not read whole."""

STREAM_CHUNK = 8 * MiB
"""Piece size when streaming a large file."""


@dataclass
class Run:
    """Neighbouring packed entries of one store object, read with one ranged GET.

    The coalescing rule (:meth:`accepts`): an entry joins when it is in the same object, starts
    at or after the run's end, the hole in between is at most :data:`COALESCE_GAP` (its bytes
    are fetched and thrown away, which is cheaper than another request) and the run stays within
    :data:`MAX_READ`.

    Attributes:
        key: The store object.
        start: First byte of the read.
        end: End (exclusive) of the read.
        entries: The entries, in increasing offset order.
    """

    key: str
    start: int
    end: int
    entries: list[Entry] = field(default_factory=list)

    @classmethod
    def of(cls, e: Entry) -> Run:
        """A run holding only ``e``."""
        return cls(e.object or "", e.offset, e.offset + e.size, [e])

    @property
    def length(self) -> int:
        """Bytes the run's one GET reads (holes included)."""
        return self.end - self.start

    def accepts(self, e: Entry) -> bool:
        """Whether ``e`` can join this run under the coalescing rule."""
        return (e.object == self.key and e.offset >= self.end and e.offset - self.end <= COALESCE_GAP
                and e.offset + e.size - self.start <= MAX_READ)

    def add(self, e: Entry) -> None:
        """Append ``e`` (which :meth:`accepts` allowed)."""
        self.entries.append(e)
        self.end = e.offset + e.size


class Reader:
    """Reads the files of one version: from the store, or, for ``--no-copy`` entries, from the
    pinned source objects (exactly the pinned VersionId or ETag, never whatever is there now).

    Safe to share between threads. ``mount``, ``verify``, the fsspec protocol and the FUSE mount
    are built on this one read path (see the module docstring).
    """

    def __init__(self, store: Store, record: VersionRecord) -> None:
        self.store = store
        self.record = record
        self._source = None
        self._toc: ManifestToc | None = None

    def part_of(self, path: str) -> tuple[ManifestPart, list[Entry]] | None:
        """The manifest part that would hold ``path``, and its entries: one ranged read of the
        manifest (~4,096 entries) instead of all of it.

        None when the version has no table of contents (committed before there was one) or
        ``path`` sorts before its first entry; whether ``path`` is among the entries is the
        caller's question (absent there means the version has no file at ``path``).
        """
        toc = self.toc()
        part = toc.part_of(path) if toc else None
        if part is None:
            return None
        return part, self.part(part)

    def toc(self) -> ManifestToc | None:
        """The manifest's table of contents (fetched once); None for a version committed before there was one."""
        if not self.record.manifest_toc:
            return None
        if self._toc is None:
            with self._live():
                self._toc = ManifestToc.decode(self.store.get_bytes(self.record.manifest_toc))
        return self._toc

    def part(self, part: ManifestPart) -> list[Entry]:
        """The file entries of one manifest part: one ranged read of the manifest."""
        with self._live():
            raw = self.store.get_range(self.record.manifest, part.offset, part.length)
        return list(read_entries(io.BytesIO(raw)))

    @property
    def source(self):  # noqa: ANN201 - S3Source, imported lazily (boto3/Prefect blocks only when needed)
        """The S3 source of a no-copy version, opened with the recorded credentials block.

        Kept: it holds no client of its own (it asks for this process's client per request), so
        it stays valid across a fork. Two threads racing here build two equal sources; one wins.
        """
        if self._source is None:
            from datastore.backends.s3_source import source_of

            self._source = source_of(S3Detail.from_json(self.record.source_detail))
        return self._source

    def entries(self) -> Iterator[Entry]:
        """Stream the file entries of the version, in manifest (path) order."""
        return entries(self.store, self.record)

    # --- whole files and ranges -------------------------------------------------------------

    def read(self, entry: Entry) -> bytes:
        """The bytes of one file, checked against the manifest.

        Raises:
            ChecksumMismatch: stored bytes differ from the manifest.
            ReferenceBroken: a pinned source object was deleted or changed.
            ObjectNotFound: the store object holding the file is gone.
        """
        if entry.referenced:
            with self._pinned(entry) as source:
                data = source.get(entry.source or {})
        else:
            with self._live():
                data = self.store.get_range(entry.object or "", entry.offset, entry.size)
        self.check_bytes(entry, data)
        return data

    def read_range(self, entry: Entry, offset: int, length: int, check: bool = True) -> bytes:
        """Up to ``length`` bytes at ``offset`` of one file, never past the file's end.

        One ranged read of exactly those bytes (a neighbour's bytes in the same pack are never
        returned). A range that ends past the file's end is cut there; one that starts at or
        after it, and ``length == 0``, are ``b""`` without a request (a FUSE read at EOF).

        Args:
            check: Check a range covering the whole file like :meth:`read` (a part of a file
                cannot be checked against the file's sha256, only its length).

        Raises:
            InvalidRange: ``offset`` or ``length`` is negative.
            ChecksumMismatch: a whole-file read does not match the manifest, or a range came
                back shorter or longer than asked (a truncated object).
            ReferenceBroken: a ``--no-copy`` file's pinned object is gone or changed.
        """
        if offset < 0 or length < 0:
            raise InvalidRange(entry.path, offset, length)
        end = min(offset + length, entry.size)
        if end <= offset:
            return b""
        if check and offset == 0 and end == entry.size:
            return self.read(entry)
        data = self._get(entry, offset, end - offset)
        if len(data) != end - offset:  # a truncated object would otherwise look like an early end of file
            raise ChecksumMismatch(entry.path, f"{end - offset} bytes at offset {offset}", f"{len(data)} bytes")
        return data

    def _get(self, entry: Entry, offset: int, length: int) -> bytes:
        """``length`` (> 0) bytes at ``offset`` of ``entry``, unchecked: the one ranged GET."""
        if entry.referenced:
            with self._pinned(entry) as source:
                return source.get(entry.source or {}, offset, length)
        with self._live():
            return self.store.get_range(entry.object or "", entry.offset + offset, length)

    # --- blocks -------------------------------------------------------------------------------

    def read_block(self, entry: Entry, i: int) -> bytes:
        """Block ``i`` of one file (``entry.block_span(i)``), from one ranged read, checked.

        A file of at most one block is checked against its sha256 (its block 0 is the whole
        file); a larger one against ``entry.blocks[i]``.

        Raises:
            BlocksNotRecorded: the manifest has no hash for the block alone (a server-side copy,
                a ``--no-copy`` reference, or a file stored before block hashes were recorded):
                read the file whole instead (``entry.blockwise`` tells beforehand).
            IndexError: the file has no block ``i``.
            ChecksumMismatch: the bytes or their length differ from the block's (naming the
                file and the block).
            ReferenceBroken: a ``--no-copy`` file's pinned object is gone or changed.
            ObjectNotFound: the store object holding the file is gone.
        """
        self._block_sha256(entry, i)  # refuse before any request
        offset, length = entry.block_span(i)
        data = self._get(entry, offset, length)
        self.check_block(entry, i, data)
        return data

    def check_block(self, entry: Entry, i: int, data: bytes | bytearray | memoryview) -> None:
        """Compare ``data`` with block ``i`` of ``entry``: its length and its sha256.

        Raises:
            BlocksNotRecorded, IndexError: as :meth:`read_block`.
            ChecksumMismatch: another length or another sha256.
        """
        expected = self._block_sha256(entry, i)
        _, length = entry.block_span(i)
        if len(data) != length:
            raise ChecksumMismatch(entry.path, f"{length} bytes", f"{len(data)} bytes", block=i)
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise ChecksumMismatch(entry.path, expected, actual, block=i)

    def _block_sha256(self, entry: Entry, i: int) -> str:
        """The hash that checks block ``i`` of ``entry`` alone (see :meth:`read_block`)."""
        got = entry.block_sha256(i)
        if got is not None:
            return got
        if entry.referenced:
            why = "a --no-copy reference: its bytes never passed through datastore"
        elif entry.sha256 is None:
            why = "a server-side copy: its bytes never passed through datastore"
        else:
            why = "stored before block hashes were recorded"
        raise BlocksNotRecorded(entry.path, why)

    # --- large files --------------------------------------------------------------------------

    def stream(self, entry: Entry, chunk_bytes: int | None = None) -> Iterator[bytes]:
        """The bytes of one file in pieces of at most ``chunk_bytes`` (:data:`STREAM_CHUNK`).

        Unchecked: pass the pieces through :func:`~datastore.model.hashing.copy_hashed` and its
        result to :meth:`check`. A truncated object ends the stream early (the check names the
        file). An object of its own is one streaming GET (the store's reader resumes a broken
        answer); a file inside a pack, or a referenced one, is read in ranged GETs of one piece
        each, every one retried on its own and, for references, pinned.

        Raises:
            ReferenceBroken: a pinned source object is gone or changed.
            ObjectNotFound: the store object is gone.
        """
        size = chunk_bytes or STREAM_CHUNK
        if not entry.referenced and entry.offset == 0:
            with self._live(), self.store.open_read(entry.object or "") as body:
                yield from chunks(body, size, limit=entry.size)
            return
        done = 0
        while done < entry.size:
            data = self._get(entry, done, min(size, entry.size - done))
            if not data:
                return  # truncated object
            yield data
            done += len(data)

    def check(self, entry: Entry, got: Hashed) -> None:
        """Compare what was read of ``entry`` (its size and sha256) with the manifest.

        Raises:
            ChecksumMismatch: another sha256 (where the manifest has one) or another size.
        """
        if entry.sha256 is not None and (got.sha256 != entry.sha256 or got.size != entry.size):
            raise ChecksumMismatch(entry.path, entry.sha256, got.sha256)
        if got.size != entry.size:
            raise ChecksumMismatch(entry.path, f"{entry.size} bytes", f"{got.size} bytes")

    def check_bytes(self, entry: Entry, data: bytes | memoryview) -> None:
        """:meth:`check` for bytes in memory (hashed only when the manifest has a sha256)."""
        digest = hashlib.sha256(data).hexdigest() if entry.sha256 is not None else ""
        self.check(entry, Hashed(len(data), digest))

    # --- coalesced reads of packed files ------------------------------------------------------

    def runs(self, items: Iterable[Entry], stream_from: int | None = None) -> Iterator[Run | Entry]:
        """Plan the reads of ``items`` (manifest order): runs of packed files, and the rest.

        Entries stored with a sha256 and smaller than ``stream_from`` (default and at most
        :data:`MAX_READ`) are merged into :class:`Run` s under the coalescing rule; every other
        entry (a reference, a server-side copy without sha256, a large file) is yielded as
        itself, to be read with :meth:`read` or :meth:`stream`. The open run is not closed by
        such an entry, so a run is yielded when it closes, after the entries read alone that
        came in between. Entries reused from an older version point into other packs and
        simply start new runs, so the plan never needs the whole manifest in memory.

        A FUSE read handler prefetches the neighbours of a packed file with the first run of
        ``runs(files[i:i + k])`` over the path-ordered files from that file on.

        The source of a no-copy version is opened here, on the planning thread, rather than
        racing in the workers.
        """
        limit = MAX_READ if stream_from is None else min(stream_from, MAX_READ)
        run: Run | None = None
        for e in items:
            if e.object is not None and e.sha256 is not None and e.size < limit:
                if run is not None and run.accepts(e):
                    run.add(e)
                    continue
                if run is not None:
                    yield run
                run = Run.of(e)
                continue
            if e.referenced:
                _ = self.source
            yield e
        if run is not None:
            yield run

    def read_run(self, run: Run, check: bool = True) -> Iterator[tuple[Entry, memoryview]]:
        """Each entry of ``run`` with its bytes, from one ranged GET.

        Args:
            check: Check each piece (sha256 and size) before it is yielded. Without, a piece
                of a truncated object is shorter than its entry.

        Raises:
            ChecksumMismatch: a piece does not match its entry (``check`` only).
            ObjectNotFound: the store object is gone.
        """
        with self._live():
            view = memoryview(self.store.get_range(run.key, run.start, run.length))
        for e in run.entries:
            piece = view[e.offset - run.start: e.offset - run.start + e.size]
            if check:
                self.check_bytes(e, piece)
            yield e, piece

    @contextlib.contextmanager
    def _live(self) -> Iterator[None]:
        """Around a read of the version's own store objects: an object that is gone because the
        version was deleted and collected meanwhile (a reader without a lease, ``datastore://``)
        is that, named, and not a store changed outside datastore."""
        try:
            yield
        except ObjectNotFound:
            name, version = self.record.name, self.record.version
            try:
                now = versions.resolve(self.store, name, version)
            except DatastoreNotFound:  # collected down to its record
                raise DeletedWhileReading(name, version, None) from None
            if now.deleted_at:
                raise DeletedWhileReading(name, version, now.deleted_at) from None
            raise

    # --- references -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _pinned(self, entry: Entry) -> Iterator:
        """The source, for reading ``entry``'s pinned object: a change becomes :class:`ReferenceBroken`."""
        try:
            yield self.source
        except SourceChanged as exc:
            raise self.broken(entry, exc.detail) from None

    def head_pinned(self, entry: Entry):  # noqa: ANN201 - S3Object | None
        """A HEAD of the object a no-copy entry pins (that version, or the current object)."""
        pin = entry.source or {}
        return self.source.head(pin["key"], pin.get("version_id"))

    def pinned_location(self, entry: Entry) -> str:
        """``s3://bucket/key (version V)`` or ``(ETag E)``: the object a no-copy entry pins."""
        pin = entry.source or {}
        where = f"s3://{S3Detail.from_json(self.record.source_detail).bucket}/{pin.get('key')}"
        if pin.get("version_id"):
            return f"{where} (version {pin['version_id']})"
        return f"{where} (ETag {pin.get('etag')})"

    def broken(self, entry: Entry, why: str) -> ReferenceBroken:
        """The error for a pinned object that is gone or different."""
        where = self.pinned_location(entry)
        reason = {"it was deleted after the listing": "was deleted",
                  "its ETag no longer matches the listing": "was overwritten with different bytes"}.get(why, why)
        return ReferenceBroken(entry.path, self.record.name, self.record.version, where, reason)


def read_file(store: Store, record: VersionRecord, entry: Entry) -> bytes:
    """The bytes of one file of ``record`` (see :meth:`Reader.read`)."""
    return Reader(store, record).read(entry)
