"""Sort a stream that may be too big for memory: sorted runs spilled to disk, then a k-way merge.

S3 listings are in UTF-8 byte order on AWS, but not on every S3 server (SeaweedFS lists
directory by directory), and manifests must be in path order. Up to ``run_size`` items are
sorted in memory; beyond that, each sorted run goes to a temporary file as JSON lines and
:func:`heapq.merge` streams them back, so memory is bounded by one run whatever the count.
"""

from __future__ import annotations

import heapq
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def _spill(run: list, dump: Callable[[Any], Any], directory: str) -> str:
    fd, path = tempfile.mkstemp(prefix="run-", suffix=".jsonl", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        for item in run:
            fh.write(json.dumps(dump(item), ensure_ascii=False, separators=(",", ":")))
            fh.write("\n")
    return path


def _read(path: str, load: Callable[[Any], T]) -> Iterator[T]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            yield load(json.loads(line))


def sorted_stream(
    items: Iterable[T],
    key: Callable[[T], Any],
    dump: Callable[[T], Any],
    load: Callable[[Any], T],
    run_size: int = 200_000,
) -> Iterator[T]:
    """Yield ``items`` sorted by ``key`` with memory bounded by ``run_size`` items.

    Args:
        items: Any iterable, consumed once.
        key: Sort key.
        dump: Item to a JSON-serialisable value (for spilled runs).
        load: The inverse of ``dump``.
        run_size: Items sorted in memory at a time.
    """
    with tempfile.TemporaryDirectory(prefix="datastore-sort-") as tmp:
        runs: list[str] = []
        run: list[T] = []
        for item in items:
            run.append(item)
            if len(run) >= run_size:
                run.sort(key=key)
                runs.append(_spill(run, dump, tmp))
                run = []
        run.sort(key=key)
        if not runs:  # the common case: everything fitted in one run, no disk involved
            yield from run
            return
        if run:
            runs.append(_spill(run, dump, tmp))
            run = []
        yield from heapq.merge(*(_read(p, load) for p in runs), key=key)
