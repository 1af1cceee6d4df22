from __future__ import annotations

import hashlib
import io
import tracemalloc

import pytest

from datastore.model.manifest import Entry, ManifestWriter, Skipped, canonical_line, read_items


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
