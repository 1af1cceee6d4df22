"""ls, du, diff and cat from manifests: the Cursor over table-of-contents parts, folder skipping, merges."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from datastore.errors import ChecksumMismatch
from datastore.model.manifest import BLOCK_BYTES, Entry, ManifestWriter, Skipped
from datastore.reading import browse
from datastore.reading.browse import ChangeKind, Cursor
from datastore.reading.reader import Reader
from datastore.store.local import LocalStore
from datastore.store.versions import VersionRecord


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Counting(LocalStore):
    """A local store that counts ranged reads of the manifest (one per part fetched)."""

    ranged = 0

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if key.endswith("manifest.jsonl.gz"):
            Counting.ranged += 1
        return super().get_range(key, offset, length)


def version(store: LocalStore, files: dict[str, bytes], *, number: int = 1, part_items: int = 3,
            toc: bool = True, skipped: tuple[str, ...] = ()) -> VersionRecord:
    """A committed-looking version of ``files`` in ``store``: one pack, a manifest in parts of ``part_items``."""
    pack, entries, offset = b"", [], 0
    for path in sorted(files):
        data = files[path]
        entries.append(Entry(path, len(data), sha(data), f"data/pack-{number}", offset))
        pack += data
        offset += len(data)
    store.put_bytes(f"data/pack-{number}", pack)
    buf = io.BytesIO()
    items = sorted([*entries, *(Skipped(p, "a socket") for p in skipped)], key=lambda i: i.path)
    with ManifestWriter(buf, part_items=part_items) as w:
        w.extend(items)
    summary = w.summary
    key = f"manifests/v{number}/manifest.jsonl.gz"
    store.put_bytes(key, buf.getvalue())
    toc_key = ""
    if toc:
        toc_key = f"manifests/v{number}/toc.json"
        store.put_bytes(toc_key, w.toc.encode())
    return VersionRecord("ds", number, "succeeded", "local", "/src", summary.files, summary.bytes, summary.digest,
                         "2026-01-01T00:00:00Z", None, manifest=key, manifest_toc=toc_key)


TREE = {
    "README.md": b"read me",
    "a/1.bin": b"one", "a/2.bin": b"two", "a/deep/x.bin": b"x" * 10, "a/deep/y.bin": b"y",
    "a b/ünï.txt": b"unicode",
    "b/only.txt": b"only",
    "c.txt": b"",
    "z/last.bin": b"last!",
}


@pytest.fixture(params=[True, False], ids=["toc", "no-toc"])
def cursor(request: pytest.FixtureRequest, tmp_path: Path) -> Cursor:
    store = Counting(tmp_path / "store")
    return Cursor(Reader(store, version(store, TREE, toc=request.param)))


def paths(rows: list[browse.Listed]) -> list[str]:
    return [r.path for r in rows]


def test_ls_of_the_root_lists_files_and_each_folder_once(cursor: Cursor) -> None:
    # Manifest (S3 key) order: "a b/…" sorts before "a/…" (' ' < '/'), as `aws s3 ls` shows them.
    assert paths(list(browse.ls(cursor))) == ["README.md", "a b/", "a/", "b/", "c.txt", "z/"]


def test_ls_of_a_folder_a_file_and_recursively(cursor: Cursor) -> None:
    assert paths(list(browse.ls(cursor, "a"))) == ["a/1.bin", "a/2.bin", "a/deep/"]
    only = list(browse.ls(cursor, "a/deep/x.bin"))
    assert paths(only) == ["a/deep/x.bin"] and only[0].entry is not None and only[0].entry.size == 10
    assert paths(list(browse.ls(cursor, "a", recursive=True))) == ["a/1.bin", "a/2.bin", "a/deep/x.bin", "a/deep/y.bin"]
    assert paths(list(browse.ls(cursor, "", recursive=True))) == sorted(TREE)
    assert list(browse.ls(cursor, "nope")) == [] and list(browse.ls(cursor, "a/de")) == []  # a prefix is not a folder


def test_a_folder_listing_skips_over_subfolders_by_the_table_of_contents(tmp_path: Path) -> None:
    store = Counting(tmp_path / "store")
    files = {f"big/{i:04d}.bin": b"%d" % i for i in range(300)} | {"a.txt": b"a", "zz.txt": b"z"}
    reader = Reader(store, version(store, files, part_items=10))  # 31 parts
    Counting.ranged = 0
    assert paths(list(browse.ls(Cursor(reader)))) == ["a.txt", "big/", "zz.txt"]
    assert Counting.ranged <= 3  # the first part, then the one after big/: not the 30 parts big/ fills
    Counting.ranged = 0
    assert Cursor(reader).entry("big/0150.bin") is not None and Counting.ranged == 1


def test_paths_are_cleaned_the_way_users_type_them() -> None:
    assert [browse.clean_path(p) for p in ("./a/", "/a/b", ".", "", None, "a b/")] == ["a", "a/b", "", "", "", "a b"]


def test_du_totals_each_folder_and_the_whole(cursor: Cursor) -> None:
    folders, total = browse.du(cursor)
    assert [(u.path, u.files, u.bytes) for u in folders] == [("a b/", 1, 7), ("a/", 4, 17), ("b/", 1, 4), ("z/", 1, 5)]
    assert (total.files, total.bytes) == (len(TREE), sum(map(len, TREE.values())))
    folders, total = browse.du(cursor, "a")
    assert [(u.path, u.files, u.bytes) for u in folders] == [("a/deep/", 2, 11)] and (total.files, total.bytes) == (4, 17)
    assert browse.du(cursor, "nope")[1].files == 0


def test_diff_merges_two_versions_and_skipped_items_are_not_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    new_tree = {k: v for k, v in TREE.items() if k != "b/only.txt"} | {"a/1.bin": b"ONE!", "new.txt": b"n"}
    old = Reader(store, version(store, TREE, number=1))
    new = Reader(store, version(store, new_tree, number=2, skipped=("sock",)))
    got = [(c.kind, c.path) for c in browse.diff(old, new)]
    assert got == [(ChangeKind.CHANGED, "a/1.bin"), (ChangeKind.REMOVED, "b/only.txt"), (ChangeKind.ADDED, "new.txt")]
    changed = next(browse.diff(old, new))
    assert changed.to_json() == {"change": "changed", "path": "a/1.bin", "old_size": 3, "new_size": 4,
                                 "old_checksum": sha(b"one"), "new_checksum": sha(b"ONE!")}
    assert [c.kind for c in browse.diff(new, old)] == [ChangeKind.CHANGED, ChangeKind.ADDED, ChangeKind.REMOVED]
    assert list(browse.diff(old, Reader(store, version(store, TREE, number=3, part_items=2)))) == []


def test_cat_pieces_are_checked_before_they_are_handed_out(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    reader = Reader(store, version(store, TREE))
    cur = Cursor(reader)
    assert b"".join(browse.checked_pieces(reader, cur.entry("a b/ünï.txt"))) == b"unicode"
    assert b"".join(browse.checked_pieces(reader, cur.entry("c.txt"))) == b""
    raw = bytearray(store.get_bytes("data/pack-1"))
    raw[0] ^= 1  # README.md is first in the pack
    store.put_bytes("data/pack-1", bytes(raw))
    with pytest.raises(ChecksumMismatch, match="README.md"):
        next(browse.checked_pieces(reader, cur.entry("README.md")))


def test_a_large_file_is_served_block_by_block_each_checked(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    data = bytes(range(256)) * (BLOCK_BYTES // 256) + b"tail"
    blocks = (sha(data[:BLOCK_BYTES]), sha(data[BLOCK_BYTES:]))
    store.put_bytes("data/big", data)
    entry = Entry("big.bin", len(data), sha(data), "data/big", 0, blocks=blocks)
    reader = Reader(store, version(store, {"x": b"x"}))
    pieces = list(browse.checked_pieces(reader, entry))
    assert [len(p) for p in pieces] == [BLOCK_BYTES, 4] and b"".join(pieces) == data
    raw = bytearray(data)
    raw[-1] ^= 1
    store.put_bytes("data/big", bytes(raw))
    got = browse.checked_pieces(reader, entry)
    assert len(next(got)) == BLOCK_BYTES  # the intact first block is served …
    with pytest.raises(ChecksumMismatch, match="big.bin"):
        next(got)  # … the corrupted last one never is
