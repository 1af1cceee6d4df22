"""The store: one interface over a local directory and an S3 bucket prefix.

Keys are ``/``-separated strings relative to the store root. The layout of keys is owned by
:mod:`datastore.layout`; this module only moves bytes, and keeps two promises on both backends:

* ``put_bytes(..., if_absent=True)`` is an atomic put-if-absent (S3 ``If-None-Match: *``, local
  ``link(2)`` of a complete temporary file), which is what makes version commits atomic;
* an object becomes visible complete or not at all (temporary file + rename locally, single PUT
  or completed multipart upload on S3).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import random
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from datastore import s3
from datastore.errors import (
    AlreadyExists,
    DatastoreError,
    InvalidSource,
    ObjectNotFound,
    StoreError,
    StoreNotWritable,
)
from datastore.settings import Settings

DATA_PREFIX = "data/"


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object."""

    key: str
    size: int
    modified: float
    etag: str | None = None


class BlobWriter(ABC):
    """Streams one large object into the store; the key is decided by :meth:`commit`."""

    written: int = 0

    @abstractmethod
    def write(self, chunk: bytes) -> None:
        """Append ``chunk``."""

    @abstractmethod
    def commit(self, sha256: str) -> str:
        """Make the object durable and visible; return its key."""

    @abstractmethod
    def abort(self) -> None:
        """Drop everything written so far (safe to call more than once)."""


