"""Verified, cached, on-demand reads of a version's files: what a mount and ``datastore://`` serve.

A FUSE mount answers ``read(path, size, offset)`` calls; this module turns them into as few
store requests as possible and never hands out a byte it has not checked:

* **A small file** (at most one block, :data:`~datastore.model.manifest.BLOCK_BYTES`) is read
  whole and checked against its sha256 before its first byte is returned. Its neighbours in
  the same pack come with it: the files that follow it in manifest order are planned with
  :meth:`Reader.runs <datastore.reading.reader.Reader.runs>`, and the one ranged GET of its run
  fetches all of them; each neighbour is checked and cached on its own (a bad neighbour is just
  not cached). ``tar``/``find``-style walks thus cost one request per run, not per file.
* **A large file** is read in blocks. A manifest written since block hashes exist records the
  sha256 of every block, so a block is checked on its own (training jobs read shards in ranges)
  with :meth:`Reader.read_block <datastore.reading.reader.Reader.read_block>`. An older manifest
  has only the whole file's sha256: the first read of such a file streams and checks all of it
  once (logged: it costs the whole file), and its blocks are served from the cache afterwards.
  Sequential reads trigger read-ahead of the following blocks in parallel.
* **Files whose bytes never passed through a creating process** (``--no-copy`` references and
  server-side copies) have no sha256. A reference is read pinned to its VersionId/ETag, so a
  changed object is a :class:`~datastore.errors.ReferenceBroken`; a server-side copy is checked
  for its size only (its store object is written once and never changed).

Checked bytes go to two caches: a small in-process LRU of whole blocks (FUSE asks in pieces of
128 KiB–1 MiB, and re-reading an 8 MiB block from disk for each would multiply the I/O) and the
machine-wide on-disk :class:`~datastore.reading.cache.BlockCache`, shared by every mount and
reader, keyed by content (``sha256:…``), so ten jobs reading one version fetch each byte once.

Every fetch runs on a worker thread and is waited for at most ``timeout`` seconds: a store that
stops answering is a :class:`~datastore.errors.ReadTimedOut` (``EIO`` for the caller), never a hang.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from datastore.errors import ChecksumMismatch, ReadTimedOut
from datastore.model.details import S3Detail
from datastore.model.hashing import copy_hashed
from datastore.model.manifest import BLOCK_BYTES, Entry
from datastore.reading.cache import BlockCache
from datastore.reading.reader import Reader, Run

log = logging.getLogger("datastore.mount")

MiB = 1024 * 1024

NEIGHBOURS = 256
"""Files after a small file that may come with it in one ranged GET (its run decides how many)."""

FLUSH_SECONDS = 30.0
"""Longest wait in :meth:`CachedReader.close` for the cache's queued entries to be written."""

READAHEAD_BLOCKS = 8
"""Blocks fetched ahead of a sequential reader at most (64 MiB of 8 MiB blocks)."""

MEMORY_BYTES = 128 * MiB
"""Checked blocks and small files kept in process memory (the disk cache holds the rest).

64 MiB measured slower on the bench's 10,000 × 10 KiB tree (second ``tar`` 4.48 s against 2.48 s
at 128 MiB): a sequential walk of a tree larger than the memory misses every entry, and each
disk-cache hit is then a small random read. The peak RSS was about the same (313 against 292
MiB): it comes from large-file read-ahead, not from this."""


STREAMS = 16
"""Sequential readers followed per file at once (8 processes reading their own part of a shard)."""


@dataclass
class OpenFile:
    """A file being read: its entry, its place in the manifest, and read-ahead state.

    One object may serve several readers at once (the mount keeps one per file, not per open):
    read-ahead follows up to :data:`STREAMS` sequential streams in it, each by the block its
    last read ended in, like the kernel's per-file read-ahead windows.

    Attributes:
        entry: The file.
        seq: Its position in manifest order (-1 when unknown: no neighbours are fetched).
        streams: Block a stream's last read ended in -> its streak (consecutive sequential
            steps; read-ahead grows with it). A read from block 0 starts a stream (every pass
            over the file, not only the first).
        ahead: Blocks being read ahead now, so they are not asked twice (a block leaves the set
            when its read ends: a later pass over the file, after the cache has dropped it
            from memory, reads it ahead again).
    """

    entry: Entry
    seq: int = -1
    streams: dict[int, int] = field(default_factory=lambda: {-1: 0})
    ahead: set[int] = field(default_factory=set)


