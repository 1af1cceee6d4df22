"""Forked readers (a PyTorch ``DataLoader``'s workers) read exact bytes from an S3 store.

A parent that has read through ``datastore://`` holds kept-alive connections; a forked child
that used them would share one socket with its siblings and read their answers. Both ways a
``Dataset`` meets the file system are covered: reusing the parent's instance, and asking
fsspec for one in the child (fsspec hands out a new instance after a fork).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random

import fsspec
import pytest

from datastore_flows.local_folder import create_from_local
from tests.conftest import make_tree

pytestmark = pytest.mark.usefixtures("prefect_api")

KiB = 1024
WORKERS = 8
ROUNDS = 10

# Set in the parent before the fork; the children inherit them (as a Dataset's fields would be).
_FS = None
_TREE: dict[str, bytes] = {}
_URL = ""


def _tree() -> dict[str, bytes]:
    """Files of distinct bytes and sizes: packed small ones and a few that are objects of their own."""
    out = {}
    for i in range(48):
        seed = hashlib.sha256(f"file-{i}".encode()).digest()
        out[f"d{i % 6}/f{i:03d}.bin"] = seed * (8 + 37 * i)
    for i in range(3):
        out[f"large/l{i}.bin"] = hashlib.sha256(f"large-{i}".encode()).digest() * (3 * KiB * KiB // 32 + i)
    return out


def _worker(args: tuple[str, int]) -> tuple[int, int, int, list[str]]:
    """``(reads, wrong, errors, first messages)`` of ROUNDS rounds of ranged and whole reads."""
    pattern, seed = args
    fs = _FS if pattern == "reuse" else fsspec.filesystem("datastore")
    rnd = random.Random(seed * 7919 + os.getpid())
    paths = sorted(_TREE)
    reads = wrong = errors = 0
    messages: list[str] = []
    for _ in range(ROUNDS):
        for _ in range(4):
            path = rnd.choice(paths)
            data = _TREE[path]
            url = f"{_URL}/{path}"
            try:
                if rnd.random() < 0.5:
                    got, want = fs.cat_file(url), data
                else:
                    start = rnd.randrange(len(data))
                    end = rnd.randrange(start, len(data) + 1)
                    got, want = fs.cat_file(url, start=start, end=end), data[start:end]
                reads += 1
                if got != want:
                    wrong += 1
                    messages.append(f"wrong bytes for {path}")
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                errors += 1
                messages.append(f"{type(exc).__name__}: {exc}")
    return reads, wrong, errors, messages[:3]


@pytest.mark.parametrize("pattern", ["reuse", "new"])
def test_forked_readers_read_exact_bytes(pattern: str, seaweed_store: str, tmp_path) -> None:  # noqa: ANN001
    global _FS, _TREE, _URL
    tree = _tree()
    rec = create_from_local(str(make_tree(tmp_path / "src", tree)), name="forked")
    _TREE, _URL = tree, f"datastore://forked@{rec['version']}"
    _FS = fsspec.filesystem("datastore")
    # The parent reads first, as a training script does before it builds its DataLoader: its
    # connections are open and idle when the workers fork.
    for path in sorted(tree)[:12]:
        assert _FS.cat_file(f"{_URL}/{path}") == tree[path]
    assert _FS.cat_file(f"{_URL}/large/l0.bin", start=5, end=70) == tree["large/l0.bin"][5:70]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(WORKERS) as pool:
        # A hang (workers stuck on a shared socket) fails the test instead of blocking it.
        results = pool.map_async(_worker, [(pattern, i) for i in range(WORKERS)]).get(timeout=180)
    reads = sum(r[0] for r in results)
    wrong = sum(r[1] for r in results)
    errors = sum(r[2] for r in results)
    assert (wrong, errors) == (0, 0), [m for r in results for m in r[3]][:6]
    assert reads == WORKERS * ROUNDS * 4
    # The parent still reads correctly after its children used their own connections.
    assert _FS.cat_file(f"{_URL}/{sorted(tree)[-1]}") == tree[sorted(tree)[-1]]
