"""An S3 prefix as a creation source: URL parsing, listing in path order, pinned reads.

Which keys become files (the documented rule, also in the README):

* the path of a file is its key relative to the prefix (``s3://b/data/`` + ``data/x/y.csv`` →
  ``x/y.csv``); ``s3://b/data`` means the "folder" ``data/``; if that holds nothing and an object
  named exactly ``data`` exists, the datastore is that one file;
* a zero-byte key ending in ``/`` is a *folder marker* (what consoles create for "new folder"):
  it is not a file and is left out;
* a key ending in ``/`` that holds bytes, or whose path has an empty, ``.`` or ``..`` segment
  (``a//b``, ``../x``), cannot be a file in a folder tree: it is recorded as skipped with the reason.

Every object is identified by (key, size, ETag) and, in a versioned bucket, its VersionId; reads
ask for exactly that object (``VersionId``, else ``If-Match`` on the ETag), so changed bytes are
never returned silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from datastore import credentials, s3
from datastore.errors import InvalidSource, ObjectNotFound, SourceAccessDenied, StoreAccessDenied
from datastore.extsort import sorted_stream
from datastore.manifest import Skipped

_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}")
URL_HINT = "write it as s3://bucket/prefix/ (for example s3://my-bucket/images/)"


@dataclass(frozen=True)
class S3Location:
    """A parsed ``s3://bucket/prefix/`` source."""

    bucket: str
    prefix: str  # "" (whole bucket) or ending in "/"

    @property
    def url(self) -> str:
        """Normalized, credential-free URL (what version records show)."""
        return f"s3://{self.bucket}/{self.prefix}"


def parse_url(url: str) -> S3Location:
    """Parse ``s3://bucket[/prefix[/]]`` (scheme case-insensitive).

    Raises:
        InvalidSource: not of that form (``s3:/x``, ``s3://``, a bad bucket name, ``?``/``#``).
    """
    if not url[:5].lower() == "s3://":
        raise InvalidSource(url, "malformed S3 URL", URL_HINT)
    rest = url[5:]
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket:  # keys pasted into the URL: never repeat them back
        raise InvalidSource("s3://…@" + bucket.rsplit("@", 1)[1] + "/" + prefix, "credentials do not belong in the URL",
                            "use --credentials BLOCK (a Prefect AwsCredentials block) for keys")
    if not bucket:
        raise InvalidSource(url, "the S3 URL names no bucket", URL_HINT)
    if not _BUCKET.fullmatch(bucket):
        raise InvalidSource(url, f"{bucket!r} is not a valid bucket name", URL_HINT)
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return S3Location(bucket, prefix)


@dataclass(frozen=True, slots=True)
class S3Object:
    """One listed object: what it is pinned by."""

    key: str
    size: int
    etag: str
    version_id: str | None = None

    def pin(self) -> dict:
        """Provenance recorded in the manifest (``key``, ``etag``, ``version_id``)."""
        d = {"key": self.key, "etag": self.etag}
        if self.version_id is not None:
            d["version_id"] = self.version_id
        return d


def _etag(raw: str) -> str:
    return raw.strip('"')


def path_rule(rel: str, size: int) -> str | None:
    """Why a relative key cannot be a file ("" for a folder marker to drop), or None if it can."""
    if rel == "" or rel.endswith("/"):  # "" is the prefix's own folder marker
        return "" if size == 0 else f"key ends in '/' but holds {size} bytes; a file cannot have that name"
    if any(seg in ("", ".", "..") for seg in rel.split("/")):
        return "key has an empty, '.' or '..' path segment; it cannot be a file path"
    return None


