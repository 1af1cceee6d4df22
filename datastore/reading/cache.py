"""The on-disk block cache shared by every reader and mount on one machine.

A FUSE mount reads a file as 8 MiB blocks fetched on demand; ten jobs on one machine reading the
same version should fetch each byte once. :class:`BlockCache` is that shared cache: a directory of
entry files bounded by ``max_bytes``, used at once by any number of threads and processes, and
safe when any of them is killed (``kill -9``) at any point.

Design, and why:

* **One file per entry, published atomically.** ``put`` writes ``<shard>/.<name>.<pid>.<rand>.tmp``
  next to the final name and moves it into place with ``os.replace``, so a reader opens either the whole
  old file, the whole new one, or nothing. No ``fsync``: the cache may lose entries in a power
  cut, and the checksum below catches the garbage a crash can leave instead.
* **What ``get`` returns is exactly what ``put`` was given.** Each file starts with a 32-byte
  header: magic, crc32 of the payload, payload length and the key's digest. ``get`` checks all
  four (length against the file size, the digest against the key, the crc over the payload); a
  payload over :data:`PAGE_BYTES` has a crc per 256 KiB page after the header instead (the
  header's crc covers that table), so that ``get_range`` reads and checks only its pages. A
  mismatch (a flipped byte, a truncated file, a zero-filled one after a crash, another version's
  format) is a miss, and the file is deleted. crc32 is the cheapest whole-payload check there is
  (ISA-L's through :mod:`datastore.model.codecs`, ~12 GB/s here; zlib's ~2 GB/s, sha256 half that): callers
  verify fetched bytes against the manifest's sha256 once, before ``put``; the crc then only has
  to catch what happened to the file since.
* **Keys are opaque.** A key's name is ``blake2b(key, 16 bytes)`` in hex, sharded
  ``data/<2 hex>/<1 hex>/<32 hex>``: at most 4,096 leaf directories (a full scan lists at most
  4,352 directories; a million entries are ~250 per directory), created only when used.
* **Size accounting without scanning on every put.** A 32-byte counter file (``usage``: bytes,
  entries, time of the last scan) is updated under ``flock`` by each ``put`` and each deletion.
  Because a process can die between renaming an entry and counting it (or between deleting and
  uncounting), the counter can drift; a full scan corrects it whenever the counter passes
  ``max_bytes`` (eviction needs the scan's list anyway), when it is missing or unreadable, and at
  least every :data:`RESCAN_SECONDS`. The scan also removes temporary files left by killed
  writers.
* **Eviction, least recently used first.** Recency is the entry file's mtime: ``put`` sets it and a
  hit refreshes it when it is older than :data:`TOUCH_SECONDS` (throttled, so hits on a hot entry
  cost no writes; LRU is exact to within that interval). When the counter passes ``max_bytes`` the
  putting process takes an exclusive ``flock`` on ``evict.lock`` (two processes never evict at
  once; the second re-reads the counter and usually finds nothing left to do), scans, and deletes
  the oldest entries until usage is at most :data:`EVICT_TO` of ``max_bytes``, so that eviction
  (a scan) happens once per ~10% of the cache written, not on every put. The entry just put is
  never its own victim. Deleting a file another process is reading is harmless: its open file
  stays readable.
* **Single flight across threads and processes** (:meth:`BlockCache.get_or_fetch`). A miss takes
  a per-key slot lock in the process (a ``threading.Lock``) and then a POSIX record lock
  (``fcntl.lockf``) on one byte of ``fetch.lock`` at an offset derived from the key's digest
  (48 bits: different keys practically never share a byte, and locks past the end of a file cost
  nothing). Record locks belong to a process, not a thread, which is why the thread lock comes
  first, and why the process keeps one descriptor of ``fetch.lock`` open for its lifetime (closing
  *any* descriptor of a file drops all of the process's record locks on it). The kernel drops the
  locks of a process that dies, so a killed fetcher never blocks anyone. Waiting processes poll
  (non-blocking lock attempts with backoff, up to 20 ms) and return as soon as the entry appears;
  a waiter that gets the lock re-checks the cache first, so a fetch that raised is simply retried
  by the next waiter. Waiting is bounded by :data:`WAIT_SECONDS`: after that a waiter fetches by
  itself (a stuck fetcher costs one duplicate fetch, never a hang).
* **Written behind the reader** (:class:`_WriteBehind`). ``get_or_fetch(later=True)`` and
  ``put_later`` return at once and leave writing the entry to one thread per process, which
  lets go of the fetch locks only once the entry is published; ``get`` in the process answers
  from the queue meanwhile. The queue is bounded (:data:`WRITE_BEHIND_BYTES`); past it a
  fetcher writes inline. Written inline, the cache cost a cold sequential read half its speed
  on this machine.
* **Fork safety.** The per-process state (slot locks, the ``fetch.lock`` descriptor) lives in a
  module registry keyed by the cache directory's identity and is dropped in a forked child
  (``os.register_at_fork``): locks held by the parent's threads at the fork would otherwise stay
  locked forever in the child. Each ``flock`` is taken on a freshly opened descriptor, so threads
  never share one; a child closes the descriptors it inherited mid-``flock`` (a ``flock`` belongs
  to the open file, so the copy would otherwise keep the parent's lock). Record locks are not
  inherited at all. A :class:`BlockCache` also pickles (as its root and limit), for
  ``spawn``-started workers.

An entry larger than ``max_bytes`` is not cached: ``put`` drops it, ``get_or_fetch`` returns it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import mmap
import os
import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from datastore.errors import UsageError
from datastore.model.codecs import crc32

log = logging.getLogger(__name__)

EVICT_TO = 0.9
"""Eviction brings usage down to this fraction of ``max_bytes`` (amortizes the scan)."""

TOUCH_SECONDS = 10.0
"""A hit refreshes an entry's mtime (its LRU age) only when it is older than this."""

