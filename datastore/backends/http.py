"""Fetching one archive over HTTP(S): SSRF-safe, streamed, retried and resumable.

Safety (the URL comes from a user, the fetch runs on a worker that may sit next to a cloud
metadata service or an internal network):

* only ``http://`` and ``https://``; credentials in the URL are refused (and never shown:
  every message, record and return value uses :func:`recorded_url`: no user-info, secret-looking
  query values such as presigned signatures masked);
* every address the host resolves to is checked (:func:`check_address`) and the connection
  is made to exactly the checked address: the TCP socket is opened to the pre-resolved IP
  while the ``Host`` header, TLS SNI and certificate verification keep the host name, so a
  DNS answer that changes between the check and the connect (DNS rebinding) cannot slip in;
* redirects are followed by hand, and every hop is checked again;
* environment proxies and ``.netrc`` are ignored (``trust_env=False``): a proxy would make the
  checked address meaningless, and ``.netrc`` would add credentials we promised not to send.

Robustness: bytes are streamed to the destination in 1 MiB chunks and hashed on the way;
connection errors, timeouts, cut-off bodies, 5xx and 429 are retried with exponential backoff
and jitter (``Retry-After`` honoured); a partial body is resumed with ``Range`` + ``If-Range``
when the server gave a strong ETag or a Last-Modified date, also across calls through a small
JSON sidecar next to the destination.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import http
import http.client
import ipaddress
import json
import os
import random
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from datastore.errors import DownloadFailed, UrlRefused
from datastore.model import progress
from datastore.model.urls import recorded_url, redact  # noqa: F401 - redact is re-exported

CHUNK = 1024 * 1024
# The sidecar's byte count is refreshed this often while streaming, so a killed process loses
# at most this much of its progress.
SIDECAR_EVERY = 64 * CHUNK
BACKOFF_BASE = 1.0
BACKOFF_CAP = 30.0
RETRY_AFTER_CAP = 60.0
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

ALLOW_PRIVATE_ENV = "DATASTORE_HTTP_ALLOW_PRIVATE"
PUBLIC_ONLY_HINT = "datastore only fetches public archive URLs"
# The reason already names the setting; the hint says when to use it (the one line names it once).
PRIVATE_HINT = "datastore fetches only public archive URLs by default; allow private ones on trusted networks only"
PRIVATE_SUFFIX = f"; set {ALLOW_PRIVATE_ENV}=1 to allow it"
"""How a refusal that the setting would lift ends (:func:`check_address`)."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services answer on these; some are not link-local (Alibaba sits in CGNAT space,
# AWS's IPv6 endpoint in ULA space), so they are listed explicitly and refused regardless of
# DATASTORE_HTTP_ALLOW_PRIVATE.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # connecting to 0.x reaches this host on Linux
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix: last 32 bits are IPv4
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use: stays inside the site
_IPV4_COMPAT = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d form

_LINK_LOCAL = "a link-local/cloud metadata address"
_UNSPECIFIED = "an unspecified address"
_MULTICAST = "a multicast address"
_RESERVED = "a reserved address"
_PRIVATE = "a private/loopback address"


# --- URLs -------------------------------------------------------------------------------------


def check_url(url: str) -> None:
    """Refuse URLs the HTTP source must not fetch, before any network access.

    Args:
        url: The URL as given by the user.

    Raises:
        UrlRefused: not http/https, credentials in the URL, no host, or a bad port.
    """
    shown = recorded_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise UrlRefused(shown, f"the URL cannot be parsed ({e})", "pass a well-formed http(s):// URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRefused(
            shown,
            "only http:// and https:// URLs can be fetched",
            "use an http(s):// URL of the archive; pass local paths and s3:// URLs as they are",
        )
    if "@" in parts.netloc:
        raise UrlRefused(
            shown,
            "credentials in the URL are not supported (unauthenticated URLs only)",
            "remove user:password@ from the URL; only publicly downloadable archives can be fetched",
        )
    if not parts.hostname:
        raise UrlRefused(shown, "the URL has no host", "pass a full URL such as https://example.org/data.zip")
    if port == 0:
        raise UrlRefused(shown, "port 0 cannot be connected to", "remove the port or use a real one")


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    return parts.hostname or "", port