class _Memory:
    """A byte-bounded LRU of checked blocks, shared by the threads of one process."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self._limit:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._items[key] = data
            self._bytes += len(data)
            while self._bytes > self._limit:
                _, gone = self._items.popitem(last=False)
                self._bytes -= len(gone)


class CachedReader:
    """Checked, cached reads of the files of one version (see the module docstring).

    Thread-safe; a FUSE mount calls :meth:`read` from many threads at once.

    Args:
        reader: The one read path of the version.
        cache: The machine-wide block cache.
        following: ``following(seq, count)``: the entries after position ``seq`` in manifest
            order (a :class:`~datastore.reading.index.ManifestIndex` method); without it no
            neighbours are fetched with a small file.
        timeout: Seconds to wait for the store before :class:`ReadTimedOut`.
        workers: Threads fetching on demand.
        readahead: Most blocks read ahead of a sequential reader.
    """

    def __init__(self, reader: Reader, cache: BlockCache, *,
                 following: Callable[[int, int], list[Entry]] | None = None, timeout: float = 30,
                 workers: int = 16, readahead: int = READAHEAD_BLOCKS, memory_bytes: int = MEMORY_BYTES) -> None:
        self.reader = reader
        self.cache = cache
        self.following = following
        self.timeout = timeout
        self.readahead = readahead
        self._memory_bytes = memory_bytes
        self._workers = workers
        self._start()
        self.fetched_bytes = 0  # bytes asked of the store (statistics for 'datastore mounts')

    def _start(self) -> None:
        """Threads, locks and the memory cache of this process.

        Called again in a forked child (a DataLoader worker of a dataset made in the parent):
        the parent's threads do not exist there, and its locks may be held forever.
        """
        self._pid = os.getpid()
        self._memory = _Memory(self._memory_bytes)
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="fetch")
        # Read-ahead has its own threads so that it never delays a read someone waits for.
        self._ahead = ThreadPoolExecutor(max(2, self.readahead), thread_name_prefix="readahead")
        self._whole_lock = threading.Lock()
        self._ahead_lock = threading.Lock()

    def close(self) -> None:
        """Stop the worker threads (pending read-ahead is dropped) and write what the cache queued."""
        self._ahead.shutdown(wait=False, cancel_futures=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if not self.cache.flush(FLUSH_SECONDS):
            log.warning("block cache: entries still unwritten after %.0f s; they will be fetched again", FLUSH_SECONDS)

    # --- the read call ------------------------------------------------------------------------

    def read(self, f: OpenFile, offset: int, size: int) -> bytes:
        """Up to ``size`` checked bytes at ``offset`` of ``f`` (``b""`` at or past the end).

        Raises:
            ChecksumMismatch: the stored bytes differ from the manifest.
            ReferenceBroken: a ``--no-copy`` file's pinned object is gone or changed.
            ObjectNotFound: the store object holding the file is gone.
            ReadTimedOut: the store did not answer within ``timeout``.
        """
        if self._pid != os.getpid():
            self._start()
        e = f.entry
        end = min(offset + size, e.size)
        if offset < 0 or end <= offset:
            return b""
        if e.size <= BLOCK_BYTES:
            return self._small(f)[offset:end]
        first, last = offset // BLOCK_BYTES, (end - 1) // BLOCK_BYTES
        self._maybe_read_ahead(f, first, last)
        parts = []
        for i in range(first, last + 1):
            lo = offset - i * BLOCK_BYTES if i == first else 0
            hi = end - i * BLOCK_BYTES if i == last else e.block_span(i)[1]
            parts.append(self._block_range(e, i, lo, hi))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _block_range(self, e: Entry, i: int, lo: int, hi: int) -> bytes:
        """Bytes ``lo:hi`` of block ``i``: from memory, else only their pages from the disk cache.

        A part of a block that memory does not hold (a random reader; many sequential readers at
        once, which push each other's blocks out of memory) is read from the disk cache alone,
        checked page by page, rather than the whole block read and checked for a few KiB of it.
        """
        key = self._key(e, i)
        block = self._memory.get(key)
        if block is None and hi - lo < e.block_span(i)[1]:
            part = self.cache.get_range(key, lo, hi - lo)
            if part is not None:
                return part
        return (block if block is not None else self._block(e, i))[lo:hi]

    # --- small files --------------------------------------------------------------------------

    def _small(self, f: OpenFile) -> bytes:
        return self._cached(f.entry, self._key(f.entry), lambda: self._fetch_small(f))

    def _fetch_small(self, f: OpenFile) -> bytes:
        """The file's checked bytes, with its pack neighbours (checked and cached one by one)."""
        e = f.entry
        run = self._run_of(f)
        if run is None:
            data = self.reader.read(e)
            self.fetched_bytes += len(data)
            return data
        mine: bytes | None = None
        for n, piece in self.reader.read_run(run, check=False):
            if n.path == e.path:
                self.reader.check_bytes(n, piece)  # the file asked for: a mismatch is its error
                mine = bytes(piece)
                continue
            try:
                self.reader.check_bytes(n, piece)
            except ChecksumMismatch as exc:  # a bad neighbour is not served; its own read reports it
                log.error("%s", exc)
                continue
            self.cache.put_later(self._key(n), bytes(piece))
        self.fetched_bytes += run.length
        assert mine is not None  # the run starts with the file asked for
        return mine

    def _run_of(self, f: OpenFile) -> Run | None:
        """The coalesced read starting with ``f``'s file, or None (read it alone)."""
        e = f.entry
        if self.following is None or f.seq < 0 or e.object is None or e.sha256 is None:
            return None
        items = self.following(f.seq, NEIGHBOURS)
        if not items or items[0].path != e.path:
            return None
        for item in self.reader.runs(items):
            if isinstance(item, Run) and item.entries[0].path == e.path:
                return item
        return None

    # --- blocks of large files ----------------------------------------------------------------

    def _block(self, e: Entry, i: int) -> bytes:
        return self._cached(e, self._key(e, i), lambda: self._fetch_block(e, i))

    def _fetch_block(self, e: Entry, i: int) -> bytes:
        start, length = e.block_span(i)
        if e.blocks:
            data = self.reader.read_block(e, i)
        elif e.sha256 is not None:
            data = self._verify_whole(e, i)
        else:  # a reference (read pinned) or a server-side copy (size only): no sha256 to check
            data = self.reader.read_range(e, start, length, check=False)
        self.fetched_bytes += len(data)
        return data

    def _verify_whole(self, e: Entry, want: int) -> bytes:
        """Block ``want`` of a file whose manifest has no block hashes: check the whole file once.

        The file is streamed to a scratch file while being hashed; only when the sha256 matches
        are its blocks put in the cache, so a block of a damaged file is never served.
        """
        with self._whole_lock:  # one whole-file pass at a time: each may be gigabytes
            cached = self.cache.get(self._key(e, want))
            if cached is not None:
                return cached
            log.warning("%s: its manifest has no block hashes (created before they existed); checking the "
                        "whole file (%d bytes) on its first read", e.path, e.size)
            # The scratch copy sits beside the cache: the disk meant to hold this file's bytes.
            with tempfile.TemporaryFile(dir=self.cache.root) as tmp:
                self.reader.check(e, copy_hashed(self.reader.stream(e, BLOCK_BYTES), tmp.write))
                tmp.flush()
                mine = b""
                for i in range(e.block_count):
                    data = os.pread(tmp.fileno(), BLOCK_BYTES, i * BLOCK_BYTES)
                    if i == want:
                        mine = data
                    else:
                        self.cache.put(self._key(e, i), data)
            return mine

    def _maybe_read_ahead(self, f: OpenFile, first: int, last: int) -> None:
        """Ask for the blocks after ``last`` when a stream of ``f`` is being read front to back."""
        if self.readahead == 0:
            return
        with self._ahead_lock:
            if first in f.streams:  # still in the block the stream's last read ended in
                streak = f.streams.pop(first)
            elif first - 1 in f.streams or first == 0:  # the next block, or a new pass from the start
                streak = min(f.streams.pop(first - 1, 0) + 1, self.readahead)
            else:  # a jump: a new stream, no read-ahead until it proves sequential
                streak = 0
            f.streams[last] = streak
            while len(f.streams) > STREAMS:
                f.streams.pop(next(iter(f.streams)))
            wanted = [i for i in range(last + 1, min(last + 1 + streak, f.entry.block_count)) if i not in f.ahead]
            f.ahead.update(wanted)
        for i in wanted:
            self._ahead.submit(self._prefetch, f, i)

    def _prefetch(self, f: OpenFile, i: int) -> None:
        try:
            self._block(f.entry, i)
        except Exception:  # noqa: BLE001 - read-ahead is a guess; the read itself reports any error
            pass
        finally:
            with self._ahead_lock:
                f.ahead.discard(i)

    # --- helpers ------------------------------------------------------------------------------

    def _cached(self, e: Entry, key: str, fetch: Callable[[], bytes]) -> bytes:
        """The checked bytes under ``key``: from memory, from the disk cache, or ``fetch``-ed.

        A disk hit is read on the calling thread (a local file: no store to wait for, and a hop
        to a worker would cost more than the read); a miss fetches on a worker within the timeout.
        """
        data = self._memory.get(key)
        if data is None:
            data = self.cache.get(key)
            if data is None:
                data = self._wait(e, functools.partial(self.cache.get_or_fetch, key, fetch, later=True))
            self._memory.put(key, data)
        return data

    def _wait(self, e: Entry, call: Callable[..., bytes], *args: object) -> bytes:
        """Run ``call`` on a worker and wait at most ``timeout`` s (a hung store is an error)."""
        fut: Future[bytes] = self._pool.submit(call, *args)
        try:
            return fut.result(timeout=self.timeout)
        except FutureTimeout:
            raise ReadTimedOut(e.path, self.timeout) from None

    def _key(self, e: Entry, block: int | None = None) -> str:
        """The cache key of a small file's bytes or of one block of a large file.

        Keys name the content, so equal files and blocks of different versions share entries.
        """
        if block is None:
            if e.sha256 is not None:
                return f"sha256:{e.sha256}"
            return f"pin:{self._identity(e)}"
        if e.blocks:
            return f"sha256:{e.blocks[block]}"
        if e.sha256 is not None:
            return f"file:{e.sha256}#{block}"
        return f"pin:{self._identity(e)}#{block}"

    def _identity(self, e: Entry) -> str:
        """What a file without sha256 is pinned to: its source object version, or its store copy."""
        if e.referenced:
            pin = e.source or {}
            bucket = S3Detail.from_json(self.reader.record.source_detail).bucket
            return f"s3://{bucket}/{pin.get('key')}@{pin.get('version_id') or pin.get('etag')}"
        return f"{self.reader.store.url}/{e.object}@{e.etag}:{e.offset}+{e.size}"

