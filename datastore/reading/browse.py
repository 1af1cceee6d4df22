"""Looking inside versions without reading their files: ``ls``, ``du``, ``diff``, ``cat``.

Everything here works from the manifest alone, streamed: a million-file version is never held
in memory. A manifest is in path order and split into parts of ~4,096 entries whose first paths
the table of contents lists (:class:`~datastore.model.manifest.ManifestToc`), so a
:class:`Cursor` can start at any path by fetching one part: ``ls data/train`` reads the parts
that hold ``data/train/…``, and a listing of a folder jumps over each subfolder's entries to the
part after them instead of reading them. Manifests written before the table of contents existed
are streamed from their start.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from datastore.model.hashing import Hashed
from datastore.model.manifest import Entry, ManifestToc
from datastore.reading.reader import Reader

#: The smallest string greater than every path under ``p/`` is ``p0`` ('0' follows '/'), so
#: ``p + AFTER_FOLDER`` is where the entries after folder ``p`` start.
AFTER_FOLDER = chr(ord("/") + 1)

#: Largest file ``cat`` reads whole before writing it when its blocks cannot be checked alone.
WHOLE_CHECK_BYTES = 64 * 1024 * 1024


class Cursor:
    """The entries of one version in path order, from any path on.

    Keeps the last manifest part it fetched, so restarting within it (the next sibling of a
    folder ``ls`` skipped) costs no request.
    """

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self._toc: ManifestToc | None = reader.toc()
        self._firsts = [p.first for p in self._toc.parts] if self._toc else []
        self._cached: tuple[int, list[Entry]] = (-1, [])

    @property
    def seekable(self) -> bool:
        """Whether starting at a path costs one part (a table of contents exists), not a scan."""
        return bool(self._firsts)

    def _part(self, i: int) -> list[Entry]:
        if self._cached[0] != i:
            assert self._toc is not None
            self._cached = (i, self.reader.part(self._toc.parts[i]))
        return self._cached[1]

    def entries_from(self, start: str = "") -> Iterator[Entry]:
        """Entries whose path is ``>= start``, in order."""
        if not self._firsts:
            for e in self.reader.entries():
                if e.path >= start:
                    yield e
            return
        first = max(0, bisect.bisect_right(self._firsts, start) - 1)
        for i in range(first, len(self._firsts)):
            part = self._part(i)
            k = bisect.bisect_left(part, start, key=lambda e: e.path) if i == first else 0
            yield from part[k:]

    def entry(self, path: str) -> Entry | None:
        """The file at ``path``, or None."""
        for e in self.entries_from(path):
            return e if e.path == path else None
        return None

    def under(self, folder: str) -> Iterator[Entry]:
        """Every file below ``folder`` ("" is the version's root), in order."""
        base = folder + "/" if folder else ""
        for e in self.entries_from(base):
            if not e.path.startswith(base):
                return
            yield e


def clean_path(path: str | None) -> str:
    """A user's PATH inside a version as the manifest spells it: no leading ``./`` or ``/``, no trailing ``/``."""
    p = (path or "").strip()
    while p.startswith("./"):
        p = p[2:]
    p = p.strip("/")
    return "" if p == "." else p


@dataclass(frozen=True)
class Listed:
    """One row of ``ls``: a file, or a folder (whose size and checksum are not known here).

    Attributes:
        path: Relative to the version's root; a folder's ends with ``/``.
        entry: The file's manifest entry; None for a folder.
    """

    path: str
    entry: Entry | None = None

    @property
    def is_dir(self) -> bool:
        """True for a folder."""
        return self.entry is None


def ls(cursor: Cursor, path: str = "", recursive: bool = False) -> Iterator[Listed]:
    """The files and folders directly in ``path`` (every file below it with ``recursive``).

    ``path`` naming a file lists that file. Nothing is yielded for a path the version does not
    have (the caller tells a missing path from an empty listing by that).
    """
    if path:
        e = cursor.entry(path)
        if e is not None:
            yield Listed(e.path, e)
            return
    base = path + "/" if path else ""
    it = cursor.entries_from(base)
    skip: str | None = None  # a folder already listed: its entries are passed over
    while True:
        restarted = False
        for e in it:
            if not e.path.startswith(base):
                return
            if skip is not None and e.path.startswith(skip):
                continue
            rest = e.path[len(base):]
            if recursive or "/" not in rest:
                yield Listed(e.path, e)
                continue
            folder = base + rest.split("/", 1)[0]
            yield Listed(folder + "/")
            skip = folder + "/"
            if cursor.seekable:  # jump to the part after the folder instead of reading through it
                it = cursor.entries_from(folder + AFTER_FOLDER)
                restarted = True
                break
        if not restarted:
            return


@dataclass(frozen=True)
class Usage:
    """``du`` of one folder (or the whole version): its files and their bytes."""

    path: str
    files: int = 0
    bytes: int = 0


def du(cursor: Cursor, path: str = "") -> tuple[list[Usage], Usage]:
    """Files and bytes of each folder directly in ``path``, and of ``path`` in all.

    Returns ``([], Usage(path))`` for a path the version does not have; a file's usage is its own.
    """
    e = cursor.entry(path) if path else None
    if e is not None:
        return [], Usage(e.path, 1, e.size)
    base = path + "/" if path else ""
    folders: list[Usage] = []
    files = nbytes = 0
    cur: str | None = None
    cur_files = cur_bytes = 0
    for e in cursor.under(path):
        files += 1
        nbytes += e.size
        rest = e.path[len(base):]
        folder = base + rest.split("/", 1)[0] + "/" if "/" in rest else None
        if folder != cur:
            if cur is not None:
                folders.append(Usage(cur, cur_files, cur_bytes))
            cur, cur_files, cur_bytes = folder, 0, 0
        if folder is not None:
            cur_files += 1
            cur_bytes += e.size
    if cur is not None:
        folders.append(Usage(cur, cur_files, cur_bytes))
    return folders, Usage(base or "", files, nbytes)


class ChangeKind(enum.Enum):
    """How one path differs between two versions."""

    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True)
