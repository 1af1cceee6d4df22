"""The index of a version's tree: the file format, and how it is built from the manifest.

A mount (:mod:`datastore.reading.index`) answers every ``getattr``, ``readdir`` and ``open`` from
this SQLite file. It is derived from the manifest alone, so it can be built by whoever has the
manifest: by a reader, once per version per machine, or by the commit of a large version, which
stores it beside the manifest (``manifests/<id>.index-<sha256>.sqlite``, its sha256 in the version record)
so that the first mount of a million files downloads it instead of spending seconds building it.

Layout (one row per node; ids are small integers so rows stay short):

* ``dirs(id, parent, name, path)``: every directory, the root (``id 0``, path ``""``) included.
  The manifest lists only files, so the builder adds every ancestor of every file.
* ``files(seq, parent, name, size, mtime_ns, sha256, object, pos, extra)``: ``seq`` (the rowid)
  is the file's position in manifest order, so a range scan of ``seq`` gives a file's
  neighbours, which is what coalescing reads of one pack needs. ``sha256`` is stored as 32
  bytes, ``object`` as an id into ``objects`` (a pack is shared by thousands of files), and
  whatever else the line holds (``source``, ``etag``, fields added later) as compact JSON in
  ``extra``, so a reader rebuilds exactly the manifest's :class:`~datastore.model.manifest.Entry`.
* Indexes, built after the bulk insert (one sort beats a million B-tree inserts):
  ``dirs(path)`` for lookups, ``dirs(parent, name)`` and the covering
  ``files(parent, name, size, mtime_ns)`` for listings in name order and for ``getattr``
  without touching the table.
* ``meta``: totals and what the index was built from, written last and checked at open
  (:func:`check`).

Building streams the manifest once, in one transaction with the journal and syncs off (the file
is private until it is renamed into place, so a crash only leaves a temporary file to delete),
inserting in batches; memory stays flat whatever the number of files. The manifest is in path
order, so a directory's files are one contiguous stretch: the builder needs only the stack of
open directories, never a set of every directory seen.

Paths that could escape the mount (:func:`~datastore.model.paths.is_safe`) and a path that
would be both a file and a directory (``a`` and ``a/b``: the first one in manifest order wins)
are left out of the tree with a warning; ``{"skipped": …}`` lines are not files of the version.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from datastore.errors import ManifestDamaged
from datastore.model.codecs import gzip_reader
from datastore.model.paths import is_safe
from datastore.store.versions import VersionRecord

try:  # orjson decodes manifest lines ~3x faster than json (it comes with Prefect)
    from orjson import dumps as dumps_json
    from orjson import loads as loads_json
except ImportError:  # pragma: no cover - the standard library does the same, slower
    def dumps_json(obj: object) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    loads_json = json.loads

log = logging.getLogger(__name__)

INDEX_FORMAT = 1
"""Bumped when the layout changes. It is part of a machine's index file name, so an old local index
is simply not found; an index stored by an older commit is of the old format, which :func:`check`
refuses, and a mount then builds the new one from the manifest."""

BATCH = 5_000
"""Rows per ``executemany`` while building: the call costs nothing next to the rows (5,000 or
50,000 build equally fast, measured), and a batch is ~2 MB of Python objects, not ~20."""

MAX_INTERNED = 65_536
"""Object keys remembered while building. Files of one pack are neighbours in the manifest, so a
small table finds nearly every repeat; when it is full it starts over (a key seen again then gets a
second id, which costs a row, not correctness) so memory never grows with the version."""

WARN_LIMIT = 10
"""Left-out paths named one by one in the log; the rest are counted in one summary line."""

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
            with gzip_reader(fh) as gz:
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


def build(fh: BinaryIO, tmp: Path, record: VersionRecord, store_url: str) -> None:
    """Write the index of the manifest ``fh`` (gzip JSON Lines) to ``tmp``, a new file nobody else reads yet.

    Args:
        fh: The manifest, read from the start (the store's object, or the file a commit just wrote).
        tmp: Where to write the index.
        record: The version (at commit its number is not known yet: 0); its ``digest`` and
            ``manifest`` go into ``meta``, which a reader checks before it uses the file.
        store_url: The store the manifest is in (recorded in ``meta``, for people).

    Raises:
        ManifestDamaged: The manifest is out of order or holds a line that is no item.
    """
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        for statement in _BUILD_PRAGMAS + _SCHEMA:
            conn.execute(statement)
        conn.execute("BEGIN")
        with _read_ahead(fh) as lines:
            totals = _Builder(conn, record).fill(lines)
        for statement in _INDEXES:
            conn.execute(statement)
        totals |= {"format": INDEX_FORMAT, "digest": record.digest, "name": record.name,
                   "version": record.version, "store": store_url, "manifest": record.manifest}
        conn.executemany("INSERT INTO meta VALUES (?, ?)", totals.items())
        conn.execute("COMMIT")
    finally:
        conn.close()


def check(conn: sqlite3.Connection, record: VersionRecord) -> dict | None:
    """The ``meta`` of the index open on ``conn`` if it is complete, of this format and built from ``record``'s manifest.

    The manifest is recognised by its key and its digest (the digest covers paths, sizes and
    checksums, the key the creation that wrote object names and offsets); None otherwise.

    Raises:
        sqlite3.DatabaseError: The file is not an index SQLite can read.
    """
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    last = conn.execute("SELECT max(seq) FROM files").fetchone()[0]  # the last leaf page: no scan
    if meta.get("format") == INDEX_FORMAT and meta.get("digest") == record.digest \
            and meta.get("manifest") == record.manifest and meta.get("files") == (-1 if last is None else last) + 1:
        return meta
    return None


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
            d = loads_json(line)
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
        loads, decode, fromhex, warn = loads_json, self.decode, bytes.fromhex, self.warn
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
                          dumps_json(d).decode("utf-8") if d else None))
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
