"""``datastore mount``: a real FUSE mount of versions, read on demand, checked, cached, leased."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datastore.model.manifest import BLOCK_BYTES
from datastore.reading import mount as mounting
from datastore.settings import Settings
from datastore.store import open_store, versions
from datastore.store.manifests import entries
from datastore.testing.cli import run_cli
from datastore_flows.local_folder import create_from_local
from tests.conftest import make_tree

MiB = 1024 * 1024

pytestmark = [
    pytest.mark.usefixtures("prefect_api"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse (FUSE); CI machines have it"),
]

# Nested folders, unicode and space names, an empty file, a 100 MB file (blocks), small files.
TREE = {
    "README.txt": b"read me\n",
    "empty.txt": b"",
    "with space/été ünï 文件.txt": "unicode ✓".encode(),
    "a/b/c/d/deep.txt": b"deep" * 100,
    "big/model.bin": os.urandom(100 * 1000 * 1000),
    "mid/twenty.bin": os.urandom(20 * MiB + 3),  # packed, yet larger than one block
} | {f"small/d{i % 10}/f{i:04d}.bin": os.urandom(500 + i) for i in range(300)}


@pytest.fixture
def env(tmp_path: Path, local_store: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A local store, and a cache of this test's own (the mount process inherits both)."""
    monkeypatch.setenv("DATASTORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DATASTORE_READ_TIMEOUT", "5")
    return Settings.from_env()


@pytest.fixture
def version(env: Settings, tmp_path: Path) -> tuple[dict, Path]:
    """A version of :data:`TREE` (created by the local flow) and its source folder."""
    src = make_tree(tmp_path / "src", TREE)
    return create_from_local(str(src), name="mnt"), src


@pytest.fixture
def mounts_cleanup(tmp_path: Path):
    """Unmount whatever a test left mounted under its folder, live or dead (a failing test must
    not leave mounts behind), and stop their processes."""
    yield
    settings = Settings.from_env()
    for m in mounting.mounts(settings):
        if mounting.running(m):
            os.kill(m.pid, signal.SIGKILL)
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        points = [line.split()[4] for line in fh]
    for point in points:
        if point.startswith(str(tmp_path)):
            subprocess.run(["fusermount3", "-u", "-z", point], check=False, capture_output=True)


def cli(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, env=dict(os.environ), timeout=120)


