"""CachedReader: checked, cached, coalesced reads (what the mount serves), on a local store."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from datastore.errors import ChecksumMismatch, ReadTimedOut
from datastore.model.manifest import BLOCK_BYTES, Entry
from datastore.reading.blocks import CachedReader, OpenFile
from datastore.reading.cache import BlockCache
from datastore.reading.index import ManifestIndex
from datastore.reading.reader import Reader
from datastore.store import Store, open_store, versions
from datastore.store.manifests import entries
from datastore_flows.local_folder import create_from_local
from tests.conftest import make_tree
from tests.reading.test_download import count_gets

pytestmark = pytest.mark.usefixtures("prefect_api")

MiB = 1024 * 1024
SMALL = {f"s/f{i:03d}.bin": os.urandom(1000 + i) for i in range(100)}
BIG = os.urandom(3 * BLOCK_BYTES + 12345)


@pytest.fixture
def version(tmp_path: Path, local_store: str) -> tuple[Store, object, dict[str, Entry]]:
    tree = SMALL | {"big.bin": BIG}
    create_from_local(str(make_tree(tmp_path / "src", tree)), name="blk")
    store = open_store()
    record = versions.resolve(store, "blk")
    return store, record, {e.path: e for e in entries(store, record)}


def reads_of(store: Store, record: object, tmp_path: Path, **kw: object) -> tuple[CachedReader, ManifestIndex]:
    index = ManifestIndex.open(store, record, tmp_path / "cache")
    cache = BlockCache(tmp_path / "cache" / "blocks", 256 * MiB)
    return CachedReader(Reader(store, record), cache, following=index.following, **kw), index


def open_file(index: ManifestIndex, path: str) -> OpenFile:
    node = index.lookup(path)
    assert node is not None
    return OpenFile(index.entry(path), node.seq)


def test_a_small_file_brings_its_pack_neighbours_in_one_get(version, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store, record, _ = version
    calls = count_gets(store, monkeypatch)
    reads, index = reads_of(store, record, tmp_path)
    for rel, data in SMALL.items():
        assert reads.read(open_file(index, rel), 0, 1 << 20) == data
    assert len(calls) == 1  # 100 files of one pack: one ranged GET
    # A second reader on the same cache fetches nothing.
    again, index2 = reads_of(store, record, tmp_path)
    calls.clear()
    assert all(again.read(open_file(index2, rel), 0, 1 << 20) == data for rel, data in SMALL.items())
    assert calls == [] and again.fetched_bytes == 0


def test_a_damaged_neighbour_is_not_cached_and_the_file_asked_for_is_served(version, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store, record, by_path = version
    bad = by_path["s/f050.bin"]
    real = store.get_range

    def damaged(key: str, offset: int, length: int) -> bytes:
        data = bytearray(real(key, offset, length))
        at = bad.offset - offset
        if key == bad.object and 0 <= at < len(data):
            data[at] ^= 0xFF
        return bytes(data)

    monkeypatch.setattr(store, "get_range", damaged)
    reads, index = reads_of(store, record, tmp_path)
    assert reads.read(open_file(index, "s/f000.bin"), 0, 1 << 20) == SMALL["s/f000.bin"]
    with pytest.raises(ChecksumMismatch, match="s/f050.bin"):
        reads.read(open_file(index, "s/f050.bin"), 0, 1 << 20)
    assert reads.read(open_file(index, "s/f051.bin"), 0, 1 << 20) == SMALL["s/f051.bin"]


def test_blocks_of_a_large_file_are_checked_one_by_one(version, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store, record, by_path = version
    big = by_path["big.bin"]
    assert big.blocks is not None and len(big.blocks) == 4
    real = store.get_range

    def damaged(key: str, offset: int, length: int) -> bytes:
        data = bytearray(real(key, offset, length))
        at = big.offset + 2 * BLOCK_BYTES + 5 - offset
        if key == big.object and 0 <= at < len(data):
            data[at] ^= 0xFF
        return bytes(data)

    monkeypatch.setattr(store, "get_range", damaged)
    reads, index = reads_of(store, record, tmp_path, readahead=0)
    f = open_file(index, "big.bin")
    assert reads.read(f, 10, 100) == BIG[10:110]
    assert reads.read(f, BLOCK_BYTES - 50, 100) == BIG[BLOCK_BYTES - 50:BLOCK_BYTES + 50]  # spans two blocks
    assert reads.read(f, len(BIG) - 5, 100) == BIG[-5:]
    assert reads.read(f, len(BIG), 100) == b""
    with pytest.raises(ChecksumMismatch, match="block 2"):
        reads.read(f, 2 * BLOCK_BYTES, 10)


def test_sequential_reads_read_ahead(version, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, record, _ = version
    calls = count_gets(store, monkeypatch)
    reads, index = reads_of(store, record, tmp_path)
    f = open_file(index, "big.bin")
    assert reads.read(f, 0, 128 * 1024) == BIG[:128 * 1024]
    deadline = time.monotonic() + 10
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(calls) >= 2  # block 1 was asked before anyone read it
    got = b"".join(reads.read(f, off, 1 << 20) for off in range(0, len(BIG), 1 << 20))
    assert got == BIG
    assert len(calls) == 4  # each block once


def test_a_second_pass_over_a_file_reads_ahead_again(version, tmp_path: Path) -> None:
    """Blocks read ahead once are read ahead again on a later pass (the disk cache into memory)."""
    store, record, _ = version
    reads, index = reads_of(store, record, tmp_path)
    f = open_file(index, "big.bin")  # one OpenFile for both passes, as the mount keeps it by path
    for _ in range(2):
        reads._memory = type(reads._memory)(64 * MiB)  # as if memory had dropped every block
        assert reads.read(f, 0, 1 << 20) == BIG[:1 << 20]
        deadline = time.monotonic() + 10
        while reads._memory.get(reads._key(f.entry, 1)) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reads._memory.get(reads._key(f.entry, 1)) is not None  # block 1 came ahead of its read
        got = b"".join(reads.read(f, off, 1 << 20) for off in range(0, len(BIG), 1 << 20))
        assert got == BIG


def test_a_part_of_a_block_not_in_memory_reads_only_its_pages_from_disk(version, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    store, record, _ = version
    first, index = reads_of(store, record, tmp_path, readahead=0)
    f = open_file(index, "big.bin")
    assert b"".join(first.read(f, off, 1 << 20) for off in range(0, len(BIG), 1 << 20)) == BIG  # all on disk now
    again, index2 = reads_of(store, record, tmp_path, readahead=0)  # another process: nothing in memory
    calls = count_gets(store, monkeypatch)

    def whole_block(key: str) -> bytes:
        raise AssertionError(f"a 4 KiB read loaded the whole block {key}")

    monkeypatch.setattr(again.cache, "get", whole_block)
    g = open_file(index2, "big.bin")
    for off in (0, 5, BLOCK_BYTES - 2048, 2 * BLOCK_BYTES + 300_000, len(BIG) - 4096):
        assert again.read(g, off, 4096) == BIG[off:off + 4096]
    assert calls == []


def test_an_old_manifest_without_block_hashes_checks_the_whole_file_once(version, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    store, record, _ = version
    reads, index = reads_of(store, record, tmp_path, readahead=0)
    f = open_file(index, "big.bin")
    f = dataclasses.replace(f, entry=dataclasses.replace(f.entry, blocks=None))
    with caplog.at_level(logging.WARNING, logger="datastore.mount"):
        assert reads.read(f, 2 * BLOCK_BYTES + 3, 1000) == BIG[2 * BLOCK_BYTES + 3:2 * BLOCK_BYTES + 1003]
    assert "has no block hashes" in caplog.text and "big.bin" in caplog.text
    assert reads.read(f, 0, 1000) == BIG[:1000] and reads.read(f, 3 * BLOCK_BYTES, 1 << 20) == BIG[3 * BLOCK_BYTES:]
    # A damaged old-style file is refused whole.
    damaged = dataclasses.replace(f, entry=dataclasses.replace(f.entry, sha256="0" * 64, path="other.bin"))
    with pytest.raises(ChecksumMismatch, match="other.bin"):
        reads.read(damaged, 0, 10)


def test_a_store_that_hangs_is_a_timeout_not_a_hang(version, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, record, _ = version
    release = threading.Event()
    real = store.get_range

    def hanging(key: str, offset: int, length: int) -> bytes:
        release.wait(30)
        return real(key, offset, length)

    monkeypatch.setattr(store, "get_range", hanging)
    reads, index = reads_of(store, record, tmp_path, timeout=0.5)
    with pytest.raises(ReadTimedOut, match=r"the store did not answer within 0.5 s while reading 's/f007.bin'"):
        reads.read(open_file(index, "s/f007.bin"), 0, 100)
    release.set()
