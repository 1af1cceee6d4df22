"""The tree of one version on disk: what a mount asks for every ``getattr``, ``readdir`` and ``open``.

A mount answers the kernel from many threads, for versions of millions of files, and must answer
as soon as it is mounted. The manifest cannot serve that directly: it is a gzip stream (no random
access) and holding it in memory grows with the version. So the manifest is turned, once per
version per machine, into an SQLite file under ``<cache_dir>/index/``, and every later mount of
that version (any process) opens the file and reads only the pages a question touches. Why
SQLite: it is in the standard library, its B-trees give ``O(log n)`` lookups and ordered range
scans straight from disk, and an immutable file needs no locks, so any number of threads and
processes read it at once.

The file's layout and its builder are :mod:`datastore.store.index`. A large version's commit stores
the index beside the manifest (its sha256 in the version record): the first mount on a machine
downloads it and checks it instead of building it (a million files: seconds of parsing and
sorting saved). Smaller versions, and versions committed before, are indexed here from the
manifest. Either way the file is written to a temporary name, fsynced and renamed, so a reader
sees a complete index or none. Builders of one version serialize on an ``flock`` (the kernel
drops it if a builder dies); the second waits, then finds the first one's index and uses it.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from datastore.errors import ObjectNotFound
from datastore.model.hashing import chunks, copy_hashed
from datastore.model.manifest import Entry
from datastore.store import Store
from datastore.store import index as tree
from datastore.store.versions import VersionRecord

log = logging.getLogger(__name__)

DOWNLOAD_CHUNK = 4 << 20
"""Bytes per read of a stored index while it is downloaded and hashed."""

MMAP_BYTES = 1 << 30
"""Readers map up to this much of the file: pages come straight from the OS page cache, shared by
every thread and process, instead of being copied into a page cache per connection."""

_DIR_ID = "SELECT id FROM dirs WHERE path = ?"
_STAT = "SELECT seq, size, mtime_ns FROM files WHERE parent = (SELECT id FROM dirs WHERE path = ?) AND name = ?"
_ENTRY = ("SELECT f.size, f.mtime_ns, f.sha256, o.key, f.pos, f.extra FROM files f"
          " LEFT JOIN objects o ON o.id = f.object"
          " WHERE f.parent = (SELECT id FROM dirs WHERE path = ?) AND f.name = ?")
_FOLLOWING = ("SELECT d.path, f.name, f.size, f.mtime_ns, f.sha256, o.key, f.pos, f.extra FROM files f"
              " JOIN dirs d ON d.id = f.parent LEFT JOIN objects o ON o.id = f.object"
              " WHERE f.seq >= ? AND f.seq < ? ORDER BY f.seq")
# Both halves come from (parent, name) indexes already in name order: SQLite merges them.
_CHILDREN = ("SELECT name, -1, 0, NULL FROM dirs WHERE parent = ?1"
             " UNION ALL SELECT name, seq, size, mtime_ns FROM files WHERE parent = ?1 ORDER BY 1")


@dataclass(frozen=True, slots=True)
class Node:
    """One file or directory of the tree.

    Attributes:
        path: ``""`` for the root; relative, ``/``-separated, no leading slash.
        is_dir: True for a directory.
        size: Bytes of a file; 0 for directories.
        mtime_ns: The file's modification time from the manifest (None when not recorded, and for
            directories).
        seq: The file's position in manifest order (``0 .. files-1``); -1 for directories.
    """

    path: str
    is_dir: bool
    size: int
    mtime_ns: int | None
    seq: int


_ROOT = Node("", True, 0, None, -1)


class _Connections:
    """The idle connections of one process to one index file."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.idle: list[sqlite3.Connection] = []


