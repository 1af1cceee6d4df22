"""Typed plan lines: what the scan decided for each item of the source, in path order.

A batch plan is a gzip JSON Lines object (see :mod:`datastore.creation.plan`); each line is one
of three items, encoded as it always was (so plan hashes, and thus resumable staging, are the
same as before the types existed)::

    {"new": {"path": …, "size": …, "stamp": …, "detail": {…}}}   a file to transfer
    {"reuse": <manifest entry>}                                   unchanged: its bytes are stored
    {"skipped": "path", "reason": "…"}                             deliberately not stored

Pure: no I/O.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Union

from datastore.model.manifest import Entry, Skipped


@dataclass(frozen=True, slots=True)
class Candidate:
    """A source file the plan must account for."""

    path: str
    size: int
    stamp: int | str | None  # mtime_ns (local) or ETag (S3): what "unchanged" is judged by
    detail: dict | None = None  # where the source keeps it (an S3 object's pin): the entry's provenance

    def to_json(self) -> dict:
        """The body of a ``new`` plan line."""
        d: dict = {"path": self.path, "size": self.size, "stamp": self.stamp}
        if self.detail:
            d["detail"] = self.detail
        return d

    @classmethod
    def from_json(cls, d: dict) -> Candidate:
        """Inverse of :meth:`to_json`."""
        return cls(d["path"], d["size"], d.get("stamp"), d.get("detail"))


@dataclass(frozen=True, slots=True)
class New:
    """A file to transfer."""

    candidate: Candidate

    @property
    def path(self) -> str:
        """The file's path in the datastore."""
        return self.candidate.path

    @property
    def size(self) -> int:
        """The size the scan saw."""
        return self.candidate.size

    def to_json(self) -> dict:
        """The plan line."""
        return {"new": self.candidate.to_json()}


@dataclass(frozen=True, slots=True)
class Reused:
    """An unchanged file: the previous version's entry, pointing at bytes already stored."""

    entry: Entry

    @property
    def path(self) -> str:
        """The file's path in the datastore."""
        return self.entry.path

    @property
    def size(self) -> int:
        """The stored size."""
        return self.entry.size

    def to_json(self) -> dict:
        """The plan line."""
        return {"reuse": self.entry.to_json()}


# A skipped item is the manifest's own record: the plan line and the manifest line are the same.
PlanItem = Union[New, Reused, Skipped]


def item_from_json(d: dict) -> PlanItem:
    """Decode one plan line.

    Raises:
        ValueError: the line is none of the three items.
    """
    if "new" in d:
        return New(Candidate.from_json(d["new"]))
    if "reuse" in d:
        return Reused(Entry.from_json(d["reuse"]))
    if "skipped" in d:
        return Skipped(d["skipped"], d["reason"])
    raise ValueError(f"not a plan line: {sorted(d)}")


def counted(item: PlanItem) -> bool:
    """Whether the item is a file of the version (new or reused), as opposed to a skip."""
    return isinstance(item, (New, Reused))


def encode(items: Iterable[PlanItem]) -> tuple[bytes, str]:
    """Compressed plan bytes and the plan hash (over the uncompressed lines)."""
    raw = b"".join(json.dumps(item.to_json(), sort_keys=True, separators=(",", ":")).encode() + b"\n"
                   for item in items)
    return gzip.compress(raw, compresslevel=1, mtime=0), hashlib.sha256(raw).hexdigest()[:32]


def decode(data: bytes) -> list[PlanItem]:
    """The items of a plan stored by :func:`encode`."""
    return [item_from_json(json.loads(line)) for line in gzip.decompress(data).splitlines() if line.strip()]
