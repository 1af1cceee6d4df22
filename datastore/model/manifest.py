"""Manifests: the immutable list of files of one version, streamed, never held in memory.

Format: gzip-compressed JSON Lines, one object per line, in strictly increasing path order
(code-point order of the ``/``-separated relative path, which equals S3's UTF-8 key order).
A file line::

    {"path": "a/b.txt", "size": 12, "sha256": "…", "object": "data/…", "offset": 0, "mtime_ns": …}

``object``/``offset`` say where the bytes live (a pack shared by many small files, or an object
of its own). Files from S3 carry ``source`` provenance (``key``, ``etag``, ``version_id``). Two
kinds of file have no ``sha256`` because their bytes never passed through this process: an
object copied server-side (``object`` set, ``etag`` = the stored copy's ETag) and an object
referenced in place (``--no-copy``: no ``object``; ``source`` pins it). An item the source had
but the version does not store is a line ``{"skipped": "path", "reason": "…"}``.

A file larger than :data:`BLOCK_BYTES` whose bytes passed through this process when it was stored
(packed, or streamed into an object of its own) also has ``"blocks": ["…", …]``: the hex sha256 of
each consecutive :data:`BLOCK_BYTES` piece of the file, the last one shorter (or full when the size
is a multiple), so a reader serving part of the file (a mount) can check each block it fetches
without reading the whole file. Files of at most one block have none (their ``sha256`` checks the
one block); neither do server-side copies and references (their bytes were never here), nor files
stored before block hashes existed (an unchanged file reused from such a version keeps its entry
as it was). The block size is fixed by the format.

A version's manifest is written as consecutive gzip members of :data:`PART_ITEMS` lines each
(one gzip stream to any reader) and beside it goes its table of contents
(:class:`ManifestToc`: each part's first path, byte offset and length), so a reader that wants
one file fetches and decompresses one part, ~1/250 of a million-file manifest, instead of all
of it: the way a zip's central directory or LitData's index finds one member.

The top hash (``digest``) is sha256 over the canonical encoding ``["path",size,"checksum"]\\n``
of every file line in order, where the checksum is the sha256, or ``etag:<source ETag>`` for the
two kinds above. It leaves the physical location and the ``blocks`` out (they are derived from the
bytes the sha256 already covers), so the same content stored differently (re-packed, resumed,
reused from an earlier version, with or without block hashes) has the same digest, as in quilt3's
top hash.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Union

from datastore.model.codecs import gzip_reader

FORMAT = "datastore-manifest/1"

MiB = 1024 * 1024

BLOCK_BYTES = 8 * MiB
"""Size of the pieces whose sha256 a manifest records (``blocks``); the last piece is shorter."""

PART_ITEMS = 4096
"""Lines per gzip member of a version's manifest (~210 KiB compressed, 245 parts for a million files): what one lookup reads."""

