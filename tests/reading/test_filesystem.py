"""The ``datastore://`` fsspec protocol, on versions made by the real creation flows."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import fsspec
import pytest

from datastore.errors import ChecksumMismatch, DatastoreError, DeletedWhileReading, InvalidRead, PathBelowFile
from datastore.service.delete import delete_version
from datastore.service.gc import gc
from datastore.store import Store, layout, open_store
from datastore_flows.local_folder import create_from_local
from tests.conftest import make_tree
from tests.reading.test_download import count_gets, created, record_of, small_tree  # noqa: F401 - `created` is a fixture

pytestmark = pytest.mark.usefixtures("prefect_api")

MiB = 1024 * 1024
TREE = {
    "dir/f.txt": b"hello from f\n",
    "dir/sub/g.bin": bytes(range(256)) * 40,
    "dir/sub/h.txt": b"h",
    "top.txt": b"top",
    "empty": b"",
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, prefect_api: None) -> tuple[str, dict]:
    """One local store with version 1 of ``ds`` holding TREE, for the tests that only read it."""
    store = tmp_path_factory.mktemp("fsspec") / "store"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATASTORE_STORE", str(store))
        return str(store), create_from_local(str(make_tree(tmp_path_factory.mktemp("src"), TREE)), name="ds")


@pytest.fixture
def version(shared: tuple[str, dict], monkeypatch: pytest.MonkeyPatch) -> dict:
    """Version 1 of ``ds`` (TREE), read-only use: DATASTORE_STORE points at the shared store."""
    monkeypatch.setenv("DATASTORE_STORE", shared[0])
    return shared[1]


@pytest.fixture
def own_version(tmp_path: Path, local_store: str) -> dict:
    """Version 1 of ``ds`` (TREE) in a fresh local store, for tests that change the store."""
    return create_from_local(str(make_tree(tmp_path / "src", TREE)), name="ds")


def fresh_fs(**kwargs: object):  # the registered class, looked up as a user would
    return fsspec.filesystem("datastore", skip_instance_cache=True, **kwargs)


def test_entry_point_opens_urls_without_importing_the_module(version: dict) -> None:
    # A fresh interpreter proves the fsspec.specs entry point: nothing imports datastore.reading.filesystem first.
    code = (
        "import sys, fsspec\n"
        "assert 'datastore.reading.filesystem' not in sys.modules\n"
        "with fsspec.open('datastore://ds@1/dir/f.txt') as f:\n"
        "    sys.stdout.write(f.read().decode())\n"
        "assert type(fsspec.filesystem('datastore')).__module__ == 'datastore.reading.filesystem'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "hello from f\n"
    # and in this process, through fsspec's own entry points
    assert fsspec.open("datastore://ds@1/dir/f.txt").open().read() == TREE["dir/f.txt"]
    with fsspec.open("datastore://ds@1/top.txt", "rt") as f:  # text mode wraps the binary file
        assert f.read() == "top"


def test_ls_info_find_isdir_isfile(version: dict) -> None:
    fs = fresh_fs()
    assert fs.ls("datastore://ds@1/", detail=False) == ["ds@1/dir", "ds@1/empty", "ds@1/top.txt"]
    assert fs.ls("ds@1/dir", detail=False) == ["ds@1/dir/f.txt", "ds@1/dir/sub"]
    detailed = {i["name"]: i for i in fs.ls("datastore://ds@1/dir/sub")}
    assert {n: (i["type"], i["size"]) for n, i in detailed.items()} == {
        "ds@1/dir/sub/g.bin": ("file", 10240), "ds@1/dir/sub/h.txt": ("file", 1)}
    info = fs.info("datastore://ds@1/dir/sub/g.bin")
    assert (info["name"], info["size"], info["type"], info["version"]) == ("ds@1/dir/sub/g.bin", 10240, "file", 1)
    assert fs.info("datastore://ds@1/dir") == {"name": "ds@1/dir", "size": 0, "type": "directory"}
    root = fs.info("datastore://ds@1")
    assert root["type"] == "directory" and root["files"] == len(TREE)
    assert fs.find("datastore://ds@1") == sorted(f"ds@1/{p}" for p in TREE)
    assert fs.find("datastore://ds@1/dir/sub") == ["ds@1/dir/sub/g.bin", "ds@1/dir/sub/h.txt"]
    assert fs.find("datastore://ds@1/dir", maxdepth=1) == ["ds@1/dir/f.txt"]
    assert fs.glob("datastore://ds@1/**/*.txt") == ["ds@1/dir/f.txt", "ds@1/dir/sub/h.txt", "ds@1/top.txt"]
    assert fs.isdir("datastore://ds@1/dir/sub") and not fs.isfile("datastore://ds@1/dir/sub")
    assert fs.isfile("datastore://ds@1/empty") and fs.exists("datastore://ds@1/empty")
    assert not fs.exists("datastore://ds@1/nope") and not fs.isdir("datastore://ds@1/nope")
    assert fs.ls("datastore://", detail=False) == ["ds"]
    assert fs.du("datastore://ds@1") == sum(map(len, TREE.values()))


def test_a_range_is_served_checked_from_one_read_of_the_files_run(version: dict,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = record_of(version)
    gets = count_gets(store, monkeypatch)
    fs = fresh_fs(store=store)
    data = TREE["dir/sub/g.bin"]
    assert fs.cat("datastore://ds@1/dir/sub/g.bin", start=1000, end=1300) == data[1000:1300]
    entry = fs.listing(fs._entry("ds@1/dir/sub/g.bin")[0]).files["dir/sub/g.bin"]
    # One ranged read of the manifest part that lists the file (no listing of the version is
    # built to read one file), then one GET of the file's run in its pack (the file whole, so its
    # sha256 is checked, and its neighbours); later reads of it and of those neighbours are
    # served from the block cache.
    assert len(gets) == 2 and gets[0][0].startswith("manifests/")
    key, offset, length = gets[1]
    assert key == entry.object and offset <= entry.offset and offset + length >= entry.offset + entry.size
    assert fs.cat("datastore://ds@1/dir/sub/h.txt") == b"h" and fs.cat_file("datastore://ds@1/dir/sub/g.bin") == data
    assert len(gets) == 2
    assert fs.cat_file("datastore://ds@1/dir/sub/g.bin", start=-10) == data[-10:]
    assert fs.cat_file("datastore://ds@1/dir/sub/g.bin", start=10, end=-10) == data[10:-10]
    assert fs.cat_file("datastore://ds@1/dir/sub/g.bin", start=20_000) == b""
    assert fs.cat("datastore://ds@1/dir/f.txt") == TREE["dir/f.txt"]
    assert fs.cat(fs.find("datastore://ds@1/dir/sub")) == {
        "ds@1/dir/sub/g.bin": data, "ds@1/dir/sub/h.txt": b"h"}
    with fs.open("datastore://ds@1/dir/sub/g.bin", block_size=1024) as f:
        f.seek(5000)
        assert f.read(100) == data[5000:5100]
        assert f.tell() == 5100


def test_unversioned_url_is_the_newest_live_version(own_version: dict, tmp_path: Path) -> None:
    second = create_from_local(str(make_tree(tmp_path / "src2", {"dir/f.txt": b"second"})), name="ds")
    assert second["version"] == 2
    assert fsspec.open("datastore://ds/dir/f.txt").open().read() == b"second"
    assert fsspec.open("datastore://ds@1/dir/f.txt").open().read() == TREE["dir/f.txt"]
    fs = fresh_fs()
    assert fs.ls("datastore://ds", detail=False) == ["ds@2/dir"]  # listed paths name the version listed
    assert fs.info("datastore://ds/dir/f.txt")["version"] == 2
    # a tombstone (what deletion writes) makes version 1 the newest live again, in the same instance
    open_store().put_bytes(layout.tombstone_key("ds", 2), json.dumps({"deleted_at": "now"}).encode())
    assert fs.cat("datastore://ds/dir/f.txt") == TREE["dir/f.txt"]
    with pytest.raises(FileNotFoundError, match=r"datastore 'ds' version 2 does not exist"):
        fresh_fs().info("datastore://ds@2/dir/f.txt")  # (an instance that listed it keeps its listing)


def test_bad_version_is_a_clear_error(version: dict) -> None:
    from datastore.errors import DatastoreError

    expected = ("invalid datastore URL 'datastore://name@notanumber/x': version 'notanumber' is not a whole number: "
                "version must be a whole number, e.g. datastore://imagenet@3/train/x.jpg "
                "(leave out @VERSION for the newest)")
    with pytest.raises(ValueError) as info:
        fsspec.open("datastore://name@notanumber/x").open()
    assert str(info.value) == expected and isinstance(info.value, DatastoreError)
    fs = fresh_fs()
    for bad in ("datastore://ds@/x", "datastore://ds@-1/x", "datastore://ds@1.5/x", "datastore://ds@\uff13/x"):
        with pytest.raises(ValueError, match="version must be a whole number"):
            fs.info(bad)
        with pytest.raises(ValueError, match="version must be a whole number"):
            fs.exists(bad)  # a malformed URL is an error, not "does not exist"
    with pytest.raises(ValueError, match=r"invalid datastore URL 'datastore://Bad Name/x': 'Bad Name' is not a"):
        fs.info("datastore://Bad Name/x")


def test_missing_paths_are_file_not_found(version: dict) -> None:
    fs = fresh_fs()
    with pytest.raises(FileNotFoundError, match=r"'datastore://ds@1/dir/nope.txt': ds version 1 has no file"):
        fsspec.open("datastore://ds@1/dir/nope.txt").open()
    with pytest.raises(FileNotFoundError):
        fs.info("datastore://ds@1/nope")
    with pytest.raises(FileNotFoundError):
        fs.ls("datastore://ds@1/nope")
    with pytest.raises(NotADirectoryError):  # as open() of a path below a local file
        fs.cat("datastore://ds@1/dir/f.txt/deeper")
    with pytest.raises(FileNotFoundError, match=r"datastore 'ds' version 7 does not exist"):
        fs.cat("datastore://ds@7/dir/f.txt")
    with pytest.raises(FileNotFoundError, match=r"datastore 'other' does not exist"):
        fs.info("datastore://other/dir/f.txt")
    with pytest.raises(IsADirectoryError):
        fs.cat_file("datastore://ds@1/dir")


def test_writes_are_refused(version: dict) -> None:
    fs = fresh_fs()
    with pytest.raises(PermissionError, match=r"cannot open with mode 'wb' 'datastore://ds@1/new.txt': "
                                              r"datastore versions are immutable"):
        fs.open("datastore://ds@1/new.txt", "wb")
    with pytest.raises(PermissionError):
        fsspec.open("datastore://ds@1/dir/f.txt", "w").open()
    for call in (lambda: fs.rm("datastore://ds@1/top.txt"), lambda: fs.pipe("datastore://ds@1/x", b"x"),
                 lambda: fs.mkdir("datastore://ds@1/newdir"), lambda: fs.touch("datastore://ds@1/t"),
                 lambda: fs.mv("datastore://ds@1/top.txt", "datastore://ds@1/moved")):
        with pytest.raises(PermissionError):
            call()
    assert fs.cat("datastore://ds@1/top.txt") == b"top"


def test_damaged_bytes_fail_whole_reads(own_version: dict) -> None:
    fs = fresh_fs()
    entry = fs.listing(fs._entry("ds@1/dir/sub/g.bin")[0]).files["dir/sub/g.bin"]
    pack = Path(os.environ["DATASTORE_STORE"]).joinpath(*entry.object.split("/"))
    with open(pack, "r+b") as fh:
        fh.seek(entry.offset + 7)
        fh.write(b"\x00\x00\x00")
    with pytest.raises(ChecksumMismatch, match=r"file 'dir/sub/g.bin' does not match its manifest"):
        fs.cat("datastore://ds@1/dir/sub/g.bin")
    with pytest.raises(ChecksumMismatch):
        fs.open("datastore://ds@1/dir/sub/g.bin", block_size=1000).read()
    assert fs.cat("datastore://ds@1/dir/f.txt") == TREE["dir/f.txt"]  # other files are fine


def test_a_truncated_object_fails_ranged_reads(own_version: dict) -> None:
    # A range of a small file is served only after the whole file was checked: a short answer is no "end of file".
    fs = fresh_fs()
    entry = fs.listing(fs._entry("ds@1/dir/sub/g.bin")[0]).files["dir/sub/g.bin"]
    pack = Path(os.environ["DATASTORE_STORE"]).joinpath(*entry.object.split("/"))
    os.truncate(pack, entry.offset + 5000)
    with pytest.raises(ChecksumMismatch, match=r"^file 'dir/sub/g.bin' does not match its manifest"):
        fs.cat_file("datastore://ds@1/dir/sub/g.bin", start=4000, end=6000)
    with pytest.raises(ChecksumMismatch):
        with fs.open("datastore://ds@1/dir/sub/g.bin", block_size=1000) as f:
            f.seek(4500)
            f.read(1000)
    with pytest.raises(ChecksumMismatch):  # even a range in the bytes still there: the file is damaged
        fs.cat_file("datastore://ds@1/dir/sub/g.bin", start=100, end=200)
    assert fs.cat("datastore://ds@1/dir/f.txt") == TREE["dir/f.txt"]  # before the cut: fine


def test_a_version_deleted_and_collected_while_read_says_so(own_version: dict,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # datastore:// holds no lease: a listed version may be deleted and collected under a reader.
    fs = fresh_fs()
    assert fs.cat("datastore://ds@1/top.txt") == TREE["top.txt"]  # listed and read once
    delete_version("ds", 1)  # reclaims what only this version referenced, now
    monkeypatch.setenv("DATASTORE_GC_GRACE", "0")
    gc()
    assert not [p for p in Path(os.environ["DATASTORE_STORE"], "data").rglob("*") if p.is_file()]
    with pytest.raises(DeletedWhileReading, match=r"^datastore 'ds' version 1 was deleted at .+ while it was being "
                                                  r"read: its files are gone; 'datastore list ds' shows the live"):
        fs.cat("datastore://ds@1/dir/f.txt")
    with pytest.raises(FileNotFoundError):  # what fsspec callers catch
        fs.open("datastore://ds@1/dir/sub/g.bin", block_size=1000).read()
    with pytest.raises(FileNotFoundError):  # a new instance does not find it at all
        fresh_fs().cat("datastore://ds@1/dir/f.txt")


def test_round_trip_of_every_kind(created: tuple[dict, dict]) -> None:  # noqa: F811 - the imported fixture
    record, tree = created
    fs = fresh_fs()
    base = f"{record['name']}@{record['version']}"
    assert fs.find(f"datastore://{base}") == sorted(f"{base}/{p}" for p in tree)
    got = fs.cat(fs.find(f"datastore://{base}"))
    assert {k.removeprefix(base + "/"): v for k, v in got.items()} == tree
    big = tree["big/model.bin"]
    assert fs.cat_file(f"datastore://{base}/big/model.bin", start=MiB - 5, end=MiB + 5) == big[MiB - 5: MiB + 5]
    with fs.open(f"datastore://{base}/big/model.bin", block_size=256 * 1024) as f:
        assert f.read() == big  # sequential, several fetches, each checked
    with fs.open(f"datastore://{base}/unicod\u00e9/na\u00efve-\u65e5\u672c.txt", "rb") as f:
        assert f.read() == b"unicode"


def test_duckdb_reads_partitioned_parquet(seaweed_store: str, tmp_path: Path) -> None:
    con = duckdb.connect()
    src = tmp_path / "src"
    want = []
    for day in (1, 2, 3):
        for part in (0, 1):
            folder = src / "events" / f"day={day}"
            folder.mkdir(parents=True, exist_ok=True)
            n = 50 * day + part
            con.execute(f"COPY (SELECT {part} AS part, i AS id, 'ev-' || i AS label FROM range({n}) t(i)) "
                        f"TO '{folder}/part-{part}.parquet' (FORMAT parquet)")
            want += [(day, part, i, f"ev-{i}") for i in range(n)]
    make_tree(src, {"events/_SUCCESS": b"", "README.txt": b"not parquet"})  # not matched by the glob
    create_from_local(str(src), name="ds")
    con.register_filesystem(fresh_fs())
    got = con.sql("SELECT day, part, id, label FROM read_parquet('datastore://ds@1/events/**/*.parquet', "
                  "hive_partitioning = true) ORDER BY day, part, id").fetchall()
    assert got == sorted(want)
    # unversioned: the glob and the reads are the same (newest) version
    count = con.sql("SELECT count(*) FROM read_parquet('datastore://ds/events/*/*.parquet')").fetchall()
    assert count == [(len(want),)]


def test_modified_and_created_are_the_manifest_mtime_or_the_version_time(tmp_path: Path, local_store: str) -> None:
    src = make_tree(tmp_path / "src", {"old/a.txt": b"a", "new.txt": b"n"})
    stamp_ns = 1_600_000_000_123_456_789  # old enough to be recorded (a just-written mtime is not trusted)
    os.utime(src / "old" / "a.txt", ns=(stamp_ns, stamp_ns))
    record = create_from_local(str(src), name="ds")
    fs = fresh_fs()
    mtime = datetime(2020, 9, 13, 12, 26, 40, 123456, tzinfo=timezone.utc)
    assert fs.modified("datastore://ds@1/old/a.txt") == mtime == fs.created("datastore://ds/old/a.txt")
    made = datetime.fromisoformat(record["created_at"].replace("Z", "+00:00"))
    assert made.tzinfo is not None
    assert fs.modified("datastore://ds@1/new.txt") == made  # no recorded mtime: the version's time
    assert fs.modified("datastore://ds@1/old") == fs.created("datastore://ds@1") == made  # folders
    with pytest.raises(FileNotFoundError, match=r"ds version 1 has no file or folder at this path"):
        fs.modified("datastore://ds@1/nope")


def test_open_accepts_the_size_caches_pass(version: dict, tmp_path: Path) -> None:
    fs = fresh_fs()
    data = TREE["dir/sub/g.bin"]
    with fs.open("datastore://ds@1/dir/sub/g.bin", size=len(data)) as f:
        assert f.read() == data
    with pytest.raises(ValueError) as info:
        fs.open("datastore://ds@1/dir/sub/g.bin", size=5)
    assert isinstance(info.value, InvalidRead)
    assert str(info.value) == ("cannot read 'datastore://ds@1/dir/sub/g.bin': size=5 was given, but the file has "
                               "10240 bytes: leave out size (the manifest knows it), or re-list the path if it changed")
    with fs.open("datastore://ds@1/dir/sub/g.bin", block_size=1024) as f:
        f.seek(3000)
        again = pickle.loads(pickle.dumps(f))  # fsspec reopens with size= and the position
        assert again.read(10) == data[3000:3010]
    cache = tmp_path / "blocks"
    for _ in range(2):  # the second open reads the blocks the first one cached
        with fsspec.open("blockcache::datastore://ds@1/dir/sub/g.bin", blockcache={"cache_storage": str(cache)}) as f:
            f.seek(7000)
            assert f.read(100) == data[7000:7100]
            f.seek(0)
            assert f.read() == data
    assert any(cache.iterdir())
    with fsspec.open("blockcache::datastore://ds@1/top.txt", blockcache={"cache_storage": str(cache)}) as f:
        assert f.read() == b"top"


def test_listings_of_an_unversioned_name_are_pinned(own_version: dict, tmp_path: Path) -> None:
    fs = fresh_fs()
    files = fs.find("datastore://ds")
    assert files == sorted(f"ds@1/{p}" for p in TREE)
    assert fs.ls("datastore://ds/dir", detail=False) == ["ds@1/dir/f.txt", "ds@1/dir/sub"]
    assert fs.glob("datastore://ds/**/*.txt") == ["ds@1/dir/f.txt", "ds@1/dir/sub/h.txt", "ds@1/top.txt"]
    assert fs.glob("datastore://ds/dir/") == ["ds@1/dir"]
    assert [root for root, _, _ in fs.walk("datastore://ds")] == ["ds@1", "ds@1/dir", "ds@1/dir/sub"]
    assert fs.find("datastore://ds/dir", maxdepth=1) == ["ds@1/dir/f.txt"]
    assert fs.expand_path("datastore://ds/dir", recursive=True) == [
        "ds@1/dir", "ds@1/dir/f.txt", "ds@1/dir/sub", "ds@1/dir/sub/g.bin", "ds@1/dir/sub/h.txt"]
    assert fs.info("datastore://ds/dir/f.txt")["name"] == "ds@1/dir/f.txt"
    assert fs.info("datastore://ds")["name"] == "ds@1"
    assert fs.du("datastore://ds", total=False) == {f"ds@1/{p}": len(b) for p, b in sorted(TREE.items())}
    assert fs.cat("datastore://ds/top.txt") == b"top"  # one file: its bytes, not a {path: bytes}
    assert fs.ls("datastore://", detail=False) == ["ds"]  # the root lists names, unversioned

    # version 2 changes one file and drops another while the query that listed version 1 reads on
    second = create_from_local(str(make_tree(tmp_path / "src2", {"dir/f.txt": b"changed", "empty": b""})),
                               name="ds")
    assert second["version"] == 2
    assert fs.cat(files) == {f"ds@1/{p}": b for p, b in TREE.items()}
    for p in files:
        with fs.open(p) as f:
            assert f.read() == TREE[p.removeprefix("ds@1/")]
    assert fs.cat("datastore://ds/dir/f.txt") == b"changed"  # a new call resolves the name again
    assert fs.find("datastore://ds") == ["ds@2/dir/f.txt", "ds@2/empty"]
    assert fs.cat("datastore://ds/**/f.txt") == {"ds@2/dir/f.txt": b"changed"}


def count_record_reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every version-record GET and listing of ``store``: what resolving a name costs."""
    calls: list[str] = []
    get_bytes, listing = store.get_bytes, store.list

    def counting_get(key: str) -> bytes:
        if key.startswith(layout.NAMES):
            calls.append(f"GET {key}")
        return get_bytes(key)

    def counting_list(prefix: str):  # noqa: ANN202 - whatever Store.list returns
        calls.append(f"LIST {prefix}")
        return listing(prefix)

    monkeypatch.setattr(store, "get_bytes", counting_get)
    monkeypatch.setattr(store, "list", counting_list)
    return calls


