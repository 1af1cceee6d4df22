from __future__ import annotations

import hashlib
import io
import tracemalloc

import pytest

from datastore.model.manifest import BLOCK_BYTES, Entry, ManifestWriter, Skipped, canonical_line, parse_line, read_items


def _entry(path: str, size: int = 3, obj: str = "data/x", offset: int = 0) -> Entry:
    return Entry(path, size, hashlib.sha256(path.encode()).hexdigest(), obj, offset)


def _write(items) -> tuple[bytes, object]:
    buf = io.BytesIO()
    with ManifestWriter(buf) as w:
        w.extend(items)
    return buf.getvalue(), w.summary


def test_round_trip_and_totals() -> None:
    items = [_entry("a.txt", 5), Skipped("b-link", "broken symlink"), _entry("dir/c", 7, "data/y", 5)]
    data, summary = _write(items)
    assert list(read_items(io.BytesIO(data))) == items
    assert (summary.files, summary.bytes, summary.skipped) == (2, 12, 1)


def test_digest_is_sha256_over_canonical_lines() -> None:
    items = [_entry("a"), _entry("b/c")]
    _, summary = _write(items)
    expected = hashlib.sha256(b"".join(canonical_line(e.path, e.size, e.sha256) for e in items)).hexdigest()
    assert summary.digest == expected


def test_digest_ignores_location_and_skipped_items() -> None:
    _, one = _write([_entry("a", obj="data/p1", offset=0), _entry("b", obj="data/p1", offset=3)])
    _, two = _write([_entry("a", obj="data/q", offset=9), Skipped("a2", "fifo"), _entry("b", obj="data/r")])
    assert one.digest == two.digest


def test_digest_changes_with_content() -> None:
    _, one = _write([_entry("a")])
    _, two = _write([Entry("a", 3, "0" * 64, "data/x")])
    assert one.digest != two.digest


def test_compressed_bytes_are_deterministic() -> None:
    items = [_entry("a"), _entry("b")]
    assert _write(items)[0] == _write(items)[0]


@pytest.mark.parametrize("paths", [["b", "a"], ["a", "a"]])
def test_out_of_order_or_duplicate_paths_are_rejected(paths: list[str]) -> None:
    with pytest.raises(ValueError, match="out of order"):
        _write([_entry(p) for p in paths])


def test_memory_does_not_grow_with_number_of_entries() -> None:
    def peak(n: int) -> int:
        tracemalloc.start()
        buf = io.BytesIO()
        with ManifestWriter(buf) as w:
            for i in range(n):
                w.add(_entry(f"f{i:09d}"))
        size = tracemalloc.get_traced_memory()[1] - len(buf.getvalue())
        tracemalloc.stop()
        return size

    small, large = peak(2_000), peak(40_000)
    # 20x the entries must not cost anything like 20x the memory (allow slack for buffers).
    assert large < small * 3


# --- block hashes ----------------------------------------------------------------------------------


def _blocks(n: int, seed: str = "") -> tuple[str, ...]:
    return tuple(hashlib.sha256(f"{seed}{i}".encode()).hexdigest() for i in range(n))


def test_block_size_is_eight_mib() -> None:
    assert BLOCK_BYTES == 8 * 1024 * 1024


def test_blocks_round_trip_as_a_json_list() -> None:
    big = Entry("big.bin", 2 * BLOCK_BYTES + 1, "f" * 64, "data/b", 0, blocks=_blocks(3))
    assert big.to_json()["blocks"] == list(_blocks(3))
    data, _ = _write([_entry("a"), big])
    back = list(read_items(io.BytesIO(data)))
    assert back == [_entry("a"), big] and back[1].blocks == _blocks(3) and isinstance(back[1].blocks, tuple)


def test_blocks_are_left_out_when_unset_and_an_old_line_reads_without() -> None:
    assert "blocks" not in _entry("a").to_json()
    old = parse_line(b'{"path":"x","size":20000000,"sha256":"' + b"a" * 64 + b'","object":"data/x","offset":0}')
    assert isinstance(old, Entry) and old.blocks is None


