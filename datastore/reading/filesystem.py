"""The ``datastore://`` fsspec protocol: read any version as a read-only file system.

URLs::

    datastore://NAME@VERSION/path/in/version   one version (immutable)
    datastore://NAME/path/in/version           the newest live version, looked up once per call
    datastore://                               the live datastore names, as folders

Registered through the ``fsspec.specs`` entry point (``pyproject.toml``), so
``fsspec.open("datastore://imagenet@3/train/x.jpg").read()``, pandas, pyarrow, dask … work
without importing this module. The store is ``DATASTORE_STORE`` (see :func:`open_store`),
read when a call needs it, or the ``store=`` argument.

Folders are derived from the manifest's file paths (a manifest lists files only). The listing of
a version is built once per file system instance and kept in memory (a few of the most recently
used versions): a version never changes, so it never goes stale. Only the meaning of an
unversioned ``NAME`` can change (a newer version, a deletion), so that is resolved again by every
call, once per call (not once per file the call lists or reads).

Listings of an unversioned name return paths pinned to the version they listed: ``ls``,
``find``, ``glob``, ``walk``, ``du``, ``expand_path`` and ``info`` of ``datastore://NAME/...``
name ``NAME@VERSION/...``. A query that lists and then reads (pandas, pyarrow, DuckDB, dask …)
therefore reads exactly the version it listed, even if a newer one is committed meanwhile,
never a mix of two versions. (``datastore://`` itself lists the names, unversioned.)
(A ``NAME@VERSION`` deleted after an instance listed it stays listable in that instance; its
bytes stay readable until garbage collection removes them, then reads fail with
DeletedWhileReading, a FileNotFoundError that says so.)

``modified``/``created`` are the manifest's mtime of a file (timezone-aware UTC); a file without
one (S3 and HTTP sources, a local file changed just before the create) and a folder have the
version's creation time.

Reads go through the same checked, cached reads as ``datastore mount``
(:class:`~datastore.reading.blocks.CachedReader`, sharing the machine's block cache,
``DATASTORE_CACHE_DIR``): every byte returned has been checked, a range included —

* a file of at most one block (8 MiB) is read whole, with its pack neighbours, and checked
  against its sha256;
* a larger file is read in blocks, each checked against the block hash the manifest records
  (a manifest from before block hashes: the whole file is checked on its first read);
* ``--no-copy`` files are read through their pinned source (exact VersionId or ETag): a
  deleted or overwritten object is a :class:`~datastore.errors.ReferenceBroken`, never
  different bytes;
* ``start`` after ``end`` is a ``ValueError``.

Everything is read-only: every write operation raises :class:`ReadOnlyFileSystem`
(a ``PermissionError``).
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from datastore.errors import (
    DatastoreNotFound,
    DatastoreVersionNotFound,
    InvalidDatastoreUrl,
    InvalidRead,
    PathBelowFile,
    PathNotFound,
    ReadOnlyFileSystem,
)
from datastore.model.manifest import Entry
from datastore.model.naming import NAME_RULE, validate_name
from datastore.reading.blocks import CachedReader, OpenFile
from datastore.reading.cache import BlockCache
from datastore.reading.reader import Reader
from datastore.settings import Settings
from datastore.store import Store, open_store, versions
from datastore.store.versions import VersionRecord

PROTOCOL = "datastore"
_VERSION = re.compile(r"[0-9]+")  # ASCII digits only: int() would also take '３' or ' 3'
_MAGIC = re.compile(r"[*?[]")  # what fsspec's glob treats as a pattern (glob.has_magic)
VERSION_RULE = ("version must be a whole number, e.g. datastore://imagenet@3/train/x.jpg "
                "(leave out @VERSION for the newest)")


@dataclass(frozen=True)
class Target:
    """A parsed path: which datastore, which version (None = newest live), which path inside.

    Attributes:
        name: Datastore name, or "" for the root (the list of names).
        version: Version number, or None for the newest live version.
        path: Path inside the version, without leading or trailing ``/`` ("" = its root).
        prefix: ``NAME@VERSION`` or ``NAME`` as given (see :meth:`pinned` for listed paths).
    """

    name: str
    version: int | None
    path: str
    prefix: str

    def join(self, rel: str) -> str:
        """The fsspec path (protocol stripped) of ``rel`` inside this target's version."""
        return f"{self.prefix}/{rel}" if rel else self.prefix

    def url(self) -> str:
        """This target as a ``datastore://`` URL, in the form it was given."""
        return f"{PROTOCOL}://{self.join(self.path)}"

    def pinned(self, version: int) -> Target:
        """This target at ``version`` with prefix ``NAME@VERSION``: the form every listed path takes,
        so that reading what a listing of an unversioned name returned reads the version listed."""
        return replace(self, version=version, prefix=f"{self.name}@{version}")


