"""Typed ``source_detail``: what a version record keeps about its source, one record per kind.

The record stores the detail as a JSON object (``source_detail``); :meth:`to_json` writes exactly
the fields each kind always wrote, and :func:`detail_from_json` picks the class by the record's
``kind`` (never by which keys happen to be present), so records already on disk load unchanged.
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from datastore.model.kinds import Kind


@dataclass(frozen=True, slots=True)
class LocalDetail:
    """A local folder or file: the path (the record's ``source``) says it all."""

    def to_json(self) -> dict:
        """The stored form (an empty object)."""
        return {}

    @classmethod
    def from_json(cls, d: dict) -> LocalDetail:  # noqa: ARG003 - same signature as the others
        """Inverse of :meth:`to_json`."""
        return cls()


@dataclass(frozen=True, slots=True)
class S3Detail:
    """An S3 prefix, copied or referenced in place (``no_copy``)."""

    bucket: str
    prefix: str
    credentials: str | None  # the AwsCredentials block the source is read with (None: default chain)
    versioned: bool
    no_copy: bool

    def to_json(self) -> dict:
        """The stored form."""
        return {"bucket": self.bucket, "prefix": self.prefix, "credentials": self.credentials,
                "versioned": self.versioned, "no_copy": self.no_copy}

    @classmethod
    def from_json(cls, d: dict) -> S3Detail:
        """Inverse of :meth:`to_json`."""
        return cls(d["bucket"], d["prefix"], d.get("credentials"), bool(d.get("versioned", False)),
                   bool(d.get("no_copy", False)))


ARCHIVE_FIELDS = ("format", "archive_sha256", "archive_bytes", "etag", "last_modified")


@dataclass(frozen=True, slots=True)
class HttpDetail:
    """An HTTP(S) archive: the credential-free URL, then (once downloaded) what identifies the archive."""

    url: str
    format: str | None = None
    archive_sha256: str | None = None
    archive_bytes: int | None = None
    etag: str | None = None
    last_modified: str | None = None

    @property
    def downloaded(self) -> bool:
        """Whether the archive fields are known."""
        return self.archive_sha256 is not None

    def to_json(self) -> dict:
        """The stored form: ``url`` alone before the download, all fields after it."""
        d: dict = {"url": self.url}
        if self.downloaded:
            d |= {k: getattr(self, k) for k in ARCHIVE_FIELDS}
        return d

    @classmethod
    def from_json(cls, d: dict) -> HttpDetail:
        """Inverse of :meth:`to_json`."""
        return cls(d["url"], *(d.get(k) for k in ARCHIVE_FIELDS))


SourceDetail = Union[LocalDetail, S3Detail, HttpDetail]

_BY_KIND: dict[Kind, type] = {Kind.LOCAL: LocalDetail, Kind.S3_COPY: S3Detail, Kind.S3_REFERENCE: S3Detail,
                              Kind.HTTP_ARCHIVE: HttpDetail}


def detail_from_json(kind: str, d: dict | None) -> SourceDetail:
    """The typed detail of a record or job of ``kind`` from its stored ``source_detail``.

    Raises:
        ValueError: ``kind`` is not a known creation path.
    """
    return _BY_KIND[Kind(kind)].from_json(d or {})