# --- addresses --------------------------------------------------------------------------------


def _classify(ip: IPAddress) -> tuple[str, bool] | None:
    """(label, allowed by DATASTORE_HTTP_ALLOW_PRIVATE) of a non-public address, None if public."""
    if ip in METADATA_ADDRESSES or ip.is_link_local:
        return _LINK_LOCAL, False
    if ip.is_unspecified or (ip.version == 4 and ip in _THIS_NETWORK):
        return _UNSPECIFIED, False
    if ip.is_multicast:
        return _MULTICAST, False
    # Loopback before "reserved": ::1 lies in the reserved ::/8 block but is a plain loopback.
    if ip.is_loopback or (ip.version == 4 and ip in _CGNAT):
        return _PRIVATE, True
    if ip.is_reserved:
        return _RESERVED, False
    # is_private also covers documentation/benchmark ranges, Teredo and ULA; is_site_local is the
    # deprecated fec0::/10; anything else that is not global is no public archive host either.
    if ip.is_private or (ip.version == 6 and (ip.is_site_local or ip in _NAT64_LOCAL)) or not ip.is_global:
        return _PRIVATE, True
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, 6to4, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _IPV4_COMPAT and int(ip) > 1):  # :: and ::1 are not IPv4 forms
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def check_address(ip: IPAddress, allow_private: bool) -> str | None:
    """Why ``ip`` must not be connected to, or None when it may be.

    Always refused: link-local (169.254/16, fe80::/10) and cloud metadata addresses, the
    unspecified address (and 0.0.0.0/8), multicast, reserved ranges, and IPv6 forms that embed
    any refused IPv4 address (``::ffff:a.b.c.d``, ``::a.b.c.d``, 6to4, NAT64 ``64:ff9b::/96``).
    Loopback, private (RFC 1918, ULA, CGNAT 100.64/10) and other non-global ranges are refused
    unless ``allow_private``.

    Args:
        ip: The address a host name resolved to (or the literal in the URL).
        allow_private: Value of ``DATASTORE_HTTP_ALLOW_PRIVATE``.

    Returns:
        A reason naming the address (and the setting, when the setting would allow it), or None.
    """
    subject = f"{ip} is"
    if ip.version == 6:
        v4 = _embedded_ipv4(ip)
        if v4 is not None:
            # Judge the IPv4 address the packets really go to; the IPv6 wrapper itself lies in
            # reserved space and would otherwise be refused even for public IPv4 targets.
            ip, subject = v4, f"{ip} embeds {v4},"
    found = _classify(ip)
    if found is None:
        return None
    label, allowable = found
    if allowable and allow_private:
        return None
    reason = f"{subject} {label}"
    return reason + PRIVATE_SUFFIX if allowable else reason