def test_digest_is_unchanged_by_blocks() -> None:
    size = 2 * BLOCK_BYTES
    plain = Entry("big.bin", size, "f" * 64, "data/b")
    _, without = _write([_entry("a"), plain])
    _, with_blocks = _write([_entry("a"), Entry("big.bin", size, "f" * 64, "data/b", blocks=_blocks(2))])
    _, other_blocks = _write([_entry("a"), Entry("big.bin", size, "f" * 64, "data/b", blocks=_blocks(2, "x"))])
    assert without.digest == with_blocks.digest == other_blocks.digest
    expected = hashlib.sha256(canonical_line("a", 3, _entry("a").sha256) + canonical_line("big.bin", size, "f" * 64))
    assert with_blocks.digest == expected.hexdigest()


@pytest.mark.parametrize(("size", "count", "last"), [
    (0, 0, None), (1, 1, 1), (BLOCK_BYTES, 1, BLOCK_BYTES), (BLOCK_BYTES + 1, 2, 1),
    (2 * BLOCK_BYTES, 2, BLOCK_BYTES), (5 * BLOCK_BYTES - 3, 5, BLOCK_BYTES - 3)])
def test_block_count_and_spans(size: int, count: int, last: int | None) -> None:
    e = Entry("f", size, "0" * 64, "data/x", 123)
    assert e.block_count == count
    if count:
        assert e.block_span(count - 1) == ((count - 1) * BLOCK_BYTES, last)
        assert e.block_span(0) == (0, min(size, BLOCK_BYTES))  # relative to the file, not the pack
    with pytest.raises(IndexError, match=f"has no block {count}"):
        e.block_span(count)
    with pytest.raises(IndexError):
        e.block_span(-1)


def test_which_hash_checks_a_block_alone() -> None:
    small = Entry("s", BLOCK_BYTES, "a" * 64, "data/p")
    assert small.blockwise and small.block_sha256(0) == "a" * 64  # one block: the file's sha256
    big = Entry("b", BLOCK_BYTES + 5, "b" * 64, "data/b", blocks=_blocks(2))
    assert big.blockwise and big.block_sha256(1) == _blocks(2)[1]
    old = Entry("o", BLOCK_BYTES + 5, "c" * 64, "data/o")  # stored before block hashes
    copied = Entry("c", BLOCK_BYTES + 5, None, "data/c-1", etag='"e"')
    small_copy = Entry("c", 10, None, "data/c-2", etag='"e"')
    for e in (old, copied, small_copy):
        assert not e.blockwise and e.block_sha256(0) is None


def test_a_manifest_in_parts_reads_as_one_stream_and_each_part_alone() -> None:
    from datastore.model.manifest import ManifestToc

    items = [Entry(f"f{i:03d}", i, "a" * 64, "data/p", i) for i in range(10)]
    items.insert(4, Skipped("f003x", "fifo"))
    _, single = _write(items)
    parted = io.BytesIO()
    with ManifestWriter(parted, part_items=3) as w:
        w.extend(items)
    assert single.digest == w.summary.digest  # parts change the bytes, never the digest
    data = parted.getvalue()
    assert list(read_items(io.BytesIO(data))) == items  # any gzip reader sees one stream
    toc = ManifestToc.decode(w.toc.encode())
    assert toc == w.toc
    assert [(p.first, p.items) for p in toc.parts] == [("f000", 3), ("f003", 3), ("f005", 3), ("f008", 2)]
    assert sum(p.length for p in toc.parts) == len(data) and toc.parts[0].offset == 0
    for p in toc.parts:  # each part is a complete gzip member on its own
        got = list(read_items(io.BytesIO(data[p.offset:p.offset + p.length])))
        assert len(got) == p.items and got[0].path == p.first
    assert toc.part_of("f004") == toc.parts[1] and toc.part_of("f003x") == toc.parts[1]
    assert toc.part_of("f999") == toc.parts[-1] and toc.part_of("a") is None
    assert ManifestWriter(io.BytesIO(), part_items=3).toc.parts == ()  # nothing written, no part
    with pytest.raises(ValueError, match="datastore-manifest-toc/1"):
        ManifestToc.decode(b'{"format": "something else", "parts": []}')