def parse(path: str) -> Target:
    """Parse ``datastore://NAME[@VERSION]/path`` (with or without the protocol).

    Raises:
        InvalidDatastoreUrl: a version that is not a whole number, or an invalid name.
    """
    raw = DatastoreFileSystem._strip_protocol(path)
    url = f"{PROTOCOL}://{raw}"
    head, _, rest = raw.partition("/")
    if not head:
        return Target("", None, "", "")
    name, at, ver = head.partition("@")
    if at and not _VERSION.fullmatch(ver):
        raise InvalidDatastoreUrl(url, f"version {ver!r} is not a whole number", VERSION_RULE)
    try:
        validate_name(name)
    except ValueError:
        raise InvalidDatastoreUrl(url, f"{name!r} is not a datastore name", NAME_RULE) from None
    return Target(name, int(ver) if at else None, "/".join(p for p in rest.split("/") if p), head)


class Listing:
    """The files and derived folders of one version, in memory, or of one part of its manifest
    (``part``: what reading one file needs, see :meth:`Reader.part_of`).

    Attributes:
        record: The version.
        files: Path → manifest entry.
        dirs: Folder path ("" = root) → {child name: True for a folder, False for a file}.
    """

    def __init__(self, store: Store, record: VersionRecord, cache: BlockCache, timeout: float,
                 part: Iterable[Entry] | None = None, reader: Reader | None = None) -> None:
        self.record = record
        self.reader = reader or Reader(store, record)
        self.files: dict[str, Entry] = {}
        self.order: list[Entry] = []  # manifest order: a small file's pack neighbours come with it
        self.seq: dict[str, int] = {}
        self.dirs: dict[str, dict[str, bool]] = {"": {}}
        self.reads = CachedReader(self.reader, cache, following=self.following, timeout=timeout)
        for e in self.reader.entries() if part is None else part:
            self.files[e.path] = e
            self.seq[e.path] = len(self.order)
            self.order.append(e)
            parts = e.path.split("/")
            parent = ""
            for i in range(len(parts) - 1):
                d = "/".join(parts[: i + 1])
                if d not in self.dirs:
                    self.dirs[d] = {}
                    self.dirs[parent][parts[i]] = True
                parent = d
            self.dirs[parent].setdefault(parts[-1], False)

    def following(self, seq: int, count: int) -> list[Entry]:
        """The entries from position ``seq`` on, in manifest order (see ``ManifestIndex.following``)."""
        return self.order[seq:seq + count]

    def open(self, e: Entry) -> OpenFile:
        """Read state of one file (read-ahead follows each open file on its own)."""
        return OpenFile(e, self.seq.get(e.path, -1))