def resolve_checked(host: str, port: int, allow_private: bool, *, url: str | None = None) -> list[str]:
    """Resolve ``host`` and check every address it resolves to.

    All addresses are checked, not only the first: the connection may use any of them, and a
    name that mixes a public and a metadata address is hostile anyway.

    Args:
        host: Host name or IP literal (no brackets).
        port: TCP port.
        allow_private: Value of ``DATASTORE_HTTP_ALLOW_PRIVATE``.
        url: The (redacted) URL to name in errors; defaults to ``host:port``.

    Returns:
        The checked IP addresses, in resolver order, without duplicates.

    Raises:
        UrlRefused: any address is refused by :func:`check_address`.
        DownloadFailed: the name does not resolve (transient only for temporary DNS failures).
    """
    shown = url or f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        temporary = isinstance(e, socket.gaierror) and e.errno == socket.EAI_AGAIN
        detail = getattr(e, "strerror", None) or str(e)
        raise DownloadFailed(shown, f"cannot resolve host {host!r} ({detail})", hint="check the host name in the URL",
                             transient=temporary) from None
    addresses: list[str] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        text = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 scope id ("fe80::1%eth0")
        reason = check_address(ipaddress.ip_address(text), allow_private)
        if reason is not None:
            literal = host.strip("[]").split("%", 1)[0] == text
            raise UrlRefused(shown, reason if literal else f"{host} resolves to a refused address: {reason}",
                             PRIVATE_HINT if reason.endswith(PRIVATE_SUFFIX) else PUBLIC_ONLY_HINT)
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise DownloadFailed(shown, f"host {host!r} has no IPv4 or IPv6 address", hint="check the host name in the URL")
    return addresses


# --- connections pinned to checked addresses --------------------------------------------------


