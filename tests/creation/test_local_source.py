from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from datastore.creation.sources import local as local_source
from datastore.creation.sources.local import LocalFile, read_small, resolve_source, walk
from datastore.errors import SourceChanged, SourceNotFound
from datastore.model.manifest import Skipped
from tests.conftest import make_tree


def test_walk_yields_plain_string_order_of_full_paths(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a-b": b"1", "a/b": b"2", "a/a/z": b"3", "a.txt": b"4", "B": b"5", "é": b"6"})
    paths = [i.path for i in walk(tmp_path)]
    assert paths == sorted(paths) == ["B", "a-b", "a.txt", "a/a/z", "a/b", "é"]


def test_single_file_source(tmp_path: Path) -> None:
    f = tmp_path / "data.bin"
    f.write_bytes(b"abc")
    (item,) = list(walk(f))
    assert isinstance(item, LocalFile) and item.path == "data.bin" and item.size == 3


def test_symlink_and_special_file_policy(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"real.txt": b"real", "sub/x": b"x"})
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"outside")
    os.symlink(outside, src / "link-to-file")
    os.symlink(src / "sub", src / "link-to-dir")
    os.symlink(tmp_path / "missing", src / "broken")
    os.mkfifo(src / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sock"))
    try:
        items = {i.path: i for i in walk(src)}
    finally:
        sock.close()
    assert isinstance(items["link-to-file"], LocalFile) and items["link-to-file"].size == len(b"outside")
    assert items["link-to-dir"] == Skipped("link-to-dir", "symlink to a directory (not followed)")
    assert items["broken"] == Skipped("broken", "broken symlink")
    assert items["fifo"] == Skipped("fifo", "special file (FIFO)")
    assert items["sock"] == Skipped("sock", "special file (socket)")
    assert isinstance(items["sub/x"], LocalFile)


def test_non_utf8_names_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "ok").write_bytes(b"1")
    with open(os.path.join(os.fsencode(tmp_path), b"bad\xff"), "wb") as fh:
        fh.write(b"2")
    items = list(walk(tmp_path))
    assert any(isinstance(i, Skipped) and i.reason == "name is not valid UTF-8" for i in items)
    assert [i.path for i in items if isinstance(i, LocalFile)] == ["ok"]


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound, match="does not exist"):
        resolve_source(str(tmp_path / "nope"))


def test_read_small_rereads_a_file_that_changes_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"v1")
    real_fstat = os.fstat
    calls = {"n": 0}

    def fstat(fd: int):
        st = real_fstat(fd)
        calls["n"] += 1
        if calls["n"] == 2:  # the "after" stat of the first read: the file was rewritten meanwhile
            f.write_bytes(b"version-2")
            return real_fstat(fd)
        return st

    monkeypatch.setattr(local_source.os, "fstat", fstat)
    data, st = read_small(str(f), "f")
    assert data == b"version-2" and st.st_size == len(data)


def test_read_small_fails_naming_a_file_that_keeps_changing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "busy.log"
    f.write_bytes(b"x" * 100_000)
    real_read = os.read

    def read_while_a_writer_appends(fd: int, n: int) -> bytes:
        # A log being written to: every read of it races one more append (deterministic, unlike
        # a writer thread that a loaded machine may not schedule during the read).
        with open(f, "ab") as fh:
            fh.write(b"y" * 10_000)
        return real_read(fd, n)

    monkeypatch.setattr(local_source.os, "read", read_while_a_writer_appends)
    with pytest.raises(SourceChanged, match="busy.log") as info:
        read_small(str(f), "busy.log")
    assert "changed while it was being read" in str(info.value)
    assert f.stat().st_size == 100_000 + 10_000 * local_source.READ_ATTEMPTS  # it was read that many times

def test_a_large_file_is_closed_when_the_store_refuses_to_start_its_upload(
        tmp_path: Path, local_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drift fix: the local path opened the file before the blob writer and leaked it on failure."""
    from datastore.creation.pipeline import prepare
    from datastore.errors import StoreError
    from datastore.settings import Settings
    from datastore.store import LocalStore

    src = make_tree(tmp_path / "src", {"big.bin": b"x" * 4096})
    settings = Settings(store=local_store, large_file_bytes=1024)
    job = prepare(str(src), "leak", "local", settings)
    plan = local_source.scan(job, settings)

    def refused(self, size_hint: int = 0):
        raise StoreError("no space left", "free some")

    monkeypatch.setattr(LocalStore, "blob_writer", refused)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with pytest.raises(StoreError, match="no space left"):
            local_source.transfer_batch(job, plan.plan_keys[0], settings)
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_large_file_that_keeps_changing_is_named(tmp_path: Path, local_store: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from datastore.creation.pipeline import prepare
    from datastore.settings import Settings

    src = make_tree(tmp_path / "src", {"big.bin": b"x" * 4096})
    settings = Settings(store=local_store, large_file_bytes=1024)
    job = prepare(str(src), "changing", "local", settings)
    plan = local_source.scan(job, settings)
    reads = []
    monkeypatch.setattr(local_source, "unchanged_since", lambda fd, before, read: reads.append(read) and False)
    with pytest.raises(SourceChanged, match=r"source file 'big.bin' changed while it was being read "
                                            r"\(size or mtime differed across 3 reads\)"):
        local_source.transfer_batch(job, plan.plan_keys[0], settings)
    assert reads == [4096] * local_source.READ_ATTEMPTS
    assert [o.key for o in open_store_data(local_store)] == []


def open_store_data(path: str) -> list:
    from datastore.store import open_store

    return list(open_store(path).list("data/"))