RESCAN_SECONDS = 600.0
"""The counter is corrected by a full scan at least this often (drift from killed processes)."""

WAIT_SECONDS = 60.0
"""Longest wait for another thread's or process's fetch of the same key before fetching anyway."""

STALE_TMP_SECONDS = 3600.0
"""A temporary file this old belongs to a killed writer; the scan removes it."""

POLL_MAX = 0.02
"""Longest sleep between attempts to take another process's fetch lock."""

WRITE_BEHIND_BYTES = 32 * 1024 * 1024
"""Most payload bytes a process holds waiting to be written (see :class:`_WriteBehind`); past
this a fetcher writes its entry itself, so a slow disk slows fetches instead of growing memory."""

_MAGIC = b"DSC2"
_HEADER = struct.Struct("<4sIQ16s")  # magic, crc32(payload or page table), len(payload), blake2b-128(key)
HEADER_BYTES = _HEADER.size
"""Bytes an entry file of at most :data:`PAGE_BYTES` holds besides its payload (larger ones add
4 bytes per page; see :func:`entry_bytes`)."""

PAGE_BYTES = 256 * 1024
"""A payload larger than this is checked page by page, so that a ranged read checks only the
pages it returns (a 4 KiB read of an 8 MiB block reads and checks 256 KiB, not 8 MiB)."""

_COUNTER_MAGIC = b"DSU1"
_COUNTER = struct.Struct("<4sxxxxqqq")  # magic, bytes, entries, time of the last scan (ns)


@dataclass(frozen=True)
class CacheUsage:
    """How full a :class:`BlockCache` is, from its shared counter.

    Attributes:
        bytes: Bytes of the entry files (:func:`entry_bytes` of each payload).
        entries: Number of entries.
        limit: The cache's ``max_bytes``.
    """

    bytes: int
    entries: int
    limit: int


@dataclass
class _Counter:
    bytes: int
    entries: int
    scanned_ns: int


