"""The S3 boundary: client construction and translation of botocore errors.

Everything that calls boto3 goes through :func:`client` and wraps calls in :func:`translated`,
so the rest of the project only ever sees :mod:`datastore.errors` exceptions.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from datastore.errors import (
    AlreadyExists,
    DatastoreError,
    MismatchedAnswer,
    ObjectNotFound,
    SourceAccessDenied,
    SourceChanged,
    SourceNotFound,
    StoreAccessDenied,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
    TransientError,
)

T = TypeVar("T")

_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidSecurity",
    "AuthorizationHeaderMalformed",
}
_DENIED_CODES = {"AccessDenied", "AllAccessDisabled", "Forbidden", "403"}
_MISSING_BUCKET = {"NoSuchBucket"}
_MISSING_KEY = {"NoSuchKey", "404", "NotFound", "NoSuchUpload", "NoSuchVersion"}
_TAKEN = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError", "ServiceUnavailable", "503", "500"}

_lock = threading.Lock()
_clients: dict[tuple, object] = {}
_fast_instances: weakref.WeakSet[FastS3] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """Drop every connection a forked child inherited from its parent.

    A child that used them would share one socket with its parent and siblings, and read their
    answers: wrong bytes of the right length, or a stranger's manifest (a forking PyTorch
    ``DataLoader`` is the everyday case). The child builds its own clients on first use. The
    lock is new too, since another parent thread may have held it at the moment of the fork.
    """
    global _lock
    _lock = threading.Lock()
    _clients.clear()
    for fast in list(_fast_instances):
        fast._local = threading.local()  # noqa: SLF001 - the inherited keep-alive connection stays unused


os.register_at_fork(after_in_child=_after_fork_in_child)


def client(**overrides: object):
    """A boto3 S3 client of this process, shared by its threads, configured for bulk transfer.

    Clients (and so their connection pools) are per process: a forked child gets new ones (see
    :func:`_after_fork_in_child`), so call this where the client is used rather than keeping one.
    The endpoint comes from the standard ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3`` variables
    (boto3 reads them itself), credentials from the standard chain unless ``overrides`` name them.
    """
    key = tuple(sorted(overrides.items()))
    with _lock:
        c = _clients.get(key)
        if c is None:
            session = boto3.session.Session()
            args = dict(overrides)
            region = args.pop("region_name", None) or session.region_name or "us-east-1"
            cfg = Config(
                max_pool_connections=64,
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=10,
                read_timeout=120,
                # Our own sha256 protects the content end to end; botocore's default per-request
                # CRC would cost CPU on every part without adding protection we rely on.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                s3={"addressing_style": "path"},
            )
            c = session.client("s3", region_name=region, config=cfg, **args)  # type: ignore[arg-type]
            _clients[key] = c
        return c


def reset_clients() -> None:
    """Forget cached clients (tests change credentials and endpoints between cases)."""
    with _lock:
        _clients.clear()


def translate(exc: BaseException, location: str, key: str | None = None) -> DatastoreError:
    """Map a botocore exception to the project's hierarchy.

    Args:
        exc: The exception botocore raised.
        location: ``s3://bucket/prefix`` of the store or source, for the message.
        key: The object key involved, when there is one.
    """
    if isinstance(exc, DatastoreError):
        return exc
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        msg = err.get("Message") or code or status
        if code in _MISSING_BUCKET:
            return StoreNotFound(location, "no such bucket")
        if code in _CREDENTIAL_CODES:
            return StoreAccessDenied(location, f"{code}: the credentials were rejected")
        if code in _DENIED_CODES or status == "403":
            return StoreAccessDenied(location, code or "403 Forbidden")
        if code in _TAKEN or status == "412":
            return AlreadyExists(location, key or "")
        if code in _MISSING_KEY or status == "404":
            if key is None:  # a HEAD on the bucket itself says 404 for a missing bucket
                return StoreNotFound(location, "no such bucket")
            return ObjectNotFound(location, key)
        if code in _THROTTLED or status.startswith("5"):
            return TransientError(f"S3 at {location!r} answered {code or status} ({msg})", "the request will be retried")
        return StoreError(f"S3 request to {location!r} failed: {code} {msg}".strip(), "see the S3 error code above")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StoreAccessDenied(location, "no AWS credentials were found")
    if isinstance(exc, (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError, ConnectTimeoutError)):
        return StoreUnavailable(location, type(exc).__name__)
    if isinstance(exc, (ResponseStreamingError, IncompleteReadError, HTTPClientError)):
        # The connection broke in the middle of an answer (a reset, IncompleteRead): nothing is
        # wrong with the settings, and the same request on a new connection normally succeeds.
        return TransientError(f"the connection to S3 at {location!r} broke in the middle of an answer ({exc})",
                              "the request is retried; if it keeps failing, check the network and the S3 server")
    if isinstance(exc, BotoCoreError):
        return StoreError(f"S3 request to {location!r} failed ({exc})", "check the store settings")
    raise exc


def retried(call: Callable[[], T], attempts: int = 5, base: float = 0.1) -> T:
    """``call()``, again on a transient failure, with exponential backoff and full jitter.

    botocore retries a request until its answer starts; a body that breaks off half-way, or an
    answer that does not match its request (:class:`MismatchedAnswer`), is retried here.
    """
    for attempt in range(attempts):
        try:
            return call()
        except DatastoreError as exc:
            if not exc.transient or attempt == attempts - 1:
                raise
        time.sleep(random.uniform(0, base * 2**attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def as_source_error(err: DatastoreError, location: str, key: str | None = None) -> DatastoreError:
    """Re-word a store-side error for a *source* bucket (the user's data, not our store).

    A failed ``If-Match``/``CopySourceIfMatch`` (412) or a vanished key means the object changed
    after it was listed: the error names the key, and re-running the create picks up the new bytes.
    """
    if isinstance(err, StoreNotFound):
        return SourceNotFound(location, "check the bucket name in the s3:// URL (names are case-sensitive) and AWS_ENDPOINT_URL")
    if isinstance(err, StoreAccessDenied):
        return SourceAccessDenied(location, err.reason)
    rerun = "run the same create again to take the object's current contents (finished batches are reused)"
    if isinstance(err, AlreadyExists):
        return SourceChanged(key or location, "its ETag no longer matches the listing", rerun)
    if isinstance(err, ObjectNotFound):
        return SourceChanged(key or location, "it was deleted after the listing", rerun)
    return err


@contextlib.contextmanager
def translated(location: str, key: str | None = None, *, source: bool = False) -> Iterator[None]:
    """Context manager that re-raises botocore errors as :class:`DatastoreError` subclasses.

    Args:
        location: ``s3://bucket/prefix`` for messages.
        key: The object key involved, if any.
        source: The bucket is a creation source, not the store (see :func:`as_source_error`).
    """
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        err = translate(exc, location, key)
        raise (as_source_error(err, location, key) if source else err) from exc


class FastS3:
    """GETs and listings without botocore's per-request machinery (about 5× less CPU).

    botocore spends ~1.4 ms of CPU per request building, signing and parsing; with thousands of
    10 KB objects on a 2-core machine that, not the network, is the limit. This signs with
    botocore's own SigV4 signer (the client's credentials, refreshed per request) and sends the
    request on a keep-alive ``http.client`` connection per thread (~0.3 ms per object in all).
    Anything but a 200 or a clear 403/404/412 (a redirect to another region, say, or a network
    error after retries) is handed to the boto3 client, so behaviour never differs, only speed.

    Connections are per process and per thread: a forked child opens its own (see
    :func:`_after_fork_in_child`), and an answer is matched to its request (status, length,
    the pinned ETag and VersionId) before its body is returned.

    Args:
        client: A boto3 S3 client, or a function returning this process's client (what
            :func:`client` gives), so a forked child never uses its parent's connection pool.
    """

    def __init__(self, client) -> None:  # noqa: ANN001 - a boto3 S3 client or a function returning one
        from urllib.parse import urlsplit

        from botocore.auth import S3SigV4Auth

        self._client_of = client if callable(client) and not hasattr(client, "meta") else (lambda: client)
        c = self.client
        parts = urlsplit(c.meta.endpoint_url)
        self.https = parts.scheme == "https"
        self.host = parts.netloc
        self.base = parts.path.rstrip("/")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.region = c.meta.region_name
        self._signer_cls = S3SigV4Auth
        self._local = threading.local()
        # Only where a plain connection is what boto3 would make too: no proxy configured, and
        # TLS verified against the same CA bundle (AWS_CA_BUNDLE) unless verification is off.
        proxies = c.meta.config.proxies or {}
        env_proxy = any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"))
        self.enabled = not proxies and not env_proxy
        self._verify = c._endpoint.http_session._verify  # noqa: SLF001 - True, False or a CA bundle path
        _fast_instances.add(self)

    @property
    def client(self):  # noqa: ANN201 - a boto3 S3 client
        """The boto3 client of this process (a forked child's own)."""
        return self._client_of()

    @property
    def _creds(self):  # noqa: ANN202 - botocore credentials (refreshable), or None
        return self.client._request_signer._credentials  # noqa: SLF001 - the client's own credentials

    def _conn(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and not fresh:
            return conn
        if conn is not None:
            conn.close()
        if self.https:
            from botocore.httpsession import get_cert_path

            if self._verify is False:
                ctx = ssl._create_unverified_context()  # noqa: S323 - the user turned verification off for boto3 too
            else:
                ctx = ssl.create_default_context(cafile=self._verify if isinstance(self._verify, str) else get_cert_path(True))
            conn = http.client.HTTPSConnection(self.host, timeout=120, context=ctx)
        else:
            conn = http.client.HTTPConnection(self.host, timeout=120)
        self._local.conn = conn
        return conn

    def _send(self, path: str, headers: dict[str, str], operation: str,
              expect: dict[str, str] | None = None) -> bytes | None:
        """GET ``path`` signed; the body of a 200, a ``ClientError`` for 403/404/412, else None.

        None means "let boto3 do it": a redirect, an unexpected status, or the network still
        failing after retries on fresh connections.

        Args:
            expect: Response headers (lower-case names) that must have these values, e.g. the
                pinned ETag: an answer that is not to this request is an error, never data.
        """
        from botocore.awsrequest import AWSRequest

        creds = self._creds
        if creds is None or not self.enabled:
            return None
        for attempt in range(4):
            req = AWSRequest(method="GET", url=self.origin + path, headers=dict(headers))
            self._signer_cls(creds.get_frozen_credentials(), "s3", self.region).add_auth(req)
            try:
                conn = self._conn(fresh=attempt > 0)
                conn.request("GET", path, headers=dict(req.headers.items()))
                r = conn.getresponse()
                data = r.read()
            except ssl.SSLError:
                self.enabled = False  # boto3 connects differently (proxy, CA): use it from now on
                return None
            except (OSError, http.client.HTTPException):
                # A kept-alive connection the server closed, a reset in the middle of an answer
                # (IncompleteRead), or the network: reconnect and retry; a second failure in a
                # row hands this and later requests to boto3 (and its own retries).
                if attempt >= 1:
                    self.enabled = False
                    return None
                self._conn(fresh=True)
                time.sleep(0.05)
                continue
            if r.status == 200:
                check_answer(path, r.getheader("Content-Length"), len(data),
                             {k: r.getheader(k) for k in (expect or {})}, expect or {})
                return data
            if r.status in (500, 502, 503, 504) and attempt < 3:
                time.sleep(0.2 * 2**attempt)
                continue
            if r.status in (403, 404, 412):
                code = _xml_code(data) or {403: "AccessDenied", 404: "NoSuchKey", 412: "PreconditionFailed"}[r.status]
                raise ClientError({"Error": {"Code": code, "Message": code},
                                   "ResponseMetadata": {"HTTPStatusCode": r.status}}, operation)
            return None
        return None

    def get(self, bucket: str, key: str, *, if_match: str | None = None, version_id: str | None = None) -> bytes:
        """The object's bytes; errors surface as botocore ``ClientError`` (see :func:`translated`)."""
        from urllib.parse import quote

        path = f"{self.base}/{bucket}/{quote(key, safe='/~')}"
        if version_id:
            path += f"?versionId={quote(version_id, safe='')}"
        expect = {}
        if if_match:
            expect["etag"] = f'"{if_match}"'
        if version_id and version_id != "null":
            expect["x-amz-version-id"] = version_id
        data = self._send(path, {"If-Match": f'"{if_match}"'} if if_match else {}, "GetObject", expect)
        return data if data is not None else self._slow(bucket, key, if_match, version_id)

    def list_v2(self, bucket: str, prefix: str) -> Iterator[tuple[str, int, str]]:
        """``(key, size, etag)`` of every object under ``prefix`` (ListObjectsV2, all pages).

        Parsed with ElementTree (C): botocore's parser is most of a big listing's cost.
        """
        from urllib.parse import quote, unquote_plus
        from xml.etree import ElementTree

        ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
        token: str | None = None
        first = True
        while True:
            query = f"encoding-type=url&list-type=2&max-keys=1000&prefix={quote(prefix, safe='')}"
            if token is not None:
                query = f"continuation-token={quote(token, safe='')}&" + query
            data = self._send(f"{self.base}/{bucket}?{query}", {}, "ListObjectsV2")
            if data is None:
                if not first:  # go on with boto3 (its own retries) from where the fast path stopped
                    yield from self._slow_list(bucket, prefix, token)
                    return
                yield from self._slow_list(bucket, prefix, None)
                return
            first = False
            root = ElementTree.fromstring(data)
            if not root.tag.startswith(ns):  # an S3 server without the namespace
                ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
            # Keys are URL-encoded only if the server says so (botocore decodes the same way).
            decode = unquote_plus if root.findtext(f"{ns}EncodingType") == "url" else str
            for c in root.iter(f"{ns}Contents"):
                yield (decode(c.findtext(f"{ns}Key") or ""), int(c.findtext(f"{ns}Size") or 0),
                       (c.findtext(f"{ns}ETag") or "").strip('"'))
            if root.findtext(f"{ns}IsTruncated") != "true":
                return
            token = root.findtext(f"{ns}NextContinuationToken")
            if not token:
                raise StoreError(f"listing s3://{bucket}/{prefix} was truncated without a continuation token",
                                 "the S3 server answered inconsistently; run the command again")

    def _slow_list(self, bucket: str, prefix: str, token: str | None) -> Iterator[tuple[str, int, str]]:
        kw: dict = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kw["ContinuationToken"] = token
        for page in self.client.get_paginator("list_objects_v2").paginate(**kw):
            for o in page.get("Contents", []):
                yield o["Key"], o["Size"], o["ETag"].strip('"')

    def _slow(self, bucket: str, key: str, if_match: str | None, version_id: str | None) -> bytes:
        kw: dict = {"Bucket": bucket, "Key": key}
        if if_match:
            kw["IfMatch"] = f'"{if_match}"'
        if version_id:
            kw["VersionId"] = version_id
        r = self.client.get_object(**kw)
        data = r["Body"].read()
        expect = {"etag": f'"{if_match}"'} if if_match else {}
        check_answer(f"{bucket}/{key}", r.get("ContentLength"), len(data), {"etag": r.get("ETag")}, expect)
        return data


def check_answer(what: str, content_length: object, got: int, headers: dict[str, object],
                 expect: dict[str, str]) -> None:
    """Raise :class:`MismatchedAnswer` unless a response matches its request.

    Args:
        what: The request, for the message (key, range).
        content_length: The ``Content-Length`` the response declared (None if it declared none).
        got: Body bytes actually read.
        headers: Response header values, by the lower-case names in ``expect``.
        expect: What those headers must say (e.g. the pinned ETag, the requested Content-Range).
    """
    if content_length is not None and int(content_length) != got:  # type: ignore[arg-type]
        raise MismatchedAnswer(what, f"{got} bytes where it declared {content_length}")
    for name, want in expect.items():
        have = headers.get(name)
        if have is not None and str(have).strip('"') != want.strip('"'):
            raise MismatchedAnswer(what, f"{name} {have} where {want} was asked for")


def check_range(what: str, response: dict, data: bytes, offset: int, last: int, etag: str | None = None) -> None:
    """Raise :class:`MismatchedAnswer` unless a ranged ``GetObject`` answer is to this request.

    The answer must declare the range asked for (S3 clips a range that runs past the end, so
    its end is compared up to the object's size), the length it declared, and, for a pinned
    object, its ETag. A crossed answer (another request's, on a shared connection) has the
    right length often enough to pass for data otherwise.

    Args:
        what: The request, for the message (key and range).
        response: botocore's ``get_object`` response.
        data: The body read.
        offset: First byte asked for.
        last: Last byte asked for (inclusive).
        etag: The pinned ETag, if the object is pinned.
    """
    content_range = response.get("ContentRange")
    if content_range is None:  # a 200 with the whole object: the server ignored the Range header
        raise MismatchedAnswer(what, "the whole object, not the range")
    span, _, total = str(content_range).removeprefix("bytes ").partition("/")
    want = f"{offset}-{min(last, int(total) - 1)}" if total.isdigit() else f"{offset}-{last}"
    headers: dict[str, object] = {"content-range": span}
    expect = {"content-range": want}
    if etag is not None:
        headers["etag"], expect["etag"] = response.get("ETag"), etag
    check_answer(what, response.get("ContentLength"), len(data), headers, expect)


def _xml_code(body: bytes) -> str | None:
    start = body.find(b"<Code>")
    end = body.find(b"</Code>", start)
    return body[start + 6 : end].decode(errors="replace") if start >= 0 and end > start else None
