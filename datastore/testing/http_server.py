"""A real, threaded HTTP(S) file server on loopback with per-path fault knobs.

Used by the HTTP download tests and by end-to-end archive tests; nothing here is mocked: the
client under test talks HTTP/1.1 over real sockets to :mod:`http.server`.

Typical use::

    with serve({"/data.zip": payload}) as server:
        server.configure("/data.zip", drop_at=0.6)      # cut the first response at 60 %
        download(server.url("/data.zip"), dest, allow_private=True)
        ranges = [h.get("Range") for m, p, h in server.requests]

What the server does for a path it has a file for (see :class:`Behaviour` for the knobs):

* ``GET`` and ``HEAD``; ``Content-Length``, ``Content-Type``, a strong ``ETag`` (a hash of the
  bytes) and a ``Last-Modified`` date (the moment the file was added);
* a single ``Range: bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` gets ``206`` with
  ``Content-Range`` (unsatisfiable ranges get ``416`` with ``Content-Range: bytes */size``);
  several ranges are answered with the whole file (200), which HTTP allows;
* ``If-Range`` with the current strong ETag or the exact Last-Modified date keeps the range;
  anything else (weak or stale validator) gets the whole file with ``200``.

Unknown paths get ``404``. The query string is ignored for the lookup but recorded.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import re
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

WRITE_CHUNK = 64 * 1024


@dataclass
class Behaviour:
    """Fault knobs of one path; change them at any time (they are read per request).

    Attributes:
        drop_at: Close the connection after this fraction (0..1) of the body of the next
            ``drop_count`` responses that carry a body (200 or 206); None never drops.
        drop_count: How many responses are cut by ``drop_at`` (decremented on each drop).
        ignore_range: Answer ``Range`` requests with the whole file (200), like servers
            without range support.
        etag_changes: Send a different ETag on every response, as if the file changed
            between requests (so ``If-Range`` with an old ETag fails).
        status_sequence: Statuses to answer the next requests with, one per request (e.g.
            ``[500, 500]``); when empty, requests are served normally.
        retry_after: ``Retry-After`` value sent with the statuses of ``status_sequence``
            (seconds or an HTTP date).
        redirect: Answer with ``redirect_status`` and ``Location: <redirect>`` (absolute or
            relative) instead of serving the path.
        redirect_status: Status used for ``redirect`` (301, 302, 303, 307, 308).
        content_type: ``Content-Type`` of the file.
        content_length: Announce this ``Content-Length`` on 200 responses instead of the
            true size (the true bytes are sent, then the connection is closed): a lying server.
        etag: Send an ETag at all.
        weak_etag: Send the ETag as weak (``W/"…"``), which ``If-Range`` must not use.
        last_modified: Send ``Last-Modified`` at all.
        rate: Send bodies at about this many bytes per second (a slow source); None is full speed.
    """

    drop_at: float | None = None
    drop_count: int = 1
    ignore_range: bool = False
    etag_changes: bool = False
    status_sequence: list[int] = field(default_factory=list)
    retry_after: str | int | None = None
    redirect: str | None = None
    redirect_status: int = 302
    content_type: str = "application/octet-stream"
    content_length: int | None = None
    etag: bool = True
    weak_etag: bool = False
    last_modified: bool = True
    rate: int | None = None


class Server:
    """A running server; made by :func:`serve`.

    Attributes:
        host: Address it listens on (127.0.0.1).
        port: Its port.
        scheme: ``http`` or ``https``.
        files: Path → bytes served; add or replace entries at any time.
        requests: ``(method, path_with_query, headers)`` of every request received, in order
            (header names as the client sent them).
    """

    def __init__(self, files: dict[str, bytes], scheme: str = "http") -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.scheme = scheme
        self.files: dict[str, bytes] = {_norm(p): b for p, b in files.items()}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._behaviours: dict[str, Behaviour] = {}
        self._modified: dict[str, str] = {}
        self._responses = 0
        self.lock = threading.Lock()

    def url(self, path: str, host: str | None = None) -> str:
        """Absolute URL of ``path`` on this server (``host`` replaces 127.0.0.1, e.g. "localhost")."""
        return f"{self.scheme}://{host or self.host}:{self.port}{_norm(path)}"

    def configure(self, path: str, **knobs: object) -> Behaviour:
        """Set fault knobs of ``path`` (see :class:`Behaviour`) and return its behaviour."""
        b = self.behaviour(path)
        for name, value in knobs.items():
            if not hasattr(b, name):
                raise TypeError(f"unknown knob {name!r}")
            setattr(b, name, value)
        return b

    def behaviour(self, path: str) -> Behaviour:
        """The (mutable) behaviour of ``path``, created with defaults on first use."""
        with self.lock:
            return self._behaviours.setdefault(_norm(path), Behaviour())

    def requests_for(self, path: str) -> list[tuple[str, str, dict[str, str]]]:
        """The recorded requests whose path (without query) is ``path``."""
        with self.lock:
            return [r for r in self.requests if urlsplit(r[1]).path == _norm(path)]

    # --- used by the handler ------------------------------------------------------------------

    def _last_modified(self, path: str) -> str:
        with self.lock:
            return self._modified.setdefault(path, email.utils.formatdate(time.time() - 60, usegmt=True))

    def _etag(self, path: str, body: bytes, b: Behaviour) -> str:
        tag = hashlib.sha256(body).hexdigest()[:20]
        if b.etag_changes:
            with self.lock:
                self._responses += 1
                tag = f"{tag}-{self._responses}"
        return f'W/"{tag}"' if b.weak_etag else f'"{tag}"'


def _norm(path: str) -> str:
    return path if path.startswith("/") else "/" + path


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "datastore-test/1"
    owner: Server  # set on a per-server subclass

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, head: bool) -> None:
        srv = self.owner
        path = urlsplit(self.path).path
        with srv.lock:
            srv.requests.append((self.command, self.path, dict(self.headers.items())))
        b = srv.behaviour(path)
        with srv.lock:
            status = b.status_sequence.pop(0) if b.status_sequence else None
        if status is not None:
            extra = {"Retry-After": str(b.retry_after)} if b.retry_after is not None else {}
            return self._simple(status, extra, head)
        if b.redirect is not None:
            return self._simple(b.redirect_status, {"Location": b.redirect}, head)
        body = srv.files.get(path)
        if body is None:
            return self._simple(404, {}, head)

        headers = {"Content-Type": b.content_type, "Accept-Ranges": "none" if b.ignore_range else "bytes"}
        etag = srv._etag(path, body, b) if b.etag else None
        modified = srv._last_modified(path) if b.last_modified else None
        if etag:
            headers["ETag"] = etag
        if modified:
            headers["Last-Modified"] = modified

        status, start, end = 200, 0, len(body)
        wanted = self.headers.get("Range")
        if wanted and not b.ignore_range and self._if_range_holds(etag, modified):
            parsed = _parse_range(wanted, len(body))
            if parsed == "unsatisfiable":
                headers["Content-Range"] = f"bytes */{len(body)}"
                return self._simple(416, headers, head)
            if parsed is not None:
                status, (start, end) = 206, parsed
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(body)}"
        part = body[start:end]
        lie = status == 200 and b.content_length is not None
        headers["Content-Length"] = str(b.content_length if lie else len(part))

        cut = None
        if not head and b.drop_at is not None:
            with srv.lock:
                if b.drop_count > 0:
                    b.drop_count -= 1
                    cut = int(len(part) * b.drop_at)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if cut is not None or lie:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if not head:
            self._write(part if cut is None else part[:cut], b.rate)

    def _if_range_holds(self, etag: str | None, modified: str | None) -> bool:
        cond = self.headers.get("If-Range")
        if cond is None:
            return True
        cond = cond.strip()
        if cond.startswith("W/"):
            return False  # weak validators never match If-Range
        if cond.startswith('"'):
            return etag is not None and not etag.startswith("W/") and cond == etag
        return modified is not None and cond == modified

    def _simple(self, status: int, headers: dict[str, str], head: bool) -> None:
        body = f"{status}\n".encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self._write(body)

    def _write(self, data: bytes, rate: int | None = None) -> None:
        try:
            view = memoryview(data)
            chunk = WRITE_CHUNK if rate is None else max(1, min(WRITE_CHUNK, rate // 10))
            for i in range(0, len(view), chunk):
                self.wfile.write(view[i:i + chunk])
                if rate is not None:
                    self.wfile.flush()
                    time.sleep(chunk / rate)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; nothing to report


def _parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """(start, end_exclusive) of a single byte range, "unsatisfiable", or None to ignore it."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", value)
    if not m or (not m.group(1) and not m.group(2)):
        return None  # several ranges or garbage: serving the whole file is allowed
    first, last = m.group(1), m.group(2)
    if not first:  # suffix range: the last n bytes
        n = int(last)
        return (max(size - n, 0), size) if n > 0 and size > 0 else "unsatisfiable"
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or (last and int(last) < start):
        return "unsatisfiable"
    return start, end


@contextlib.contextmanager
def serve(files: dict[str, bytes], ssl_context: ssl.SSLContext | None = None) -> Iterator[Server]:
    """Run a threaded file server on 127.0.0.1 on a free port for the duration of the block.

    Args:
        files: Path (``/a/b.zip``) → bytes to serve.
        ssl_context: A server-side TLS context to serve HTTPS instead of HTTP.

    Yields:
        The running :class:`Server`.
    """
    server = Server(files, scheme="https" if ssl_context else "http")
    handler = type("Handler", (_Handler,), {"owner": server})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if ssl_context is not None:
        httpd.socket = ssl_context.wrap_socket(httpd.socket, server_side=True)
    server.port = httpd.server_address[1]
    with running(httpd, "http-server"):
        yield server


@contextlib.contextmanager
def running(httpd: ThreadingHTTPServer, name: str) -> Iterator[None]:
    """Serve ``httpd`` from a thread for the duration of the block, then stop it and close its socket."""
    httpd.daemon_threads = True  # a client holding a keep-alive connection must not block stop
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
