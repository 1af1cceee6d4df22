"""Read a version back the ways users do, for tests that check every byte: a forked child reading
``datastore://`` (a PyTorch DataLoader worker) and a real FUSE mount (``datastore mount``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from datastore.errors import DatastoreError
from datastore.reading.filesystem import DatastoreFileSystem
from datastore.testing.cli import run_cli


def tree_of(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, by its path relative to ``root``."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def forked_read(name: str, version: int, paths: list[str]) -> dict[str, bytes]:
    """``paths`` of ``name@version`` read through ``datastore://`` in a forked child.

    The parent reads first, so the child inherits a used reader (what a DataLoader worker gets).

    Raises:
        FileNotFoundError: the child was refused (the version was deleted meanwhile); the message
            names the refusal.
    """
    fs = DatastoreFileSystem()
    fs.cat_file(f"{name}@{version}/{paths[0]}", 0, 10)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            with os.fdopen(w, "wb") as out:
                try:
                    for p in paths:
                        data = fs.cat_file(f"{name}@{version}/{p}")
                        out.write(b"%s\t%d\n" % (p.encode(), len(data)) + data)
                except (DatastoreError, FileNotFoundError) as exc:
                    out.write(b"\t-1\n" + f"{type(exc).__name__}: {exc}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as got:
        raw = got.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    seen: dict[str, bytes] = {}
    while raw:
        head, _, raw = raw.partition(b"\n")
        path, _, size = head.partition(b"\t")
        if size == b"-1":
            raise FileNotFoundError(f"{name}@{version} refused in the forked child: {raw.decode()}")
        seen[path.decode()], raw = raw[:int(size)], raw[int(size):]
    return seen


def mounted_tree(name: str, version: int, where: Path, *, may_be_deleted: bool = False) -> dict[str, bytes]:
    """Every file of ``name@version`` read through a real FUSE mount at ``where``, then unmounted.

    Args:
        may_be_deleted: a concurrent deleter may have taken the version: a one-line "was deleted"
            or "does not exist" refusal raises FileNotFoundError instead of failing the test.
    """
    where.mkdir()
    env = dict(os.environ)
    done = run_cli("mount", f"{name}@{version}", "--dir", str(where), env=env, timeout=120)
    if done.returncode != 0:
        refused = done.stderr.count("\n") == 1 and ("was deleted" in done.stderr or "does not exist" in done.stderr)
        assert may_be_deleted and refused, done.stderr
        raise FileNotFoundError(done.stderr.strip())
    try:
        return tree_of(where)
    finally:
        # A process forked by another thread of this one while tree_of had a file open (the
        # soak's forked reader) holds a copy of that descriptor until it exits: the mount is
        # busy that long, rightly. Wait for it, as a user would close their files.
        deadline = time.monotonic() + 60
        while True:
            done = run_cli("unmount", str(where), env=env, timeout=120)
            if done.returncode == 0 or "is busy" not in done.stderr or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert done.returncode == 0, done.stderr
