"""A store under an S3 bucket prefix."""

from __future__ import annotations

import contextlib
import io
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from datastore import failpoints
from datastore.backends import s3
from datastore.errors import (
    AlreadyExists,
    ConfigError,
    DatastoreError,
    MismatchedAnswer,
    ObjectNotFound,
)
from datastore.settings import Settings
from datastore.store import layout
from datastore.store.base import BlobWriter, ObjectInfo, Store


class S3Store(Store):
    """A store under ``s3://bucket/prefix``; the endpoint comes from ``AWS_ENDPOINT_URL``."""

    def __init__(self, url: str, settings: Settings | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            problem = "names no bucket" if parts.scheme == "s3" else "is not an S3 URL"
            raise ConfigError("DATASTORE_STORE", url, problem,
                              "set DATASTORE_STORE to s3://bucket/prefix (for example s3://my-bucket/datastore)")
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
        failpoints.hit("store-write")
        extra = {"IfNoneMatch": "*"} if if_absent else {}
        with s3.translated(self.url, key):
            self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data, **extra)

    def put_file(self, key: str, path: Path) -> None:
        failpoints.hit("store-write")
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
        failpoints.hit("store-write")
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
        failpoints.hit("store-write")
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
            raise MismatchedAnswer(f"{self.key} from byte {self.pos}", f"Content-Range {r.get('ContentRange')}")
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
            raise MismatchedAnswer(self.key, f"an answer that ended at byte {self.pos} of {self.size}")
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
        self.key = layout.upload_key(uuid.uuid4().hex)
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
            failpoints.hit("store-write")
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


