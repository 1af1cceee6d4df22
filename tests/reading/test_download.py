"""``download``: versions created by every flow, materialized read-only and compared byte for byte."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from datastore.errors import ChecksumMismatch, MountTargetNotEmpty
from datastore.model.manifest import Entry
from datastore.reading import reader
from datastore.reading.download import DownloadSummary, download
from datastore.store import Store, open_store, versions
from datastore.store.versions import VersionRecord
from datastore.testing.servers import S3Server
from datastore_flows.local_folder import create_from_local
from tests.conftest import make_tree
from tests.flows.test_flow_s3 import AWKWARD, source_bucket

pytestmark = pytest.mark.usefixtures("prefect_api")

MiB = 1024 * 1024

# Awkward names on purpose (spaces, unicode, '+', an empty file, deep nesting): the S3 tests' set.
SAMPLE = AWKWARD | {"README.txt": b"read me\n"}


def small_tree(n: int, seed: int = 0) -> dict[str, bytes]:
    """``n`` distinct small files (1-4 KiB) in 30 folders."""
    rnd = hashlib.sha256(str(seed).encode()).digest()
    return {f"d{i % 30:02d}/f{i:05d}.bin": (rnd + i.to_bytes(4, "big")) * (30 + i % 90) for i in range(n)}


def tree_of(root: Path) -> dict[str, bytes]:
    """``{relative path: bytes}`` of every file under ``root``."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def record_of(created: dict) -> tuple[Store, VersionRecord]:
    store = open_store()
    return store, versions.read_record(store, created["name"], created["version"])


