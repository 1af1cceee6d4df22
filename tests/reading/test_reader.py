"""``Reader``: read planning (runs) and ranged reads, on a hand-built pack in a local store."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from datastore.errors import BlocksNotRecorded, ChecksumMismatch, InvalidRange, ReferenceBroken, SourceChanged
from datastore.model.hashing import block_hashes, copy_hashed
from datastore.model.manifest import BLOCK_BYTES, Entry
from datastore.reading import reader
from datastore.reading.reader import Reader, Run
from datastore.store.local import LocalStore
from datastore.store.versions import VersionRecord
from tests.reading.test_download import count_gets

PACK = "data/p-test"
FILES = {"a.txt": b"alpha-bytes", "b.txt": b"", "c.txt": b"charlie" * 3, "d.txt": b"delta!"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record(**detail: object) -> VersionRecord:
    return VersionRecord("ds", 1, "committed", "local", "/src", len(FILES), 0, "", "2024-01-01T00:00:00Z", None,
                         source_detail=dict(detail))


@pytest.fixture
def packed(tmp_path: Path) -> tuple[LocalStore, list[Entry]]:
    """FILES packed one after the other in PACK (d.txt is the last bytes of the pack)."""
    store = LocalStore(tmp_path / "store")
    out, offset, pack = [], 0, b""
    for path, data in FILES.items():
        out.append(Entry(path, len(data), sha(data), PACK, offset))
        pack += data
        offset += len(data)
    store.put_bytes(PACK, pack)
    return store, out


def e(offset: int, size: int, obj: str | None = "data/p-1", sha256: str | None = "0" * 64, **kw: object) -> Entry:
    return Entry(f"f{offset}-{obj}", size, sha256, obj, offset, **kw)  # type: ignore[arg-type]


# --- runs ----------------------------------------------------------------------------------------


def test_runs_coalesce_neighbours_and_split_by_object_gap_and_cap() -> None:
    rd = Reader(LocalStore("/nonexistent"), record())
    plan = list(rd.runs([e(0, 10), e(10, 5), e(15 + reader.COALESCE_GAP, 1),  # adjacent, then a hole = gap
                         e(0, 4, obj="data/p-2"),  # another object
                         e(100, 3, obj="data/p-2"),  # a hole > gap is fine here: 96 bytes
                         e(50, 3, obj="data/p-2"),  # backwards: a new run
                         e(53, reader.MAX_READ - 2, obj="data/p-2")]))  # would pass MAX_READ
    assert all(isinstance(r, Run) for r in plan)
    assert [(r.key, r.start, r.end, len(r.entries)) for r in plan] == [
        ("data/p-1", 0, 16 + reader.COALESCE_GAP, 3),
        ("data/p-2", 0, 103, 2),
        ("data/p-2", 50, 53, 1),
        ("data/p-2", 53, 53 + reader.MAX_READ - 2, 1),
    ]
    assert plan[0].length == 16 + reader.COALESCE_GAP
    hole = list(rd.runs([e(0, 10), e(11 + reader.COALESCE_GAP, 1)]))
    assert len(hole) == 2  # one byte more than the gap: two GETs


def test_runs_pass_other_entries_through_without_closing_the_run() -> None:
    rd = Reader(LocalStore("/nonexistent"), record())
    copy = e(20, 5, sha256=None, etag="x")  # a server-side copy: no sha256 to check a run piece with
    large = e(30, 100)
    plan = list(rd.runs([e(0, 10), copy, e(10, 10), large, e(130, 1)], stream_from=100))
    assert plan[0] is copy and plan[1] is large  # yielded as they come ...
    assert isinstance(plan[2], Run) and [x.offset for x in plan[2].entries] == [0, 10, 130]  # ... the run goes on
    assert len(plan) == 3
    # stream_from is capped at MAX_READ: a file of MAX_READ bytes is never one coalesced read
    assert list(rd.runs([big := e(0, reader.MAX_READ)], stream_from=10 * reader.MAX_READ)) == [big]
    assert list(rd.runs([])) == []


def test_runs_open_the_source_of_references_on_the_planning_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    from datastore.backends import s3_source

    opened: list[object] = []
    monkeypatch.setattr(s3_source, "source_of", lambda detail: opened.append(detail) or object())
    rd = Reader(LocalStore("/nonexistent"), record(bucket="b", prefix="p/"))
    ref = Entry("r.bin", 3, None, None, source={"key": "k", "etag": "t"})
    assert list(rd.runs([ref, ref])) == [ref, ref]
    assert [(d.bucket, d.prefix) for d in opened] == [("b", "p/")]  # opened here, once, before any worker reads


def test_prefetch_of_neighbours_for_a_fuse_read(packed: tuple[LocalStore, list[Entry]],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store, files = packed
    rd = Reader(store, record())
    gets = count_gets(store, monkeypatch)
    first = next(rd.runs(files[1:]))  # the files from b.txt on, in path order
    assert isinstance(first, Run) and first.entries[0] is files[1]
    got = {x.path: bytes(piece) for x, piece in rd.read_run(first)}
    assert got == {p: FILES[p] for p in ("b.txt", "c.txt", "d.txt")}
    assert len(gets) == 1


# --- read_run ----------------------------------------------------------------------------------


def test_read_run_checks_each_piece(packed: tuple[LocalStore, list[Entry]], tmp_path: Path) -> None:
    store, files = packed
    rd = Reader(store, record())
    (run,) = rd.runs(files)
    assert [(x.path, bytes(p)) for x, p in rd.read_run(run)] == list(FILES.items())
    pack = tmp_path / "store" / "data" / "p-test"
    data = bytearray(pack.read_bytes())
    data[files[2].offset] ^= 0xFF
    pack.write_bytes(bytes(data[:-2]))  # c.txt changed, d.txt cut short
    with pytest.raises(ChecksumMismatch, match="file 'c.txt' does not match its manifest"):
        list(rd.read_run(run))
    sizes = {x.path: len(p) for x, p in rd.read_run(run, check=False)}
    assert sizes == {"a.txt": 11, "b.txt": 0, "c.txt": 21, "d.txt": 4}


# --- read_range ----------------------------------------------------------------------------------


def test_read_range_never_crosses_the_end_of_the_entry(packed: tuple[LocalStore, list[Entry]],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    store, files = packed
    a, b, c, d = files
    rd = Reader(store, record())
    gets = count_gets(store, monkeypatch)
    assert rd.read_range(a, 6, 1000) == b"bytes"  # cut at a.txt's end, not c.txt's bytes after it
    assert gets == [(PACK, 6, 5)]  # and only those bytes are asked for
    assert rd.read_range(c, 3, 4) == b"rlie"
    assert rd.read_range(d, 0, 1 << 30) == b"delta!"  # the last entry of the pack: a whole, checked read
    assert rd.read_range(d, 5, 10) == b"!"  # up to the pack's last byte
    assert rd.read_range(a, 0, 11, check=False) == FILES["a.txt"]


def test_read_range_of_nothing_sends_no_request(packed: tuple[LocalStore, list[Entry]],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store, files = packed
    a, b, _, d = files
    rd = Reader(store, record())
    gets = count_gets(store, monkeypatch)
    assert rd.read_range(a, 3, 0) == b""  # zero length
    assert rd.read_range(a, 11, 5) == b""  # at the end of the file (a FUSE read at EOF)
    assert rd.read_range(d, 100, 5) == b""  # past the end of the file and of the pack
    assert rd.read_range(b, 0, 10) == b""  # an empty file
    assert gets == []
    with pytest.raises(InvalidRange, match=r"cannot read 5 bytes at offset -1 of file 'a.txt'"):
        rd.read_range(a, -1, 5)
    with pytest.raises(ValueError, match="offset and length must be 0 or more"):
        rd.read_range(a, 0, -1)


def test_read_range_checks_whole_files_and_lengths(packed: tuple[LocalStore, list[Entry]], tmp_path: Path) -> None:
    store, files = packed
    a, _, c, d = files
    rd = Reader(store, record())
    pack = tmp_path / "store" / "data" / "p-test"
    data = bytearray(pack.read_bytes())
    data[a.offset + 1] ^= 0xFF
    pack.write_bytes(bytes(data[:-2]))  # a.txt changed, the pack (so d.txt) cut short
    with pytest.raises(ChecksumMismatch, match="file 'a.txt' does not match its manifest"):
        rd.read_range(a, 0, a.size)  # the whole file: checked against its sha256
    assert len(rd.read_range(a, 0, a.size, check=False)) == a.size  # a part is checked by length only
    assert rd.read_range(c, 0, 7) == b"charlie"
    with pytest.raises(ChecksumMismatch, match=r"file 'd.txt' does not match its manifest \(sha256 4 bytes…"):
        rd.read_range(d, 0, 6, check=False)  # the truncated pack answers 4 bytes of 6


# --- stream ---------------------------------------------------------------------------------------


def test_stream_in_bounded_pieces_from_a_pack_and_an_own_object(packed: tuple[LocalStore, list[Entry]]) -> None:
    store, files = packed
    rd = Reader(store, record())
    c = files[2]
    assert [len(x) for x in rd.stream(c, chunk_bytes=8)] == [8, 8, 5]  # inside the pack: ranged reads
    big = b"0123456789" * 100
    store.put_bytes("data/own", big)
    own = Entry("big.bin", len(big), sha(big), "data/own", 0)
    pieces = list(rd.stream(own, chunk_bytes=64))
    assert max(map(len, pieces)) == 64 and b"".join(pieces) == big
    rd.check(own, copy_hashed(rd.stream(own)))
    short = Entry("big.bin", len(big) + 1, sha(big + b"x"), "data/own", 0)
    got = copy_hashed(rd.stream(short))
    assert got.size == len(big)  # a truncated object ends the stream; the check names the file
    with pytest.raises(ChecksumMismatch, match="file 'big.bin' does not match"):
        rd.check(short, got)
    unhashed = Entry("copy.bin", len(big) + 1, None, "data/own", 0, etag="e")
    with pytest.raises(ChecksumMismatch, match=r"\(sha256 1000 bytes… != 1001 bytes…\)"):
        rd.check(unhashed, copy_hashed(rd.stream(unhashed)))


# --- blocks ----------------------------------------------------------------------------------------

BIG = random.Random(13).randbytes(2 * BLOCK_BYTES) + b"tail of the third block"  # 2 full blocks + a short one
LEAD = b"a neighbour before it in the pack"


@pytest.fixture
def blocked(tmp_path: Path) -> tuple[LocalStore, Entry, Path]:
    """BIG packed after a neighbour (so block offsets are relative to the file, not the pack)."""
    store = LocalStore(tmp_path / "store")
    store.put_bytes("data/p-big", LEAD + BIG + b"and one after")
    big = Entry("a/big.bin", len(BIG), sha(BIG), "data/p-big", len(LEAD), blocks=block_hashes(BIG, BLOCK_BYTES))
    return store, big, tmp_path / "store" / "data" / "p-big"


def _block(i: int) -> bytes:
    return BIG[i * BLOCK_BYTES:(i + 1) * BLOCK_BYTES]


def test_read_block_is_one_ranged_read_of_the_block(blocked: tuple[LocalStore, Entry, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    store, big, _ = blocked
    rd = Reader(store, record())
    gets = count_gets(store, monkeypatch)
    assert big.block_count == 3
    assert [rd.read_block(big, i) for i in range(3)] == [_block(0), _block(1), _block(2)]
    assert gets == [("data/p-big", len(LEAD), BLOCK_BYTES), ("data/p-big", len(LEAD) + BLOCK_BYTES, BLOCK_BYTES),
                    ("data/p-big", len(LEAD) + 2 * BLOCK_BYTES, len(BIG) - 2 * BLOCK_BYTES)]
    with pytest.raises(IndexError, match="has no block 3"):
        rd.read_block(big, 3)
    assert len(gets) == 3


def test_a_corrupted_byte_fails_only_its_block(blocked: tuple[LocalStore, Entry, Path]) -> None:
    store, big, pack = blocked
    data = bytearray(pack.read_bytes())
    data[len(LEAD) + BLOCK_BYTES + 12345] ^= 0x01
    pack.write_bytes(bytes(data))
    rd = Reader(store, record())
    assert rd.read_block(big, 0) == _block(0) and rd.read_block(big, 2) == _block(2)
    with pytest.raises(ChecksumMismatch, match=r"^block 1 of file 'a/big.bin' does not match its manifest") as info:
        rd.read_block(big, 1)
    assert (info.value.path, info.value.block) == ("a/big.bin", 1)
    with pytest.raises(ChecksumMismatch, match="file 'a/big.bin' does not match its manifest"):
        rd.read(big)  # the whole file fails too, of course


def test_a_truncated_last_block_is_named(blocked: tuple[LocalStore, Entry, Path]) -> None:
    store, big, pack = blocked
    pack.write_bytes(pack.read_bytes()[:len(LEAD) + len(BIG) - 1])
    rd = Reader(store, record())
    assert rd.read_block(big, 1) == _block(1)
    want = len(BIG) - 2 * BLOCK_BYTES
    with pytest.raises(ChecksumMismatch, match=rf"^block 2 of file 'a/big.bin' .*\(sha256 {want - 1} bytes… != {want} b"):
        rd.read_block(big, 2)


def test_check_block_compares_length_and_hash(blocked: tuple[LocalStore, Entry, Path]) -> None:
    store, big, _ = blocked
    rd = Reader(store, record())
    rd.check_block(big, 1, memoryview(_block(1)))
    with pytest.raises(ChecksumMismatch, match="^block 1 of file"):
        rd.check_block(big, 1, _block(0))  # the right length, another block's bytes
    with pytest.raises(ChecksumMismatch, match="^block 2 of file"):
        rd.check_block(big, 2, _block(2) + b"x")


def test_a_file_of_one_block_is_checked_against_its_sha256(packed: tuple[LocalStore, list[Entry]], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    store, files = packed
    a, b, c, _ = files
    rd = Reader(store, record())
    gets = count_gets(store, monkeypatch)
    assert rd.read_block(c, 0) == FILES["c.txt"] and gets == [(PACK, c.offset, c.size)]
    with pytest.raises(IndexError):
        rd.read_block(b, 0)  # an empty file has no block
    with pytest.raises(ChecksumMismatch, match="^block 0 of file 'a.txt'"):
        rd.check_block(a, 0, b"alpha-bytez")


@pytest.mark.parametrize(("entry", "why"), [
    (Entry("old.bin", BLOCK_BYTES + 1, "0" * 64, "data/o"), "stored before block hashes were recorded"),
    (Entry("copy.bin", 10, None, "data/c-1", etag='"e"'), "a server-side copy"),
    (Entry("ref.bin", 10, None, None, source={"key": "k", "etag": "e"}), "a --no-copy reference")])
def test_a_block_without_its_own_hash_is_refused_before_any_read(entry: Entry, why: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore("/nonexistent")
    rd = Reader(store, record())
    gets = count_gets(store, monkeypatch)
    with pytest.raises(BlocksNotRecorded, match=rf"file '{entry.path}' has no block hashes in its manifest \({why}"):
        rd.read_block(entry, 0)
    with pytest.raises(BlocksNotRecorded):
        rd.check_block(entry, 0, b"")
    assert gets == [] and not entry.blockwise


# --- references ------------------------------------------------------------------------------------


class _ChangedSource:
    """A source whose pinned object was overwritten: every read says so, as S3Source does."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def get(self, pin: dict, offset: int = 0, length: int | None = None) -> bytes:
        self.calls.append((pin["key"], offset, length))
        raise SourceChanged(pin["key"], "its ETag no longer matches the listing")


def test_every_read_of_a_changed_reference_is_reference_broken() -> None:
    rd = Reader(LocalStore("/nonexistent"), record(bucket="src", prefix="p/"))
    rd._source = src = _ChangedSource()
    ref = Entry("r.bin", 20, None, None, source={"key": "p/r.bin", "etag": "abc"})
    want = (r"file 'r.bin' of ds version 1 cannot be read: its pinned object s3://src/p/r.bin \(ETag abc\) "
            "was overwritten with different bytes")
    with pytest.raises(ReferenceBroken, match=want):
        rd.read(ref)
    with pytest.raises(ReferenceBroken, match=want):
        rd.read_range(ref, 5, 5)
    with pytest.raises(ReferenceBroken, match=want):
        list(rd.stream(ref, chunk_bytes=8))
    assert src.calls == [("p/r.bin", 0, None), ("p/r.bin", 5, 5), ("p/r.bin", 0, 8)]
