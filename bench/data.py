"""The benchmark's data sets, generated per run: random bytes, so nothing can compress or deduplicate them."""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import os
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

MiB = 1024 * 1024
FILES_PER_DIR = 100
REF_SIZE = 100  # bytes per object of the --no-copy source
ARCHIVE_NAME = "bench-small.tar.gz"  # the http-archive source, served from <work dir>/data/archive/


def make_small_tree(root: Path, files: int, size: int) -> Path:
    """``files`` files of ``size`` random bytes, 100 per directory, 100 directories per parent."""
    for i in range(files):
        directory = root / f"{i // FILES_PER_DIR ** 2:03d}" / f"{i // FILES_PER_DIR % FILES_PER_DIR:02d}"
        if i % FILES_PER_DIR == 0:
            directory.mkdir(parents=True, exist_ok=True)
        # Random bytes: nothing along the way can compress or deduplicate them.
        (directory / f"{i:07d}.bin").write_bytes(os.urandom(size))
    return root


def make_large_file(root: Path, size: int) -> Path:
    """A folder holding one file of ``size`` random bytes."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "large.bin", "wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 * MiB))
            fh.write(chunk)
            left -= len(chunk)
    return root


def make_archive(path: Path, files: int, size: int) -> Path:
    """A ``.tar.gz`` (gzip level 1) of ``files`` files of ``size`` random bytes, laid out like
    :func:`make_small_tree` (regular files only: tar creates their folders), written straight
    from memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mtime = time.time()
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for i in range(files):
            info = tarfile.TarInfo(f"{i // FILES_PER_DIR ** 2:03d}/{i // FILES_PER_DIR % FILES_PER_DIR:02d}/{i:07d}.bin")
            info.size, info.mtime, info.mode = size, mtime, 0o644
            tar.addfile(info, io.BytesIO(os.urandom(size)))
    return path


class _FileHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files from a folder (GET/HEAD, Content-Length, Last-Modified); quiet; bodies by sendfile."""

    def log_message(self, format: str, *args: object) -> None:
        del format, args

    def copyfile(self, source, outputfile) -> None:
        # sendfile: the kernel copies page cache → socket, so serving costs this (the bench's)
        # process almost no CPU; the headers are already on the socket (wfile is unbuffered).
        del outputfile
        self.connection.sendfile(source)


@contextlib.contextmanager
def file_server(directory: Path) -> Iterator[str]:
    """A threaded HTTP server for ``directory`` on 127.0.0.1 (a free port); yields its base URL."""
    handler = functools.partial(_FileHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="bench-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