def count_gets(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """Record every ``get_range`` call on ``store`` (the ranged GETs of a download)."""
    calls: list[tuple[str, int, int]] = []
    real = store.get_range

    def counting(key: str, offset: int, length: int) -> bytes:
        calls.append((key, offset, length))
        return real(key, offset, length)

    monkeypatch.setattr(store, "get_range", counting)
    return calls


def assert_read_only(root: Path) -> None:
    """Every file 0o444, every folder (and the root) 0o555."""
    assert stat.S_IMODE(root.stat().st_mode) == 0o555
    for p in root.rglob("*"):
        want = 0o555 if p.is_dir() else 0o444
        assert stat.S_IMODE(p.lstat().st_mode) == want, p


def leftovers(parent: Path) -> list[str]:
    """Hidden download folders left in ``parent``."""
    return [p.name for p in parent.iterdir() if ".download-" in p.name]


# --- versions made by each creation flow ------------------------------------------------------


def _local(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[dict, dict[str, bytes]]:
    request.getfixturevalue("local_store")
    tree = SAMPLE | small_tree(200) | {"big/model.bin": os.urandom(2 * MiB + 7)}
    return create_from_local(str(make_tree(tmp_path / "src", tree)), name="local"), tree


def _s3(tmp_path: Path, request: pytest.FixtureRequest, no_copy: bool) -> tuple[dict, dict[str, bytes]]:
    from datastore_flows.s3_copy import create_from_s3
    from datastore_flows.s3_reference import reference_s3

    request.getfixturevalue("moto_store")
    # 2 MiB > DATASTORE_LARGE_FILE_BYTES: copied server-side (no sha256) or, no-copy, streamed
    tree = SAMPLE | small_tree(150, seed=1) | {"big/model.bin": os.urandom(2 * MiB + 7)}
    bucket = source_bucket(request.getfixturevalue("moto"), {f"src/{k}": v for k, v in tree.items()})
    if no_copy:
        return reference_s3(f"s3://{bucket}/src/", name="ref"), tree
    return create_from_s3(f"s3://{bucket}/src/", name="copy"), tree


def _http(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[dict, dict[str, bytes]]:
    from datastore.testing.http_server import serve
    from datastore_flows.http_archive import create_from_http
    from tests.archives import build

    request.getfixturevalue("local_store")
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("DATASTORE_HTTP_ALLOW_PRIVATE", "1")  # the test server is on 127.0.0.1
    monkeypatch.setenv("DATASTORE_WORK_DIR", str(tmp_path / "work"))
    tree = SAMPLE | small_tree(100, seed=2) | {"big/model.bin": os.urandom(2 * MiB + 7)}
    with serve({"/set.tar.gz": build("tar.gz", tree)}) as server:
        return create_from_http(server.url("/set.tar.gz")), tree


MAKERS: dict[str, Callable[[Path, pytest.FixtureRequest], tuple[dict, dict[str, bytes]]]] = {
    "local": _local,
    "s3-copy": lambda t, r: _s3(t, r, no_copy=False),
    "s3-reference": lambda t, r: _s3(t, r, no_copy=True),
    "http-archive": _http,
}


# Versions are only read by the tests that use ``created``, so each kind is made once per session
# (test_fsspec_fs.py reuses them): kind -> (record, tree, the environment that reaches its store).
_CREATED: dict[str, tuple[dict, dict[str, bytes], dict[str, str]]] = {}
_ENV = ("DATASTORE_STORE", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@pytest.fixture(params=list(MAKERS))
def created(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            monkeypatch: pytest.MonkeyPatch) -> tuple[dict, dict]:
    """A version made by each creation flow in turn, with the tree it should hold."""
    from datastore.backends import s3

    kind = request.param
    monkeypatch.setenv("DATASTORE_LARGE_FILE_BYTES", str(MiB))
    if kind in _CREATED:
        record, tree, env = _CREATED[kind]
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        s3.reset_clients()
        return record, tree
    record, tree = MAKERS[kind](tmp_path_factory.mktemp(kind.replace("-", "")), request)
    assert record["kind"] == kind
    _CREATED[kind] = (record, tree, {k: os.environ[k] for k in _ENV if k in os.environ})
    return record, tree


# --- tests --------------------------------------------------------------------------------------


def test_round_trip_of_every_kind(created: tuple[dict, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record, tree = created
    monkeypatch.setattr(reader, "STREAM_CHUNK", 256 * 1024)  # the large file takes several chunks
    store, rec = record_of(record)
    big = next(e for e in reader.entries(store, rec) if e.path == "big/model.bin")
    if record["kind"] == "s3-copy":
        assert big.sha256 is None and big.object  # copied server-side: streamed with a size check
    if record["kind"] == "s3-reference":
        assert big.referenced  # streamed from the pinned source object
    dest = tmp_path / "mnt" / "here"  # parents are created
    summary = download(store, rec, dest, workers=4)
    assert summary == DownloadSummary(files=len(tree), bytes=sum(map(len, tree.values())))
    assert tree_of(dest) == tree
    assert (dest / "empty.bin").stat().st_size == 0
    assert_read_only(dest)
    assert leftovers(dest.parent) == []


def test_many_small_files_take_few_gets(tmp_path: Path, local_store: str, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    tree = small_tree(3_000)
    record = create_from_local(str(make_tree(tmp_path / "src", tree)), name="many")
    store, rec = record_of(record)
    packs = {e.object for e in reader.entries(store, rec)}
    gets = count_gets(store, monkeypatch)
    dest = tmp_path / "empty-dir"
    dest.mkdir()  # an existing empty directory is a fine target too
    summary = download(store, rec, dest)
    assert summary.files == 3_000
    assert tree_of(dest) == tree
    assert_read_only(dest)
    # one ranged GET per run of adjacent files: here one per pack (3 batches of 1,000 files)
    assert {k for k, _, _ in gets} == packs
    assert len(gets) == len(packs) <= 5
    assert len(gets) * 100 < summary.files
    with capsys.disabled():
        print(f"\ndownload: {summary.files} files, {len(gets)} GETs ({len(gets) / summary.files:.4f} GETs per file)")


def test_coalescing_rule() -> None:
    def e(offset: int, size: int, obj: str = "data/p-1") -> Entry:
        return Entry(f"f{offset}", size, "0" * 64, obj, offset)

    run = reader.Run("data/p-1", 0, 100, [e(0, 100)])
    assert run.accepts(e(100, 10))  # adjacent
    assert run.accepts(e(100 + reader.COALESCE_GAP, 10))  # a hole up to the gap is read through
    assert not run.accepts(e(101 + reader.COALESCE_GAP, 10))  # a bigger hole: a new GET
    assert not run.accepts(e(100, 10, obj="data/p-2"))  # another object
    assert not run.accepts(e(50, 10))  # going backwards (a reused entry from an older pack)
    assert not run.accepts(e(200, reader.MAX_READ - 150))  # the read would pass MAX_READ
    assert run.accepts(e(200, reader.MAX_READ - 200))  # ... exactly MAX_READ is fine


def test_read_cap_splits_runs(tmp_path: Path, local_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = small_tree(400, seed=3)
    record = create_from_local(str(make_tree(tmp_path / "src", tree)), name="cap")
    store, rec = record_of(record)
    gets = count_gets(store, monkeypatch)
    monkeypatch.setattr(reader, "MAX_READ", 64 * 1024)  # a run may span at most 64 KiB
    download(store, rec, tmp_path / "m")
    assert tree_of(tmp_path / "m") == tree
    assert all(length <= 64 * 1024 for _, _, length in gets)
    pack_bytes = sum(map(len, tree.values()))
    assert pack_bytes // (64 * 1024) <= len(gets) <= 2 * pack_bytes // (64 * 1024) + 2


def test_large_file_is_streamed_with_bounded_chunks(tmp_path: Path, moto_store: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASTORE_LARGE_FILE_BYTES", str(MiB))
    tree = {"big/a.bin": os.urandom(6 * MiB + 3), "small.txt": b"tiny"}
    record = create_from_local(str(make_tree(tmp_path / "src", tree)), name="big")
    store, rec = record_of(record)
    reads: list[int] = []
    real_stream = reader.Reader.stream

    def watching(self: reader.Reader, e: Entry, chunk_bytes: int | None = None) -> Iterator[bytes]:  # a pass-through spy
        for chunk in real_stream(self, e, chunk_bytes):
            reads.append(len(chunk))
            yield chunk

    monkeypatch.setattr(reader.Reader, "stream", watching)
    monkeypatch.setattr(reader, "STREAM_CHUNK", MiB)
    download(store, rec, tmp_path / "m")
    assert tree_of(tmp_path / "m") == tree
    assert len(reads) >= 7 and max(reads) <= MiB  # streamed in pieces, never held whole
    assert [p.name for p in (tmp_path / "m" / "big").iterdir()] == ["a.bin"]  # no temporary name left


def test_non_empty_or_file_target_is_refused(tmp_path: Path, local_store: str) -> None:
    record = create_from_local(str(make_tree(tmp_path / "src", {"a.txt": b"a"})), name="refuse")
    store, rec = record_of(record)
    dest = tmp_path / "full"
    dest.mkdir()
    (dest / "keep.txt").write_bytes(b"mine")
    with pytest.raises(MountTargetNotEmpty) as info:
        download(store, rec, dest)
    assert str(info.value) == (f"directory {dest} is not empty: "
                               "choose an empty or new directory with --dir, or remove its contents")
    assert isinstance(info.value, FileExistsError)
    assert tree_of(dest) == {"keep.txt": b"mine"}
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(MountTargetNotEmpty, match=r"directory .*/file is a file: choose an empty"):
        download(store, rec, tmp_path / "file")
    assert leftovers(tmp_path) == []


def test_checksum_failure_leaves_nothing_behind(tmp_path: Path, local_store: str) -> None:
    tree = small_tree(500, seed=4)
    record = create_from_local(str(make_tree(tmp_path / "src", tree)), name="rot")
    store, rec = record_of(record)
    victim = max(reader.entries(store, rec), key=lambda e: e.path)  # the last file of the last pack
    pack = Path(local_store).joinpath(*victim.object.split("/"))
    with open(pack, "r+b") as fh:  # flip one byte of its bytes, as bit rot would
        fh.seek(victim.offset + victim.size // 2)
        b = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([b[0] ^ 0xFF]))
    dest = tmp_path / "out" / "m"
    with pytest.raises(ChecksumMismatch, match=rf"file '{victim.path}' does not match its manifest"):
        download(store, rec, dest)
    assert not dest.exists()
    assert list((tmp_path / "out").iterdir()) == []  # no hidden half-written tree either


def test_broken_reference_fails_naming_the_file_and_leaves_nothing(tmp_path: Path, moto_store: str,
                                                                   moto: S3Server) -> None:
    from datastore.errors import ReferenceBroken
    from datastore_flows.s3_reference import reference_s3

    bucket = source_bucket(moto, {"d/keep.txt": b"keep", "d/over.txt": b"original"})
    record = reference_s3(f"s3://{bucket}/d/", name="pinned")
    moto.client().put_object(Bucket=bucket, Key="d/over.txt", Body=b"overwritten")
    store, rec = record_of(record)
    dest = tmp_path / "m"
    with pytest.raises(ReferenceBroken, match=r"file 'over.txt' of pinned version 1 cannot be read: .* "
                                              r"was overwritten with different bytes"):
        download(store, rec, dest)
    assert not dest.exists() and leftovers(tmp_path) == []
