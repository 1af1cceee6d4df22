"""Safe extraction of an untrusted archive (zip, tar, tar.gz, tar.bz2, tar.xz) into an empty folder.

The archive came from a URL nobody here controls, so every member is checked *before* anything
of it is written, and the whole archive is refused at the first member that breaks a rule: the
function raises and the caller deletes the destination, so nothing of the archive is stored.
After extraction the folder is ingested by the normal local-folder pipeline
(:mod:`datastore.local_source`), so its symlink policy applies to what is extracted here.

Rules (a violation raises :class:`~datastore.errors.UnsafeArchive` naming the member as written in
the archive):

* **Names** are relative, ``/``-separated UTF-8: absolute paths, ``..`` segments, Windows drive
  letters, backslashes, NUL bytes and empty names are refused; ``./a`` and ``a//b`` become
  ``a/b``. The same name twice is refused, and so are two names that differ only in Unicode
  normalization (NFC vs NFD ``é``), which some file systems would merge. A folder may repeat.
* **Folders** are created with mode 0o755 and **files** with 0o644, or 0o755 when the archive
  gives them any execute bit; setuid, setgid and sticky bits are always dropped. Files are
  opened with ``O_CREAT|O_EXCL|O_NOFOLLOW`` and a member below an earlier link or file of the
  archive is refused. A file and a folder cannot share a path, in either order (``a`` then
  ``a/b``, or ``a/b`` then ``a``): the later member is refused, naming the path both claim.
* **Symlinks** (tar symlinks, zip entries whose mode says ``S_IFLNK``) must resolve inside the
  archive root, following the other links of the archive exactly as the kernel will; an absolute
  target, one that escapes the root, a loop, or one that passes below a file is refused. Links
  are created last (so nothing is ever written through one) as relative links straight to their
  final target. The local walk then **follows a link to a file** (the datastore holds the
  file's bytes at the link's path), **skips a link to a folder** (recorded in the manifest as
  skipped) and skips a broken link.
* **Hard links** (tar) must name a regular file that an earlier member extracted; they are
  written as a copy of its bytes (counted toward the caps), never with ``os.link``.
* **Device files, FIFOs and sockets** are refused, as are member types this module does not know.
* **Caps**: bytes are counted as they are written, never taken from headers. More than
  ``max_bytes`` in total, or more than ``max_ratio`` times the archive's size once past
  :data:`RATIO_GRACE`, is refused before the chunk that would cross the line is written; so is
  the entry beyond ``max_members`` (files, folders and links: a million empty files is an inode
  and memory bomb that no byte cap catches).
* **Zip layout**: each entry's local header and data must end before the next entry begins;
  entries that share bytes (a non-recursive zip bomb) are refused.

Corrupt or truncated input raises :class:`~datastore.errors.ArchiveInvalid` instead. Memory does
not grow with member size: data moves in :data:`CHUNK`-sized pieces, and tar archives are read as
a stream, never seeked.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import posixpath
import re
import stat
import struct
import tarfile
import unicodedata
import zipfile
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from datastore.errors import ArchiveInvalid, DatastoreError, UnsafeArchive

FORMATS = ("zip", "tar", "tar.gz", "tar.bz2", "tar.xz")

CHUNK = 1024 * 1024
RATIO_GRACE = 1024 * 1024  # tiny archives (a few KB of zeros) may expand far beyond the ratio
MAX_LINK_HOPS = 40  # Linux gives up with ELOOP after this many links in one lookup
MAX_LINK_TARGET = 4095  # PATH_MAX minus the terminating NUL

# --- the rules, as shown to users (UnsafeArchive.rule) -----------------------------------------

EMPTY_NAME = "the name is empty"
NUL_NAME = "the name contains a NUL byte"
NOT_UTF8 = "the name is not valid UTF-8"
BACKSLASH = "the name contains a backslash"
ABSOLUTE = "the name is an absolute path"
DRIVE = "the name starts with a Windows drive letter"
DOTDOT = "the name contains a '..' segment"
DUPLICATE = "duplicate name"
FS_COLLISION = "collides with another member on this file system"
COMPONENT_LINK = "a path component is a link"
COMPONENT_FILE = "a path component is a file"
FILE_AND_FOLDER = "a file and a folder cannot share the path {path!r}"  # formatted with the path both claim
LINK_OUTSIDE = "link points outside the archive"
LINK_LOOP = "link is part of a loop (or of a chain of more than 40 links)"
LINK_THROUGH_FILE = "link goes through a file"
LINK_EMPTY = "link target is empty"
LINK_TOO_LONG = "link target is too long"
LINK_NUL = "link target contains a NUL byte"
LINK_NOT_UTF8 = "link target is not valid UTF-8"
HARDLINK_OUTSIDE = "hard link points outside the archive"
SPECIAL = "device files, FIFOs and sockets are not allowed"
OVERLAP = "overlaps another entry's data (a zip bomb)"

TAR_CORRUPT = "truncated or corrupt archive"
ZIP_CORRUPT = "truncated or corrupt zip"

_DRIVE = re.compile(r"[A-Za-z]:")
_ZIP_LOCAL = b"PK\x03\x04"
_ZIP_EMPTY = b"PK\x05\x06"
_COMPRESSED = ((b"\x1f\x8b", "tar.gz"), (b"BZh", "tar.bz2"), (b"\xfd7zXZ\x00", "tar.xz"))
_SUFFIXES = (
    (".tar.gz", "tar.gz"), (".tgz", "tar.gz"),
    (".tar.bz2", "tar.bz2"), (".tbz2", "tar.bz2"), (".tbz", "tar.bz2"),
    (".tar.xz", "tar.xz"), (".txz", "tar.xz"),
    (".tar", "tar"), (".zip", "zip"),
)
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
_ZIP_UTF8_FLAG = 0x800
_ZIP_ENCRYPTED_FLAG = 0x1
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# What damaged compressed or archive data raises from the stdlib readers. OSError covers
# gzip.BadGzipFile and bz2's "Invalid data stream"; ValueError and struct.error come from
# headers with nonsense numbers.
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError,
            struct.error)


@dataclass
class ExtractSummary:
    """What :func:`extract` wrote.

    Attributes:
        files: Regular files written (hard links included: they are copies).
        bytes: Bytes written to those files.
        links: Symlinks created.
    """

    files: int = 0
    bytes: int = 0
    links: int = 0


# --- format detection ------------------------------------------------------------------------


def detect_format(path: Path, source: str) -> str:
    """The archive format of a downloaded file, from its bytes (never from its name).

    Args:
        path: The downloaded file.
        source: How to name the download in errors (the redacted URL).

    Returns:
        One of :data:`FORMATS`.

    Raises:
        ArchiveInvalid: the file is empty, is not an archive (an HTML error page, say), is a
            compressed file without a tar inside, or is too damaged to look into.
    """
    with open(path, "rb") as f:
        head = f.read(1024)
    if not head:
        raise ArchiveInvalid(source, "the download is empty")
    if head.startswith((_ZIP_LOCAL, _ZIP_EMPTY)):
        return "zip"
    # Plain tar before the compression magics: a tar whose first member is named "BZh…" is
    # still a tar, while compressed bytes carry "ustar" at 257 only by a 2**-40 accident.
    if head[257:262] == b"ustar":
        return "tar"
    for magic, fmt in _COMPRESSED:
        if head.startswith(magic):
            _require_tar_inside(path, fmt, source)
            return fmt
    raise ArchiveInvalid(source, f"the server sent {_describe(head, os.path.getsize(path))}, not an archive")


def _require_tar_inside(path: Path, fmt: str, source: str) -> None:
    with _reading(source, TAR_CORRUPT), _open_tar_stream(path, fmt) as f:
        block = f.read(512)
    if block[257:262] != b"ustar":
        raise ArchiveInvalid(source, "a compressed file that is not a tar archive")


def _describe(head: bytes, size: int) -> str:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<?xml"):
        return "an XML document"
    if text.startswith(b"<") or b"<html" in text:
        return "an HTML page"
    if text.startswith((b"{", b"[")):
        return "a JSON document"
    return f"{size} bytes of unknown data"


def check_suffix(url_path: str, fmt: str, source: str) -> None:
    """Refuse a URL whose suffix names another format than the bytes have.

    A path without a known suffix (``/download?id=3``, ``/data.gz``) is accepted: the bytes decide.

    Args:
        url_path: The path part of the URL.
        fmt: The format :func:`detect_format` found.
        source: How to name the download in errors.

    Raises:
        ArchiveInvalid: the suffix and the bytes disagree.
    """
    lowered = url_path.lower()
    for suffix, expected in _SUFFIXES:
        if lowered.endswith(suffix):
            if expected != fmt:
                written = url_path[-len(suffix):]
                raise ArchiveInvalid(source, f"the URL says {written!r} but the bytes are a {fmt} archive",
                                     hint="fix the URL or the file on the server")
            return


# --- extraction ------------------------------------------------------------------------------


def extract(archive: Path, dest: Path, fmt: str, source: str, max_bytes: int, max_ratio: int,
            max_members: int = 10_000_000) -> ExtractSummary:
    """Extract an untrusted archive into an empty folder, enforcing the module's rules.

    On any error the caller must delete ``dest``; nothing is ever written outside it.

    Args:
        archive: The downloaded archive.
        dest: An empty (or not yet existing) folder to extract into.
        fmt: One of :data:`FORMATS`, as returned by :func:`detect_format`.
        source: How to name the download in errors.
        max_bytes: Refuse the archive once it expands beyond this many bytes.
        max_ratio: Refuse the archive once it expands beyond this multiple of its own size.
        max_members: Refuse the archive at its entry number ``max_members + 1``.

    Returns:
        Counts of what was written; ``files == 0`` for an archive without files (not an error here).

    Raises:
        UnsafeArchive: a member breaks a rule.
        ArchiveInvalid: the archive is truncated or corrupt.
        ValueError: ``fmt`` is unknown or ``dest`` is not empty (programming errors).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown archive format {fmt!r}")
    budget = _Budget(max_bytes, max_ratio, os.path.getsize(archive), max_members)
    tree = _Tree(_empty_dir(dest), budget)
    if fmt == "zip":
        _extract_zip(archive, tree, source)
    else:
        _extract_tar(archive, fmt, tree, source)
    tree.create_links()
    return ExtractSummary(files=tree.files, bytes=budget.used, links=tree.links_made)


