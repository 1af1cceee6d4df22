"""What is inside a version, and what changed between two: ``ls``, ``du``, ``cat``, ``diff`` as Python calls.

All of it from the manifests (see :mod:`datastore.reading.browse`); no file is downloaded
except the one ``cat`` prints.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from datastore.errors import NotAFile, PathNotInVersion
from datastore.model.manifest import Entry
from datastore.reading import browse
from datastore.reading.browse import Change, Cursor, Listed, Usage
from datastore.reading.reader import Reader
from datastore.store import Store, open_store, versions
from datastore.store.versions import VersionRecord


@dataclass(frozen=True)
class Opened:
    """One live version, ready to be looked into."""

    record: VersionRecord
    reader: Reader
    cursor: Cursor


def open_version(name: str, version: int | None = None, *, store: Store | None = None) -> Opened:
    """``name`` at ``version`` (default: newest live).

    Raises:
        DatastoreNotFound: no such name or version.
        VersionDeleted: the version was deleted.
    """
    store = store or open_store()
    record = versions.resolve_live(store, name, version)
    reader = Reader(store, record)
    return Opened(record, reader, Cursor(reader))


def ls(name: str, version: int | None = None, path: str | None = None, *, recursive: bool = False,
       store: Store | None = None) -> tuple[VersionRecord, Iterator[Listed]]:
    """The record and the rows of ``ls`` (streamed: a million-file folder is never held in memory).

    Raises:
        PathNotInVersion: ``path`` is neither a file nor a folder of the version.
    """
    opened = open_version(name, version, store=store)
    p = browse.clean_path(path)
    rest = browse.ls(opened.cursor, p, recursive)
    first = next(rest, None)  # asked now: a missing path is an error before anything is printed
    if first is None and p:
        raise PathNotInVersion(opened.record.name, opened.record.version, p)

    def rows() -> Iterator[Listed]:
        if first is not None:
            yield first
            yield from rest

    return opened.record, rows()


def du(name: str, version: int | None = None, path: str | None = None, *, summarize: bool = False,
       store: Store | None = None) -> tuple[VersionRecord, list[Usage], Usage]:
    """Files and bytes of each folder in ``path`` and of ``path`` in all (``summarize``: the total only).

    Raises:
        PathNotInVersion: ``path`` is neither a file nor a folder of the version.
    """
    opened = open_version(name, version, store=store)
    p = browse.clean_path(path)
    r = opened.record
    if not p:  # the whole version: its record has the totals; only the folders need the manifest
        folders = [] if summarize else browse.du(opened.cursor, "")[0]
        return r, folders, Usage("", r.files, r.bytes)
    folders, total = browse.du(opened.cursor, p)
    if summarize:
        folders = []
    if total.files == 0:
        raise PathNotInVersion(r.name, r.version, p)
    return r, folders, total


def cat(name: str, version: int | None = None, path: str = "", *,
        store: Store | None = None) -> tuple[Entry, Iterator[bytes]]:
    """The entry of one file and its bytes, checked (see :func:`datastore.reading.browse.checked_pieces`).

    Raises:
        PathNotInVersion: no such file or folder.
        NotAFile: ``path`` is a folder.
    """
    opened = open_version(name, version, store=store)
    r = opened.record
    p = browse.clean_path(path)
    entry = opened.cursor.entry(p) if p else None
    if entry is None:
        if not p or next(opened.cursor.under(p), None) is not None:
            raise NotAFile(r.name, r.version, p or "/")
        raise PathNotInVersion(r.name, r.version, p)
    return entry, browse.checked_pieces(opened.reader, entry)


def diff(old: tuple[str, int | None], new: tuple[str, int | None], *,
         store: Store | None = None) -> tuple[VersionRecord, VersionRecord, Iterator[Change]]:
    """The two records and the changes from the first to the second (streamed, path order)."""
    store = store or open_store()
    a = open_version(*old, store=store)
    b = open_version(*new, store=store)
    return a.record, b.record, browse.diff(a.reader, b.reader)
