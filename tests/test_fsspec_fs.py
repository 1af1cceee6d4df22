"""The ``datastore://`` fsspec protocol, on versions made by the real creation flows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest

from datastore import layout
from datastore.reader import ChecksumMismatch
from datastore.store import open_store
from flows.local_folder import create_from_local
from tests.conftest import make_tree
from tests.test_mount import count_gets, created, record_of  # noqa: F401 - `created` is a fixture

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
    # A fresh interpreter proves the fsspec.specs entry point: nothing imports datastore.fsspec_fs first.
    code = (
        "import sys, fsspec\n"
        "assert 'datastore.fsspec_fs' not in sys.modules\n"
        "with fsspec.open('datastore://ds@1/dir/f.txt') as f:\n"
        "    sys.stdout.write(f.read().decode())\n"
        "assert type(fsspec.filesystem('datastore')).__module__ == 'datastore.fsspec_fs'\n"
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


def test_cat_with_start_end_is_one_ranged_read(version: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = record_of(version)
    gets = count_gets(store, monkeypatch)
    fs = fresh_fs(store=store)
    data = TREE["dir/sub/g.bin"]
    assert fs.cat("datastore://ds@1/dir/sub/g.bin", start=1000, end=1300) == data[1000:1300]
    entry = fs.listing(fs._entry("ds@1/dir/sub/g.bin")[0]).files["dir/sub/g.bin"]
    assert gets == [(entry.object, entry.offset + 1000, 300)]  # exactly those bytes, from the pack
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
    assert fs.ls("datastore://ds", detail=False) == ["ds/dir"]  # the caller's form of the path is kept
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
    with pytest.raises(FileNotFoundError):
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
        fs.open("datastore://ds@1/dir/sub/g.bin", block_size=1000).read()  # sequential: hashed on the way
    assert fs.cat("datastore://ds@1/dir/f.txt") == TREE["dir/f.txt"]  # other files are fine


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
        assert f.read() == big  # sequential, several fetches, checked against the sha256 when there is one
    with fs.open(f"datastore://{base}/unicod\u00e9/na\u00efve-\u65e5\u672c.txt", "rb") as f:
        assert f.read() == b"unicode"