def _empty_dir(dest: Path) -> str:
    os.makedirs(dest, exist_ok=True)
    if os.listdir(dest):
        raise ValueError(f"extraction folder {str(dest)!r} is not empty")
    return os.path.realpath(dest)


class _Budget:
    """Counts written bytes and refuses the chunk that would cross a cap."""

    def __init__(self, max_bytes: int, max_ratio: int, archive_size: int, max_members: int) -> None:
        self.max_bytes = max_bytes
        self.max_ratio = max_ratio
        self.archive_size = max(archive_size, 1)
        self.max_members = max_members
        self.used = 0
        self.members = 0

    def count(self, member: str) -> None:
        """One more entry (file, folder or link) in the tree."""
        self.members += 1
        if self.members > self.max_members:
            raise UnsafeArchive(
                member, f"the archive has more than DATASTORE_MAX_ARCHIVE_MEMBERS ({self.max_members}) entries")

    def take(self, member: str, n: int) -> None:
        total = self.used + n
        if total > self.max_bytes:
            raise UnsafeArchive(
                member, f"the archive expands beyond DATASTORE_MAX_EXTRACTED_BYTES ({self.max_bytes} bytes)")
        if total > RATIO_GRACE and total > self.max_ratio * self.archive_size:
            raise UnsafeArchive(
                member, f"the archive expands more than DATASTORE_MAX_EXTRACT_RATIO ({self.max_ratio}x) its size")
        self.used = total