class _Slot:
    """One in-process slot lock and the number of threads holding or waiting for it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0


class _WriteBehind:
    """Writes fetched entries of one cache directory on a thread of its own, after their readers
    already have them.

    Writing an entry costs as much as fetching it here (~0.3-0.6 GB/s into the page cache of
    this VM, against ~0.5 GB/s from a store on loopback): written inline, a cold sequential read
    ran at half the speed it ran uncached. Until an entry is written, :meth:`BlockCache.get` in
    this process answers from :meth:`peek`, and other processes wait on the fetch lock, which
    the writer lets go of only once the entry is published, so each byte is still fetched once
    per machine. A process that dies first loses only cache entries.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: list[tuple[BlockCache, str, bytes, Callable[[], None] | None]] = []
        self._pending: dict[str, bytes] = {}
        self._bytes = 0
        self._busy = False
        self._thread: threading.Thread | None = None
        self._direct = _DirectWriter()

    def submit(self, cache: BlockCache, key: str, data: bytes, after: Callable[[], None] | None = None) -> bool:
        """Queue ``data`` for ``key``; False (nothing queued) when :data:`WRITE_BEHIND_BYTES` are waiting.

        ``after`` runs once the entry is published, or failed to be (it releases the fetch locks).
        """
        with self._cond:
            if self._bytes + len(data) > WRITE_BEHIND_BYTES and self._bytes:
                return False
            self._queue.append((cache, key, data, after))
            self._pending[key] = data
            self._bytes += len(data)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cache-writer", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return True

    def peek(self, key: str) -> bytes | None:
        """The bytes queued for ``key`` and not yet written, or None."""
        return self._pending.get(key) if self._pending else None

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued is written; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                cache, key, data, after = self._queue.pop(0)
                self._busy = True
            pending = None
            try:
                pending = cache._publish_quietly(key, data, self._direct)
            except Exception:  # noqa: BLE001 - the thread must live on: later entries and their locks wait on it
                log.exception("block cache: could not store %s under %s", key, cache.root)
            finally:
                with self._cond:
                    # Only now: until the file is in place, get() answers from _pending.
                    if self._pending.get(key) is data:
                        del self._pending[key]
                    self._bytes -= len(data)
                if after is not None:
                    after()
            if pending:
                cache._rescan_quietly(pending)
            with self._cond:
                self._busy = False
                self._cond.notify_all()


