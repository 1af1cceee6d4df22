"""``ManifestIndex``: the on-disk tree a mount answers from, built from a manifest in a local store."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import multiprocessing
import os
import sqlite3
import threading
import time
import tracemalloc
from pathlib import Path
from typing import BinaryIO

import pytest

from datastore.errors import ManifestDamaged
from datastore.model.manifest import Entry, Item, ManifestWriter, Skipped
from datastore.reading import index as index_module
from datastore.reading.index import ManifestIndex, Node, index_path
from datastore.store import index as tree
from datastore.store.local import LocalStore
from datastore.store.versions import VersionRecord

MANIFEST = "manifests/test.jsonl.gz"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def entry(path: str, size: int = 10, **kw: object) -> Entry:
    fields: dict = {"sha256": sha(path), "object": "data/p-1", "offset": 0, "mtime_ns": 1_700_000_000_000_000_000}
    fields.update(kw)
    return Entry(path, size, **fields)


def version(store: LocalStore, items: list[Item], name: str = "ds", number: int = 1) -> VersionRecord:
    """Commit-free: write ``items`` (sorted) as a manifest in ``store`` and describe it as a version."""
    target = store.root / MANIFEST
    target.parent.mkdir(parents=True, exist_ok=True)
    with ManifestWriter(target) as w:
        w.extend(sorted(items, key=lambda i: i.path))
    s = w.summary
    return VersionRecord(name, number, "succeeded", "local", "/src", s.files, s.bytes, s.digest,
                         "2024-01-01T00:00:00Z", None, skipped=s.skipped, manifest=MANIFEST, create_id="c1")


def raw_version(store: LocalStore, lines: list[bytes]) -> VersionRecord:
    """A manifest of exactly these lines (what ManifestWriter would refuse to write)."""
    target = store.root / MANIFEST
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(gzip.compress(b"".join(line + b"\n" for line in lines)))
    return VersionRecord("ds", 1, "succeeded", "local", "/src", len(lines), 0, "d-raw", "2024-01-01T00:00:00Z", None,
                         manifest=MANIFEST)


class NoManifestStore(LocalStore):
    """A store whose manifest cannot be read: an open that works did not need it."""

    def open_read(self, key: str) -> BinaryIO:
        raise AssertionError(f"read {key}")


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


TREE = [
    entry("README.txt", 7),
    entry("a/b/c.txt", 3),
    entry("a/b/d e.txt", 4, source={"key": "src/a/b/d e.txt", "etag": "e1", "version_id": None}),
    entry("a/empty", 0),
    entry("a/b.txt", 5),  # 'a/b.txt' sorts between the folder 'a/b' and its files: still one folder
    entry("a/ü/ñ ß.bin", 6, mtime_ns=None),
    entry("with space/x y", 8, sha256=None, object="data/p-2", offset=99, etag='"abc"',
          source={"key": "k2", "etag": "e2", "version_id": None}),
    entry("ref/only", 9, sha256=None, object=None, offset=0,
          source={"key": "k", "etag": "e", "version_id": "v"}),
    entry("ab", 1),
    entry("a-b/x", 2),
]


def test_tree_nested_unicode_spaces_and_empty_files(store: LocalStore, cache: Path) -> None:
    idx = ManifestIndex.open(store, version(store, TREE), cache)
    assert (idx.files, idx.bytes) == (len(TREE), sum(e.size for e in TREE))
    assert idx.dirs == 7  # "", a, a/b, a/ü, with space, ref, a-b
    assert idx.lookup("") == Node("", True, 0, None, -1)
    assert [name for name, _ in idx.children("")] == ["README.txt", "a", "a-b", "ab", "ref", "with space"]
    assert [(n, node.is_dir) for n, node in idx.children("a")] == [
        ("b", True), ("b.txt", False), ("empty", False), ("ü", True)]
    assert [n for n, _ in idx.children("a/b")] == ["c.txt", "d e.txt"]
    name, node = next(idx.children("a/ü"))
    assert (name, node.path, node.size, node.mtime_ns) == ("ñ ß.bin", "a/ü/ñ ß.bin", 6, None)
    assert idx.lookup("a/b") == Node("a/b", True, 0, None, -1)
    empty = idx.lookup("a/empty")
    assert empty is not None and not empty.is_dir and empty.size == 0
    assert empty.mtime_ns == 1_700_000_000_000_000_000
    # every file: its node agrees with the manifest, and entry() is the manifest's Entry exactly
    order = sorted(TREE, key=lambda e: e.path)
    for seq, e in enumerate(order):
        assert idx.lookup(e.path) == Node(e.path, False, e.size, e.mtime_ns, seq)
        assert idx.entry(e.path) == e
    # children's nodes are what lookup says
    for parent in ("", "a", "a/b", "with space"):
        for name, node in idx.children(parent):
            assert node == idx.lookup(f"{parent}/{name}" if parent else name)


@pytest.mark.parametrize("missing", ["nope", "a/nope", "a/b/c.txt/x", "/a", "a/", "a//b", "A", "with space/x"])
def test_misses(store: LocalStore, cache: Path, missing: str) -> None:
    idx = ManifestIndex.open(store, version(store, TREE), cache)
    assert idx.lookup(missing) is None
    assert idx.entry(missing) is None
    assert list(idx.children(missing)) == []


def test_files_are_not_folders(store: LocalStore, cache: Path) -> None:
    idx = ManifestIndex.open(store, version(store, TREE), cache)
    assert list(idx.children("README.txt")) == []
    assert idx.entry("a") is None and idx.entry("") is None  # folders have no entry


def test_folders_are_implied_by_file_paths(store: LocalStore, cache: Path) -> None:
    idx = ManifestIndex.open(store, version(store, [entry("x/y/z/w.txt"), entry("x/q")]), cache)
    assert idx.dirs == 4
    for d in ("x", "x/y", "x/y/z"):
        node = idx.lookup(d)
        assert node is not None and node.is_dir and node.seq == -1
    assert [n for n, _ in idx.children("x")] == ["q", "y"]
    assert [n for n, _ in idx.children("x/y")] == ["z"]


def test_skipped_items_are_not_in_the_tree(store: LocalStore, cache: Path) -> None:
    items = [entry("a/keep"), Skipped("a/link", "broken symlink"), Skipped("gone/x", "unreadable")]
    idx = ManifestIndex.open(store, version(store, items), cache)
    assert idx.files == 1
    assert idx.lookup("a/link") is None and idx.lookup("gone") is None
    assert [n for n, _ in idx.children("a")] == ["keep"]


def test_unsafe_paths_are_left_out_with_a_warning(store: LocalStore, cache: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    bad = ["/etc/passwd", "a//b", "a/./b", "a/../b", "../up", "trail/", ".", "nul\x00x"]
    items = [entry("a/ok"), entry("z")] + [entry(p) for p in bad]
    with caplog.at_level(logging.WARNING, logger=tree.__name__):
        idx = ManifestIndex.open(store, version(store, items), cache)
    assert idx.files == 2
    assert [n for n, _ in idx.children("")] == ["a", "z"]
    assert [n for n, _ in idx.children("a")] == ["ok"]
    for p in bad:
        assert idx.lookup(p) is None
        assert repr(p) in caplog.text
    assert [e.path for e in idx.following(0, 10)] == ["a/ok", "z"]  # seq counts the tree's files only


def test_a_file_and_a_folder_of_one_name_keep_the_first(store: LocalStore, cache: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    items = [entry("a", 1), entry("a b", 2), entry("a.txt", 3), entry("a/b", 4), entry("a/c/d", 5), entry("b/c", 6),
             entry("a0/x", 7)]
    with caplog.at_level(logging.WARNING, logger=tree.__name__):
        idx = ManifestIndex.open(store, version(store, items), cache)
    a = idx.lookup("a")
    assert a is not None and not a.is_dir and a.size == 1
    assert idx.lookup("a/b") is None and idx.lookup("a/c") is None
    assert [n for n, _ in idx.children("")] == ["a", "a b", "a.txt", "a0", "b"]
    assert idx.files == 5
    assert "'a/b'" in caplog.text and "'a/c/d'" in caplog.text


def test_many_left_out_paths_are_summarized(store: LocalStore, cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    items = [entry(f"x/{i:03d}/") for i in range(50)] + [entry("ok")]
    with caplog.at_level(logging.WARNING, logger=tree.__name__):
        idx = ManifestIndex.open(store, version(store, items), cache)
    assert idx.files == 1
    assert len(caplog.records) == tree.WARN_LIMIT + 1
    assert "50 paths are not in the mounted tree (50 unsafe)" in caplog.records[-1].getMessage()


def test_following_is_manifest_order(store: LocalStore, cache: Path) -> None:
    order = sorted(TREE, key=lambda e: e.path)
    idx = ManifestIndex.open(store, version(store, TREE), cache)
    assert idx.following(0, len(order)) == order
    assert idx.following(3, 4) == order[3:7]
    assert idx.following(len(order) - 2, 100) == order[-2:]
    assert idx.following(len(order), 5) == [] and idx.following(2, 0) == []
    for e in order:
        node = idx.lookup(e.path)
        assert node is not None and idx.following(node.seq, 1) == [e]


def test_folders_of_many_entries_list_in_name_order(store: LocalStore, cache: Path) -> None:
    items = [entry(f"big/f{i:05d}") for i in range(3000)] + [entry(f"big/d{i:03d}/x") for i in range(300)]
    idx = ManifestIndex.open(store, version(store, items), cache)
    names = [n for n, _ in idx.children("big")]
    assert names == sorted(names) and len(names) == 3300
    assert sum(node.is_dir for _, node in idx.children("big")) == 300


def test_a_second_open_reuses_the_index_without_the_manifest(store: LocalStore, cache: Path) -> None:
    record = version(store, TREE)
    first = ManifestIndex.open(store, record, cache)
    again = ManifestIndex.open(NoManifestStore(store.root), record, cache)
    assert again.path == first.path
    assert (again.files, again.bytes, again.dirs) == (first.files, first.bytes, first.dirs)
    assert again.entry("a/b/c.txt") == TREE[1]
    assert sorted(p.name for p in (cache / "index").iterdir()) == [first.path.name, first.path.name + ".lock"]


def test_a_cache_folder_with_awkward_characters(store: LocalStore, tmp_path: Path) -> None:
    cache = tmp_path / "ca che ü#?%20&mode=rw"  # all of it must survive the file: URI SQLite opens
    ManifestIndex.open(store, version(store, TREE), cache)
    idx = ManifestIndex.open(NoManifestStore(store.root), version(store, TREE), cache)
    assert idx.path.parent == cache / "index" and idx.entry("README.txt") == TREE[0]


def test_the_key_separates_versions_and_stores(store: LocalStore, cache: Path, tmp_path: Path) -> None:
    record = version(store, TREE)
    other_store = LocalStore(tmp_path / "elsewhere")
    paths = {index_path(store, record, cache), index_path(other_store, record, cache)}
    for change in ({"version": 2}, {"digest": "x"}, {"manifest": "manifests/other"}, {"name": "other"},
                   {"create_id": "c2"}):
        paths.add(index_path(store, VersionRecord.from_json(record.to_json() | change), cache))
    assert len(paths) == 7
    assert all(p.parent == cache / "index" for p in paths)


def test_a_damaged_index_file_is_rebuilt(store: LocalStore, cache: Path) -> None:
    record = version(store, TREE)
    path = ManifestIndex.open(store, record, cache).path
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(AssertionError):  # not usable as it is: it needs the manifest again
        ManifestIndex.open(NoManifestStore(store.root), record, cache)
    assert ManifestIndex.open(store, record, cache).entry("README.txt") == TREE[0]
    # an index whose meta does not match (here: rows missing) is not used either
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM files WHERE seq = (SELECT max(seq) FROM files)")
    db.close()
    with pytest.raises(AssertionError):
        ManifestIndex.open(NoManifestStore(store.root), record, cache)
    assert ManifestIndex.open(store, record, cache).files == len(TREE)


def test_a_damaged_manifest_fails_and_leaves_nothing(store: LocalStore, cache: Path) -> None:
    line = json.dumps(entry("b").to_json()).encode()
    for lines in ([line, json.dumps(entry("a").to_json()).encode()],  # out of order
                  [b"{not json"], [b'{"size": 3}'], [b"[1, 2]"], [b'{"path": "x"}']):
        with pytest.raises(ManifestDamaged, match="manifest of ds version 1 is damaged"):
            ManifestIndex.open(store, raw_version(store, lines), cache)
        assert [p.name for p in (cache / "index").iterdir() if not p.name.endswith(".lock")] == []


def test_blank_lines_and_duplicates_are_tolerated(store: LocalStore, cache: Path) -> None:
    a = json.dumps(entry("a").to_json()).encode()
    idx = ManifestIndex.open(store, raw_version(store, [a, b"", a, json.dumps(entry("b").to_json()).encode()]), cache)
    assert [e.path for e in idx.following(0, 10)] == ["a", "b"]


def test_a_path_that_is_not_utf8_is_left_out(store: LocalStore, cache: Path) -> None:
    lone = b'{"path": "a\\ud800", "size": 1, "sha256": "%s"}' % sha("x").encode()  # a lone surrogate
    idx = ManifestIndex.open(store, raw_version(store, [lone, json.dumps(entry("b").to_json()).encode()]), cache)
    assert [e.path for e in idx.following(0, 10)] == ["b"]


def test_odd_checksums_round_trip(store: LocalStore, cache: Path) -> None:
    odd = [entry("upper", sha256="AB" * 32), entry("short", sha256="abc"), entry("nothex", sha256="z" * 64),
           entry("big", size=2**62, mtime_ns=-5, offset=2**40)]
    idx = ManifestIndex.open(store, version(store, odd), cache)
    for e in odd:
        assert idx.entry(e.path) == e


def test_a_failed_manifest_read_leaves_nothing(store: LocalStore, cache: Path) -> None:
    record = version(store, TREE)

    class Broken(LocalStore):
        def open_read(self, key: str) -> BinaryIO:
            raise OSError("store went away")

    with pytest.raises(OSError, match="went away"):
        ManifestIndex.open(Broken(store.root), record, cache)
    assert [p.name for p in (cache / "index").iterdir() if not p.name.endswith(".lock")] == []
    assert ManifestIndex.open(store, record, cache).files == len(TREE)


def test_a_dead_builders_temporary_file_is_removed(store: LocalStore, cache: Path) -> None:
    record = version(store, TREE)
    final = index_path(store, record, cache)
    final.parent.mkdir(parents=True)
    left = final.with_name(final.name + ".tmp-999999-dead")
    left.write_bytes(b"half")
    ManifestIndex.open(store, record, cache)
    assert not left.exists()


class SlowStore(LocalStore):
    """Counts manifest reads in a file (shared by processes) and reads slowly, so builders overlap."""

    def open_read(self, key: str) -> BinaryIO:
        with open(self.root / "reads.log", "a") as log:
            log.write(f"{os.getpid()}\n")
        time.sleep(0.3)
        return super().open_read(key)


def _open_in_child(root: str, record: dict, cache: str, start: float, out: multiprocessing.Queue) -> None:
    time.sleep(max(0.0, start - time.time()))
    idx = ManifestIndex.open(SlowStore(root), VersionRecord.from_json(record), cache)
    out.put((idx.files, str(idx.path), idx.entry("a/b/c.txt") == TREE[1]))


def test_concurrent_builders_in_two_processes_make_one_index(store: LocalStore, cache: Path) -> None:
    record = version(store, TREE)
    # spawn, not fork: in the full suite this process runs Prefect's threads, and a fork
    # copies their locks in whatever state they are.
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start = time.time() + 3  # both children are up (imports done) before either opens
    procs = [ctx.Process(target=_open_in_child, args=(str(store.root), record.to_json(), str(cache), start, out))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    results = [out.get(timeout=5) for _ in procs]
    assert results[0] == results[1] == (len(TREE), str(index_path(store, record, cache)), True)
    assert len((store.root / "reads.log").read_text().split()) == 1  # one built it, the other waited and reused it
    assert sorted(p.suffix for p in (cache / "index").iterdir()) == [".lock", ".sqlite"]


def test_threads_share_one_index(store: LocalStore, cache: Path) -> None:
    items = [entry(f"d{i % 7}/sub{i % 3}/f{i:04d}", i) for i in range(700)]
    idx = ManifestIndex.open(store, version(store, items), cache)
    order = sorted(items, key=lambda e: e.path)
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(k: int) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                for seq in range(k, len(order), 8):
                    e = order[seq]
                    assert idx.lookup(e.path) == Node(e.path, False, e.size, e.mtime_ns, seq)
                    assert idx.entry(e.path) == e
                    assert idx.following(seq, 2) == order[seq:seq + 2]
                assert len(list(idx.children(f"d{k % 7}/sub1"))) == sum(
                    e.path.startswith(f"d{k % 7}/sub1/") for e in items)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def _pooled(idx: ManifestIndex) -> list:
    with idx._db() as conn:
        return [conn, *idx._pool.idle]


def test_a_forked_child_opens_its_own_connection(store: LocalStore, cache: Path) -> None:
    idx = ManifestIndex.open(store, version(store, TREE), cache)
    assert idx.lookup("a/b/c.txt") is not None  # the parent's connection exists now
    inherited = _pooled(idx)
    idx._pool.lock.acquire()  # as if a parent's thread held the pool's lock at the fork
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        ok = False
        try:
            ok = (idx.entry("a/b/c.txt") == TREE[1] and [n for n, _ in idx.children("a/b")] == ["c.txt", "d e.txt"]
                  and not set(map(id, _pooled(idx))) & set(map(id, inherited)))
        finally:
            os._exit(0 if ok else 1)
    idx._pool.lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _pooled(idx) == inherited and idx.entry("a/b/c.txt") == TREE[1]  # the parent goes on as before


def test_threads_share_a_few_connections(store: LocalStore, cache: Path) -> None:
    """Short-lived threads (libfuse's workers) reuse idle connections instead of opening their own."""
    idx = ManifestIndex.open(store, version(store, TREE), cache)
    opened = []
    real_connect = sqlite3.connect

    def counting(*args: object, **kwargs: object) -> sqlite3.Connection:
        opened.append(1)
        return real_connect(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sqlite3, "connect", counting)
        for _ in range(50):
            t = threading.Thread(target=lambda: idx.lookup("a/b/c.txt"))
            t.start()
            t.join()
    assert len(opened) <= 1


def test_close_then_use_again(store: LocalStore, cache: Path) -> None:
    idx = ManifestIndex.open(store, version(store, TREE), cache)
    idx.close()
    idx.close()
    assert idx.lookup("a") is not None


def test_memory_does_not_grow_with_the_files(store: LocalStore, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tree, "BATCH", 200)  # both sizes span many batches and chunks
    monkeypatch.setattr(tree, "CHUNK", 16 * 1024)
    peaks = []
    for n, files in enumerate((1_000, 8_000)):
        record = version(store, [entry(f"d{i // 300:03d}/f{i:06d}") for i in range(files)], number=n + 1)
        tracemalloc.start()
        ManifestIndex.open(store, record, cache)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # 7,000 more files would be ~1 MB if anything were kept per file; buffers are the same size
    assert peaks[1] < peaks[0] + 128 * 1024, peaks


# --- the index a large version's commit stores beside its manifest ---------------------------


def stored_index(store: LocalStore, record: VersionRecord, tmp_path: Path, corrupt: bool = False) -> VersionRecord:
    """``record`` with an index stored the way a commit stores it (optionally damaged after hashing)."""
    built = tmp_path / "built.sqlite"
    built.unlink(missing_ok=True)
    with store.open_read(record.manifest) as fh:
        tree.build(fh, built, record, store.url)
    data = built.read_bytes()
    record.manifest_index, record.manifest_index_sha256 = "manifests/c1.index.sqlite", hashlib.sha256(data).hexdigest()
    if corrupt:
        data = data[:-1] + bytes([data[-1] ^ 1])
    store.put_bytes(record.manifest_index, data)
    return record


class CountingStore(LocalStore):
    """A store that remembers every key opened for reading."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.opened: list[str] = []

    def open_read(self, key: str) -> BinaryIO:
        self.opened.append(key)
        return super().open_read(key)


def test_a_stored_index_is_downloaded_not_built(tmp_path: Path, cache: Path) -> None:
    store = CountingStore(tmp_path / "store")
    record = stored_index(store, version(store, TREE), tmp_path)
    store.opened.clear()
    idx = ManifestIndex.open(store, record, cache)
    assert store.opened == [record.manifest_index]  # the manifest itself is never read
    assert idx.path.read_bytes() == store.get_bytes(record.manifest_index)
    assert (idx.files, idx.bytes) == (record.files, record.bytes)
    for e in TREE:
        assert idx.entry(e.path) == e


@pytest.mark.parametrize("damage", ["corrupt", "missing", "other-manifest"])
def test_a_damaged_or_missing_stored_index_is_built_from_the_manifest_instead(
        tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture, damage: str) -> None:
    store = CountingStore(tmp_path / "store")
    record = stored_index(store, version(store, TREE), tmp_path, corrupt=damage == "corrupt")
    if damage == "missing":
        store.delete(record.manifest_index)
    if damage == "other-manifest":  # its sha256 matches, but it was built from another manifest
        other = version(LocalStore(tmp_path / "other"), [entry("elsewhere")])
        elsewhere = stored_index(LocalStore(tmp_path / "other"), other, tmp_path)
        store.put_bytes(record.manifest_index, LocalStore(tmp_path / "other").get_bytes(elsewhere.manifest_index))
        record.manifest_index_sha256 = elsewhere.manifest_index_sha256
    store.opened.clear()
    with caplog.at_level(logging.WARNING, logger=index_module.__name__):
        idx = ManifestIndex.open(store, record, cache)
    assert store.opened == [record.manifest_index, record.manifest]
    assert {e.path: idx.entry(e.path) for e in TREE} == {e.path: e for e in TREE}
    expected = {"corrupt": "does not have the sha256 its record names", "missing": "is missing",
                "other-manifest": "was not built from this manifest, or is of another index format"}[damage]
    assert f"ds version 1: its stored index {record.manifest_index} {expected}; building it from the manifest" \
        in caplog.text
