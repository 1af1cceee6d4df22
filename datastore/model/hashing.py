"""The one stream-and-hash loop: every path that moves a file's bytes hashes them on the way.

Creation streams large files into the store, download streams them to disk, verify re-reads
them; all of them go through :func:`copy_hashed`, so the chunking, the byte count and the
digest are computed one way. Pure: it reads and writes only the objects it is given.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol


class Readable(Protocol):
    """Anything with ``read(n)`` (a file, an S3 body, a store reader)."""

    def read(self, n: int = -1, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Hashed:
    """What went through :func:`copy_hashed`: the byte count and the sha256 (hex)."""

    size: int
    sha256: str


def chunks(body: Readable | Callable[[int], bytes], chunk_bytes: int, limit: int | None = None) -> Iterator[bytes]:
    """``body``'s bytes in chunks of at most ``chunk_bytes``, stopping after ``limit`` bytes if given.

    ``body`` is a file-like object or a ``read(n)`` callable (``os.read`` bound to a descriptor).
    """
    read = body if callable(body) and not hasattr(body, "read") else body.read  # type: ignore[union-attr]
    left = limit
    while left is None or left > 0:
        data = read(chunk_bytes if left is None else min(chunk_bytes, left))
        if not data:
            return
        if left is not None:
            left -= len(data)
        yield data


class Stopped(Exception):
    """:func:`copy_hashed` was told to stop (another worker failed): the copy is incomplete."""


def copy_hashed(source: Iterable[bytes], sink: Callable[[bytes], object] | None = None,
                stop: threading.Event | None = None) -> Hashed:
    """Pass every chunk of ``source`` to ``sink`` (if any), hashing and counting it.

    Raises:
        Stopped: ``stop`` was set between two chunks.
    """
    h = hashlib.sha256()
    n = 0
    for data in source:
        if stop is not None and stop.is_set():
            raise Stopped
        h.update(data)
        n += len(data)
        if sink is not None:
            sink(data)
    return Hashed(n, h.hexdigest())