class _Local:
    """Per-process state of one cache directory (shared by every BlockCache on it in the process).

    Shared because record locks are per process: two BlockCache objects on one directory in one
    process must not both believe they hold a fetch slot, and must not close each other's locks.
    """

    def __init__(self, fetch_lock: Path) -> None:
        self.mutex = threading.Lock()
        self.slots: dict[int, _Slot] = {}
        self.writer = _WriteBehind()
        self._path = fetch_lock
        self._fd: int | None = None

    def fd(self) -> int:
        """The process's one descriptor of ``fetch.lock`` (never closed while the process uses it)."""
        if self._fd is None:
            with self.mutex:
                if self._fd is None:
                    self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        return self._fd

    def acquire(self, slot: int, timeout: float) -> bool:
        """Take the in-process lock of ``slot``; False after ``timeout`` seconds."""
        with self.mutex:
            entry = self.slots.get(slot)
            if entry is None:
                entry = self.slots[slot] = _Slot()
            entry.users += 1
        if entry.lock.acquire(timeout=timeout):
            return True
        self._leave(slot, entry)
        return False

    def release(self, slot: int) -> None:
        """Release the in-process lock of ``slot`` taken by :meth:`acquire`."""
        entry = self.slots[slot]
        entry.lock.release()
        self._leave(slot, entry)

    def _leave(self, slot: int, entry: _Slot) -> None:
        # Drop the slot when nobody uses it, so memory does not grow with the keys ever fetched.
        with self.mutex:
            entry.users -= 1
            if entry.users == 0:
                del self.slots[slot]

    def forget_inherited(self) -> None:
        """In a forked child: close the parent's descriptor (the child holds no record lock on it)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


_registry: dict[tuple[int, int], _Local] = {}
_registry_lock = threading.Lock()
_generation = 0  # bumped in every forked child; a BlockCache re-fetches its _Local when it changes

# Descriptors that hold (or are about to take) a flock. A forked child inherits them, and a flock
# belongs to the open file, not the process: left open in a long-lived child (a DataLoader
# worker), a descriptor copied while a parent thread held the counter's lock would keep every
# process out of the counter until that child exits. The child closes them (_after_fork_in_child);
# _flock_fds_lock is held across the fork so that the set is exact at that moment.
_flock_fds: set[int] = set()
_flock_fds_lock = threading.Lock()


def _before_fork() -> None:
    _flock_fds_lock.acquire()


def _after_fork_in_parent() -> None:
    _flock_fds_lock.release()


def _after_fork_in_child() -> None:
    # The parent's threads do not exist in the child, so any lock they held at the fork would
    # stay held forever: start the child with fresh per-process state.
    global _registry, _registry_lock, _generation, _flock_fds_lock
    old = _registry
    _registry, _registry_lock = {}, threading.Lock()
    _generation += 1
    for local in old.values():
        local.forget_inherited()
    for fd in _flock_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    _flock_fds.clear()
    _flock_fds_lock = threading.Lock()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


def _local_for(identity: tuple[int, int], fetch_lock: Path) -> _Local:
    with _registry_lock:
        local = _registry.get(identity)
        if local is None:
            local = _registry[identity] = _Local(fetch_lock)
        return local


@contextlib.contextmanager
def _flocked(path: Path, mode: int) -> Iterator[int]:
    """``flock`` ``path`` on a fresh descriptor (so threads and forked children never share it)."""
    with _flock_fds_lock:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        _flock_fds.add(fd)
    try:
        fcntl.flock(fd, mode)
        yield fd
    finally:
        with _flock_fds_lock:
            _flock_fds.discard(fd)
            os.close(fd)  # releases the flock


def _read_exactly(fd: int, n: int) -> bytes:
    """``n`` bytes from ``fd`` (one read when the file system allows; fewer only at end of file)."""
    data = os.read(fd, n)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = os.read(fd, n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class _DirectWriter:
    """Writes large entries with ``O_DIRECT`` from one reused, page-aligned buffer (one thread's).

    Why: on this kind of machine (a VM whose balloon hands freed memory back to the host), every
    page the page cache newly fills costs a fault in the hypervisor: writing 1 GiB of new entries
    through the page cache took ~3 s, with ``O_DIRECT`` 0.7 s. The file is byte for byte what
    a buffered write makes (the last page padded, then truncated). Where the file system refuses
    ``O_DIRECT`` (tmpfs), the writer falls back to buffered writes for good.
    """

    MIN_BYTES = 1024 * 1024  # smaller entries: a synchronous device write would cost more than it saves
    ALIGN = 4096

    def __init__(self) -> None:
        self._buffer: mmap.mmap | None = None
        self.supported = hasattr(os, "O_DIRECT")

    def write(self, path: str, fd: int, header: bytes, data: bytes) -> bool:
        """Write ``header + data`` to the new file ``path`` (open as ``fd``); False if not done."""
        total = len(header) + len(data)
        if not self.supported or len(data) < self.MIN_BYTES:
            return False
        padded = -(-total // self.ALIGN) * self.ALIGN
        try:
            direct = os.open(path, os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                self.supported = False
            return False
        try:
            if self._buffer is None or len(self._buffer) < padded:
                if self._buffer is not None:
                    self._buffer.close()
                self._buffer = mmap.mmap(-1, padded)
            buf = memoryview(self._buffer)
            try:
                buf[:len(header)] = header
                buf[len(header):total] = data
                buf[total:padded] = bytes(padded - total)
                done = 0
                while done < padded:
                    done += os.write(direct, buf[done:padded])
            finally:
                buf.release()
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # the device wants another alignment: buffered from now on
                self.supported = False
                os.ftruncate(fd, 0)
                return False
            raise
        finally:
            os.close(direct)
        os.ftruncate(fd, total)
        return True


def _write_all(fd: int, header: bytes, data: bytes) -> None:
    """Write ``header`` then ``data`` without concatenating them (no copy of a large payload)."""
    done = os.writev(fd, [header, data])
    if done == len(header) + len(data):
        return
    for part in (header, data):  # a short write (rare on local disks): finish piece by piece
        view = memoryview(part)
        if done >= len(view):
            done -= len(view)
            continue
        view, done = view[done:], 0
        while view:
            view = view[os.write(fd, view):]


class BlockCache:
    """A bounded on-disk cache of byte strings, shared by the threads and processes of one machine.

    See the module docstring for the design. Every method is thread-safe and process-safe; the
    object survives ``os.fork`` and pickling.

    Args:
        root: The cache's own directory (created if missing). Give it a directory of its own: the
            cache treats everything under ``root/data`` as its entries.
        max_bytes: Upper bound of the entry files' total size; least recently used entries are
            evicted to stay under it.

    Raises:
        UsageError: ``max_bytes`` is not positive.
    """

    def __init__(self, root: str | Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise UsageError(f"block cache size {max_bytes} is not positive",
                             "give the cache a size of at least a few blocks (DATASTORE_CACHE_BYTES)")
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self._data = self.root / "data"
        self._data_str = os.fspath(self._data)
        self._counter_path = self.root / "usage"
        self._evict_lock = self.root / "evict.lock"
        self._fetch_lock = self.root / "fetch.lock"
        self._data.mkdir(parents=True, exist_ok=True)
        st = os.stat(self.root)
        self._identity = (st.st_dev, st.st_ino)
        self._generation = -1
        self._local_state: _Local | None = None
        if self._read_counter() is None:  # a new cache, or its counter was lost: count once now
            self._rescan(keep=None, why="init")

    # --- pickling (spawn-started workers) ----------------------------------------------------

    def __getstate__(self) -> dict:
        return {"root": str(self.root), "max_bytes": self.max_bytes}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["root"], state["max_bytes"])

    def __repr__(self) -> str:
        return f"BlockCache({str(self.root)!r}, max_bytes={self.max_bytes})"

    # --- the public operations ---------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The bytes last put under ``key``, or None (absent, evicted, or found damaged).

        A hit marks the entry recently used (at most once per :data:`TOUCH_SECONDS`).

        Args:
            key: Any string.

        Returns:
            Exactly the bytes given to :meth:`put`, or None. A damaged entry file is deleted.
        """
        return self._lookup(key, 0, None)

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (replacing what was there), atomically.

        Readers see the old entry, the new one, or none, never part of one. Least recently used
        entries are evicted when the cache passes ``max_bytes``. An entry that alone would be
        larger than ``max_bytes`` is not stored.

        Args:
            key: Any string.
            data: The bytes to store.

        Raises:
            OSError: The entry could not be written (disk full, permissions); nothing was stored.
        """
        pending = self._publish(key, data)
        if pending:
            self._rescan(*pending)

    def put_later(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` from this process's writer thread (see :class:`_WriteBehind`).

        Returns at once; :meth:`get` in this process sees the entry at once, other processes once
        it is written. Errors writing it are logged, not raised (the cache is an optimization).
        When too much is already waiting, the entry is written now, as :meth:`put` would.
        """
        if not self._local().writer.submit(self, key, data):
            pending = self._publish_quietly(key, data)
            if pending:
                self._rescan_quietly(pending)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until this process's queued entries are written; False after ``timeout`` seconds."""
        return self._local().writer.flush(timeout)

    def get_range(self, key: str, offset: int, length: int) -> bytes | None:
        """``length`` bytes at ``offset`` of the entry under ``key`` (fewer at its end), or None.

        Reads and checks only the pages the range touches; a damaged page makes it a miss and
        deletes the file, as :meth:`get` does.
        """
        return self._lookup(key, offset, length)

    def _lookup(self, key: str, offset: int, length: int | None) -> bytes | None:
        """What :meth:`get` (``length`` None: the whole payload) and :meth:`get_range` return."""
        digest = _digest(key)
        path = self._path(digest)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            queued = self._local().writer.peek(key)  # fetched here, not written yet
            if queued is None or length is None:
                return queued
            return queued[max(0, offset):max(0, offset) + max(0, length)]
        try:
            st = os.fstat(fd)
            payload = self._read_entry(fd, st.st_size, digest, offset, length)
            if payload is None:
                self._discard(path, st)
                return None
            # Refresh the LRU age, throttled: a hot entry would otherwise cost a write per hit.
            if time.time_ns() - st.st_mtime_ns > TOUCH_SECONDS * 1e9:
                with contextlib.suppress(OSError):  # e.g. another user's entry: age is advisory
                    os.utime(fd)
            return payload
        finally:
            os.close(fd)

    def get_or_fetch(self, key: str, fetch: Callable[[], bytes], *, later: bool = False) -> bytes:
        """The bytes under ``key``, running ``fetch`` (once per machine) and caching them on a miss.

        Concurrent callers for one key, in threads of this process and in other processes, run
        ``fetch`` once: the others wait and read the cached result. An exception from ``fetch``
        propagates to the caller that ran it; the waiters then retry, one of them fetching. A
        waiter fetches by itself after :data:`WAIT_SECONDS`, and when the entry is too large to
        cache (then each caller fetches in turn). Storing the result never fails the call: an
        entry that cannot be written (disk full) is left uncached, with a warning.

        Args:
            key: Any string.
            fetch: Returns the (already verified) bytes for ``key``.
            later: Return the fetched bytes at once and leave writing them to the process's
                writer thread (:meth:`put_later`), which holds the fetch locks until the entry is
                in place, so that other processes still wait for it rather than fetch it too.

        Returns:
            The bytes, from the cache or from ``fetch``.
        """
        data = self.get(key)
        if data is not None:
            return data
        digest = _digest(key)
        path = self._path(digest)
        slot = int.from_bytes(digest[:6], "big")  # 48 bits: distinct keys practically never share a byte
        local = self._local()
        deadline = time.monotonic() + WAIT_SECONDS
        if not local.acquire(slot, WAIT_SECONDS):
            log.warning("block cache: waited %.0f s for another thread's fetch of %s; fetching it too",
                        WAIT_SECONDS, key)
            return self._fetch_and_put(key, fetch)
        pending = None
        handed_off = False  # the writer thread lets go of both locks once the entry is written

        def unlock() -> None:
            fcntl.lockf(local.fd(), fcntl.LOCK_UN, 1, slot, os.SEEK_SET)

        def unlock_all() -> None:
            unlock()
            local.release(slot)

        try:
            while True:
                data = self.get(key)  # another thread or process may have published it meanwhile
                if data is not None:
                    return data
                outcome = self._lock_slot(local, slot, path, deadline)
                if outcome == "locked":
                    try:
                        data = self.get(key)  # published just before its fetcher let go of the lock
                        if data is None:
                            data = fetch()
                            handed_off = later and local.writer.submit(self, key, data, after=unlock_all)
                            if handed_off:
                                return data
                            pending = self._publish_quietly(key, data)
                        break
                    finally:
                        if not handed_off:
                            unlock()
                if outcome == "timeout":
                    data = self.get(key)
                    if data is not None:
                        return data
                    log.warning("block cache: waited %.0f s for another process's fetch of %s; fetching it too",
                                WAIT_SECONDS, key)
                    return self._fetch_and_put(key, fetch)
                # "appeared": read it at the top of the loop (if it was damaged, get deleted it
                # and this caller competes for the lock again).
        finally:
            if not handed_off:
                local.release(slot)
        # Evict after letting go of the locks: the entry is published, so waiters (threads here,
        # other processes) read it now instead of waiting for the scan.
        if pending:
            self._rescan_quietly(pending)
        return data

    def usage(self) -> CacheUsage:
        """How full the cache is (the shared counter; a scan only if the counter was lost)."""
        counter = self._read_counter()
        if counter is None:
            self._rescan(keep=None, why="init")
            counter = self._read_counter() or _Counter(0, 0, 0)
        return CacheUsage(bytes=counter.bytes, entries=counter.entries, limit=self.max_bytes)

    # --- single flight ------------------------------------------------------------------------

    @staticmethod
    def _lock_slot(local: _Local, slot: int, path: str, deadline: float) -> str:
        """Take the slot's record lock: "locked", "appeared" (the entry exists) or "timeout".

        Polls rather than blocking in ``F_SETLKW`` so that the wait is bounded and a waiter returns
        as soon as the holder publishes the entry (before it even releases the lock).
        """
        fd = local.fd()
        delay = 0.001
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, slot, os.SEEK_SET)
                return "locked"
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
            if os.path.exists(path):
                return "appeared"
            if time.monotonic() >= deadline:
                return "timeout"
            time.sleep(delay)
            delay = min(delay * 1.5, POLL_MAX)

    def _fetch_and_put(self, key: str, fetch: Callable[[], bytes]) -> bytes:
        data = fetch()
        pending = self._publish_quietly(key, data)
        if pending:
            self._rescan_quietly(pending)
        return data

    def _publish_quietly(self, key: str, data: bytes,
                         direct: _DirectWriter | None = None) -> tuple[str | None, str] | None:
        try:
            return self._publish(key, data, direct)
        except OSError as exc:  # the cache is an optimization: a full disk must not fail the read
            log.warning("block cache: could not store %s under %s: %s", key, self.root, exc)
            return None

    def _rescan_quietly(self, pending: tuple[str | None, str]) -> None:
        try:
            self._rescan(*pending)
        except OSError as exc:
            log.warning("block cache: could not evict under %s: %s", self.root, exc)

    def _local(self) -> _Local:
        if self._generation != _generation or self._local_state is None:
            self._local_state = _local_for(self._identity, self._fetch_lock)
            self._generation = _generation
        return self._local_state

    # --- entries ------------------------------------------------------------------------------

    def _publish(self, key: str, data: bytes, direct: _DirectWriter | None = None) -> tuple[str | None, str] | None:
        """Write and count one entry; what :meth:`_rescan` must then do, as its arguments, or None.

        With ``direct`` (the writer thread's), a large entry bypasses the page cache.
        """
        size = entry_bytes(len(data))
        if size > self.max_bytes:
            return None
        digest = _digest(key)
        path = self._path(digest)
        if len(data) > PAGE_BYTES:
            view = memoryview(data)
            table = struct.pack(f"<{_pages(len(data))}I", *(crc32(view[at:at + PAGE_BYTES])
                                                            for at in range(0, len(data), PAGE_BYTES)))
            header = _HEADER.pack(_MAGIC, crc32(table), len(data), digest) + table
        else:
            header = _HEADER.pack(_MAGIC, crc32(data), len(data), digest)
        shard, name = os.path.split(path)
        tmp = f"{shard}/.{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileNotFoundError:  # first entry of this shard
            os.makedirs(shard, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            try:
                if direct is None or not direct.write(tmp, fd, header, data):
                    _write_all(fd, header, data)
            finally:
                os.close(fd)
            try:
                old = os.stat(path).st_size
            except FileNotFoundError:
                old = None
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        counter = self._add(size - (old or 0), 0 if old is not None else 1)
        if counter is None:
            return path, "missing"
        if counter.bytes > self.max_bytes:
            return path, "full"
        if time.time_ns() - counter.scanned_ns > RESCAN_SECONDS * 1e9:
            return path, "due"
        return None

    def _path(self, digest: bytes) -> str:
        # A string, not a Path: building Paths costs more than the open of a miss.
        name = digest.hex()
        return f"{self._data_str}/{name[:2]}/{name[2]}/{name}"

    @staticmethod
    def _read_entry(fd: int, file_size: int, digest: bytes, offset: int = 0, length: int | None = None) -> bytes | None:
        """The payload of an open entry file (or ``length`` bytes of it at ``offset``), or None
        when any part read does not check out."""
        if file_size < HEADER_BYTES:
            return None
        magic, crc, size, stored = _HEADER.unpack(_read_exactly(fd, HEADER_BYTES))
        if magic != _MAGIC or stored != digest or entry_bytes(size) != file_size:
            return None
        end = size if length is None else min(size, offset + max(0, length))
        offset = min(max(0, offset), end)
        if size <= PAGE_BYTES:
            payload = _read_exactly(fd, size)
            if len(payload) != size or crc32(payload) != crc:
                return None
            return payload if (offset, end) == (0, size) else payload[offset:end]
        pages = _pages(size)
        raw = _read_exactly(fd, 4 * pages)
        if len(raw) != 4 * pages or crc32(raw) != crc:
            return None
        table = struct.unpack(f"<{pages}I", raw)
        if offset == end:
            return b""
        first, last = offset // PAGE_BYTES, (end - 1) // PAGE_BYTES
        start = first * PAGE_BYTES
        want = min(size, (last + 1) * PAGE_BYTES) - start
        data = os.pread(fd, want, HEADER_BYTES + 4 * pages + start) if start else _read_exactly(fd, want)
        if len(data) != want:
            return None
        view = memoryview(data)
        for i in range(first, last + 1):
            at = (i - first) * PAGE_BYTES
            if crc32(view[at:at + PAGE_BYTES]) != table[i]:
                return None
        return data if (offset, end) == (start, start + want) else data[offset - start:end - start]

    def _discard(self, path: str, st: os.stat_result) -> None:
        """Delete a damaged entry, unless it was replaced since it was opened."""
        try:
            now = os.stat(path)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                return
            os.unlink(path)
        except FileNotFoundError:
            return
        log.warning("block cache: removed damaged entry %s", path)
        self._add(-st.st_size, -1)

    # --- accounting and eviction ---------------------------------------------------------------

    def _read_counter(self) -> _Counter | None:
        try:
            with _flocked(self._counter_path, fcntl.LOCK_SH) as fd:
                return _unpack_counter(os.pread(fd, _COUNTER.size, 0))
        except FileNotFoundError:
            return None

    def _add(self, delta_bytes: int, delta_entries: int) -> _Counter | None:
        """Add to the shared counter; None (and unchanged) when it is missing or unreadable."""
        with _flocked(self._counter_path, fcntl.LOCK_EX) as fd:
            counter = _unpack_counter(os.pread(fd, _COUNTER.size, 0))
            if counter is None:
                return None
            counter.bytes = max(0, counter.bytes + delta_bytes)
            counter.entries = max(0, counter.entries + delta_entries)
            os.pwrite(fd, _pack_counter(counter), 0)
            return counter

    def _rescan(self, keep: str | None, why: str) -> None:
        """Recount the entries from disk and evict the oldest if over ``max_bytes``.

        Runs under the exclusive eviction lock; the counter itself is locked only to read it
        before and after the scan, so puts of other processes go on meanwhile. Their changes are
        kept: the new count is the scan's total plus what the counter gained during the scan
        (an entry both scanned and counted is counted twice, an overcount the next scan corrects:
        drift toward overcounting only makes eviction a little early).

        Args:
            keep: The entry just put, never evicted by its own put.
            why: "full" (the counter passed ``max_bytes``), "due" (periodic), "init" (no valid
                counter; skipped if another process made one meanwhile) or "missing" (a put found
                no valid counter: always scans, since a concurrent scan may have missed its entry).
        """
        with _flocked(self._evict_lock, fcntl.LOCK_EX):
            before = self._read_counter()
            if why == "full" and before is not None and before.bytes <= self.max_bytes:
                return  # another process evicted while this one waited for the lock
            if why == "init" and before is not None:
                return
            if why == "due" and before is not None and time.time_ns() - before.scanned_ns <= RESCAN_SECONDS * 1e9:
                return
            entries = self._scan()
            total = sum(size for _, size, _ in entries)
            count = len(entries)
            if total > self.max_bytes:
                target = int(self.max_bytes * EVICT_TO)
                entries.sort()  # oldest mtime first
                for _, size, path in entries:
                    if total <= target:
                        break
                    if path == keep:
                        continue
                    try:
                        os.unlink(path)
                    except FileNotFoundError:  # deleted by a get that found it damaged (it uncounted it)
                        continue
                    total -= size
                    count -= 1
            with _flocked(self._counter_path, fcntl.LOCK_EX) as fd:
                after = _unpack_counter(os.pread(fd, _COUNTER.size, 0))
                gained_bytes = gained_entries = 0
                if before is not None and after is not None:
                    gained_bytes, gained_entries = after.bytes - before.bytes, after.entries - before.entries
                counter = _Counter(max(0, total + gained_bytes), max(0, count + gained_entries), time.time_ns())
                os.pwrite(fd, _pack_counter(counter), 0)

    def _scan(self) -> list[tuple[int, int, str]]:
        """Every entry as (mtime_ns, size, path); removes temporary files of killed writers."""
        found: list[tuple[int, int, str]] = []
        stale = time.time_ns() - int(STALE_TMP_SECONDS * 1e9)
        for top in _subdirs(self._data_str):
            for leaf in _subdirs(top):
                try:
                    listing = list(os.scandir(leaf))
                except FileNotFoundError:
                    continue
                for item in listing:
                    try:
                        st = item.stat(follow_symlinks=False)
                    except FileNotFoundError:  # evicted or replaced meanwhile
                        continue
                    if item.name.startswith("."):
                        if st.st_mtime_ns < stale:
                            with contextlib.suppress(OSError):
                                os.unlink(item.path)
                        continue
                    found.append((st.st_mtime_ns, st.st_size, item.path))
        return found


def _pages(size: int) -> int:
    return (size + PAGE_BYTES - 1) // PAGE_BYTES


def entry_bytes(size: int) -> int:
    """Bytes of the entry file of a ``size``-byte payload (what :attr:`CacheUsage.bytes` counts)."""
    return HEADER_BYTES + size + (4 * _pages(size) if size > PAGE_BYTES else 0)


def _digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _subdirs(path: str) -> list[str]:
    try:
        return [item.path for item in os.scandir(path) if item.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _pack_counter(counter: _Counter) -> bytes:
    return _COUNTER.pack(_COUNTER_MAGIC, counter.bytes, counter.entries, counter.scanned_ns)


def _unpack_counter(raw: bytes) -> _Counter | None:
    if len(raw) != _COUNTER.size:
        return None
    magic, size, entries, scanned_ns = _COUNTER.unpack(raw)
    return _Counter(size, entries, scanned_ns) if magic == _COUNTER_MAGIC else None