TOC_FORMAT = "datastore-manifest-toc/1"


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored file."""

    path: str
    size: int
    sha256: str | None
    object: str | None
    offset: int = 0
    mtime_ns: int | None = None
    source: dict | None = None  # provenance of remote sources (key, etag, version_id)
    etag: str | None = None  # ETag of a server-side copy in the store (its bytes were not hashed here)
    blocks: tuple[str, ...] | None = None  # sha256 of each BLOCK_BYTES piece (files > BLOCK_BYTES hashed here)

    @property
    def checksum(self) -> str:
        """What identifies the content in the top hash: sha256, or the source ETag."""
        if self.sha256:
            return self.sha256
        if self.source and self.source.get("etag"):
            return f"etag:{self.source['etag']}"
        raise ValueError(f"manifest entry {self.path!r} has neither a sha256 nor a source ETag")

    @property
    def referenced(self) -> bool:
        """True for a no-copy entry: the bytes live in the source bucket, pinned by ``source``."""
        return self.object is None

    @property
    def block_count(self) -> int:
        """How many :data:`BLOCK_BYTES` pieces the file has (0 for an empty file), blocks recorded or not."""
        return -(-self.size // BLOCK_BYTES)

    def block_span(self, i: int) -> tuple[int, int]:
        """Offset and length of block ``i`` of the file.

        Raises:
            IndexError: the file has no block ``i``.
        """
        if not 0 <= i < self.block_count:
            raise IndexError(f"file {self.path!r} of {self.size} bytes has no block {i} "
                             f"(it has {self.block_count} of {BLOCK_BYTES} bytes)")
        start = i * BLOCK_BYTES
        return start, min(BLOCK_BYTES, self.size - start)

    @property
    def blockwise(self) -> bool:
        """Whether each block of the file can be checked on its own (see :meth:`block_sha256`)."""
        return self.blocks is not None or (self.sha256 is not None and self.size <= BLOCK_BYTES)

    def block_sha256(self, i: int) -> str | None:
        """The sha256 that checks block ``i`` alone: the recorded block hash, or, for a file of one
        block, its sha256; None when block ``i`` cannot be checked on its own.

        Raises:
            IndexError: the file has no block ``i``.
        """
        self.block_span(i)
        if self.blocks is not None:
            return self.blocks[i]
        return self.sha256 if self.block_count == 1 else None

    def to_json(self) -> dict:
        """The manifest line as a dict (optional fields left out when unset)."""
        d: dict = {"path": self.path, "size": self.size}
        if self.sha256 is not None:
            d["sha256"] = self.sha256
        if self.object is not None:
            d["object"] = self.object
            d["offset"] = self.offset
        if self.etag is not None:
            d["etag"] = self.etag
        if self.mtime_ns is not None:
            d["mtime_ns"] = self.mtime_ns
        if self.source is not None:
            d["source"] = self.source
        if self.blocks is not None:
            d["blocks"] = list(self.blocks)
        return d

    @classmethod
    def from_json(cls, d: dict) -> Entry:
        """Inverse of :meth:`to_json`."""
        blocks = d.get("blocks")
        return cls(d["path"], d["size"], d.get("sha256"), d.get("object"), d.get("offset", 0), d.get("mtime_ns"),
                   d.get("source"), d.get("etag"), tuple(blocks) if blocks is not None else None)


@dataclass(frozen=True, slots=True)
class Skipped:
    """An item of the source that was deliberately not stored, with the reason."""

    path: str
    reason: str

    def to_json(self) -> dict:
        """The manifest line as a dict."""
        return {"skipped": self.path, "reason": self.reason}


Item = Union[Entry, Skipped]


def parse_line(line: bytes) -> Item:
    """Decode one manifest line."""
    d = json.loads(line)
    if "skipped" in d:
        return Skipped(d["skipped"], d["reason"])
    return Entry.from_json(d)


def canonical_line(path: str, size: int, checksum: str) -> bytes:
    """The bytes an entry contributes to the top hash."""
    return json.dumps([path, size, checksum], ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


@dataclass
class Summary:
    """Totals of a written manifest."""

    files: int = 0
    bytes: int = 0
    skipped: int = 0
    digest: str = field(default_factory=lambda: hashlib.sha256().hexdigest())


@dataclass(frozen=True, slots=True)
class ManifestPart:
    """One gzip member of a manifest: its first item's path, where it is, how many lines it has."""

    first: str
    offset: int
    length: int
    items: int