def one_line_error(done: subprocess.CompletedProcess, *parts: str) -> None:
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for part in parts:
        assert part in lines[0], lines[0]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_mount_is_the_source_tree_read_on_demand(version: tuple[dict, Path], tmp_path: Path, env: Settings,
                                                 mounts_cleanup: None) -> None:
    record, src = version
    target = tmp_path / "mnt"
    done = cli("mount", "mnt", "--dir", str(target))
    assert done.returncode == 0, done.stderr
    assert f"mounted mnt version 1 at {target}: {len(TREE)} files" in done.stdout
    assert os.path.ismount(target)
    listed = json.loads(cli("mounts", "--json").stdout)
    assert [(m["name"], m["version"], m["dir"], m["files"]) for m in listed] == [("mnt", 1, str(target), len(TREE))]
    assert mounting.running(mounting.MountInfo.from_json(listed[0]))
    # Sequential readers get 1 MiB requests, not the kernel's 128 KiB default (as root).
    device = os.stat(target).st_dev
    ra = Path(f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}/read_ahead_kb")
    if os.access(ra, os.W_OK):
        assert int(ra.read_text()) == mounting.READ_AHEAD_KIB

    diff = subprocess.run(["diff", "-r", str(src), str(target)], capture_output=True, text=True)
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert (target / "empty.txt").stat().st_size == 0
    assert oct((target / "README.txt").stat().st_mode & 0o777) == "0o444"
    assert oct((target / "a" / "b").stat().st_mode & 0o777) == "0o555"
    assert sorted(os.listdir(target)) == sorted({k.split("/")[0] for k in TREE})
    # Ranged reads of a large file: every block boundary, and the end.
    with open(target / "big" / "model.bin", "rb") as fh:
        big = TREE["big/model.bin"]
        for off in (0, BLOCK_BYTES - 3, 5 * BLOCK_BYTES, len(big) - 10, len(big)):
            assert os.pread(fh.fileno(), 4096, off) == big[off:off + 4096]

    # Unmounted by someone with another cache folder (another registry): still named from the
    # mount table, not taken for a dead mount.
    done = run_cli("unmount", str(target), env=os.environ | {"DATASTORE_CACHE_DIR": str(tmp_path / "other")},
                   timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"unmounted mnt version 1 from {target}" in done.stdout
    assert not os.path.ismount(target) and os.listdir(target) == []
    assert json.loads(cli("mounts", "--json").stdout) == []
    one_line_error(cli("unmount", str(target)), f"{target} is not a datastore mount", "'datastore mounts' lists")


def test_a_version_whose_commit_stored_its_index_mounts_from_that_index(tmp_path: Path, env: Settings,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       mounts_cleanup: None) -> None:
    monkeypatch.setenv("DATASTORE_INDEX_FILES", "100")  # what a million-file version does, at 300 files
    small = {k: v for k, v in TREE.items() if k.startswith("small/")}
    src = make_tree(tmp_path / "src", small)
    record = create_from_local(str(src), name="indexed")
    assert record["manifest_index"] and record["manifest_index_sha256"]
    stored = open_store().get_bytes(record["manifest_index"])
    assert hashlib.sha256(stored).hexdigest() == record["manifest_index_sha256"]
    target = tmp_path / "mnt"
    done = cli("mount", "indexed", "--dir", str(target))
    assert done.returncode == 0, done.stderr
    diff = subprocess.run(["diff", "-r", str(src), str(target)], capture_output=True, text=True)
    assert diff.returncode == 0, diff.stdout + diff.stderr
    # The machine's index is the stored file, byte for byte: downloaded, not built again.
    (built,) = (Path(env.cache_dir) / "index").glob("indexed-1-*.sqlite")
    assert built.read_bytes() == stored
    assert "building it from the manifest" not in _log_of(env, target)
    assert cli("unmount", str(target)).returncode == 0


def test_mount_is_read_only(version: tuple[dict, Path], tmp_path: Path, env: Settings, mounts_cleanup: None) -> None:
    target = tmp_path / "mnt"
    mounting.mount("mnt", dest=target, settings=env)
    attempts = {
        "write a file": lambda: open(target / "README.txt", "ab"),
        "create a file": lambda: open(target / "new.txt", "wb"),
        "mkdir": lambda: os.mkdir(target / "newdir"),
        "unlink": lambda: os.unlink(target / "README.txt"),
        "rename": lambda: os.rename(target / "README.txt", target / "x.txt"),
        "chmod": lambda: os.chmod(target / "README.txt", 0o644),
        "truncate": lambda: os.truncate(target / "README.txt", 0),
    }
    for what, attempt in attempts.items():
        with pytest.raises(OSError) as info:
            attempt()
        assert info.value.errno == errno.EROFS, what
    assert (target / "README.txt").read_bytes() == TREE["README.txt"]
    mounting.unmount(target, settings=env)


def test_delete_is_refused_while_mounted_and_allowed_after_unmount(version: tuple[dict, Path], tmp_path: Path,
                                                                  env: Settings, mounts_cleanup: None) -> None:
    import socket

    target = tmp_path / "mnt"
    mounting.mount("mnt", dest=target, settings=env)
    one_line_error(cli("delete", "--name", "mnt", "--version", "1"),
                   "datastore 'mnt' version 1 is in use by the mount at", f"{socket.gethostname()}:{target}")
    assert (target / "README.txt").read_bytes() == TREE["README.txt"]
    mounting.unmount(target, settings=env)
    done = cli("delete", "--name", "mnt", "--version", "1")
    assert done.returncode == 0, done.stderr


def _pack_location(env: Settings, path: str) -> tuple[Path, int]:
    """The file on disk of the local store holding ``path``, and the file's offset in it."""
    store = open_store(env.store, env)
    record = versions.resolve(store, "mnt")
    entry = next(e for e in entries(store, record) if e.path == path)
    return Path(env.store) / entry.object, entry.offset


def _flip(path: Path, offset: int) -> None:
    path.chmod(0o644)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def _log_of(env: Settings, target: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in (Path(env.cache_dir) / "mounts").glob("*.log"))


def test_a_corrupted_pack_byte_is_eio_for_that_file_only(version: tuple[dict, Path], tmp_path: Path,
                                                        env: Settings, mounts_cleanup: None) -> None:
    bad = "small/d3/f0013.bin"
    pack, offset = _pack_location(env, bad)
    _flip(pack, offset + 7)
    target = tmp_path / "mnt"
    mounting.mount("mnt", dest=target, settings=env)
    # A neighbour first: its run also fetches the damaged file, which must not be cached as good.
    assert (target / "small/d2/f0012.bin").read_bytes() == TREE["small/d2/f0012.bin"]
    with pytest.raises(OSError) as info:
        (target / bad).read_bytes()
    assert info.value.errno == errno.EIO
    for rel, data in TREE.items():
        if rel != bad:
            assert (target / rel).read_bytes() == data, rel
    mounting.unmount(target, settings=env)
    log = _log_of(env, target)
    assert f"EIO {bad}: file {bad!r} does not match its manifest" in log


def test_a_corrupted_block_is_eio_for_that_block_only(version: tuple[dict, Path], tmp_path: Path,
                                                     env: Settings, mounts_cleanup: None) -> None:
    rel = "big/model.bin"
    obj, offset = _pack_location(env, rel)
    _flip(obj, offset + 3 * BLOCK_BYTES + 100)
    target = tmp_path / "mnt"
    mounting.mount("mnt", dest=target, settings=env)
    big = TREE[rel]
    with open(target / rel, "rb") as fh:
        assert os.pread(fh.fileno(), 65536, 0) == big[:65536]
        assert os.pread(fh.fileno(), 65536, 5 * BLOCK_BYTES) == big[5 * BLOCK_BYTES:5 * BLOCK_BYTES + 65536]
        with pytest.raises(OSError) as info:
            os.pread(fh.fileno(), 4096, 3 * BLOCK_BYTES)
        assert info.value.errno == errno.EIO
    mounting.unmount(target, settings=env)
    assert f"EIO {rel}: block 3 of file {rel!r} does not match its manifest" in _log_of(env, target)


def test_a_killed_mount_process_leaves_a_dead_mount_that_the_next_mount_cleans_up(
        version: tuple[dict, Path], tmp_path: Path, env: Settings, mounts_cleanup: None) -> None:
    target = tmp_path / "mnt"
    info = mounting.mount("mnt", dest=target, settings=env)
    os.kill(info.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while mounting.running(info) and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(OSError) as dead:
        os.stat(target)
    assert dead.value.errno in mounting.DEAD_MOUNT_ERRNOS, dead.value
    assert mounting._is_dead_mount(target)
    # The killed process's lease does not block a delete's check any more (its pid is gone)...
    again = mounting.mount("mnt", dest=target, settings=env)
    assert again.pid != info.pid and (target / "README.txt").read_bytes() == TREE["README.txt"]
    # ... and the new mount's lease does.
    one_line_error(cli("delete", "--name", "mnt", "--version", "1"), "is in use by the mount at")
    mounting.unmount(target, settings=env)
    assert cli("delete", "--name", "mnt", "--version", "1").returncode == 0


READER = r"""
import hashlib, os, sys
root, part, parts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = {}
names = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
for i, rel in enumerate(names):
    p = os.path.join(root, rel)
    size = os.path.getsize(p)
    if size > 64 * 1024 * 1024:   # the big file: this process reads its own part of it
        lo, hi = size * part // parts, size * (part + 1) // parts
        with open(p, "rb") as fh:
            fh.seek(lo)
            out[f"{rel}#{part}"] = hashlib.sha256(fh.read(hi - lo)).hexdigest()
    elif i % parts == part:
        with open(p, "rb") as fh:
            out[rel] = hashlib.sha256(fh.read()).hexdigest()
print(repr(out))
"""


def test_eight_reader_processes_at_once_get_exact_bytes(version: tuple[dict, Path], tmp_path: Path,
                                                       env: Settings, mounts_cleanup: None) -> None:
    target = tmp_path / "mnt"
    mounting.mount("mnt", dest=target, settings=env)
    procs = [subprocess.Popen([sys.executable, "-c", READER, str(target), str(k), "8"], stdout=subprocess.PIPE,
                              text=True) for k in range(8)]
    got: dict[str, str] = {}
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0
        got.update(eval(out))  # noqa: S307 - our own child's repr of a dict of strings
    big = TREE["big/model.bin"]
    want = {rel: sha(data) for rel, data in TREE.items() if rel != "big/model.bin"}
    want |= {f"big/model.bin#{k}": sha(big[len(big) * k // 8:len(big) * (k + 1) // 8]) for k in range(8)}
    assert got == want
    mounting.unmount(target, settings=env)


def test_two_mounts_of_one_version_fetch_each_byte_once(version: tuple[dict, Path], tmp_path: Path,
                                                       env: Settings, mounts_cleanup: None) -> None:
    first = mounting.mount("mnt", dest=tmp_path / "one", settings=env)
    second = mounting.mount("mnt", dest=tmp_path / "two", settings=env)
    for rel, data in TREE.items():
        assert (tmp_path / "one" / rel).read_bytes() == data
    for rel, data in TREE.items():
        assert (tmp_path / "two" / rel).read_bytes() == data
    time.sleep(mounting.STATS_INTERVAL * 2)
    stats = {m.dir: m for m in mounting.mounts(env)}
    assert stats[first.dir].fetched_bytes >= sum(map(len, TREE.values()))
    assert stats[second.dir].fetched_bytes == 0  # everything came from the shared block cache
    mounting.unmount(first.dir, settings=env)
    mounting.unmount(second.dir, settings=env)


def test_mount_refuses_bad_targets_and_missing_versions(version: tuple[dict, Path], tmp_path: Path, env: Settings,
                                                       mounts_cleanup: None) -> None:
    record, src = version
    one_line_error(cli("mount", "nope", "--dir", str(tmp_path / "x")), "datastore 'nope' does not exist")
    one_line_error(cli("mount", "mnt", "--dir", str(src)), f"directory {src} is not empty")
    target = tmp_path / "mnt"
    assert cli("mount", "mnt@1", "--dir", str(target)).returncode == 0
    one_line_error(cli("mount", "mnt", "--dir", str(target)), f"{target} is already a mount (datastore:mnt@1",
                   f"datastore unmount {target}")
    with open(target / "README.txt", "rb"):
        one_line_error(cli("unmount", str(target)), f"{target} is busy", "--lazy")
    assert cli("unmount", str(target)).returncode == 0
    # No FUSE on this machine (here: no fusermount3 on PATH): one line that suggests download.
    no_fuse = run_cli("mount", "mnt", "--dir", str(tmp_path / "y"), env=dict(os.environ, PATH="/nonexistent"),
                      timeout=60)
    one_line_error(no_fuse, "cannot mount: fusermount3 is not installed",
                   "use 'datastore download mnt --dir DIR' for a verified local copy instead")


def test_use_datastore_mounts_by_default_and_copies_on_request(version: tuple[dict, Path], env: Settings,
                                                              mounts_cleanup: None) -> None:
    from datastore import use_datastore

    with use_datastore("mnt") as path:
        assert os.path.ismount(path)
        assert (path / "README.txt").read_bytes() == TREE["README.txt"]
        one_line_error(cli("delete", "--name", "mnt", "--version", "1"), "is in use by")
    assert not path.exists()
    with use_datastore("mnt", copy=True) as path:
        assert not os.path.ismount(path)
        assert (path / "a/b/c/d/deep.txt").read_bytes() == TREE["a/b/c/d/deep.txt"]
    assert not path.exists()
    assert mounting.mounts(env) == []


def test_a_changed_no_copy_object_is_eio_naming_it(tmp_path: Path, moto_store: str, moto,
                                                   monkeypatch: pytest.MonkeyPatch, mounts_cleanup: None) -> None:
    from datastore_flows.s3_reference import reference_s3
    from tests.flows.test_flow_s3 import source_bucket

    monkeypatch.setenv("DATASTORE_CACHE_DIR", str(tmp_path / "cache"))
    settings = Settings.from_env()
    tree = {"keep.txt": b"unchanged", "train/shard-0.bin": os.urandom(3000), "train/shard-1.bin": os.urandom(4000)}
    bucket = source_bucket(moto, {f"src/{k}": v for k, v in tree.items()})
    reference_s3(f"s3://{bucket}/src/", name="ref")
    moto.client().put_object(Bucket=bucket, Key="src/train/shard-1.bin", Body=b"other bytes")
    target = tmp_path / "mnt"
    mounting.mount("ref", dest=target, settings=settings)
    assert (target / "keep.txt").read_bytes() == tree["keep.txt"]
    assert (target / "train/shard-0.bin").read_bytes() == tree["train/shard-0.bin"]
    with pytest.raises(OSError) as info:
        (target / "train/shard-1.bin").read_bytes()
    assert info.value.errno == errno.EIO
    mounting.unmount(target, settings=settings)
    log = _log_of(settings, target)
    assert "EIO train/shard-1.bin:" in log and f"s3://{bucket}/src/train/shard-1.bin" in log


def test_a_store_that_stops_answering_is_eio_within_the_timeout(tmp_path: Path, prefect_api: None,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               mounts_cleanup: None) -> None:
    from datastore.testing.servers import seaweedfs
    from tests.conftest import use_s3_env

    files = {f"f{i:03d}.bin": os.urandom(2000 + i) for i in range(40)} | {"big.bin": os.urandom(40 * MiB)}
    src = make_tree(tmp_path / "src", files)
    with seaweedfs(tmp_path / "weed") as server:
        server.client().create_bucket(Bucket="store")
        use_s3_env(server, monkeypatch, DATASTORE_STORE="s3://store/ds", DATASTORE_CACHE_DIR=str(tmp_path / "cache"),
                   DATASTORE_READ_TIMEOUT="3")
        settings = Settings.from_env()
        create_from_local(str(src), name="flaky")
        target = tmp_path / "mnt"
        mounting.mount("flaky", dest=target, settings=settings)
        assert (target / "f000.bin").read_bytes() == files["f000.bin"]
        with open(target / "big.bin", "rb") as fh:
            assert os.pread(fh.fileno(), 4096, 0) == files["big.bin"][:4096]
            os.kill(server.process.pid, signal.SIGSTOP)  # the store hangs: accepts, never answers
            try:
                started = time.monotonic()
                with pytest.raises(OSError) as info:
                    os.pread(fh.fileno(), 4096, 4 * BLOCK_BYTES)
                assert info.value.errno == errno.EIO
                assert time.monotonic() - started < 30  # bounded: the timeout (3 s), not boto's minutes
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            # Answering again: the same read succeeds (nothing bad was cached).
            assert os.pread(fh.fileno(), 4096, 4 * BLOCK_BYTES) == files["big.bin"][4 * BLOCK_BYTES:][:4096]
            server.process.kill()  # the store is gone: connection refused
            server.process.wait()
            with pytest.raises(OSError) as gone:
                os.pread(fh.fileno(), 4096, 2 * BLOCK_BYTES)
            assert gone.value.errno == errno.EIO
        mounting.unmount(target, settings=settings)
    log = _log_of(settings, target)
    assert "EIO big.bin: the store did not answer within 3 s while reading 'big.bin'" in log


_HEAPS_KEPT = """
import sys, threading
from datastore.reading.mount import tune_malloc

def rss_kib():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS"))

if sys.argv[1] == "tuned":
    assert tune_malloc()
block = bytearray(8 << 20)
del block  # glibc's own rule raises its mmap threshold past 8 MiB here
base = rss_kib()
one_at_a_time, done = threading.Lock(), threading.Barrier(17)

def reader():  # like a mount's thread: fetch a block, serve it, drop it; stay alive
    with one_at_a_time:
        block = bytearray(8 << 20)
        block[::4096] = bytes(len(block[::4096]))  # touch every page
        del block
    done.wait()

threads = [threading.Thread(target=reader) for _ in range(16)]
for t in threads:
    t.start()
done.wait()
print(rss_kib() - base)
"""


@pytest.mark.parametrize(("mode", "most_mib"), [("tuned", 24), ("plain", None)])
def test_the_mount_process_reuses_block_memory_across_threads(mode: str, most_mib: int | None) -> None:
    """Tuned, blocks freed by 16 threads in turn reuse the same pages; left alone, each thread's
    heap keeps one (what made the mount grow with its thread count)."""
    done = subprocess.run([sys.executable, "-c", _HEAPS_KEPT, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    kept_mib = int(done.stdout) / 1024
    if most_mib is None:
        assert kept_mib > 64, kept_mib
    else:
        assert kept_mib <= most_mib, kept_mib
