"""A fault-injecting S3 proxy on loopback: what a flaky network and a flaky S3 do, on purpose.

It forwards every request unchanged (headers, body, so SigV4 signatures stay valid) to a real
S3 server and, for the requests a :class:`Fault` matches, at its rate:

* ``"500-after"``: forwards the request (so it *takes effect*), then answers ``500
  InternalError`` instead of the real answer: S3's "may or may not have been applied";
* ``"503-before"``: answers ``503 SlowDown`` without forwarding;
* ``"reset"``: sends the real status and headers and half the body, then resets the connection;
* ``"cross"``: answers with the previous GET's answer (another request's), as a connection
  shared by two processes does.
* ``"latency"``: waits :attr:`Fault.delay` seconds before forwarding (a slow or distant store).

Decisions come from a seeded random generator, so a failing run can be replayed. Counts of what
was injected are kept per fault, so a test can check faults really happened.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from datastore.testing.http_server import running
from datastore.testing.servers import S3Server

_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "expect"}
_INTERNAL = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
             b"<Message>We encountered an internal error. Please try again.</Message></Error>")
_SLOW = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
         b"<Message>Please reduce your request rate.</Message></Error>")


@dataclass
class Fault:
    """One kind of fault, for requests whose method and path (with query) match.

    Attributes:
        kind: ``"500-after"``, ``"503-before"``, ``"reset"``, ``"cross"`` or ``"latency"``.
        rate: Probability per matching request (1.0: every one).
        method: Request method to match (``None``: any).
        path: Regular expression searched in the request path and query (``None``: any).
        limit: Inject at most this many times (``None``: no limit), e.g. "the first two tries".
        delay: Seconds a ``"latency"`` fault waits.
        injected: How many times this fault was injected.
    """

    kind: str
    rate: float
    method: str | None = None
    path: str | None = None
    limit: int | None = None
    delay: float = 0.05
    injected: int = 0

    def matches(self, method: str, path: str) -> bool:
        """Whether a request is one this fault may hit."""
        if self.limit is not None and self.injected >= self.limit:
            return False
        return (self.method is None or method == self.method) and (self.path is None or re.search(self.path, path) is not None)


@dataclass
class FaultyS3:
    """The running proxy: point clients at :attr:`endpoint`; change :attr:`faults` at any time."""

    endpoint: str
    upstream: S3Server
    faults: list[Fault] = field(default_factory=list)
    seed: int = 0
    last_get: tuple[int, list[tuple[str, str]], bytes] | None = None
    _rnd: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def server(self) -> S3Server:
        """This proxy as an :class:`S3Server` (same keys as the upstream one)."""
        return S3Server(self.endpoint, self.upstream.access_key, self.upstream.secret_key)

    def decide(self, method: str, path: str, stage: tuple[str, ...]) -> Fault | None:
        """The fault (of a kind in ``stage``) to inject into this request, if any."""
        with self._lock:
            for f in self.faults:
                if f.kind in stage and f.matches(method, path) and self._rnd.random() < f.rate:
                    f.injected += 1
                    return f
        return None


def _handler(proxy: FaultyS3) -> type[BaseHTTPRequestHandler]:
    up = urlsplit(proxy.upstream.endpoint)
    local = threading.local()

    def upstream_conn(fresh: bool = False) -> http.client.HTTPConnection:
        conn = getattr(local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = local.conn = http.client.HTTPConnection(up.hostname, up.port, timeout=120)
        return conn

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, and 100-continue for botocore's large PUTs

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _answer(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None,
                    head_length: str | None = None) -> None:
            self.send_response(status)
            for k, v in headers or [("Content-Type", "application/xml")]:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body) if head_length is None else head_length))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _forward(self) -> None:
            method, path = self.command, self.path
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            slow = proxy.decide(method, path, ("latency",))
            if slow is not None:
                time.sleep(slow.delay)
            if proxy.decide(method, path, ("503-before",)):
                self._answer(503, _SLOW)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            for attempt in range(2):
                conn = upstream_conn(fresh=attempt > 0)
                try:
                    conn.request(method, path, body=body, headers=headers)
                    r = conn.getresponse()
                    data = r.read()
                    break
                except (OSError, http.client.HTTPException):
                    if attempt:
                        raise
            out = [(k, v) for k, v in r.getheaders() if k.lower() not in _HOP and k.lower() != "content-length"]
            if method == "GET":
                # The last answer really sent to a GET stands in for this one (a stale answer
                # left on a shared connection); crossed answers are not remembered.
                previous = proxy.last_get
                if previous is not None and proxy.decide(method, path, ("cross",)):
                    self._answer(previous[0], previous[2], previous[1])
                    return
                proxy.last_get = (r.status, out, data)
            if proxy.decide(method, path, ("500-after",)):
                self._answer(500, _INTERNAL)  # the request took effect; its answer is lost
                return
            if data and proxy.decide(method, path, ("reset",)):
                self.send_response(r.status)
                for k, v in out:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                # SO_LINGER 0: close with a TCP reset, as a dropped connection looks to the client.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                return
            # A HEAD's Content-Length is the object's size, though no body follows.
            self._answer(r.status, data, out, r.getheader("Content-Length") if method == "HEAD" else None)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    return Handler


@contextlib.contextmanager
def faulty_s3(upstream: S3Server, seed: int = 0) -> Iterator[FaultyS3]:
    """Run a :class:`FaultyS3` proxy in front of ``upstream`` on a free loopback port."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    proxy = FaultyS3(f"http://127.0.0.1:{httpd.server_address[1]}", upstream, seed=seed, _rnd=random.Random(seed))
    httpd.RequestHandlerClass = _handler(proxy)
    with running(httpd, "faulty-s3"):
        yield proxy