class DatastoreFileSystem(AbstractFileSystem):
    """Read-only fsspec file system over the versions of a store.

    Args:
        store: A :class:`~datastore.store.Store` or a store URL; default ``DATASTORE_STORE``
            (read on each call, so a changed environment is honoured).
        cached_versions: How many version listings to keep in memory (least recently used go).
    """

    protocol = PROTOCOL
    root_marker = ""

    def __init__(self, store: Store | str | None = None, cached_versions: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._explicit = open_store(store) if isinstance(store, str) else store
        self._cached_versions = max(1, cached_versions)
        self._stores: dict[tuple[str, str | None], Store] = {}
        self._listings: OrderedDict[tuple[str, str, int], Listing] = OrderedDict()
        # Parts of manifests read to find one file each (see _file), and a Reader per
        # version for them (it keeps the version's table of contents).
        self._parts: OrderedDict[tuple[str, str, int, int], Listing] = OrderedDict()
        self._part_readers: OrderedDict[tuple[str, str, int], Reader] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]  # type: ignore[return-value]
        path = str(path)
        for marker in (f"{PROTOCOL}://", f"{PROTOCOL}::"):
            path = path.removeprefix(marker)
        return path.strip("/")

    # --- store and versions ----------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The store: the one given, else the one ``DATASTORE_STORE`` names right now."""
        if self._explicit is not None:
            return self._explicit
        # fsspec caches instances, so a process that changes DATASTORE_STORE (tests, notebooks)
        # must not keep reading the store the instance was first created for.
        key = (Settings.from_env().store, os.environ.get("AWS_ENDPOINT_URL"))
        with self._lock:
            if key not in self._stores:
                self._stores[key] = open_store(key[0])
            return self._stores[key]

    def _record(self, t: Target) -> VersionRecord:
        try:
            rec = versions.resolve(self.store, t.name, t.version)
        except DatastoreNotFound as exc:
            raise DatastoreVersionNotFound(exc.name, exc.version) from None
        if rec.deleted_at:
            raise DatastoreVersionNotFound(t.name, t.version)
        return rec

    def listing(self, t: Target, rec: VersionRecord | None = None) -> Listing:
        """The (cached) listing of the version ``t`` names (``rec``: that version, if resolved already)."""
        store = self.store
        if t.version is not None and rec is None:
            cached = self._listing_hit((store.url, t.name, t.version))
            if cached is not None:
                return cached  # a version is immutable: no need to read its record again
        rec = rec or self._record(t)
        key = (store.url, rec.name, rec.version)
        cached = self._listing_hit(key)
        if cached is not None:
            return cached
        built = self._new_listing(store, rec)
        with self._lock:
            self._listings[key] = built
            while len(self._listings) > self._cached_versions:
                _, gone = self._listings.popitem(last=False)
                gone.reads.close()
        return built

    @staticmethod
    def _new_listing(store: Store, rec: VersionRecord, part: list[Entry] | None = None,
                     reader: Reader | None = None) -> Listing:
        settings = Settings.from_env()
        cache = BlockCache(Path(settings.cache_dir) / "blocks", settings.cache_bytes)
        return Listing(store, rec, cache, settings.read_timeout, part=part, reader=reader)

    def _file(self, t: Target) -> tuple[VersionRecord | None, tuple[Listing, Entry] | None]:
        """The file ``t`` names, found without listing its whole version when that is not in memory.

        A million-file version's listing takes seconds and hundreds of MiB; one file is in one
        part of the manifest (its table of contents says which), so that part is read instead.
        Returns the version's record if this resolved it (None if its listing is in memory),
        and the part's listing and the entry, or None when the part does not have the file
        (a folder, a missing path: the caller asks the full listing, which tells them apart)
        or the version has no table of contents.
        """
        store = self.store
        if not t.path or (t.version is not None and self._listing_hit((store.url, t.name, t.version))):
            return None, None
        # A version this instance has read from is kept, like a listed one (immutable; a
        # deletion meanwhile shows as DeletedWhileReading when its bytes are gone).
        reader = self._part_readers.get((store.url, t.name, t.version)) if t.version is not None else None
        rec = reader.record if reader is not None else self._record(t)
        key = (store.url, rec.name, rec.version)
        if not rec.manifest_toc or self._listing_hit(key) is not None:
            return rec, None
        with self._lock:
            for (url, name, version, _), lst in self._parts.items():
                if (url, name, version) == key and t.path in lst.files:
                    return rec, (lst, lst.files[t.path])
            reader = self._part_readers.get(key)
            if reader is None:
                reader = self._part_readers[key] = Reader(store, rec)
                while len(self._part_readers) > self._cached_versions:
                    self._part_readers.popitem(last=False)
        found = reader.part_of(t.path)
        if found is None:
            return rec, None
        part, ents = found
        lst = self._new_listing(store, rec, ents, reader)
        with self._lock:
            self._parts[(*key, part.offset)] = lst
            while len(self._parts) > 4 * self._cached_versions:
                _, gone = self._parts.popitem(last=False)
                gone.reads.close()
        e = lst.files.get(t.path)
        return rec, (lst, e) if e is not None else None

    def _listing_hit(self, key: tuple[str, str, int]) -> Listing | None:
        with self._lock:
            hit = self._listings.get(key)
            if hit is not None:
                self._listings.move_to_end(key)
            return hit

    def _locate(self, path: str, rec: VersionRecord | None = None) -> tuple[Target, Target, Listing]:
        """``path`` as given, pinned to the version it names now, and that version's listing.

        The one place a ``NAME`` without ``@VERSION`` is resolved within a call (``rec``: it
        was, by :meth:`_file`).
        """
        t = parse(path)
        lst = self.listing(t, rec)
        return t, t.pinned(lst.record.version), lst

    @staticmethod
    def _missing(t: Target, lst: Listing) -> PathNotFound | PathBelowFile:
        """The error for a path the version does not have: below one of its files, or absent."""
        parts = t.path.split("/")
        for i in range(1, len(parts)):
            above = "/".join(parts[:i])
            if above in lst.files:
                return PathBelowFile(t.url(), f"{PROTOCOL}://{t.pinned(lst.record.version).join(above)}")
        return PathNotFound(t.url(), lst.record.name, lst.record.version)

    def _entry(self, path: str) -> tuple[Target, Listing, Entry]:
        """The pinned target, listing and manifest entry of the file at ``path``."""
        given = parse(path)
        if not given.name:
            raise IsADirectoryError(f"{PROTOCOL}:// is the list of datastores, not a file")
        rec, found = self._file(given)
        if found is not None and rec is not None:
            return given.pinned(rec.version), *found
        t, pinned, lst = self._locate(path, rec)
        e = lst.files.get(t.path)
        if e is None:
            if t.path in lst.dirs:
                raise IsADirectoryError(f"{t.url()} is a folder, not a file")
            raise self._missing(t, lst)
        return pinned, lst, e

    def _pin(self, path: Any) -> Any:
        """``path`` (or each of a list) with an unversioned ``NAME`` replaced by ``NAME@VERSION``.

        Calls that list and then read (glob, walk, expand_path, cat …) pin first, so everything
        they return and read is that one version, and the name is resolved once per call. A
        name with a glob pattern, or one that does not resolve, is left as given: the call then
        matches or reports it as it would have. A trailing ``/`` (meaningful to glob) is kept.
        """
        if isinstance(path, (list, tuple)):
            return [self._pin(p) for p in path]
        raw = str(path)
        for marker in (f"{PROTOCOL}://", f"{PROTOCOL}::"):
            raw = raw.removeprefix(marker)
        raw = raw.lstrip("/")
        head, sep, rest = raw.partition("/")
        if not head or "@" in head or _MAGIC.search(head):
            return path
        try:
            version = self._record(parse(raw)).version  # the record only: no listing to read one file
        except FileNotFoundError:
            return path
        return f"{head}@{version}{sep}{rest}"

    # --- metadata ------------------------------------------------------------------------------

    @staticmethod
    def _file_info(name: str, e: Entry, rec: VersionRecord) -> dict:
        info = {"name": name, "size": e.size, "type": "file", "sha256": e.sha256,
                "datastore": rec.name, "version": rec.version}
        if e.mtime_ns is not None:
            info["mtime"] = e.mtime_ns / 1e9
        return info

    @staticmethod
    def _dir_info(name: str) -> dict:
        return {"name": name, "size": 0, "type": "directory"}

    def _names(self) -> list[str]:
        return sorted(n for n, s in versions.scan_versions(self.store).items() if s["versions"] - s["deleted"])

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list:
        """Children of a folder (or ``[file]`` for a file), sorted by name, as pinned paths."""
        if not parse(path).name:
            out = [self._dir_info(n) for n in self._names()]
        else:
            given, t, lst = self._locate(path)
            children = lst.dirs.get(t.path)
            if children is not None:
                base = f"{t.path}/" if t.path else ""
                out = [self._dir_info(t.join(base + c)) if is_dir
                       else self._file_info(t.join(base + c), lst.files[base + c], lst.record)
                       for c, is_dir in sorted(children.items())]
            elif t.path in lst.files:
                out = [self._file_info(t.join(t.path), lst.files[t.path], lst.record)]
            else:
                raise self._missing(given, lst)
        return out if detail else [i["name"] for i in out]

    def info(self, path: str, **kwargs: Any) -> dict:
        """``name`` (pinned), ``size``, ``type`` (file/directory); files add ``sha256``, ``datastore``,
        ``version``.

        Raises:
            PathNotFound: the version has nothing at that path (a ``FileNotFoundError``).
            PathBelowFile: the path goes on below a file (a ``NotADirectoryError``).
        """
        asked = parse(path)
        if not asked.name:
            return self._dir_info("")
        rec, found = self._file(asked)
        if found is not None and rec is not None:
            return self._file_info(asked.pinned(rec.version).join(asked.path), found[1], rec)
        given, t, lst = self._locate(path, rec)
        e = lst.files.get(t.path)
        if e is not None:
            return self._file_info(t.join(t.path), e, lst.record)
        if t.path in lst.dirs:
            info = self._dir_info(t.join(t.path))
            if not t.path:
                info.update(datastore=lst.record.name, version=lst.record.version, files=lst.record.files,
                            bytes=lst.record.bytes, digest=lst.record.digest)
            return info
        raise self._missing(given, lst)

    def exists(self, path: str, **kwargs: Any) -> bool:
        """Whether the path exists. Unlike fsspec's default, a malformed URL raises instead of False."""
        try:
            self.info(path)
            return True
        except (FileNotFoundError, NotADirectoryError):
            return False

    def _time(self, path: str) -> datetime:
        """The one time a manifest knows of ``path`` (see :meth:`modified`)."""
        if not parse(path).name:
            raise IsADirectoryError(f"{PROTOCOL}:// is the list of datastores: it has no time")
        given, t, lst = self._locate(path)
        e = lst.files.get(t.path)
        if e is None and t.path not in lst.dirs:
            raise self._missing(given, lst)
        if e is not None and e.mtime_ns is not None:
            # integer arithmetic: a float of nanoseconds since 1970 would lose microseconds
            return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=e.mtime_ns // 1000)
        # Python 3.10's fromisoformat does not take the "Z" that versions.now_iso writes
        return datetime.fromisoformat(lst.record.created_at.replace("Z", "+00:00"))

    def modified(self, path: str) -> datetime:
        """When the file was last modified (its source mtime in the manifest), timezone-aware UTC.

        A file without a recorded mtime (S3 and HTTP sources, a local file changed just before the
        create) and a folder give the version's creation time. DuckDB asks for this.
        """
        return self._time(path)

    def created(self, path: str) -> datetime:
        """The same time as :meth:`modified`: a manifest records one time per file."""
        return self._time(path)

    def find(self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False,
             **kwargs: Any) -> list | dict:
        """Every file below ``path`` (pinned paths), from one listing (the default would list per folder)."""
        if not parse(path).name or maxdepth is not None:
            return super().find(self._pin(path), maxdepth=maxdepth, withdirs=withdirs, detail=detail, **kwargs)
        _, t, lst = self._locate(path)
        out: dict[str, dict] = {}
        if t.path in lst.files:
            out[t.join(t.path)] = self._file_info(t.join(t.path), lst.files[t.path], lst.record)
        elif t.path in lst.dirs:
            base = f"{t.path}/" if t.path else ""
            for p, e in lst.files.items():
                if p.startswith(base):
                    out[t.join(p)] = self._file_info(t.join(p), e, lst.record)
            if withdirs:
                for d in lst.dirs:
                    if d.startswith(base) or d == t.path:
                        out[t.join(d)] = self._dir_info(t.join(d))
        names = sorted(out)
        return {n: out[n] for n in names} if detail else names

    # Pinned once up front: fsspec's versions call ls/info/find per folder or per file, which would
    # resolve an unversioned name each time and could mix versions within one call.

    def walk(self, path: str, maxdepth: int | None = None, topdown: bool = True, on_error: str = "omit",
             **kwargs: Any) -> Any:
        """``os.walk`` over a version; the folders it yields are pinned paths."""
        return super().walk(self._pin(path), maxdepth=maxdepth, topdown=topdown, on_error=on_error, **kwargs)

    def glob(self, path: str, maxdepth: int | None = None, **kwargs: Any) -> list | dict:
        """Paths matching a glob pattern, pinned to the version the name resolved to."""
        return super().glob(self._pin(path), maxdepth=maxdepth, **kwargs)

    def expand_path(self, path: Any, recursive: bool = False, maxdepth: int | None = None,
                    **kwargs: Any) -> list[str]:
        """Globs and folders turned into pinned paths (what ``cat``, ``get`` … read)."""
        return super().expand_path(self._pin(path), recursive=recursive, maxdepth=maxdepth, **kwargs)

    def du(self, path: str, total: bool = True, maxdepth: int | None = None, withdirs: bool = False,
           **kwargs: Any) -> int | dict:
        """Bytes below ``path`` (one version)."""
        return super().du(self._pin(path), total=total, maxdepth=maxdepth, withdirs=withdirs, **kwargs)

    def cat(self, path: Any, recursive: bool = False, on_error: str = "raise", **kwargs: Any) -> bytes | dict:
        """Bytes of one file, or ``{pinned path: bytes}`` of several (globs, folders, lists)."""
        # Pinned here too, not only in expand_path: fsspec returns plain bytes only when the
        # expanded path equals the given one.
        return super().cat(self._pin(path), recursive=recursive, on_error=on_error, **kwargs)

    def ukey(self, path: str) -> str:
        """The content identity of a file (sha256, or the source ETag): stable across versions."""
        return self._entry(path)[2].checksum

    # --- reading --------------------------------------------------------------------------------

    def read_range(self, lst: Listing, e: Entry, start: int, end: int, opened: OpenFile | None = None) -> bytes:
        """Checked bytes ``[start, end)`` of ``e`` (clamped to the file).

        Args:
            opened: The read state of an open file (its read-ahead); a fresh one by default.

        Raises:
            ChecksumMismatch: the bytes (the file, or the block they are in) do not match.
            ReferenceBroken: a ``--no-copy`` file's pinned object is gone or changed.
            ReadTimedOut: the store did not answer within ``DATASTORE_READ_TIMEOUT``.
        """
        start = max(0, start)
        return lst.reads.read(opened or lst.open(e), start, max(0, end - start))

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """A file's bytes, or ``[start, end)`` of them (negative values count from the end).

        As in fsspec's LocalFileSystem, a range past the end is cut at the end, and ``start``
        after ``end`` (once negative values are counted from the end) is an error; ``start ==
        end`` is ``b""``.

        Raises:
            InvalidRead: ``start`` is after ``end`` (a ``ValueError``).
        """
        t, lst, e = self._entry(path)
        size = e.size
        s = 0 if start is None else (max(0, size + start) if start < 0 else start)
        n = size if end is None else (size + end if end < 0 else end)
        if start is not None and end is not None and start != end and n < s:
            # b"" here would look like an empty file or a read past the end, hiding a caller's bug
            resolved = f" (bytes {s} to {n} of {size})" if start < 0 or end < 0 else ""
            raise InvalidRead(f"{PROTOCOL}://{t.join(t.path)}", f"start={start} is after end={end}{resolved}",
                              "give start <= end; negative values count back from the end of the file")
        return self.read_range(lst, e, s, max(n, 0))

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, autocommit: bool = True,
              cache_options: dict | None = None, size: int | None = None, **kwargs: Any) -> DatastoreFile:
        """A read-only file.

        Args:
            size: Accepted because fsspec's caches and pickling pass the size they know; the
                manifest knows it too, so it is only checked.

        Raises:
            ReadOnlyFileSystem: any mode but ``rb``.
            InvalidRead: ``size`` is not the file's size.
        """
        if mode != "rb":
            raise ReadOnlyFileSystem(f"open with mode {mode!r}", f"{PROTOCOL}://{self._strip_protocol(path)}")
        t, lst, e = self._entry(path)
        if size is not None and size != e.size:
            raise InvalidRead(f"{PROTOCOL}://{t.join(t.path)}",
                              f"size={size} was given, but the file has {e.size} bytes",
                              "leave out size (the manifest knows it), or re-list the path if it changed")
        return DatastoreFile(self, t.join(t.path), lst, e, block_size=block_size, cache_options=cache_options,
                             **kwargs)

    # --- writing: refused -----------------------------------------------------------------------

    def _refuse(self, what: str, path: Any) -> None:
        raise ReadOnlyFileSystem(what, f"{PROTOCOL}://{self._strip_protocol(path)}")

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        self._refuse("create a folder at", path)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self._refuse("create a folder at", path)

    def rmdir(self, path: str) -> None:
        self._refuse("remove", path)

    def rm(self, path: str, recursive: bool = False, maxdepth: int | None = None) -> None:
        self._refuse("remove", path)

    def _rm(self, path: str) -> None:
        self._refuse("remove", path)

    def rm_file(self, path: str) -> None:
        self._refuse("remove", path)

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        self._refuse("write", path)

    def put_file(self, lpath: str, rpath: str, callback: Any = None, mode: str = "overwrite",
                 **kwargs: Any) -> None:
        self._refuse("write", rpath)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        self._refuse("write", path2)

    def mv(self, path1: str, path2: str, recursive: bool = False, maxdepth: int | None = None,
           **kwargs: Any) -> None:
        self._refuse("move", path1)

    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        self._refuse("write", path)


class DatastoreFile(AbstractBufferedFile):
    """A read-only file of a version: buffered; every fetch is a checked, cached read.

    The checks are :class:`~datastore.reading.blocks.CachedReader`'s: a small file is checked
    whole, a large one block by block, so a seek to the middle of a shard is checked too.
    """

    def __init__(self, fs: DatastoreFileSystem, path: str, listing: Listing, entry: Entry,
                 block_size: int | None = None, cache_options: dict | None = None, **kwargs: Any) -> None:
        self.listing = listing
        self.entry = entry
        self._opened = listing.open(entry)
        super().__init__(fs, path, mode="rb", block_size=block_size or "default", cache_options=cache_options,
                         size=entry.size, **kwargs)
        self._details = fs._file_info(path, entry, listing.record)

    def _fetch_range(self, start: int, end: int) -> bytes:
        fs: DatastoreFileSystem = self.fs
        return fs.read_range(self.listing, self.entry, start, end, self._opened)