@contextmanager
def _reading(source: str, prefix: str) -> Iterator[None]:
    """Translate what a damaged archive makes the stdlib raise into :class:`ArchiveInvalid`.

    Only wrap reads of the archive: an OSError while *writing* (disk full) is not corruption.
    """
    try:
        yield
    except DatastoreError:
        raise
    except _CORRUPT as exc:
        raise ArchiveInvalid(source, f"{prefix}: {exc}") from exc


def _chunks(f: BinaryIO, source: str, prefix: str) -> Iterator[bytes]:
    while True:
        with _reading(source, prefix):
            chunk = f.read(CHUNK)
        if not chunk:
            return
        yield chunk


def _shown(name: str) -> str:
    """A name fit for an error message (undecodable bytes of a tar name become U+FFFD)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")  # tar names that were not UTF-8 carry lone surrogates
    except UnicodeEncodeError:
        return False
    return True


def _normalise(name: str) -> str:
    """The relative ``/``-separated path of a member name ('' for the root), or UnsafeArchive."""
    shown = _shown(name)
    if not name:
        raise UnsafeArchive(shown, EMPTY_NAME)
    if "\x00" in name:
        raise UnsafeArchive(shown, NUL_NAME)
    if not _is_utf8(name):
        raise UnsafeArchive(shown, NOT_UTF8)
    if "\\" in name:
        raise UnsafeArchive(shown, BACKSLASH)
    if name.startswith("/"):
        raise UnsafeArchive(shown, ABSOLUTE)
    if _DRIVE.match(name):
        raise UnsafeArchive(shown, DRIVE)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(shown, DOTDOT)
    return "/".join(parts)


def _follow(member: str, start: list[str], target: str, links: dict[str, str]) -> list[str]:
    """Resolve ``target`` from folder ``start`` the way the kernel will, within the archive root.

    ``links`` maps the archive's link paths to their targets; each one met on the way is expanded,
    so ``s -> .`` followed by ``t -> s/../x`` is seen to leave the root. Pass ``{}`` for a purely
    lexical check.
    """
    if target.startswith("/"):
        raise UnsafeArchive(member, LINK_OUTSIDE)
    stack = list(start)
    pending = deque(target.split("/"))
    hops = 0
    while pending:
        part = pending.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                raise UnsafeArchive(member, LINK_OUTSIDE)
            stack.pop()
            continue
        stack.append(part)
        inner = links.get("/".join(stack))
        if inner is None:
            continue
        hops += 1
        if hops > MAX_LINK_HOPS:
            raise UnsafeArchive(member, LINK_LOOP)
        stack.pop()
        pending.extendleft(reversed(inner.split("/")))
    return stack


def _check_link_target(member: str, target: str) -> None:
    if not target:
        raise UnsafeArchive(member, LINK_EMPTY)
    if "\x00" in target:
        raise UnsafeArchive(member, LINK_NUL)
    if not _is_utf8(target):
        raise UnsafeArchive(member, LINK_NOT_UTF8)
    if len(target.encode("utf-8")) > MAX_LINK_TARGET:
        raise UnsafeArchive(member, LINK_TOO_LONG)


class _Tree:
    """What has been extracted so far, and the only code that writes under the root.

    Every path is registered (with its kind) before it is created, which is how duplicates,
    Unicode collisions and writes below links or files are caught without trusting the disk.
    """

    def __init__(self, root: str, budget: _Budget) -> None:
        self.root = root
        self.budget = budget
        self.kinds: dict[str, str] = {}  # relative path -> "dir" | "file" | "link"
        self.folded: dict[str, str] = {}  # NFC form -> the spelling first seen
        self.links: dict[str, str] = {}  # link path -> target as written in the archive
        self.link_members: dict[str, str] = {}  # link path -> member name, for messages
        self.files = 0
        self.links_made = 0

    def _path(self, rel: str) -> str:
        return os.path.join(self.root, *rel.split("/"))

    def _named(self, name: str) -> str:
        rel = _normalise(name)
        if not rel:
            raise UnsafeArchive(_shown(name), EMPTY_NAME)
        return rel

    def _fold(self, member: str, rel: str) -> None:
        key = unicodedata.normalize("NFC", rel)
        first = self.folded.setdefault(key, rel)
        if first != rel:
            raise UnsafeArchive(member, f"collides with {first!r} after Unicode normalization")

    def _mkdir(self, member: str, rel: str) -> None:
        path = self._path(rel)
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:  # only on a file system that merges names (case-insensitive)
            raise UnsafeArchive(member, FS_COLLISION) from None
        os.chmod(path, 0o755)  # the umask must not decide what the ingest can read

    def _claim(self, member: str, rel: str, kind: str) -> bool:
        """Register ``rel`` as ``kind``, creating missing parent folders; False if the folder exists."""
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            self._fold(member, parent)
            existing = self.kinds.get(parent)
            if existing == "link":
                raise UnsafeArchive(member, COMPONENT_LINK)
            if existing == "file":  # "a" then "a/b": say which path is both, not just "a component"
                raise UnsafeArchive(member, f"{FILE_AND_FOLDER.format(path=parent)} "
                                            f"(an earlier member is the file {parent!r})")
            if existing is None:
                self.budget.count(member)
                self.kinds[parent] = "dir"
                self._mkdir(member, parent)
        self._fold(member, rel)
        existing = self.kinds.get(rel)
        if existing is None:
            self.budget.count(member)
            self.kinds[rel] = kind
            return True
        if existing == kind == "dir":
            return False
        if {existing, kind} == {"dir", "file"}:  # "a/b" then "a" (or a folder "a/" after the file "a")
            held = f"earlier members are below {rel + '/'!r}" if existing == "dir" else f"an earlier member is the file {rel!r}"
            raise UnsafeArchive(member, f"{FILE_AND_FOLDER.format(path=rel)} ({held})")
        raise UnsafeArchive(member, DUPLICATE)

    def _write(self, member: str, rel: str, mode: int, chunks: Iterable[bytes]) -> None:
        try:
            fd = os.open(self._path(rel), _NEW_FILE, 0o600)
        except FileExistsError:
            raise UnsafeArchive(member, FS_COLLISION) from None
        with os.fdopen(fd, "wb") as out:
            os.fchmod(fd, mode)
            for chunk in chunks:
                self.budget.take(member, len(chunk))  # before writing: never cross a cap on disk
                out.write(chunk)
        self.files += 1

    def add_dir(self, name: str) -> None:
        """A folder member (the root itself, ``./``, is accepted and ignored)."""
        rel = _normalise(name)
        if rel and self._claim(_shown(name), rel, "dir"):
            self._mkdir(_shown(name), rel)

    def add_file(self, name: str, executable: bool, chunks: Iterable[bytes]) -> None:
        """A regular file member, streamed from ``chunks``."""
        rel = self._named(name)
        self._claim(_shown(name), rel, "file")
        self._write(_shown(name), rel, 0o755 if executable else 0o644, chunks)

    def add_symlink(self, name: str, target: str) -> None:
        """A symlink member; checked now lexically, created by :meth:`create_links`."""
        member = _shown(name)
        rel = self._named(name)
        _check_link_target(member, target)
        _follow(member, rel.split("/")[:-1], target, {})  # refuse the obvious escapes right away
        self._claim(member, rel, "link")
        self.links[rel] = target
        self.link_members[rel] = member

    def add_hardlink(self, name: str, target: str) -> None:
        """A tar hard link: a copy of an earlier regular file of the archive."""
        member = _shown(name)
        rel = self._named(name)
        parts = target.split("/")
        if target.startswith("/") or ".." in parts:
            raise UnsafeArchive(member, HARDLINK_OUTSIDE)
        original = "/".join(p for p in parts if p not in ("", "."))
        if self.kinds.get(original) != "file":
            raise UnsafeArchive(member, f"hard link to {_shown(target)!r} which is not an earlier file of the archive")
        self._claim(member, rel, "file")
        fd = os.open(self._path(original), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as src:
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
            self._write(member, rel, mode, iter(lambda: src.read(CHUNK), b""))

    def create_links(self) -> None:
        """Check every link against all the others, then create them as direct relative links."""
        planned = []
        for rel, target in self.links.items():
            member = self.link_members[rel]
            parent = rel.split("/")[:-1]
            final = _follow(member, parent, target, self.links)
            for depth in range(1, len(final)):
                if self.kinds.get("/".join(final[:depth])) == "file":
                    raise UnsafeArchive(member, LINK_THROUGH_FILE)  # the ingest's stat would fail with ENOTDIR
            # Pointing straight at the resolved path means the kernel never walks through another
            # link or a '..' of this archive when it follows this one.
            planned.append((rel, posixpath.relpath("/" + "/".join(final), "/" + "/".join(parent))))
        for rel, text in planned:
            try:
                os.symlink(text, self._path(rel))
            except FileExistsError:
                raise UnsafeArchive(self.link_members[rel], FS_COLLISION) from None
            self.links_made += 1


# --- tar -------------------------------------------------------------------------------------


class _StrictTarInfo(tarfile.TarInfo):
    """Treats a damaged header as corruption.

    ``tarfile`` quietly ends the archive at a bad header after the first one, which would store
    half an archive without a word. A zero block (the proper end) or a clean end of data passes.
    """

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:  # type: ignore[override]
        try:
            return super().frombuf(buf, encoding, errors)
        except (tarfile.EOFHeaderError, tarfile.EmptyHeaderError):
            raise
        except tarfile.HeaderError as exc:
            raise tarfile.ReadError(f"damaged member header ({exc})") from None


def _open_tar_stream(path: Path, fmt: str) -> BinaryIO:
    # The stdlib openers handle multi-member gzip and multi-stream bzip2, which tarfile's own
    # "r|gz" stream does not.
    openers = {"tar": open, "tar.gz": gzip.open, "tar.bz2": bz2.open, "tar.xz": lzma.open}
    return openers[fmt](path, "rb")  # type: ignore[operator,return-value]


def _extract_tar(archive: Path, fmt: str, tree: _Tree, source: str) -> None:
    with _reading(source, TAR_CORRUPT):
        raw = _open_tar_stream(archive, fmt)
    with raw:
        with _reading(source, TAR_CORRUPT):
            # "r|": a forward-only stream, so a .tar.gz is never seeked or read twice.
            # Not a `with` here: this guard must cover only the opening, never the writes below.
            tf = tarfile.open(fileobj=raw, mode="r|", tarinfo=_StrictTarInfo,  # noqa: SIM115
                              encoding="utf-8", errors="surrogateescape")
        with tf:
            while True:
                with _reading(source, TAR_CORRUPT):
                    member = tf.next()  # pax global headers are consumed here, never returned
                if member is None:
                    return
                tf.members.clear()  # tarfile keeps every TarInfo otherwise; a stream never needs them
                _tar_member(tf, member, tree, source)


def _tar_member(tf: tarfile.TarFile, m: tarfile.TarInfo, tree: _Tree, source: str) -> None:
    if m.isreg():
        with _reading(source, TAR_CORRUPT):
            f = tf.extractfile(m)
        assert f is not None  # isreg() members always have a file object
        tree.add_file(m.name, bool(m.mode & 0o111), _chunks(f, source, TAR_CORRUPT))  # type: ignore[arg-type]
    elif m.isdir():
        tree.add_dir(m.name)
    elif m.issym():
        tree.add_symlink(m.name, m.linkname)
    elif m.islnk():
        tree.add_hardlink(m.name, m.linkname)
    elif m.ischr() or m.isblk() or m.isfifo():
        raise UnsafeArchive(_shown(m.name), SPECIAL)
    else:
        raise UnsafeArchive(_shown(m.name), f"unsupported tar member type {m.type!r}")


# --- zip -------------------------------------------------------------------------------------


def _extract_zip(archive: Path, tree: _Tree, source: str) -> None:
    with _reading(source, ZIP_CORRUPT):
        zf = zipfile.ZipFile(archive)
    with zf:
        _check_zip_layout(zf, archive, source)
        for info in zf.infolist():
            _zip_member(zf, info, tree, source)


def _check_zip_layout(zf: zipfile.ZipFile, archive: Path, source: str) -> None:
    """Refuse entries whose bytes overlap (David Fifield's non-recursive zip bomb)."""
    infos = sorted(zf.infolist(), key=lambda i: i.header_offset)
    end = 0
    with open(archive, "rb") as f:
        for info in infos:
            if info.header_offset < end:
                raise UnsafeArchive(_zip_name(info), OVERLAP)
            f.seek(info.header_offset)
            header = f.read(30)
            if len(header) < 30 or not header.startswith(_ZIP_LOCAL):
                raise ArchiveInvalid(source, f"{ZIP_CORRUPT}: no local header for {_zip_name(info)!r}")
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            end = info.header_offset + 30 + name_len + extra_len + info.compress_size
    if infos and end > zf.start_dir:  # type: ignore[attr-defined]
        raise ArchiveInvalid(source, f"{ZIP_CORRUPT}: {_zip_name(infos[-1])!r} runs into the central directory")


def _zip_name(info: zipfile.ZipInfo) -> str:
    """The member name; UTF-8 names stored without the UTF-8 flag are read as UTF-8."""
    name = info.orig_filename  # .filename is cut at a NUL byte, which would hide it
    if not info.flag_bits & _ZIP_UTF8_FLAG:
        # Many zip writers store UTF-8 without setting the flag; zipfile then decodes cp437.
        try:
            name = name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return name


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, tree: _Tree, source: str) -> None:
    name = _zip_name(info)
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
        raise UnsafeArchive(name, SPECIAL)
    if kind == stat.S_IFDIR or name.endswith("/"):
        tree.add_dir(name)
        return
    if kind not in (0, stat.S_IFREG, stat.S_IFLNK):
        raise UnsafeArchive(name, f"unsupported zip member type {oct(kind)}")
    if info.flag_bits & _ZIP_ENCRYPTED_FLAG:
        raise ArchiveInvalid(source, f"member {name!r} is encrypted",
                             hint="password-protected zips are not supported; publish an unencrypted archive")
    if info.compress_type not in _ZIP_METHODS:
        raise ArchiveInvalid(source, f"member {name!r} uses an unsupported compression method ({info.compress_type})",
                             hint="rebuild the zip with deflate (the default of zip tools)")
    with _reading(source, ZIP_CORRUPT):
        f = zf.open(info)
    with f:
        if kind == stat.S_IFLNK:
            tree.add_symlink(name, _zip_link_target(f, name, source))
        else:
            tree.add_file(name, bool(mode & 0o111), _chunks(f, source, ZIP_CORRUPT))  # type: ignore[arg-type]


def _zip_link_target(f: BinaryIO, member: str, source: str) -> str:
    with _reading(source, ZIP_CORRUPT):
        raw = f.read(MAX_LINK_TARGET + 1)  # short of the limit, this read reaches EOF and checks the CRC
    if len(raw) > MAX_LINK_TARGET:
        raise UnsafeArchive(member, LINK_TOO_LONG)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafeArchive(member, LINK_NOT_UTF8) from None