class Store(ABC):
    """Where datastore data, manifests and version records live."""

    url: str

    @abstractmethod
    def check_writable(self) -> None:
        """Fail early, with a clear error, when the store cannot be used."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes | bytearray, *, if_absent: bool = False) -> None:
        """Write a whole object. With ``if_absent`` raise :class:`AlreadyExists` if taken."""

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Upload a local file as one object (streamed)."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read a whole object."""

    @abstractmethod
    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at ``offset``."""

    @abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """A sequential reader of an object (close it, or use it as a context manager)."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Size (and ETag on S3) of ``key``.

        Raises:
            ObjectNotFound: no such key.
        """

    @abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """All objects under ``prefix``, paginated (never all in memory).

        No order is promised: S3 lists in byte order, but SeaweedFS lists directory by directory.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` (missing keys are fine)."""

    @abstractmethod
    def blob_writer(self, size_hint: int = 0) -> BlobWriter:
        """A writer for one large data object (``size_hint``: expected bytes, to size S3 parts)."""

    def reclaim_incomplete(self, older_than: float, dry_run: bool = False) -> list[str]:
        """Drop writes a killed process left unfinished before ``older_than`` (epoch seconds).

        Such writes are invisible (no key) but cost space: temporary files of the local store,
        unfinished multipart uploads on S3. Returns what was (or would be) dropped.
        """
        return []

    def put_new(self, key: str, data: bytes) -> bool:
        """Put-if-absent that survives lost answers: whether ``key`` now holds exactly ``data``.

        S3 may apply a request and still fail to answer (a 500 "may or may not have been
        applied", a reset connection); the retry of a put-if-absent that took effect then meets
        ``412`` as if another writer had won. So after a conflict or a transient failure the
        object is read back: the same bytes are ours (``data`` must hold something unique to
        the writer, such as a creation id), other bytes are another writer's.

        Returns:
            True when ``key`` holds ``data`` (written by this call, perhaps on an earlier try);
            False when another writer's bytes are there.

        Raises:
            TransientError: the store kept failing and nothing is there (safe to try again).
        """
        for attempt in range(5):
            try:
                self.put_bytes(key, data, if_absent=True)
                return True
            except AlreadyExists:
                pass
            except DatastoreError as exc:
                if not exc.transient or attempt == 4:
                    raise
            try:
                return self.get_bytes(key) == bytes(data)
            except ObjectNotFound:
                time.sleep(random.uniform(0, 0.1 * 2**attempt))  # not applied after all: put again
        raise AssertionError("unreachable")  # pragma: no cover

    def put_pack(self, data: bytes | bytearray, address: str) -> tuple[str, bool]:
        """Store a pack of small files under its content address ``data/p-<address>``.

        The caller derives ``address`` from what determines the bytes (see
        :func:`datastore.packer.pack_address`), so a retried batch writes the same key and never
        duplicates data. Packs have their own ``p-`` namespace so no pack can ever take the key of
        a large file stored under its sha256.

        Returns:
            The key, and whether bytes were written (False when identical bytes were there).
        """
        key = f"{DATA_PREFIX}p-{address}"
        try:
            self.put_bytes(key, data, if_absent=True)
        except AlreadyExists:
            return key, False
        return key, True


# --- local directory -----------------------------------------------------------------------------


class LocalStore(Store):
    """A store in a local directory (the embedded default)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)
        self._tmp = self.root / ".tmp"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _write_error(self, exc: OSError) -> StoreError:
        """The one-line store error for a failed write (full disk, permissions, a file in the way)."""
        from datastore.errors import StoreFull

        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # Not a permission problem: name the filesystem to free space on, which is often not
            # the store folder itself but a disk or partition above it.
            path = self.root
            while not path.exists() and path != path.parent:
                path = path.parent
            device = None
            try:
                path = path.resolve()
                while not os.path.ismount(path) and path != path.parent:
                    path = path.parent
                import re

                with open("/proc/self/mounts", encoding="utf-8", errors="replace") as mounts:
                    for line in mounts:  # "device mountpoint type ...", spaces escaped as \040
                        fields = line.split()
                        if len(fields) > 1 and re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)),
                                                      fields[1]) == str(path):
                            device = fields[0]  # the last one listed is the mount on top
            except OSError:  # no /proc (macOS) or an unreadable parent: the mount point alone
                pass
            where = f"{path} ({device})" if device and device != str(path) else str(path)
            reason = "no space left on device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
            return StoreFull(self.url, reason, where)
        if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return StoreNotWritable(self.url, exc.strerror or str(exc))
        if isinstance(exc, (NotADirectoryError, FileExistsError)) or exc.errno == errno.ENOTDIR:
            return StoreNotWritable(self.url, "a path component is a file, not a directory")
        return StoreError(f"writing to store {self.url!r} failed ({exc})", "check the disk and run the command again")

    def check_writable(self) -> None:
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            probe = self._tmp / f"probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise self._write_error(exc) from exc

    def reclaim_incomplete(self, older_than: float, dry_run: bool = False) -> list[str]:
        """Temporary files under ``.tmp`` older than ``older_than`` (see :meth:`Store.reclaim_incomplete`)."""
        gone = []
        try:
            entries = list(os.scandir(self._tmp))
        except FileNotFoundError:
            return []
        for e in entries:
            try:
                if e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_mtime < older_than:
                    if not dry_run:
                        os.unlink(e.path)
                    gone.append(f".tmp/{e.name}")
            except FileNotFoundError:
                continue  # finished (published) meanwhile
        return gone

    def _tmpfile(self) -> Path:
        self._tmp.mkdir(parents=True, exist_ok=True)
        return self._tmp / uuid.uuid4().hex

    def _publish(self, tmp: Path, key: str, if_absent: bool) -> None:
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if if_absent:
            try:
                os.link(tmp, final)  # atomic, fails if taken: the local put-if-absent
            except FileExistsError:
                raise AlreadyExists(self.url, key) from None
            finally:
                tmp.unlink(missing_ok=True)
        else:
            os.replace(tmp, final)

    def put_bytes(self, key: str, data: bytes | bytearray, *, if_absent: bool = False) -> None:
        tmp: Path | None = None
        try:
            tmp = self._tmpfile()
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            self._publish(tmp, key, if_absent)
        except AlreadyExists:
            raise
        except OSError as exc:
            self._drop(tmp)
            raise self._write_error(exc) from exc

    def put_file(self, key: str, path: Path) -> None:
        import shutil

        tmp: Path | None = None
        try:
            tmp = self._tmpfile()
            shutil.copyfile(path, tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            self._publish(tmp, key, False)
        except OSError as exc:
            self._drop(tmp)
            raise self._write_error(exc) from exc

    @staticmethod
    def _drop(tmp: Path | None) -> None:
        """Remove a failed write's partial temporary file: on a full disk it holds the space
        that the failure record (and the user's next command) needs."""
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(self.url, key) from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            with open(self._path(key), "rb") as fh:
                fh.seek(offset)
                return fh.read(length)
        except FileNotFoundError:
            raise ObjectNotFound(self.url, key) from None

    def open_read(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise ObjectNotFound(self.url, key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def head(self, key: str) -> ObjectInfo:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            raise ObjectNotFound(self.url, key) from None
        return ObjectInfo(key, st.st_size, st.st_mtime)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Start at the deepest directory the prefix names; filter the rest by prefix. Unsorted,
        # like the interface promises, so a directory is streamed rather than listed whole.
        head = prefix.rpartition("/")[0]
        base = self._path(head) if head else self.root

        def walk(directory: Path, rel: str) -> Iterator[ObjectInfo]:
            try:
                it = os.scandir(directory)
            except (FileNotFoundError, NotADirectoryError):
                return
            with it:
                for entry in it:
                    key = f"{rel}{entry.name}"
                    if entry.is_dir(follow_symlinks=False):
                        if key != ".tmp" and (key.startswith(prefix) or prefix.startswith(key + "/")):
                            yield from walk(Path(entry.path), key + "/")
                    elif key.startswith(prefix):
                        st = entry.stat(follow_symlinks=False)
                        yield ObjectInfo(key, st.st_size, st.st_mtime)

        yield from walk(base, f"{head}/" if head else "")

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise self._write_error(exc) from exc

    def blob_writer(self, size_hint: int = 0) -> BlobWriter:
        return _LocalBlobWriter(self)


class _LocalBlobWriter(BlobWriter):
    def __init__(self, store: LocalStore) -> None:
        self.store = store
        try:
            self.tmp = store._tmpfile()
            self.fh = open(self.tmp, "wb")
        except OSError as exc:
            raise store._write_error(exc) from exc

    def write(self, chunk: bytes) -> None:
        try:
            self.fh.write(chunk)
        except OSError as exc:
            self.abort()
            raise self.store._write_error(exc) from exc
        self.written += len(chunk)

    def commit(self, sha256: str) -> str:
        key = f"{DATA_PREFIX}{sha256}"
        try:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            self.store._publish(self.tmp, key, True)
        except AlreadyExists:
            pass  # the same content is stored already: deduplicated for free
        except OSError as exc:
            self.abort()
            raise self.store._write_error(exc) from exc
        return key

    def abort(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        self.tmp.unlink(missing_ok=True)


# --- S3 ----------------------------------------------------------------------------------------------


class S3Store(Store):
    """A store under ``s3://bucket/prefix``; the endpoint comes from ``AWS_ENDPOINT_URL``."""

    def __init__(self, url: str, settings: Settings | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise InvalidSource(url, "not an s3://bucket/prefix URL", "set DATASTORE_STORE to s3://bucket/prefix")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.prefix = f"{self.prefix}/" if self.prefix else ""
        self.url = f"s3://{self.bucket}/{self.prefix}"
        self.settings = settings or Settings.from_env()

    @property
    def client(self):  # noqa: ANN201 - a boto3 S3 client
        """This process's client: never kept on the instance, so a forked child (a DataLoader
        worker holding this store) uses connections of its own, not its parent's."""
        return s3.client()

    def _k(self, key: str) -> str:
        return self.prefix + key

    def check_writable(self) -> None:
        # A one-key LIST rather than HEAD: HEAD responses have no body, so S3 could only say
        # "403"; LIST names the cause (NoSuchBucket, InvalidAccessKeyId, AccessDenied …).
        with s3.translated(self.url):
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)

    def put_bytes(self, key: str, data: bytes | bytearray, *, if_absent: bool = False) -> None:
        extra = {"IfNoneMatch": "*"} if if_absent else {}
        with s3.translated(self.url, key):
            self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data, **extra)

    def put_file(self, key: str, path: Path) -> None:
        with open(path, "rb") as fh, s3.translated(self.url, key):
            self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=fh)

    def get_bytes(self, key: str) -> bytes:
        def get() -> bytes:
            with s3.translated(self.url, key):
                r = self.client.get_object(Bucket=self.bucket, Key=self._k(key))
                data = r["Body"].read()
            s3.check_answer(key, r.get("ContentLength"), len(data), {}, {})
            return data

        return s3.retried(get)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if length == 0:
            return b""
        last = offset + length - 1

        def get() -> bytes:
            with s3.translated(self.url, key):
                r = self.client.get_object(Bucket=self.bucket, Key=self._k(key), Range=f"bytes={offset}-{last}")
                data = r["Body"].read()
            s3.check_range(f"{key} bytes {offset}-{last}", r, data, offset, last)
            return data

        return s3.retried(get)

    def open_read(self, key: str) -> BinaryIO:
        return io.BufferedReader(_S3Body(self, key), buffer_size=1 << 20)  # type: ignore[return-value]

    def exists(self, key: str) -> bool:
        try:
            with s3.translated(self.url, key):
                self.client.head_object(Bucket=self.bucket, Key=self._k(key))
            return True
        except ObjectNotFound:
            return False

    def head(self, key: str) -> ObjectInfo:
        with s3.translated(self.url, key):
            r = self.client.head_object(Bucket=self.bucket, Key=self._k(key))
        return ObjectInfo(key, r["ContentLength"], r["LastModified"].timestamp(), r["ETag"].strip('"'))

    def copy_in(self, copy_source: dict, etag: str, size: int, key: str) -> tuple[str, int]:
        """Server-side copy of a source object (pinned by ``etag``) to ``key`` in this store.

        One ``CopyObject`` up to ``copy_multipart_bytes``, else a multipart upload of
        ``UploadPartCopy`` ranges, ``part_workers`` at a time. ``CopySourceIfMatch`` makes the
        server refuse an object that changed since the listing (SeaweedFS and AWS honour it; moto
        does not). Keys are derived from the pinned source, so an existing key holds the same bytes.

        Returns:
            The ETag of the stored copy, and the bytes copied (0 when a multipart copy was there).

        Raises:
            SourceChanged: the source object no longer has ``etag``.
        """
        loc = f"s3://{copy_source['Bucket']}/"
        guard = {"CopySourceIfMatch": f'"{etag}"'}
        dest = self._k(key)
        if size <= self.settings.copy_multipart_bytes:
            # Rewriting an existing key is harmless here: the same pinned bytes, and a single-part
            # copy's ETag is the MD5 of those bytes, so it matches what older manifests recorded.
            with _copy_errors(self.url, loc, copy_source["Key"], key):
                r = self.client.copy_object(Bucket=self.bucket, Key=dest, CopySource=copy_source, **guard)
            return r["CopyObjectResult"]["ETag"].strip('"'), size
        try:  # a multipart copy's ETag depends on the part size: keep an existing copy as it is
            return self.head(key).etag or "", 0
        except ObjectNotFound:
            pass
        with s3.translated(self.url, key):
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=dest)["UploadId"]
        step = max(self.settings.copy_part_bytes, -(-size // 10_000))  # S3 allows at most 10,000 parts
        ranges = [(n + 1, off, min(off + step, size) - 1) for n, off in enumerate(range(0, size, step))]

        def part(spec: tuple[int, int, int]) -> dict:
            number, first, last = spec
            with _copy_errors(self.url, loc, copy_source["Key"], key):
                r = self.client.upload_part_copy(Bucket=self.bucket, Key=dest, UploadId=upload_id, PartNumber=number,
                                                 CopySource=copy_source, CopySourceRange=f"bytes={first}-{last}", **guard)
            return {"PartNumber": number, "ETag": r["CopyPartResult"]["ETag"]}

        try:
            with ThreadPoolExecutor(max_workers=self.settings.part_workers, thread_name_prefix="copy-part") as pool:
                parts = list(pool.map(part, ranges))
            with s3.translated(self.url, key):
                r = self.client.complete_multipart_upload(Bucket=self.bucket, Key=dest, UploadId=upload_id,
                                                          MultipartUpload={"Parts": parts})
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=dest, UploadId=upload_id)
            except Exception:  # noqa: BLE001 - best effort; gc reclaims what is left
                pass
            raise
        return r["ETag"].strip('"'), size

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        with s3.translated(self.url):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._k(prefix)):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(obj["Key"][len(self.prefix) :], obj["Size"], obj["LastModified"].timestamp())

    def delete(self, key: str) -> None:
        with s3.translated(self.url, key):
            self.client.delete_object(Bucket=self.bucket, Key=self._k(key))

    def blob_writer(self, size_hint: int = 0) -> BlobWriter:
        return _S3BlobWriter(self, size_hint)

    def reclaim_incomplete(self, older_than: float, dry_run: bool = False) -> list[str]:
        """Abort multipart uploads under the store's prefix initiated before ``older_than``.

        A killed creation leaves its upload's parts billed but invisible; an abort in the
        uploader handles every other exit.
        """
        gone = []
        paginator = self.client.get_paginator("list_multipart_uploads")
        with s3.translated(self.url):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for up in page.get("Uploads", []):
                    if up["Initiated"].timestamp() >= older_than:
                        continue
                    if not dry_run:
                        with contextlib.suppress(ObjectNotFound):  # finished or aborted meanwhile
                            with s3.translated(self.url, up["Key"]):
                                self.client.abort_multipart_upload(Bucket=self.bucket, Key=up["Key"],
                                                                   UploadId=up["UploadId"])
                    gone.append(f"upload {up['Key'][len(self.prefix):]} ({up['UploadId']})")
        return gone


class _S3Body(io.RawIOBase):
    """A sequential reader of one S3 object that resumes where a broken answer stopped.

    botocore's ``StreamingBody`` raises when the connection breaks in the middle of a large
    answer; a manifest or a large file read through it would fail for a network blip. This
    reads the rest with a ranged GET pinned by ``If-Match`` to the ETag of the first answer,
    so the resumed bytes belong to the same object. Bytes are never buffered whole.
    """

    def __init__(self, store: S3Store, key: str) -> None:
        super().__init__()
        self.store = store
        self.key = key
        self.pos = 0
        self.size: int | None = None
        self.etag: str | None = None
        self.body = None
        self._open()

    def _open(self) -> None:
        st = self.store
        kw: dict = {"Bucket": st.bucket, "Key": st._k(self.key)}
        if self.pos:
            kw.update(Range=f"bytes={self.pos}-", IfMatch=self.etag or "*")
        with s3.translated(st.url, self.key):
            r = st.client.get_object(**kw)
        if self.etag is None:
            self.etag, self.size = r.get("ETag"), r.get("ContentLength")
        elif self.pos and not str(r.get("ContentRange", "")).startswith(f"bytes {self.pos}-"):
            raise s3.MismatchedAnswer(f"{self.key} from byte {self.pos}", f"Content-Range {r.get('ContentRange')}")
        self.body = r["Body"]

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # noqa: ANN001 - a writable buffer
        if self.size is not None and self.pos >= self.size:
            return 0

        def attempt() -> bytes:
            if self.body is None:
                self._open()  # resume at self.pos, pinned to the first answer's ETag
            try:
                with s3.translated(self.store.url, self.key):
                    return self.body.read(len(buf))  # type: ignore[union-attr]
            except DatastoreError as exc:
                if exc.transient:
                    self.body = None
                raise

        chunk = s3.retried(attempt)
        if not chunk and self.size is not None and self.pos < self.size:
            raise s3.MismatchedAnswer(self.key, f"an answer that ended at byte {self.pos} of {self.size}")
        buf[: len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)

    def close(self) -> None:
        if self.body is not None:
            self.body.close()
        super().close()


class _S3BlobWriter(BlobWriter):
    """Multipart upload with a bounded number of parts in flight (bounded memory)."""

    def __init__(self, store: S3Store, size_hint: int = 0) -> None:
        self.store = store
        self.key = f"{DATA_PREFIX}u-{uuid.uuid4().hex}"
        # S3 allows 10,000 parts: grow the part size for huge files (9,000 leaves room for growth).
        self.part_bytes = max(store.settings.part_bytes, -(-size_hint // 9_000))
        self.buf = bytearray()
        self.upload_id: str | None = None
        self.parts: list[Future] = []
        self.slots = threading.BoundedSemaphore(store.settings.part_workers)
        self.pool: ThreadPoolExecutor | None = None

    def _send(self, chunk: bytes) -> None:
        st = self.store
        if self.upload_id is None:
            with s3.translated(st.url, self.key):
                self.upload_id = st.client.create_multipart_upload(Bucket=st.bucket, Key=st._k(self.key))["UploadId"]
            self.pool = ThreadPoolExecutor(max_workers=st.settings.part_workers, thread_name_prefix="part")
        number = len(self.parts) + 1
        self.slots.acquire()  # wait for a free slot: at most part_workers parts in memory

        def upload() -> dict:
            try:
                with s3.translated(st.url, self.key):
                    r = st.client.upload_part(
                        Bucket=st.bucket, Key=st._k(self.key), UploadId=self.upload_id, PartNumber=number, Body=chunk
                    )
                return {"PartNumber": number, "ETag": r["ETag"]}
            finally:
                self.slots.release()

        assert self.pool is not None
        self.parts.append(self.pool.submit(upload))

    def write(self, chunk: bytes) -> None:
        self.written += len(chunk)
        if not self.buf and len(chunk) == self.part_bytes:
            self._send(chunk)
            return
        self.buf += chunk
        while len(self.buf) >= self.part_bytes:
            self._send(bytes(self.buf[: self.part_bytes]))
            del self.buf[: self.part_bytes]

    def commit(self, sha256: str) -> str:
        st = self.store
        try:
            if self.upload_id is None:
                st.put_bytes(self.key, bytes(self.buf))
                return self.key
            if self.buf:
                self._send(bytes(self.buf))
                self.buf = bytearray()
            done = [f.result() for f in self.parts]
            with s3.translated(st.url, self.key):
                st.client.complete_multipart_upload(
                    Bucket=st.bucket, Key=st._k(self.key), UploadId=self.upload_id, MultipartUpload={"Parts": done}
                )
            self.upload_id = None
            return self.key
        except BaseException:
            self.abort()
            raise
        finally:
            if self.pool:
                self.pool.shutdown(wait=False)

    def abort(self) -> None:
        if self.pool:
            for f in self.parts:
                f.cancel()
            self.pool.shutdown(wait=True)
        if self.upload_id is not None:
            st = self.store
            try:
                st.client.abort_multipart_upload(Bucket=st.bucket, Key=st._k(self.key), UploadId=self.upload_id)
            except Exception:  # noqa: BLE001 - best effort; gc reclaims what is left
                pass
            self.upload_id = None


@contextlib.contextmanager
def _copy_errors(store_url: str, source_url: str, source_key: str, key: str) -> Iterator[None]:
    """Errors of a server-side copy: the source changed (412/404 on the copy source) or the store failed.

    Only a failed ``CopySourceIfMatch`` or a vanished source object is the source's doing; a
    denied write or a missing store bucket is reported against the store.
    """
    try:
        with s3.translated(store_url, key):
            yield
    except (AlreadyExists, ObjectNotFound) as exc:
        raise s3.as_source_error(exc, source_url, source_key) from exc


def open_store(url: str | None = None, settings: Settings | None = None) -> Store:
    """Open the store named by ``url`` (default: ``DATASTORE_STORE`` or the embedded store)."""
    settings = settings or Settings.from_env()
    url = url or settings.store
    if url.startswith("s3://") or url.startswith("S3://"):
        return S3Store("s3://" + url[5:], settings)
    if "://" in url:
        raise InvalidSource(url, "unknown store scheme", "set DATASTORE_STORE to a local path or s3://bucket/prefix")
    return LocalStore(url)
