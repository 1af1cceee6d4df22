"""The tree of one version on disk: what a mount asks for every ``getattr``, ``readdir`` and ``open``.

A mount answers the kernel from many threads, for versions of millions of files, and must answer
as soon as it is mounted. The manifest cannot serve that directly: it is a gzip stream (no random
access) and holding it in memory grows with the version. So the manifest is turned, once per
version per machine, into an SQLite file under ``<cache_dir>/index/``, and every later mount of
that version (any process) opens the file and reads only the pages a question touches. Why
SQLite: it is in the standard library, its B-trees give ``O(log n)`` lookups and ordered range
scans straight from disk, and an immutable file needs no locks, so any number of threads and
processes read it at once.

Layout (one row per node; ids are small integers so rows stay short):

* ``dirs(id, parent, name, path)``: every directory, the root (``id 0``, path ``""``) included.
  The manifest lists only files, so the builder adds every ancestor of every file.
* ``files(seq, parent, name, size, mtime_ns, sha256, object, pos, extra)``: ``seq`` (the rowid)
  is the file's position in manifest order, so :meth:`ManifestIndex.following` is a range scan
  of neighbours, which is what coalescing reads of one pack needs. ``sha256`` is stored as 32
  bytes, ``object`` as an id into ``objects`` (a pack is shared by thousands of files), and
  whatever else the line holds (``source``, ``etag``, fields added later) as compact JSON in
  ``extra``, so :meth:`ManifestIndex.entry` rebuilds exactly the manifest's
  :class:`~datastore.model.manifest.Entry`.
* Indexes, built after the bulk insert (one sort beats a million B-tree inserts):
  ``dirs(path)`` for lookups, ``dirs(parent, name)`` and the covering
  ``files(parent, name, size, mtime_ns)`` for listings in name order and for ``getattr``
  without touching the table.
* ``meta``: totals and what the index was built from, written last and checked at open.

Building streams the manifest once, in one transaction with the journal and syncs off (the file
is private until it is renamed into place, so a crash only leaves a temporary file to delete),
inserting in batches; memory stays flat whatever the number of files. The manifest is in path
order, so a directory's files are one contiguous stretch: the builder needs only the stack of
open directories, never a set of every directory seen. The result is written to a temporary
name, fsynced and renamed, so a reader sees a complete index or none. Builders of one version
serialize on an ``flock`` (the kernel drops it if a builder dies); the second waits, then finds
the first one's index and uses it.

Paths that could escape the mount (:func:`~datastore.model.paths.is_safe`) and a path that
would be both a file and a directory (``a`` and ``a/b``: the first one in manifest order wins)
are left out of the tree with a warning; ``{"skipped": …}`` lines are not files of the version.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import gzip
import hashlib
import json
import logging
import os
import queue
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from datastore.errors import ManifestDamaged
from datastore.model.manifest import Entry
from datastore.model.paths import is_safe
from datastore.store import Store
from datastore.store.versions import VersionRecord

try:  # orjson decodes manifest lines ~3x faster than json (it comes with Prefect)
    from orjson import dumps as _dumps
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - the standard library does the same, slower
    def _dumps(obj: object) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    _loads = json.loads

log = logging.getLogger(__name__)

INDEX_FORMAT = 1
"""Bumped when the layout changes; part of the file's key, so an old index is simply not found."""

BATCH = 5_000
"""Rows per ``executemany`` while building: the call costs nothing next to the rows (5,000 or
50,000 build equally fast, measured), and a batch is ~2 MB of Python objects, not ~20."""

MAX_INTERNED = 65_536
"""Object keys remembered while building. Files of one pack are neighbours in the manifest, so a
small table finds nearly every repeat; when it is full it starts over (a key seen again then gets a
second id, which costs a row, not correctness) so memory never grows with the version."""

WARN_LIMIT = 10
"""Left-out paths named one by one in the log; the rest are counted in one summary line."""