class Change:
    """One path that differs: ``old`` is its entry in the first version, ``new`` in the second."""

    kind: ChangeKind
    path: str
    old: Entry | None
    new: Entry | None

    def to_json(self) -> dict:
        """``{"change", "path", "old_size", "new_size", "old_checksum", "new_checksum"}`` (None where absent)."""
        return {"change": self.kind.value, "path": self.path,
                "old_size": self.old.size if self.old else None, "new_size": self.new.size if self.new else None,
                "old_checksum": self.old.checksum if self.old else None,
                "new_checksum": self.new.checksum if self.new else None}


def diff(old: Reader, new: Reader) -> Iterator[Change]:
    """The paths added, removed and changed (content: size or checksum) from ``old`` to ``new``, in path order.

    One merge of the two manifest streams; two versions with the same digest are the same
    content and yield nothing without reading either manifest.
    """
    if old.record.digest == new.record.digest:
        return
    a, b = old.entries(), new.entries()
    x, y = next(a, None), next(b, None)
    while x is not None or y is not None:
        if y is None or (x is not None and x.path < y.path):
            yield Change(ChangeKind.REMOVED, x.path, x, None)  # type: ignore[union-attr]
            x = next(a, None)
        elif x is None or y.path < x.path:
            yield Change(ChangeKind.ADDED, y.path, None, y)
            y = next(b, None)
        else:
            if x.size != y.size or x.checksum != y.checksum:
                yield Change(ChangeKind.CHANGED, x.path, x, y)
            x, y = next(a, None), next(b, None)


def checked_pieces(reader: Reader, entry: Entry) -> Iterator[bytes]:
    """The bytes of one file in pieces, each checked before it is handed out where the manifest allows.

    A file whose blocks have hashes is read block by block, each checked; another file of up to
    :data:`WHOLE_CHECK_BYTES` is read whole and checked first; a larger one without block hashes
    (stored before they existed) is streamed and checked at its end, so a mismatch is raised
    after its pieces were handed out.

    Raises:
        ChecksumMismatch, ReferenceBroken, ObjectNotFound: as :meth:`Reader.read`.
    """
    if entry.size == 0:
        reader.check_bytes(entry, b"")
        return
    if entry.blockwise:
        for i in range(entry.block_count):
            yield reader.read_block(entry, i)
        return
    if entry.size <= WHOLE_CHECK_BYTES:
        yield reader.read(entry)
        return
    h, size = hashlib.sha256(), 0
    for piece in reader.stream(entry):
        h.update(piece)
        size += len(piece)
        yield piece
    reader.check(entry, Hashed(size, h.hexdigest()))