def test_a_listing_resolves_the_newest_version_once(tmp_path: Path, local_store: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tree = small_tree(40)
    create_from_local(str(make_tree(tmp_path / "src", tree)), name="ds")
    store = open_store()
    calls = count_record_reads(store, monkeypatch)
    fs = fresh_fs(store=store)
    resolve_once = [f"LIST {layout.NAMES}ds/", f"GET {layout.record_key('ds', 1)}"]

    listed = fs.find("datastore://ds")
    assert len(listed) == 40 and calls == resolve_once
    for p in listed:  # pandas, pyarrow, DuckDB … read what they listed, file by file
        assert fs.cat_file(p) == tree[p.removeprefix("ds@1/")]
        with fs.open(p) as f:
            assert f.info()["version"] == 1
    assert calls == resolve_once  # not one lookup of the newest version per file

    for call in (lambda: fs.cat("datastore://ds/d0*/*.bin"), lambda: fs.du("datastore://ds"),
                 lambda: list(fs.walk("datastore://ds")), lambda: fs.find("datastore://ds", maxdepth=2),
                 lambda: fs.expand_path("datastore://ds", recursive=True)):
        calls.clear()
        call()
        assert calls == resolve_once


def test_a_path_below_a_file_is_not_a_directory(version: dict, tmp_path: Path) -> None:
    fs = fresh_fs()
    with pytest.raises(NotADirectoryError) as info:
        fs.info("datastore://ds@1/dir/f.txt/below")
    assert isinstance(info.value, PathBelowFile) and isinstance(info.value, DatastoreError)
    assert str(info.value) == ("'datastore://ds@1/dir/f.txt/below': datastore://ds@1/dir/f.txt is a file, not a "
                               "folder: nothing is below a file; read datastore://ds@1/dir/f.txt itself")
    with pytest.raises(NotADirectoryError, match=r"^'datastore://ds/top.txt/a/b': datastore://ds@1/top.txt is a"):
        fs.ls("datastore://ds/top.txt/a/b")
    with pytest.raises(NotADirectoryError):
        fs.open("datastore://ds@1/dir/sub/h.txt/x")
    assert not fs.exists("datastore://ds@1/dir/f.txt/below") and not fs.isdir("datastore://ds@1/dir/f.txt/below")
    local = make_tree(tmp_path, {"f.txt": b"x"})  # the same as fsspec's local file system
    with pytest.raises(NotADirectoryError):
        fsspec.filesystem("file").info(str(local / "f.txt" / "below"))


def test_cat_file_start_after_end_is_an_error(version: dict, tmp_path: Path) -> None:
    fs = fresh_fs()
    data = TREE["dir/sub/g.bin"]
    url = "datastore://ds@1/dir/sub/g.bin"
    with pytest.raises(ValueError) as info:
        fs.cat_file(url, start=10, end=5)
    assert isinstance(info.value, InvalidRead)
    assert str(info.value) == ("cannot read 'datastore://ds@1/dir/sub/g.bin': start=10 is after end=5: "
                               "give start <= end; negative values count back from the end of the file")
    with pytest.raises(ValueError, match=r"start=-5 is after end=-10 \(bytes 10235 to 10230 of 10240\)"):
        fs.cat_file(url, start=-5, end=-10)
    assert fs.cat_file(url, start=10, end=10) == b"" == fs.cat_file(url, start=-3, end=-3)
    # the same answers as fsspec's LocalFileSystem on the same bytes, for every kind of range
    local_fs, local = fsspec.filesystem("file"), str(make_tree(tmp_path, {"g.bin": data}) / "g.bin")
    for start, end in [(10, 5), (-5, -10), (5, -20_000), (30_000, 25_000), (5, 5), (-20_000, 3), (30_000, None),
                       (10, -10), (-10, None), (None, 5), (0, 20_000), (None, -1), (10_000, 30_000)]:
        try:
            expected: bytes | type = local_fs.cat_file(local, start=start, end=end)
        except ValueError:
            expected = ValueError
        if expected is ValueError:
            with pytest.raises(ValueError):
                fs.cat_file(url, start=start, end=end)
        else:
            assert fs.cat_file(url, start=start, end=end) == expected, (start, end)


def test_one_file_is_found_from_one_part_of_the_manifest_without_listing_the_version(
        tmp_path: Path, local_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from datastore.creation import pipeline
    from datastore.model.manifest import ManifestToc

    monkeypatch.setattr(pipeline, "PART_ITEMS", 8)  # 50 files: 7 parts
    tree = {f"d{i // 10}/f{i:02d}.txt": f"file {i}".encode() for i in range(50)}
    record = create_from_local(str(make_tree(tmp_path / "src", tree)), name="parts")
    store = open_store()
    toc = ManifestToc.decode(store.get_bytes(record["manifest_toc"]))
    assert [p.items for p in toc.parts] == [8] * 6 + [2]
    gets = count_gets(store, monkeypatch)
    fs = fresh_fs(store=store)
    assert fs.cat("datastore://parts/d3/f35.txt") == b"file 35"
    assert fs.info("datastore://parts/d3/f36.txt")["name"] == "parts@1/d3/f36.txt"  # same part: no read
    part = toc.part_of("d3/f35.txt")
    manifest_reads = [g for g in gets if g[0] == record["manifest"]]
    assert manifest_reads == [(record["manifest"], part.offset, part.length)]  # one part, not the manifest
    assert fs._listings == {}  # the version was never listed whole
    # A folder or a missing path needs the whole listing to tell them apart: it is built then.
    assert fs.info("datastore://parts/d3")["type"] == "directory"
    with pytest.raises(FileNotFoundError, match="d3/nope"):
        fs.cat("datastore://parts@1/d3/nope")
    assert list(fs._listings) == [(store.url, "parts", 1)]


def test_a_version_without_a_table_of_contents_is_read_from_its_listing(own_version: dict) -> None:
    # Versions committed before manifests had one: their record names none.
    store = open_store()
    key = layout.record_key("ds", 1)
    rec = json.loads(store.get_bytes(key))
    store.delete(rec.pop("manifest_toc"))
    store.put_bytes(key, json.dumps(rec).encode())
    fs = fresh_fs()
    assert fs.cat("datastore://ds@1/dir/f.txt") == TREE["dir/f.txt"]
    assert list(fs._listings) == [(store.url, "ds", 1)]