class ManifestIndex:
    """The on-disk tree of one version, shared by every thread and process of the machine.

    Use :meth:`open`. Questions take a read-only SQLite connection from a pool for their
    duration (one thread at a time uses a connection; a forked child never uses its parent's,
    it opens its own). An iterator from :meth:`children` holds its connection until it ends.

    Attributes:
        files: Files in the tree (the manifest's files minus the ones left out).
        bytes: Their total size.
        dirs: Directories in the tree, the root included.
        path: The index file.
    """

    files: int
    bytes: int
    dirs: int

    def __init__(self, path: Path) -> None:
        """Wrap an index file (use :meth:`open`, which checks it and fills in the totals)."""
        self.path = path
        self.files = self.bytes = self.dirs = 0
        # immutable=1: the file never changes once renamed into place, so SQLite takes no locks
        # and never checks for other writers; readers never wait for each other.
        self._uri = path.absolute().as_uri() + "?mode=ro&immutable=1"
        self._pool = _Connections()

    @classmethod
    def open(cls, store: Store, record: VersionRecord, cache_dir: str | Path) -> ManifestIndex:
        """The index of ``record``: this machine's, else the one its commit stored, else built from its manifest.

        Args:
            store: The store holding the version (its URL is part of the index's key).
            record: The committed version.
            cache_dir: The machine's cache folder (``Settings.cache_dir``); the index goes under
                ``<cache_dir>/index/``.

        Returns:
            The opened index. A later open of the same version, in any process, reuses the file
            without reading the manifest.

        Raises:
            ManifestDamaged: The manifest is out of order or holds a line that is no item.
            StoreError: Reading the stored index (other than its absence) or the manifest failed
                (nothing is left behind; try again).
            OSError: The cache folder cannot be written.
        """
        final = index_path(store, record, cache_dir)
        index = cls._existing(final, record, quiet=True)
        if index is not None:
            return index
        final.parent.mkdir(parents=True, exist_ok=True)
        with _locked(final.with_name(final.name + ".lock")):
            # Another process may have built it while this one waited for the lock.
            index = cls._existing(final, record, quiet=False)
            if index is not None:
                return index
            for left in final.parent.glob(glob.escape(final.name) + ".tmp-*"):
                left.unlink(missing_ok=True)  # a builder that died (the lock shows none is running)
            tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            try:
                if not _download(store, record, tmp):
                    tmp.unlink(missing_ok=True)  # what a failed download left: the build starts afresh
                    with store.open_read(record.manifest) as fh:
                        tree.build(fh, tmp, record, store.url)
                _fsync(tmp)  # the data is on disk before the name points at it
                os.replace(tmp, final)
                _fsync(final.parent)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        index = cls._existing(final, record)
        if index is None:  # pragma: no cover - only a bug in the builder gets here
            raise RuntimeError(f"the index {final} just built does not check out")
        return index

    @classmethod
    def _existing(cls, path: Path, record: VersionRecord, quiet: bool = False) -> ManifestIndex | None:
        """The index at ``path`` if it is there, complete and built from ``record``'s manifest.

        ``quiet``: do not log why a file there is not used (the caller asks again under the lock).
        """
        if not path.exists():
            return None
        index = cls(path)
        try:
            with index._db() as db:
                meta = tree.check(db, record)
            if meta is not None:
                index.files, index.bytes, index.dirs = meta["files"], meta["bytes"], meta["dirs"]
                return index
            why = "it was built from something else, or is incomplete"
        except sqlite3.DatabaseError as exc:
            why = f"it cannot be read ({exc})"
        index.close()
        if not quiet:
            log.warning("not using the index %s: %s; building it again", path, why)
        return None

    def close(self) -> None:
        """Close the idle connections (a later question opens a new one; one in use stays open)."""
        pool = self._pool
        if pool.pid != os.getpid():
            return  # inherited through fork: never used, not even to close (SQLite forbids it)
        with pool.lock:
            idle, pool.idle = pool.idle, []
        for conn in idle:
            conn.close()

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection for one question, from the pool (opened when none is idle).

        Pooled, not one per thread: libfuse starts and ends its worker threads as the load
        changes, and a fresh connection (open, read the schema, compile the statements) costs
        ten times the lookup it is for. SQLite lets a connection move between threads as long as
        one thread uses it at a time, which the pool guarantees.
        """
        pool = self._pool
        if pool.pid != os.getpid():
            # After a fork: the inherited connections are dropped, never used (SQLite forbids
            # it), and so is the lock, which a parent's thread may have held at the fork.
            pool = self._pool = _Connections()
        with pool.lock:
            conn = pool.idle.pop() if pool.idle else None
        if conn is None:
            conn = sqlite3.connect(self._uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        try:
            yield conn
        finally:
            with pool.lock:
                if pool is self._pool:
                    pool.idle.append(conn)

    # --- questions ---------------------------------------------------------------------------

    def lookup(self, path: str) -> Node | None:
        """The file or directory at ``path``, or None.

        Args:
            path: As in :attr:`Node.path`: ``""`` for the root, no leading or trailing slash.
        """
        if not path:
            return _ROOT
        parent, _, name = path.rpartition("/")
        with self._db() as db:
            row = db.execute(_STAT, (parent, name)).fetchone()
            if row is not None:
                return Node(path, False, row[1], row[2], row[0])
            if db.execute(_DIR_ID, (path,)).fetchone() is not None:
                return Node(path, True, 0, None, -1)
        return None

    def children(self, path: str) -> Iterator[tuple[str, Node]]:
        """The direct children of the directory ``path``, in name order (code-point order).

        Streams from the index, so a folder of a million files costs no more memory than one of
        ten. Yields nothing when ``path`` is a file or does not exist (ask :meth:`lookup`).
        """
        with self._db() as db:  # held while the caller iterates (a listing is one cursor)
            row = db.execute(_DIR_ID, (path,)).fetchone()
            if row is None:
                return
            prefix = f"{path}/" if path else ""
            for name, seq, size, mtime_ns in db.execute(_CHILDREN, (row[0],)):
                yield name, Node(prefix + name, seq < 0, size, mtime_ns, seq)

    def entry(self, path: str) -> Entry | None:
        """The manifest :class:`Entry` of the file at ``path`` (None for directories and misses)."""
        parent, _, name = path.rpartition("/")
        with self._db() as db:
            row = db.execute(_ENTRY, (parent, name)).fetchone()
        return None if row is None else _entry(path, *row)

    def following(self, seq: int, count: int) -> list[Entry]:
        """The entries at positions ``seq .. seq+count-1`` in manifest order (fewer at the end).

        Neighbours in the manifest are neighbours in their pack, so this is what a reader uses
        to fetch the files after the one asked for in the same ranged read.
        """
        if count <= 0:
            return []
        with self._db() as db:
            rows = db.execute(_FOLLOWING, (seq, seq + count)).fetchall()
        return [_entry(f"{parent}/{name}" if parent else name, *rest) for parent, name, *rest in rows]


def _entry(path: str, size: int, mtime_ns: int | None, sha256: bytes | None, obj: str | None, pos: int,
           extra: str | None) -> Entry:
    """Rebuild the manifest line of a file from its row and let :class:`Entry` parse it."""
    if extra is None:  # the common line: nothing but the columns, so no dict to build and parse
        return Entry(path=path, size=size, sha256=None if sha256 is None else sha256.hex(), object=obj, offset=pos,
                     mtime_ns=mtime_ns)
    d = tree.loads_json(extra)
    d["path"] = path
    d["size"] = size
    if sha256 is not None:
        d["sha256"] = sha256.hex()
    if obj is not None:
        d["object"] = obj
    d["offset"] = pos
    if mtime_ns is not None:
        d["mtime_ns"] = mtime_ns
    return Entry.from_json(d)


def index_path(store: Store, record: VersionRecord, cache_dir: str | Path) -> Path:
    """Where the index of ``record`` lives on this machine.

    The key is the store's URL, the version's name, number and digest, and its manifest key (which
    names the creation that wrote it): two stores, or a version deleted and a new one created
    under the same number, never share an index. The readable prefix is for people looking at
    the folder.
    """
    ident = json.dumps([tree.INDEX_FORMAT, store.url, record.name, record.version, record.digest, record.manifest,
                        record.create_id])
    key = hashlib.sha256(ident.encode("utf-8")).hexdigest()[:32]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", record.name)[:64]
    return Path(cache_dir).expanduser() / "index" / f"{name}-{record.version}-{key}.sqlite"


def _download(store: Store, record: VersionRecord, tmp: Path) -> bool:
    """Fetch the index the commit stored, if it stored one; True when ``tmp`` then holds it, checked.

    The file must have the sha256 the version record names (the record is what every read trusts)
    and must say it was built from this manifest; otherwise the index is built from the manifest
    instead, after one warning, so a damaged or missing copy costs time, never a wrong tree.

    Raises:
        StoreError: Reading the store failed for another reason than a missing object.
    """
    if not record.manifest_index:
        return False
    try:
        with store.open_read(record.manifest_index) as src, open(tmp, "wb") as dst:
            got = copy_hashed(chunks(src, DOWNLOAD_CHUNK), dst.write)
    except ObjectNotFound:
        log.warning("%s version %d: its stored index %s is missing; building it from the manifest",
                    record.name, record.version, record.manifest_index)
        return False
    if got.sha256 != record.manifest_index_sha256:
        log.warning("%s version %d: its stored index %s does not have the sha256 its record names; "
                    "building it from the manifest", record.name, record.version, record.manifest_index)
        return False
    try:
        conn = sqlite3.connect(tmp.absolute().as_uri() + "?mode=ro", uri=True)
        try:
            if tree.check(conn, record) is not None:
                return True
        finally:
            conn.close()
        why = "was not built from this manifest, or is of another index format"
    except sqlite3.DatabaseError as exc:
        why = f"cannot be read ({exc})"
    log.warning("%s version %d: its stored index %s %s; building it from the manifest",
                record.name, record.version, record.manifest_index, why)
    return False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (dropped by the kernel if the process dies)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the lock


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