class S3Source:
    """Reads one S3 location with the chosen credentials (a block name, or ``None`` = default chain)."""

    def __init__(self, location: S3Location, block: str | None = None) -> None:
        self.location = location
        self.block = block
        self.client  # noqa: B018 - load the block now, so a bad one fails here, not at the first read
        self._fast: s3.FastS3 | None = None

    @property
    def client(self):  # noqa: ANN201 - a boto3 S3 client
        """This process's client for these credentials (a forked child gets its own connections)."""
        return credentials.client_for(self.block)

    @property
    def fast(self) -> s3.FastS3:
        """The lean request path for hot loops (created on first use)."""
        if self._fast is None:
            self._fast = s3.FastS3(lambda: credentials.client_for(self.block))
        return self._fast

    @property
    def bucket(self) -> str:
        """Bucket name."""
        return self.location.bucket

    def _tr(self, key: str | None = None):
        return s3.translated(self.location.url, key, source=True)

    def probe(self) -> bool:
        """Check the prefix can be listed; return whether it holds at least one key.

        Raises:
            SourceNotFound: no such bucket.
            SourceAccessDenied: these credentials may not list it.
        """
        with self._tr():
            r = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.location.prefix, MaxKeys=1)
        return bool(r.get("KeyCount") or r.get("Contents"))

    def versioned(self) -> bool:
        """Whether the bucket keeps versions (then objects are pinned by VersionId)."""
        try:
            with self._tr():
                r = self.client.get_bucket_versioning(Bucket=self.bucket)
        except SourceAccessDenied:
            return False  # may list and read but not see the setting: pin by ETag, which is safe
        return r.get("Status") in ("Enabled", "Suspended")

    def head(self, key: str, version_id: str | None = None) -> S3Object | None:
        """The current object at ``key``, or that version of it (None if there is none)."""
        kw = {"VersionId": version_id} if version_id else {}
        try:
            with s3.translated(self.location.url, key):
                r = self.client.head_object(Bucket=self.bucket, Key=key, **kw)
        except ObjectNotFound:
            return None
        except StoreAccessDenied as exc:
            raise SourceAccessDenied(self.location.url, exc.reason) from None
        return S3Object(key, r["ContentLength"], _etag(r["ETag"]), r.get("VersionId"))

    def list_objects(self, versioned: bool) -> Iterator[S3Object]:
        """Every current object under the prefix, paginated, in the server's order."""
        prefix = self.location.prefix
        if versioned:
            pages = self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix)
            with self._tr():
                for page in pages:
                    for v in page.get("Versions", []):
                        # The latest version of a key; keys whose latest is a delete marker have none.
                        if v.get("IsLatest"):
                            yield S3Object(v["Key"], v["Size"], _etag(v["ETag"]), v.get("VersionId"))
            return
        with self._tr():
            for key, size, etag in self.fast.list_v2(self.bucket, prefix):
                yield S3Object(key, size, etag)

    def files(self, versioned: bool, run_size: int = 200_000) -> Iterator[tuple[str, S3Object] | Skipped]:
        """``(relative path, object)`` or :class:`Skipped`, in path order, memory bounded.

        Applies the key rule of this module; when the prefix (without its ``/``) is itself an
        object and nothing is under it, that object is the only file.
        """
        prefix = self.location.prefix
        found = False
        for item in sorted_stream(self._relative(versioned), key=_path_of, dump=_dump, load=_load, run_size=run_size):
            found = True
            yield item
        if not found and prefix:
            single = self.head(prefix[:-1])
            if single is not None:
                yield single.key.rsplit("/", 1)[-1], single

    def _relative(self, versioned: bool) -> Iterator[tuple[str, S3Object] | Skipped]:
        cut = len(self.location.prefix)
        for obj in self.list_objects(versioned):
            rel = obj.key[cut:]
            why = path_rule(rel, obj.size)
            if why is None:
                yield rel, obj
            elif why:
                yield Skipped(rel, why)

    def get(self, obj: dict, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes of exactly the pinned object ``obj`` (a :meth:`S3Object.pin` dict).

        Raises:
            SourceChanged: the pinned object is gone or holds other bytes (412/404).
        """
        if length is None:  # whole small objects: the hot path of copying many small files
            # If-Match even with a VersionId: the "null" version of a suspended bucket is
            # overwritten in place, so only the ETag can tell its bytes changed.
            with self._tr(obj["key"]):
                return self.fast.get(self.bucket, obj["key"], if_match=obj["etag"], version_id=obj.get("version_id"))
        if length == 0:
            return b""
        want = f"{offset}-{offset + length - 1}"
        kw = self._pinned(obj) | {"Range": f"bytes={want}"}

        def ranged() -> bytes:
            with self._tr(obj["key"]):
                r = self.client.get_object(**kw)
                data = r["Body"].read()
            # The pinned object's ETag and the asked range, or it is not this request's answer.
            span = str(r.get("ContentRange") or "").removeprefix("bytes ").partition("/")[0]
            s3.check_answer(f"{obj['key']} bytes {want}", r.get("ContentLength"), len(data),
                            {"etag": r.get("ETag"), "content-range": span or None},
                            {"etag": obj["etag"], "content-range": want if offset + length <= _total(r) else span})
            return data

        return s3.retried(ranged)

    def _pinned(self, obj: dict) -> dict:
        kw: dict = {"Bucket": self.bucket, "Key": obj["key"], "IfMatch": f'"{obj["etag"]}"'}
        if obj.get("version_id"):
            kw["VersionId"] = obj["version_id"]
        return kw

    def open(self, obj: dict, offset: int = 0, length: int | None = None) -> BinaryIO:
        """A streaming reader of exactly the pinned object (see :meth:`get`)."""
        kw = self._pinned(obj)
        if length is not None:
            if length == 0:
                import io

                return io.BytesIO(b"")
            kw["Range"] = f"bytes={offset}-{offset + length - 1}"
        with self._tr(obj["key"]):
            return self.client.get_object(**kw)["Body"]

    def copy_source(self, obj: dict) -> dict:
        """``CopySource`` argument for a server-side copy of the pinned object."""
        src = {"Bucket": self.bucket, "Key": obj["key"]}
        if obj.get("version_id"):
            src["VersionId"] = obj["version_id"]
        return src


def _total(r: dict) -> int:
    """The object size a ranged answer declares (``Content-Range: bytes a-b/total``)."""
    total = str(r.get("ContentRange") or "").rpartition("/")[2]
    return int(total) if total.isdigit() else 1 << 62


def _path_of(item: tuple[str, S3Object] | Skipped) -> str:
    return item.path if isinstance(item, Skipped) else item[0]


def _dump(item: tuple[str, S3Object] | Skipped) -> list:
    if isinstance(item, Skipped):
        return [item.path, item.reason]
    rel, o = item
    return [rel, o.key, o.size, o.etag, o.version_id]


def _load(v: list) -> tuple[str, S3Object] | Skipped:
    if len(v) == 2:
        return Skipped(v[0], v[1])
    return v[0], S3Object(v[1], v[2], v[3], v[4])


def source_of(detail: dict) -> S3Source:
    """The :class:`S3Source` a version record's (or job's) ``source_detail`` describes."""
    return S3Source(S3Location(detail["bucket"], detail["prefix"]), detail.get("credentials"))
