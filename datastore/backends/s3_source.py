"""An S3 prefix as a creation source: URL parsing, listing in path order, pinned reads.

Which keys become files (the documented rule, also in the README):

* the path of a file is its key relative to the prefix (``s3://b/data/`` + ``data/x/y.csv`` →
  ``x/y.csv``); ``s3://b/data`` means the "folder" ``data/``; if that holds nothing and an object
  named exactly ``data`` exists, the datastore is that one file;
* a zero-byte key ending in ``/`` is a *folder marker* (what consoles create for "new folder"):
  it is not a file and is left out;
* a key ending in ``/`` that holds bytes, or whose path has an empty, ``.`` or ``..`` segment
  (``a//b``, ``../x``), cannot be a file in a folder tree: it is recorded as skipped with the reason;
* a key that is also the "folder" of other keys (``a`` next to ``a/b``) cannot be a file either,
  because a file and a folder cannot share a path (``ls`` would call it a folder, ``info`` a
  file, and ``mount`` could not build the tree). The **file is skipped** and the keys below
  ``a/`` are kept, whatever order the server lists them in: a folder can hold many files, and
  the rule gives the same result on every run. The skipped line's reason names the key.

Every object is identified by (key, size, ETag) and, in a versioned bucket, its VersionId; reads
ask for exactly that object (``VersionId``, else ``If-Match`` on the ETag), so changed bytes are
never returned silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Union

from datastore.backends import credentials, s3
from datastore.backends.extsort import sorted_stream
from datastore.errors import InvalidSource, ObjectNotFound, SourceAccessDenied, StoreAccessDenied
from datastore.model.details import S3Detail
from datastore.model.manifest import Skipped

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


Listed = Union[tuple[str, S3Object], Skipped]  # what a listing turns into: a file, or a skipped key


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

    def files(self, versioned: bool, run_size: int = 200_000) -> Iterator[Listed]:
        """``(relative path, object)`` or :class:`Skipped`, in path order, memory bounded.

        Applies the key rule of this module (a key that other keys use as a folder is skipped:
        see :func:`path_ordered`); when the prefix (without its ``/``) is itself an object and
        nothing is under it, that object is the only file.
        """
        prefix = self.location.prefix
        found = False
        for item in path_ordered(self._relative(versioned), run_size):
            found = True
            yield item
        if not found and prefix:
            single = self.head(prefix[:-1])
            if single is not None:
                yield single.key.rsplit("/", 1)[-1], single

    def _relative(self, versioned: bool) -> Iterator[Listed]:
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
            # The fast client retries a broken connection once, then hands over to boto3, whose
            # retries end when the answer starts: a reset in the body is retried here, whole.
            def whole() -> bytes:
                with self._tr(obj["key"]):
                    return self.fast.get(self.bucket, obj["key"], if_match=obj["etag"],
                                         version_id=obj.get("version_id"))

            return s3.retried(whole)
        if length == 0:
            return b""
        last = offset + length - 1
        kw = self._pinned(obj) | {"Range": f"bytes={offset}-{last}"}

        def ranged() -> bytes:
            with self._tr(obj["key"]):
                r = self.client.get_object(**kw)
                data = r["Body"].read()
            s3.check_range(f"{obj['key']} bytes {offset}-{last}", r, data, offset, last, etag=obj["etag"])
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


@dataclass(frozen=True, slots=True)
class _Folder:
    """Sort-time marker: some accepted file lies below ``path + "/"`` (never yielded)."""

    path: str


def file_folder_conflict(path: str, key: str) -> str:
    """The skip reason of a key ``key`` (relative path ``path``) that other keys use as a folder."""
    return (f"a file and a folder cannot share the path {path!r}; "
            f"the key {key!r} is skipped because keys below {key + '/'!r} exist")


def _with_folders(items: Iterable[Listed]) -> Iterator[Listed | _Folder]:
    """``items`` plus a :class:`_Folder` marker for every folder their accepted files lie in.

    A marker is not repeated for the folders the previous file was in, so listings that come
    grouped by folder (AWS, SeaweedFS) add about one marker per folder; repeats that remain are
    adjacent after sorting and cost nothing but their sort.
    """
    last = ""  # the folder of the previous file ("" at the top)
    for item in items:
        yield item
        if isinstance(item, Skipped):
            continue  # a skipped key is no file, so it makes nothing a folder
        folder = item[0].rpartition("/")[0]
        if not folder or folder == last:
            continue
        parts = folder.split("/")
        for depth in range(1, len(parts) + 1):
            ancestor = "/".join(parts[:depth])
            if not (last == ancestor or last.startswith(ancestor + "/")):
                yield _Folder(ancestor)
        last = folder


def _sort_key(item: Listed | _Folder) -> tuple[str, int]:
    # Plain string order of paths (the manifest order), and a folder marker right before a
    # file of the same path: nothing else can sort between the two, so one marker of look-back
    # finds every file/folder conflict.
    if isinstance(item, _Folder):
        return item.path, 0
    return (item.path if isinstance(item, Skipped) else item[0]), 1


def path_ordered(items: Iterable[Listed], run_size: int = 200_000) -> Iterator[Listed]:
    """``items`` (in any order) in path order, each file that is also a folder turned into :class:`Skipped`.

    Why not a look-ahead: in path order (plain string order, what manifests, the merge with the
    previous version and readers need) a file ``a`` and the keys below ``a/`` need not be
    neighbours, since ``a-x``, ``a.txt`` and everything under them sort between (``-`` and
    ``.`` come before ``/``), and there can be millions of those. Deciding about ``a`` when
    ``a/b`` arrives would mean holding them all. Instead, every folder of an accepted file enters
    the external sort as a marker with the folder's own path, ordered just before a file of the
    same path; after the sort, a file whose path equals the marker just before it is the
    conflict. Memory stays bounded by the sort's ``run_size`` (markers spill to disk like keys),
    the order is the manifest's order, and one pass suffices.

    Args:
        items: ``(relative path, object)`` pairs and :class:`Skipped` items; paths are unique.
        run_size: Items (markers included) sorted in memory at a time.
    """
    folder: str | None = None  # path of the last folder marker passed
    for item in sorted_stream(_with_folders(items), key=_sort_key, dump=_dump, load=_load, run_size=run_size):
        if isinstance(item, _Folder):
            folder = item.path
        elif not isinstance(item, Skipped) and item[0] == folder:
            yield Skipped(item[0], file_folder_conflict(item[0], item[1].key))
        else:
            yield item


def _dump(item: Listed | _Folder) -> list:
    if isinstance(item, _Folder):
        return [item.path]
    if isinstance(item, Skipped):
        return [item.path, item.reason]
    rel, o = item
    return [rel, o.key, o.size, o.etag, o.version_id]


def _load(v: list) -> Listed | _Folder:
    if len(v) == 1:
        return _Folder(v[0])
    if len(v) == 2:
        return Skipped(v[0], v[1])
    return v[0], S3Object(v[1], v[2], v[3], v[4])


def source_of(detail: S3Detail) -> S3Source:
    """The :class:`S3Source` an S3 version's (or job's) source detail describes."""
    return S3Source(S3Location(detail.bucket, detail.prefix), detail.credentials)
