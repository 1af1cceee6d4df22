"""The stream-and-hash loop: whole-file sha256 and per-block hashes, whatever the chunking."""

from __future__ import annotations

import hashlib
import io
import os
import threading

import pytest

from datastore.model import hashing
from datastore.model.hashing import BlockHasher, Hashed, Stopped, block_hashes, chunks, copy_hashed, hash_bytes

B = 1000  # a small block size keeps the cases cheap; the boundary arithmetic is the same


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def slices(data: bytes, block: int) -> tuple[str, ...]:
    """The expected block hashes, computed the obvious way."""
    return tuple(sha(data[i:i + block]) for i in range(0, len(data), block))


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.fixture(params=["inline", "overlapped"])
def overlap(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a chunk's block hashes are computed: in this thread, or in the helper thread."""
    monkeypatch.setattr(hashing, "OVERLAP_MIN", 1 << 40 if request.param == "inline" else 0)
    return request.param


@pytest.mark.parametrize("chunk", [1, 7, B - 1, B, B + 1, 2 * B - 3, 3 * B, 10 * B])
@pytest.mark.parametrize("size", [B + 1, 2 * B, 3 * B + 5, 7 * B - 1])
def test_block_hashes_do_not_depend_on_the_chunking(overlap: str, chunk: int, size: int) -> None:
    data = os.urandom(size)
    got = copy_hashed(pieces(data, chunk), block_bytes=B)
    assert got == Hashed(size, sha(data), slices(data, B))
    assert got.blocks is not None and len(got.blocks) == -(-size // B)


def test_an_exact_multiple_has_no_empty_last_block(overlap: str) -> None:
    data = os.urandom(4 * B)
    got = copy_hashed(pieces(data, 3 * B // 2), block_bytes=B)
    assert got.blocks == slices(data, B) and len(got.blocks) == 4
    assert sha(b"") not in got.blocks


@pytest.mark.parametrize("size", [0, 1, B - 1, B])
def test_data_of_at_most_one_block_has_no_block_hashes(size: int) -> None:
    data = os.urandom(size)
    assert copy_hashed(pieces(data, 7), block_bytes=B) == Hashed(size, sha(data), None)
    assert hash_bytes(data, B) == Hashed(size, sha(data), None)
    assert block_hashes(data, B) is None


def test_one_byte_over_a_block_is_two_blocks() -> None:
    data = os.urandom(B + 1)
    assert block_hashes(data, B) == (sha(data[:B]), sha(data[B:]))


def test_without_a_block_size_there_are_no_block_hashes() -> None:
    data = os.urandom(5 * B)
    assert copy_hashed(pieces(data, B)) == Hashed(5 * B, sha(data))
    assert hash_bytes(data) == Hashed(5 * B, sha(data))


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bytes_in_memory_match_the_stream(kind: type) -> None:
    data = os.urandom(3 * B + 17)
    assert hash_bytes(kind(data), B) == copy_hashed(pieces(data, 333), block_bytes=B) \
        == Hashed(len(data), sha(data), slices(data, B))
    assert block_hashes(kind(data), B) == slices(data, B)


def test_real_block_size_on_a_stream_of_part_sized_chunks() -> None:
    """8 MiB blocks under 5 MiB + 1 chunks (the overlapped path, boundaries inside chunks)."""
    mib = 1024 * 1024
    data = os.urandom(21 * mib + 3)
    got = copy_hashed(chunks(io.BytesIO(data), 5 * mib + 1), block_bytes=8 * mib)
    assert got == Hashed(len(data), sha(data), slices(data, 8 * mib))
    assert hash_bytes(data, 8 * mib) == got


def test_block_hasher_counts_and_refuses_a_bad_block_size() -> None:
    h = BlockHasher(B)
    for part in pieces(os.urandom(2500), 600):
        h.update(part)
    assert h.size == 2500 and len(h.result() or ()) == 3
    with pytest.raises(ValueError, match="block size must be positive"):
        BlockHasher(0)


def test_stop_and_sink_failures_leave_no_helper_thread(overlap: str) -> None:
    before = threading.active_count()
    stop = threading.Event()
    data = os.urandom(5 * B)

    def source():
        yield data[:2 * B]
        stop.set()
        yield data[2 * B:]

    with pytest.raises(Stopped):
        copy_hashed(source(), stop=stop, block_bytes=B)

    def sink(chunk: bytes) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        copy_hashed(pieces(data, B), sink, block_bytes=B)
    assert threading.active_count() == before


def test_sink_gets_every_chunk_in_order(overlap: str) -> None:
    data = os.urandom(4 * B + 1)
    out = bytearray()
    got = copy_hashed(pieces(data, 777), out.extend, block_bytes=B)
    assert bytes(out) == data and got.blocks == slices(data, B)