MMAP_BYTES = 1 << 30
"""Readers map up to this much of the file: pages come straight from the OS page cache, shared by
every thread and process, instead of being copied into a page cache per connection."""

CHUNK = 1 << 20
"""Decompressed bytes per read-ahead chunk."""

READ_AHEAD = 4
"""Chunks decompressed ahead of the builder (a few MiB: memory does not depend on the version)."""

ROOT_ID = 0

_SCHEMA = (
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    "CREATE TABLE objects(id INTEGER PRIMARY KEY, key TEXT NOT NULL)",
    "CREATE TABLE dirs(id INTEGER PRIMARY KEY, parent INTEGER, name TEXT NOT NULL, path TEXT NOT NULL)",
    ("CREATE TABLE files(seq INTEGER PRIMARY KEY, parent INTEGER NOT NULL, name TEXT NOT NULL,"
     " size INTEGER NOT NULL, mtime_ns INTEGER, sha256 BLOB, object INTEGER, pos INTEGER NOT NULL, extra TEXT)"),
)
_INDEXES = (
    "CREATE UNIQUE INDEX dirs_by_path ON dirs(path)",
    "CREATE UNIQUE INDEX dirs_by_parent ON dirs(parent, name)",
    # Covering: getattr and readdir read only this index, never the wide table rows.
    "CREATE INDEX files_by_parent ON files(parent, name, size, mtime_ns)",
)
_BUILD_PRAGMAS = (
    # Nobody else sees the file until it is renamed into place, and a crash leaves only a
    # temporary file to delete: a rollback journal and syncs would buy nothing.
    "PRAGMA journal_mode=OFF",
    "PRAGMA synchronous=OFF",
    "PRAGMA locking_mode=EXCLUSIVE",
    # The page cache and each index sort use up to this much memory (16 MiB); SQLite spills to
    # temporary files beyond it. 64 MiB was no faster for a million files (measured).
    "PRAGMA cache_size=-16384",
)

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
        """The index of ``record``, built from its manifest if this machine has none yet.

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
            StoreError: Reading the manifest failed (nothing is left behind; try again).
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
                _build(store, record, tmp)
                _fsync(tmp)  # the data is on disk before the name points at it
                os.replace(tmp, final)
                _fsync(final.parent)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        index = cls._existing(final, record)
        if index is None:  # pragma: no cover - only a bug in _build gets here
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
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
                last = db.execute("SELECT max(seq) FROM files").fetchone()[0]  # the last leaf page: no scan
            if meta.get("format") == INDEX_FORMAT and meta.get("digest") == record.digest \
                    and meta.get("files") == (-1 if last is None else last) + 1:
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
    d = _loads(extra)
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
    ident = json.dumps([INDEX_FORMAT, store.url, record.name, record.version, record.digest, record.manifest,
                        record.create_id])
    key = hashlib.sha256(ident.encode("utf-8")).hexdigest()[:32]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", record.name)[:64]
    return Path(cache_dir).expanduser() / "index" / f"{name}-{record.version}-{key}.sqlite"


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


@contextlib.contextmanager
def _read_ahead(fh: BinaryIO) -> Iterator[Iterator[bytes]]:
    """The lines of the gzip manifest ``fh``, fetched and decompressed ahead in a thread.

    Reading the store (a network read for S3) and inflating release the GIL, so in a thread
    they overlap with decoding and inserting instead of adding to them. At most
    :data:`READ_AHEAD` chunks wait, so memory stays flat. Raw lines rather than
    :func:`~datastore.model.manifest.read_items`: the builder takes a line's fields apart into
    columns, and an :class:`Entry` per line would only be built to be taken apart again.
    """
    chunks: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=READ_AHEAD)
    stopped = threading.Event()  # the consumer is done (finished, or failed)

    def put(item: bytes | BaseException) -> bool:
        while not stopped.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def read() -> None:
        try:
            with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
                while put(chunk := gz.read(CHUNK)) and chunk:
                    pass
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put(exc)

    def lines() -> Iterator[bytes]:
        rest = b""
        while True:
            chunk = chunks.get()
            if isinstance(chunk, BaseException):
                raise chunk
            if not chunk:
                break
            pieces = (rest + chunk).split(b"\n")
            rest = pieces.pop()  # the start of a line the next chunk ends
            yield from pieces
        if rest:
            yield rest

    reader = threading.Thread(target=read, name="manifest-read-ahead", daemon=True)
    reader.start()
    try:
        yield lines()
    finally:
        stopped.set()
        reader.join()  # the caller closes ``fh`` next: the thread must be done with it


def _build(store: Store, record: VersionRecord, tmp: Path) -> None:
    """Write the index of ``record`` to ``tmp`` (a new file nobody else reads yet)."""
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        for statement in _BUILD_PRAGMAS + _SCHEMA:
            conn.execute(statement)
        conn.execute("BEGIN")
        with store.open_read(record.manifest) as fh, _read_ahead(fh) as lines:
            totals = _Builder(conn, record).fill(lines)
        for statement in _INDEXES:
            conn.execute(statement)
        totals |= {"format": INDEX_FORMAT, "digest": record.digest, "name": record.name,
                   "version": record.version, "store": store.url, "manifest": record.manifest}
        conn.executemany("INSERT INTO meta VALUES (?, ?)", totals.items())
        conn.execute("COMMIT")
    finally:
        conn.close()


class _Builder:
    """Turns manifest lines into rows; state is bounded by the path depth, not the file count."""

    def __init__(self, conn: sqlite3.Connection, record: VersionRecord) -> None:
        self.conn = conn
        self.record = record
        self.left_out = {"unsafe": 0, "conflicts": 0, "duplicates": 0}

    def warn(self, kind: str, path: str, why: str) -> None:
        """Count a path left out of the tree; name the first few in the log."""
        self.left_out[kind] += 1
        if sum(self.left_out.values()) <= WARN_LIMIT:
            log.warning("%s version %d: %r is not in the mounted tree (%s)", self.record.name, self.record.version,
                        path, why)

    def damaged(self, reason: str) -> ManifestDamaged:
        return ManifestDamaged(self.record.name, self.record.version, reason)

    def decode(self, n: int, line: bytes) -> dict | None:
        """The object on manifest line ``n``; None for a blank line."""
        try:
            d = _loads(line)
        except ValueError:
            if not line.strip():
                return None
            try:  # orjson refuses what json takes (a lone surrogate): the path check then decides
                d = json.loads(line)
            except ValueError as exc:
                raise self.damaged(f"line {n} is not JSON") from exc
        if not isinstance(d, dict):
            raise self.damaged(f"line {n} is not a manifest item")
        return d

    def fill(self, lines: Iterable[bytes]) -> dict[str, int]:
        """Insert every file and directory; return the totals for ``meta``.

        The loop is the cost of a build (a million lines), so it is written flat: locals for
        everything it calls, the directory stack walked only when a file is in another folder
        than the one before, and no :class:`Entry` per line.
        """
        loads, decode, fromhex, warn = _loads, self.decode, bytes.fromhex, self.warn
        files: list[tuple] = []
        dirs: list[tuple] = [(ROOT_ID, None, "", "")]
        objects: list[tuple] = []
        interned: dict[str, int] = {}
        # The open directories, root first: their names (components) and ids.
        open_names: list[str] = []
        open_ids: list[int] = [ROOT_ID]
        open_path = ""  # "/".join(open_names)
        parent_id = ROOT_ID
        # Files each a string prefix of the next path. A later "a/b" conflicts with the file "a"
        # only while every path in between starts with "a" (manifest order), so this stays short.
        prefixes: list[str] = []
        last = ""
        seq = total_bytes = skipped = 0
        next_dir = ROOT_ID + 1
        next_object = 1
        for n, line in enumerate(lines, 1):
            try:
                d = loads(line)
            except ValueError:
                d = None
            if type(d) is not dict:  # not the plain case: a blank line, a lone surrogate, or damage
                d = decode(n, line)
                if d is None:
                    continue
            path = d.pop("path", None)
            if type(path) is not str:
                if "skipped" in d:
                    skipped += 1
                    continue
                raise self.damaged(f"line {n} is neither a file nor a skipped item")
            if last and path <= last:
                if path == last:
                    warn("duplicates", path, "listed twice; the first one is kept")
                    continue
                raise self.damaged(f"{path!r} comes after {last!r}, out of path order")
            last = path
            if not is_safe(path) or not (path.isascii() or _encodable(path)):
                warn("unsafe", path, "absolute, or with an empty, '.' or '..' component, or NUL")
                continue
            while prefixes and not path.startswith(prefixes[-1]):
                prefixes.pop()
            # (``prefixes and``: an any() over the usually empty list costs more than the rest of this)
            if prefixes and any(path[len(p)] == "/" for p in prefixes):
                warn("conflicts", path, "an earlier file has the name of one of its folders")
                continue
            prefixes.append(path)
            dir_path, _, name = path.rpartition("/")
            if dir_path != open_path:
                # Close what this path leaves, open what it enters. Manifest order makes every
                # directory one contiguous stretch, so a directory closed here never comes back.
                parts = dir_path.split("/") if dir_path else []
                keep = 0
                while keep < len(open_names) and keep < len(parts) and open_names[keep] == parts[keep]:
                    keep += 1
                del open_names[keep:], open_ids[keep + 1:]
                for component in parts[keep:]:
                    open_names.append(component)
                    dirs.append((next_dir, open_ids[-1], component, "/".join(open_names)))
                    open_ids.append(next_dir)
                    next_dir += 1
                open_path = dir_path
                parent_id = open_ids[-1]
            size = d.pop("size", None)
            if type(size) is not int:
                raise self.damaged(f"{path!r} has no size")
            sha = d.pop("sha256", None)
            if sha is not None:
                try:
                    blob = fromhex(sha)
                except (ValueError, TypeError):
                    blob = None
                if blob is None or len(blob) != 32 or blob.hex() != sha:
                    d["sha256"] = sha  # not plain lowercase sha256 hex: kept verbatim in extra
                    blob = None
                sha = blob
            obj = d.pop("object", None)
            if obj is not None:
                obj_id = interned.get(obj)
                if obj_id is None:
                    if len(interned) >= MAX_INTERNED:
                        interned.clear()
                    obj_id = interned[obj] = next_object
                    objects.append((next_object, obj))
                    next_object += 1
                obj = obj_id
            offset = d.pop("offset", 0)
            mtime_ns = d.pop("mtime_ns", None)
            files.append((seq, parent_id, name, size, mtime_ns, sha, obj, offset,
                          _dumps(d).decode("utf-8") if d else None))
            seq += 1
            total_bytes += size
            if len(files) >= BATCH:
                self.flush(files, dirs, objects)
        self.flush(files, dirs, objects)
        left_out = sum(self.left_out.values())
        if left_out > WARN_LIMIT:
            log.warning("%s version %d: %d paths are not in the mounted tree (%s)", self.record.name,
                        self.record.version, left_out, ", ".join(f"{v} {k}" for k, v in self.left_out.items() if v))
        return {"files": seq, "bytes": total_bytes, "dirs": next_dir - ROOT_ID, "skipped": skipped,
                **self.left_out}

    def flush(self, files: list[tuple], dirs: list[tuple], objects: list[tuple]) -> None:
        """Insert the rows gathered so far and forget them."""
        if dirs:
            self.conn.executemany("INSERT INTO dirs VALUES (?, ?, ?, ?)", dirs)
            dirs.clear()
        if objects:
            self.conn.executemany("INSERT INTO objects VALUES (?, ?)", objects)
            objects.clear()
        if files:
            self.conn.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", files)
            files.clear()


def _encodable(path: str) -> bool:
    """Whether ``path`` is valid UTF-8 text (a lone surrogate cannot be stored or mounted)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