class _PinnedConnectionMixin:
    """Open the TCP socket to the checked IPs instead of resolving ``self.host`` again.

    Everything else (Host header, TLS SNI, certificate hostname check) still uses ``self.host``,
    because only ``_new_conn`` is replaced.
    """

    pinned_ips: tuple[str, ...] = ()
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any

    def _new_conn(self) -> socket.socket:
        if not self.pinned_ips:  # fail closed: never fall back to resolving the name here
            raise NewConnectionError(self, "no checked address to connect to")  # type: ignore[arg-type]
        error: Exception | None = None
        cause: OSError | None = None
        for ip in self.pinned_ips:  # like create_connection: try each checked address in turn
            try:
                return urllib3_connection.create_connection(
                    (ip, self.port), self.timeout, source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError as e:
                error, cause = ConnectTimeoutError(self, f"connection to {ip} timed out"), e
            except OSError as e:
                error, cause = NewConnectionError(self, f"failed to connect to {ip}: {e}"), e  # type: ignore[arg-type]
        assert error is not None
        raise error from cause  # keep the OS error ("Connection refused") for the message


class _PinnedHTTPConnection(_PinnedConnectionMixin, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedConnectionMixin, HTTPSConnection):
    pass


class _PinnedPoolMixin:
    pinned_ips: tuple[str, ...] = ()

    def _new_conn(self) -> Any:
        conn = super()._new_conn()  # type: ignore[misc]
        conn.pinned_ips = self.pinned_ips
        return conn


class _PinnedHTTPConnectionPool(_PinnedPoolMixin, HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSConnectionPool(_PinnedPoolMixin, HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


class _PinnedPoolManager(urllib3.PoolManager):
    def __init__(self, pinned_ips: tuple[str, ...], **kw: Any) -> None:
        super().__init__(**kw)
        self.pinned_ips = pinned_ips
        self.pool_classes_by_scheme = {"http": _PinnedHTTPConnectionPool, "https": _PinnedHTTPSConnectionPool}

    def _new_pool(self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None) -> Any:
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.pinned_ips = self.pinned_ips
        return pool


class _PinnedAdapter(HTTPAdapter):
    """A requests adapter whose every connection goes to the given, already checked, IPs."""

    def __init__(self, pinned_ips: list[str]) -> None:
        self._pinned_ips = tuple(pinned_ips)  # before super().__init__, which builds the pool manager
        super().__init__(max_retries=0)  # retries are ours: each one must be re-checked and counted

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = _PinnedPoolManager(self._pinned_ips, num_pools=connections, maxsize=maxsize,
                                              block=block, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # A proxy would connect to an address we never checked; trust_env=False means none is
        # configured, and this makes sure none can be.
        raise requests.exceptions.InvalidProxyURL("proxies are not used for archive downloads")


def _pinned_session(ips: list[str]) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no env proxies, no .netrc credentials, no REQUESTS_CA_BUNDLE surprises
    adapter = _PinnedAdapter(ips)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# --- download ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    """What :func:`download` fetched.

    Attributes:
        url: The final URL after redirects, redacted.
        size: Bytes written to the destination.
        sha256: Hex SHA-256 of those bytes.
        etag: ETag of the final response, if any.
        last_modified: Last-Modified of the final response, if any.
        resumed: True when part of the file came from an earlier attempt (206 append).
        attempts: Requests made (redirect hops not counted).
    """

    url: str
    size: int
    sha256: str
    etag: str | None
    last_modified: str | None
    resumed: bool
    attempts: int


class _Retry(Exception):
    """An attempt failed in a way worth retrying; ``reason`` feeds the final message."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay  # from Retry-After; None means "use backoff"


def _validator(headers: Any) -> str | None:
    """The If-Range validator of a response: a strong ETag, else Last-Modified."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):  # If-Range must not use weak validators (RFC 9110)
        return etag
    return headers.get("Last-Modified") or None


def _status_text(code: int) -> str:
    try:
        return f"HTTP {code} {http.HTTPStatus(code).phrase}"
    except ValueError:  # an unregistered code; the server's own reason phrase is not trusted
        return f"HTTP {code}"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return min(max((when - datetime.now(timezone.utc)).total_seconds(), 0.0), RETRY_AFTER_CAP)


def _backoff(failures: int) -> float:
    """Exponential backoff with "equal jitter": between half and all of base * 2^(n-1), capped."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (failures - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """(start, total) of ``bytes start-end/total`` (total None for ``*``)."""
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not m:
        return None
    return int(m.group(1)), None if m.group(3) == "*" else int(m.group(3))


def _describe(exc: BaseException) -> str:
    """A short, URL-free description of a network exception."""
    if isinstance(exc, (requests.exceptions.ConnectTimeout, ConnectTimeoutError)):
        return "connection timed out"
    if isinstance(exc, (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError)):
        return "read timed out"
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:  # find the OS-level cause ("Connection refused")
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.strerror and not isinstance(cur, urllib3.exceptions.HTTPError):
            return f"connection failed ({cur.strerror})"
        nxt = cur.__cause__ or cur.__context__
        if nxt is None and cur.args and isinstance(cur.args[-1], BaseException):
            nxt = cur.args[-1]  # urllib3 wraps causes in args (MaxRetryError.reason, ProtocolError)
        if nxt is None and isinstance(cur, urllib3.exceptions.MaxRetryError):
            nxt = cur.reason
        cur = nxt
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError,
                        http.client.HTTPException)):
        return "connection broken"
    return f"connection failed ({type(exc).__name__})"


_NETWORK_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)


class _Sidecar:
    """``<dest>.part.json``: what a later call needs to resume a partial ``dest``."""

    def __init__(self, dest: Path, url: str) -> None:
        self.path = dest.with_suffix(dest.suffix + ".part.json")
        self.url = url

    def load(self) -> tuple[str, int] | None:
        """(validator, bytes) recorded for this URL, or None."""
        try:
            data = json.loads(self.path.read_text())
            if data.get("url") == self.url and isinstance(data.get("validator"), str):
                return data["validator"], int(data["bytes"])
        except (OSError, ValueError, TypeError, KeyError):
            pass
        return None

    def save(self, validator: str, nbytes: int) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"url": self.url, "validator": validator, "bytes": nbytes}))
        os.replace(tmp, self.path)  # atomic: a crash never leaves a half-written sidecar

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _hash_prefix(dest: Path, nbytes: int) -> Any:
    """SHA-256 state over the first ``nbytes`` of ``dest``, read in chunks (memory stays flat)."""
    h = hashlib.sha256()
    left = nbytes
    with dest.open("rb") as f:
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                raise OSError(f"{dest} is shorter than {nbytes} bytes")
            h.update(chunk)
            left -= len(chunk)
    return h


class _Fetch:
    """State of one :func:`download` call (kept in an object so attempts can share it)."""

    def __init__(self, url: str, dest: Path, allow_private: bool, timeout: Any, max_redirects: int,
                 reporter: progress.Reporter) -> None:
        self.url = url
        self.reporter = reporter
        self.shown = recorded_url(url)
        self.dest = dest
        self.allow_private = allow_private
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.sidecar = _Sidecar(dest, self.shown)
        self.have = 0  # bytes of dest that are a verified prefix of the representation
        self.validator: str | None = None
        self.hasher: Any = None  # SHA-256 over exactly `have` bytes, or None (rehash from disk)
        self.use_range = True
        self.total: int | None = None  # announced full length
        self.reported_total = 0
        self.reported_done = 0
        self.resumed = False

    # progress: count each byte of the final file once, however often attempts restart
    def _report_total(self, total: int) -> None:
        if total != self.reported_total:
            self.reporter.add_total(0, total - self.reported_total)
            self.reported_total = total

    def _report_done(self, pos: int) -> None:
        if pos > self.reported_done:
            self.reporter.advance(0, pos - self.reported_done)
            self.reported_done = pos

    def load_partial(self) -> None:
        """Adopt a partial ``dest`` left by an earlier call, if its sidecar matches this URL."""
        recorded = self.sidecar.load()
        if recorded is None:
            self.sidecar.delete()
            return
        validator, nbytes = recorded
        try:
            size = self.dest.stat().st_size
        except OSError:
            self.sidecar.delete()
            return
        # Only bytes that were flushed before the sidecar was written are trusted.
        self.have = min(size, max(nbytes, 0))
        self.validator = validator if self.have > 0 else None

    def open(self, headers: dict[str, str]) -> tuple[requests.Response, requests.Session, str]:
        """GET the URL, following and re-checking redirects; returns the final response."""
        current = self.url
        for _hop in range(self.max_redirects + 1):
            check_url(current)
            # Prepare first: the prepared URL carries the IDNA-encoded host requests will put in
            # the Host header and SNI, and that is the name we resolve and check.
            with requests.Session() as preparer:  # only builds the request; never connects
                preparer.trust_env = False  # no .netrc credentials
                try:
                    prepared = preparer.prepare_request(requests.Request("GET", current, headers=headers))
                except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema, UnicodeError):
                    # Not retryable, and requests' own message would repeat the whole URL.
                    raise UrlRefused(recorded_url(current), "the URL is not valid",
                                     "pass a well-formed http(s):// URL") from None
            host, port = _host_port(prepared.url or current)
            ips = resolve_checked(host, port, self.allow_private, url=recorded_url(current))
            session = _pinned_session(ips)
            try:
                resp = session.send(prepared, stream=True, allow_redirects=False, timeout=self.timeout, verify=True)
            except BaseException:
                session.close()
                raise
            if resp.status_code not in REDIRECT_STATUSES:
                return resp, session, current
            location = resp.headers.get("Location")
            resp.close()
            session.close()
            if not location:
                raise DownloadFailed(recorded_url(current), f"{_status_text(resp.status_code)} without a Location header",
                                     hint="the server's redirect is broken; ask its owner or use the final URL")
            current = urljoin(current, location)
        raise DownloadFailed(self.shown, f"more than {self.max_redirects} redirects",
                             hint="the server redirects in a loop; use the final URL of the archive")

    def attempt(self) -> tuple[requests.Response, str]:
        """One request plus streaming its body into ``dest``; raises _Retry on retryable failure."""
        headers = {"Accept-Encoding": "identity"}  # the archive's bytes as stored, not re-encoded
        ranged = self.use_range and self.have > 0 and self.validator is not None
        if ranged:
            headers["Range"] = f"bytes={self.have}-"
            headers["If-Range"] = self.validator  # type: ignore[assignment]
        try:
            resp, session, final = self.open(headers)
        except (UrlRefused, DownloadFailed):
            raise
        except requests.exceptions.SSLError as e:
            if "CERTIFICATE_VERIFY_FAILED" in str(e) or "hostname" in str(e).lower():
                raise DownloadFailed(self.shown, "the server's TLS certificate could not be verified",
                                     hint="the certificate is not valid for this host; use a correct https:// URL") from None
            raise _Retry(f"TLS handshake failed ({type(e).__name__})") from None
        except _NETWORK_ERRORS as e:
            raise _Retry(_describe(e)) from None
        try:
            return self._receive(resp, final, ranged), final
        finally:
            resp.close()
            session.close()

    def _receive(self, resp: requests.Response, final: str, ranged: bool) -> requests.Response:
        code = resp.status_code
        if code == 429 or code >= 500:
            raise _Retry(f"HTTP {code}", _retry_after(resp.headers.get("Retry-After")))
        if code == 416 and ranged:
            return self._unsatisfiable(resp, final)
        if code not in (200, 206) or (code == 206 and not ranged):
            hint = ("the server requires authorization; only public, unauthenticated URLs can be fetched"
                    if code in (401, 403, 407) else
                    "check the URL in a browser; the server has no file there" if code in (404, 410) else
                    "check the URL in a browser and run the same create again")
            raise DownloadFailed(recorded_url(final), _status_text(code), hint=hint)

        start = 0
        if code == 206:
            cr = _content_range(resp.headers.get("Content-Range"))
            # Some servers ignore If-Range and send the range of a changed file: compare ourselves.
            sent = {resp.headers.get("ETag"), resp.headers.get("Last-Modified")} - {None}
            same = not sent or self.validator in sent
            if cr is None or cr[0] != self.have or not same:
                # Not the continuation we asked for: start over with a plain GET.
                self.use_range = False
                raise _Retry("the server answered the range request with a different range", delay=0.0)
            start, total = cr
            if total is None:
                total = start + int(resp.headers["Content-Length"]) if "Content-Length" in resp.headers else None
            if self.hasher is None:  # the prefix came from an earlier call: hash it from disk
                try:
                    self.hasher = _hash_prefix(self.dest, start)
                except OSError:
                    self.use_range = False
                    raise _Retry("the partial download could not be read back", delay=0.0) from None
            self.resumed = True
        else:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.strip().isdigit() else None
            self.hasher = hashlib.sha256()
            self.validator = _validator(resp.headers)
            self.use_range = True

        self.total = total
        if total is not None:
            self._report_total(total)
        if self.validator is not None:
            self.sidecar.save(self.validator, start)
        else:
            self.sidecar.delete()  # nothing to resume with; a stale sidecar must not be trusted
        self._stream(resp, start)
        return resp

    def _unsatisfiable(self, resp: requests.Response, final: str) -> requests.Response:
        """416 to ``Range: bytes=have-``: the partial is complete, or the server is inconsistent."""
        cr = re.fullmatch(r"\s*bytes\s+\*/(\d+)\s*", resp.headers.get("Content-Range", ""))
        size = int(cr.group(1)) if cr else None
        if size is not None and size == self.have and (self.total is None or self.total == size):
            # An earlier call got every byte but stopped before cleaning up.
            if self.hasher is None:
                self.hasher = _hash_prefix(self.dest, self.have)
            self.total = size
            self._report_total(size)
            self._report_done(size)
            return resp
        if size is not None and self.total is not None and size != self.total:
            raise DownloadFailed(recorded_url(final), f"the server announced {self.total} bytes but now reports {size}",
                                 hint="the server's sizes do not add up; try again later or use another mirror")
        self.use_range = False
        raise _Retry(_status_text(416), delay=0.0)

    def _stream(self, resp: requests.Response, start: int) -> None:
        pos = start
        since_sidecar = 0
        with self.dest.open("r+b" if start else "wb") as f:
            f.seek(start)
            f.truncate()
            self.have = start
            try:
                while True:
                    try:
                        chunk = resp.raw.read(CHUNK, decode_content=False)
                    except _NETWORK_ERRORS as e:
                        # Only the read is retryable: a failing write (disk full) must surface as is.
                        reason = _describe(e)
                        if self.total is not None:
                            reason = f"body cut short at {pos} of {self.total} bytes ({reason})"
                        raise _Retry(reason) from None
                    if not chunk:
                        break
                    f.write(chunk)
                    self.hasher.update(chunk)
                    pos += len(chunk)
                    self.have = pos
                    self._report_done(pos)
                    since_sidecar += len(chunk)
                    if self.validator is not None and since_sidecar >= SIDECAR_EVERY:
                        f.flush()
                        self.sidecar.save(self.validator, pos)
                        since_sidecar = 0
            finally:
                f.flush()
                if self.validator is not None:
                    self.sidecar.save(self.validator, pos)
        if self.total is not None and pos != self.total:
            # Normally urllib3 already raised on a short body; a long one cannot happen with a
            # Content-Length, but the size is what we promise, so check it ourselves.
            if pos < self.total:
                raise _Retry(f"body cut short at {pos} of {self.total} bytes")
            raise DownloadFailed(self.shown, f"received {pos} bytes but the server announced {self.total}",
                                 hint="the server's sizes do not add up; try again later or use another mirror")


def download(
    url: str,
    dest: Path,
    allow_private: bool,
    *,
    timeout: float | tuple[float, float] = (10, 60),
    max_attempts: int = 6,
    max_redirects: int = 5,
    sleep: Callable[[float], None] = time.sleep,
    reporter: progress.Reporter = progress.NO_PROGRESS,
) -> Download:
    """Download ``url`` into ``dest``, safely and resumably.

    Args:
        url: An http(s) URL without credentials.
        dest: File to write; a partial file plus its ``.part.json`` sidecar left by an earlier
            call for the same URL is resumed.
        allow_private: Allow loopback/private addresses (``DATASTORE_HTTP_ALLOW_PRIVATE``).
        timeout: requests timeout, ``(connect, read)`` seconds.
        max_attempts: Requests made at most (redirect hops are not counted).
        max_redirects: Redirect hops followed at most per request.
        sleep: Called with each backoff delay (tests pass a recorder).
        reporter: Told the announced size and each byte of the final file, once.

    Returns:
        What was downloaded (final redacted URL, size, SHA-256, validators, attempts).

    Raises:
        UrlRefused: the URL, or an address it or a redirect resolves to, is not allowed.
        DownloadFailed: a non-retryable status (404 …), inconsistent sizes, or retries
            exhausted (then ``transient=True``).
    """
    check_url(url)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fetch = _Fetch(url, dest, allow_private, timeout, max_redirects, reporter)
    fetch.load_partial()
    failures = 0
    attempts = 0
    while True:
        attempts += 1
        try:
            resp, final = fetch.attempt()
            break
        except _Retry as r:
            if attempts >= max_attempts:
                raise DownloadFailed(
                    fetch.shown, f"{r.reason} after {attempts} attempts",
                    hint="the server or the network keeps failing; run the same create again later "
                         "(a partial download is resumed)",
                    transient=True,
                ) from None
            if r.delay == 0.0:
                continue  # a protocol correction (drop the Range), not a failure to back off from
            failures += 1
            sleep(r.delay if r.delay is not None else _backoff(failures))
    size = fetch.have
    if fetch.total is None:  # chunked/unknown length: the total is only known now
        fetch._report_total(size)
    fetch.sidecar.delete()
    return Download(
        url=recorded_url(final),
        size=size,
        sha256=fetch.hasher.hexdigest(),
        etag=resp.headers.get("ETag"),
        last_modified=resp.headers.get("Last-Modified"),
        resumed=fetch.resumed,
        attempts=attempts,
    )