@dataclass(frozen=True)
class ManifestToc:
    """The parts of a manifest in order (see the module docs): where to look for one path."""

    parts: tuple[ManifestPart, ...]

    def part_of(self, path: str) -> ManifestPart | None:
        """The part that holds ``path`` if the manifest has it (None: before the first path)."""
        firsts = [p.first for p in self.parts]
        i = bisect.bisect_right(firsts, path) - 1
        return self.parts[i] if i >= 0 else None

    def encode(self) -> bytes:
        """Compact JSON (a few KiB for a million files)."""
        rows = [[p.first, p.offset, p.length, p.items] for p in self.parts]
        return json.dumps({"format": TOC_FORMAT, "parts": rows}, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> ManifestToc:
        """Read :meth:`encode`'s output.

        Raises:
            ValueError: not a table of contents of this format.
        """
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != TOC_FORMAT:
            raise ValueError(f"not a {TOC_FORMAT} document")
        return cls(tuple(ManifestPart(str(f), int(o), int(n), int(i)) for f, o, n, i in doc["parts"]))


class ManifestWriter:
    """Writes items in path order to a gzip JSONL stream and computes the top hash on the way.

    Memory is constant: each item is encoded and written as it arrives.

    Args:
        target: A local path or a binary file open for writing.
        part_items: End a gzip member after this many lines and note it in :attr:`toc` (a
            version's manifest); None writes one member (batch manifests).

    Raises:
        ValueError: an item arrives out of order or twice (a canonical manifest has neither).
    """

    def __init__(self, target: Path | BinaryIO, part_items: int | None = None) -> None:
        self._own = isinstance(target, (str, Path))
        raw = open(target, "wb") if self._own else target  # type: ignore[arg-type]
        self._raw = raw
        self._part_items = part_items
        self._parts: list[ManifestPart] = []
        self._start = raw.tell() if part_items else 0
        self._first: str | None = None
        self._in_part = 0
        self._open_member()
        self._hash = hashlib.sha256()
        self._last: str | None = None
        self.summary = Summary()

    def _open_member(self) -> None:
        # mtime=0 keeps the compressed bytes a pure function of the content.
        self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6, mtime=0)
        self._buf = io.BufferedWriter(self._gz, buffer_size=1 << 20)  # type: ignore[arg-type]

    def _close_member(self) -> None:
        self._buf.flush()
        self._gz.close()  # ends the member; the file itself stays open
        if self._part_items and self._first is not None:
            end = self._raw.tell()
            self._parts.append(ManifestPart(self._first, self._start, end - self._start, self._in_part))
            self._start, self._first, self._in_part = end, None, 0

    @property
    def toc(self) -> ManifestToc:
        """The parts written (complete once :meth:`close` returned)."""
        return ManifestToc(tuple(self._parts))

    def add(self, item: Item) -> None:
        """Append one entry or skipped item."""
        if self._last is not None and item.path <= self._last:
            raise ValueError(f"manifest items out of order: {item.path!r} after {self._last!r}")
        self._last = item.path
        if self._part_items:
            if self._in_part >= self._part_items:
                self._close_member()
                self._open_member()
            if self._first is None:
                self._first = item.path
            self._in_part += 1
        self._buf.write(json.dumps(item.to_json(), ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")
        if isinstance(item, Entry):
            self._hash.update(canonical_line(item.path, item.size, item.checksum))
            self.summary.files += 1
            self.summary.bytes += item.size
        else:
            self.summary.skipped += 1

    def extend(self, items: Iterable[Item]) -> None:
        """Append many items."""
        for item in items:
            self.add(item)

    def close(self) -> Summary:
        """Finish the stream and return the totals and the digest."""
        self._close_member()
        if self._own:
            self._raw.close()
        self.summary.digest = self._hash.hexdigest()
        return self.summary

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._gz.closed:
            self.close()


def read_items(source: Path | BinaryIO) -> Iterator[Item]:
    """Stream the items of a manifest file (local path or open binary file)."""
    fh = open(source, "rb") if isinstance(source, (str, Path)) else source
    try:
        with gzip_reader(fh) as gz:
            for line in io.BufferedReader(gz, buffer_size=1 << 20):  # type: ignore[arg-type]
                if line.strip():
                    yield parse_line(line)
    finally:
        if isinstance(source, (str, Path)):
            fh.close()


def read_entries(source: Path | BinaryIO) -> Iterator[Entry]:
    """Stream only the file entries of a manifest."""
    for item in read_items(source):
        if isinstance(item, Entry):
            yield item
