"""Which Python FUSE binding should the mount use? mfusepy vs pyfuse3 on the same in-memory filesystem.

Run (as root, with /dev/fuse and fusermount3; pyfuse3 in a venv of its own, it compiles)::

    python3 -m venv /tmp/venv-pyfuse3 && /tmp/venv-pyfuse3/bin/pip install pyfuse3 trio
    .venv/bin/python -m bench.fuse_bindings --pyfuse3-python /tmp/venv-pyfuse3/bin/python

Both serve the same read-only tree from memory, so what differs is the binding alone:

- 10,000 files of 4 KiB in 10 folders, and one file of 1 GiB (``--large-mb``), all cut from one
  64 MiB ``bytes`` of fixed-seed random data (the large file repeats it), never a copy of the data;
- mfusepy 3.1.1 (ctypes over libfuse3's high-level, path-based API, one OS thread per request
  from libfuse's thread pool, forced to libfuse3 with ``FUSE_LIBRARY_PATH=libfuse3.so.3``) vs
  pyfuse3 (Cython over libfuse3's low-level, inode-based API, trio tasks on one thread);
- the same kernel settings for both: entry and attribute timeouts 300 s, page cache kept
  (``keep_cache``), ``ro``; kernel read-ahead left at its default (128 KiB), and a second
  configuration with the mount's read-ahead raised to 1 MiB through
  ``/sys/class/bdi/<dev>/read_ahead_kb`` (root only).

Workloads, each in a fresh mount after ``sync; echo 3 > /proc/sys/vm/drop_caches`` (so every
byte and every name goes through the binding): ``find | wc -l``, ``tar cf - . | wc -c`` (every
small file read; GNU tar skips reading when its archive is /dev/null itself), ``dd bs=1M`` of
the large file, 8 ``dd`` processes on disjoint eighths of it at once, and 10,000 random 4 KiB
``os.pread`` with ``POSIX_FADV_RANDOM`` (no read-ahead: one request each). Every result is
checked (entry count, tar bytes against the same tree on local disk, dd byte counts, sha256 of
the random reads). A third configuration makes every read of the large file block for
``--latency-ms`` (default 2 ms; a stand-in for a fetch from S3): mfusepy sleeps in its request
thread, pyfuse3 in ``trio.to_thread.run_sync`` (how blocking code has to run under trio), so the
dd rows show whether the binding overlaps blocking reads. Measured: wall time (median of ``--repeat`` runs, bindings alternating),
the server's peak RSS and CPU seconds, and the number and sizes of the read requests it served.

The same file is the filesystem server: ``python bench/fuse_bindings.py serve BINDING DIR STATS``
(standard library and the binding only, so it runs in the pyfuse3 venv as it is).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import random
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MiB = 1024 * 1024
SEED = 13
BLOB_BYTES = 64 * MiB  # the random data everything is cut from
DIRS = 10
FILES = 10_000
FILE_BYTES = 4096
LARGE = "large.bin"
TIMEOUT = 300.0  # entry/attr timeouts (s): the tree never changes
RANDOM_READS = 10_000
PARALLEL = 8


def blob() -> bytes:
    """The 64 MiB every file is cut from (the same in the server and the driver)."""
    return random.Random(SEED).randbytes(BLOB_BYTES)


def small_names() -> list[tuple[str, str]]:
    """(folder, file) of every small file: 10 folders of 1,000."""
    per = FILES // DIRS
    return [(f"d{i // per:02d}", f"f{i:05d}.bin") for i in range(FILES)]


def small_data(data: bytes, i: int) -> bytes:
    """Small file ``i``: its own 4 KiB of the blob."""
    return data[i * FILE_BYTES:(i + 1) * FILE_BYTES]


def large_read(data: bytes, offset: int, size: int, total: int) -> bytes:
    """``size`` bytes at ``offset`` of the large file (the blob repeated)."""
    size = max(0, min(size, total - offset))
    out = []
    while size:
        at = offset % BLOB_BYTES
        piece = data[at:at + size]
        out.append(piece)
        offset += len(piece)
        size -= len(piece)
    return out[0] if len(out) == 1 else b"".join(out)


class Stats:
    """Requests a server answered (written as JSON when it exits)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ops: dict[str, int] = {}
        self.read_sizes: dict[int, int] = {}
        self.threads: set[int] = set()

    def op(self, name: str) -> None:
        with self.lock:
            self.ops[name] = self.ops.get(name, 0) + 1
            self.threads.add(threading.get_ident())

    def read(self, size: int) -> None:
        with self.lock:
            self.ops["read"] = self.ops.get("read", 0) + 1
            self.read_sizes[size] = self.read_sizes.get(size, 0) + 1
            self.threads.add(threading.get_ident())

    def dump(self, path: str) -> None:
        with self.lock:
            Path(path).write_text(json.dumps({"ops": self.ops, "read_sizes": self.read_sizes,
                                              "threads": len(self.threads)}))


# --- the servers (standard library + the binding only) -------------------------------------------


def serve_mfusepy(mountpoint: str, stats_path: str, large_bytes: int, latency: float) -> None:
    """The tree through mfusepy (libfuse3 high-level API, multithreaded); ``latency`` s of blocking
    sleep per read of the large file (a stand-in for a blocking fetch)."""
    import mfusepy

    data = blob()
    stats = Stats()
    now = time.time_ns()
    dirs: dict[str, list[str]] = {"/": [f"d{d:02d}" for d in range(DIRS)] + [LARGE]}
    files: dict[str, int] = {}  # path -> index of a small file, FILES for the large one (fh is unsigned)
    for i, (folder, name) in enumerate(small_names()):
        dirs.setdefault(f"/{folder}", []).append(name)
        files[f"/{folder}/{name}"] = i
    files[f"/{LARGE}"] = FILES
    dir_attr = {"st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2, "st_size": 0, "st_mtime": now, "st_ctime": now,
                "st_atime": now}

    class MemFS(mfusepy.Operations):
        use_ns = True

        def init_with_config(self, conn_info, config_3) -> None:
            if config_3 is not None:
                config_3.entry_timeout = config_3.attr_timeout = config_3.negative_timeout = TIMEOUT
                config_3.kernel_cache = 1  # keep the page cache across opens (pyfuse3: keep_cache)
            if conn_info is not None:
                conn_info.max_readahead = 1 << 20  # the kernel caps it at the bdi's read_ahead_kb

        def getattr(self, path, fh=None):
            stats.op("getattr")
            if path in dirs:
                return dir_attr
            i = files.get(path)
            if i is None:
                raise mfusepy.FuseOSError(errno.ENOENT)
            return {"st_mode": stat.S_IFREG | 0o444, "st_nlink": 1,
                    "st_size": large_bytes if i == FILES else FILE_BYTES, "st_mtime": now, "st_ctime": now,
                    "st_atime": now}

        def readdir(self, path, fh):
            # With each entry's type (d_type), as datastore's mount does: find then needs no stat
            # per file. libfuse's high-level API passes no other attributes to the kernel.
            stats.op("readdir")
            yield "."
            yield ".."
            for name in dirs[path]:
                yield name, (stat.S_IFDIR if f"{path.rstrip('/')}/{name}" in dirs else stat.S_IFREG), 0

        def open(self, path, flags):
            stats.op("open")
            return files[path]

        def read(self, path, size, offset, fh):
            stats.read(size)
            if fh == FILES:
                if latency:
                    time.sleep(latency)  # blocks this request's thread only
                return large_read(data, offset, size, large_bytes)
            return small_data(data, fh)[offset:offset + size]

        def release(self, path, fh):
            return 0

    try:
        mfusepy.FUSE(MemFS(), mountpoint, foreground=True, ro=True, fsname="memfs-mfusepy")
    finally:
        stats.dump(stats_path)


def serve_pyfuse3(mountpoint: str, stats_path: str, large_bytes: int, latency: float) -> None:
    """The tree through pyfuse3 (libfuse3 low-level API, trio); ``latency`` as for mfusepy, a
    blocking sleep run the way blocking code must run under trio: in a worker thread."""
    import pyfuse3
    import trio

    data = blob()
    stats = Stats()
    now = time.time_ns()
    # inode 1 is the root; then the folders, the large file, the small files.
    names: dict[int, list[tuple[bytes, int]]] = {pyfuse3.ROOT_INODE: []}
    kind: dict[int, int] = {pyfuse3.ROOT_INODE: -2}  # -2 folder, -1 large file, i small file i
    ino = pyfuse3.ROOT_INODE + 1
    folders: dict[str, int] = {}
    for d in range(DIRS):
        folders[f"d{d:02d}"] = ino
        names[pyfuse3.ROOT_INODE].append((f"d{d:02d}".encode(), ino))
        names[ino] = []
        kind[ino] = -2
        ino += 1
    large_ino = ino
    names[pyfuse3.ROOT_INODE].append((LARGE.encode(), large_ino))
    kind[large_ino] = -1
    ino += 1
    for i, (folder, name) in enumerate(small_names()):
        names[folders[folder]].append((name.encode(), ino))
        kind[ino] = i
        ino += 1
    lookup_table = {(parent, name): child for parent, entries in names.items() for name, child in entries}

    def attr(inode: int) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        k = kind[inode]
        a.st_ino = inode
        a.st_mode = (stat.S_IFDIR | 0o555) if k == -2 else (stat.S_IFREG | 0o444)
        a.st_nlink = 2 if k == -2 else 1
        a.st_size = 0 if k == -2 else large_bytes if k == -1 else FILE_BYTES
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = now
        a.entry_timeout = a.attr_timeout = TIMEOUT
        a.st_blksize = 4096
        a.st_blocks = (a.st_size + 511) // 512
        return a

    class MemFS(pyfuse3.Operations):
        async def lookup(self, parent_inode, name, ctx=None):
            stats.op("lookup")
            child = lookup_table.get((parent_inode, name))
            if child is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return attr(child)

        async def getattr(self, inode, ctx=None):
            stats.op("getattr")
            return attr(inode)

        async def opendir(self, inode, ctx):
            stats.op("opendir")
            return inode

        async def readdir(self, fh, start_id, token):
            stats.op("readdir")
            entries = names[fh]
            for i in range(start_id, len(entries)):
                name, child = entries[i]
                if not pyfuse3.readdir_reply(token, name, attr(child), i + 1):
                    break

        async def open(self, inode, flags, ctx):
            stats.op("open")
            return pyfuse3.FileInfo(fh=inode, keep_cache=True)

        async def read(self, fh, off, size):
            stats.read(size)
            k = kind[fh]
            if k == -1:
                if latency:
                    await trio.to_thread.run_sync(time.sleep, latency)
                return large_read(data, off, size, large_bytes)
            return small_data(data, k)[off:off + size]

        async def release(self, fh):
            pass

        async def forget(self, inode_list):
            pass

    options = set(pyfuse3.default_options) | {"fsname=memfs-pyfuse3", "ro"}
    pyfuse3.init(MemFS(), mountpoint, options)
    try:  # fusermount3 -u ends the session loop
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)
        stats.dump(stats_path)


# --- the driver ----------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"fuse-bindings: {message}", file=sys.stderr, flush=True)


def drop_caches() -> bool:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def is_mount(path: Path) -> bool:
    target = str(path.resolve())
    return any(line.split()[1] == target for line in Path("/proc/self/mounts").read_text().splitlines()
               if len(line.split()) > 1)


class Sampler(threading.Thread):
    """Peak RSS of one process, every 10 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.error = psutil.Error
        self.peak = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            with contextlib.suppress(self.error):
                self.peak = max(self.peak, self.proc.memory_info().rss)
            self.stop_event.wait(0.01)

    def take(self) -> int:
        with contextlib.suppress(self.error):
            self.peak = max(self.peak, self.proc.memory_info().rss)
        peak, self.peak = self.peak, 0
        return peak

    def cpu(self) -> float:
        with contextlib.suppress(self.error):
            t = self.proc.cpu_times()
            return t.user + t.system
        return 0.0


class Server:
    """One mounted server process."""

    def __init__(self, binding: str, python: str, mountpoint: Path, work: Path, large_bytes: int,
                 readahead_kb: int | None, latency: float = 0.0) -> None:
        self.binding, self.mountpoint = binding, mountpoint
        self.stats_path = work / f"stats-{binding}-{time.monotonic_ns()}.json"
        env = dict(os.environ)
        if binding == "mfusepy":
            env["FUSE_LIBRARY_PATH"] = "libfuse3.so.3"  # mfusepy prefers libfuse2 (no fusermount here)
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.log_path = work / f"server-{binding}.log"
        with open(self.log_path, "wb") as fh:
            self.proc = subprocess.Popen([python, __file__, "serve", binding, str(mountpoint), str(self.stats_path),
                                          str(large_bytes), str(latency)], env=env, stdin=subprocess.DEVNULL, stdout=fh,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        expected = sorted([f"d{d:02d}" for d in range(DIRS)] + [LARGE])
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{binding} server exited {self.proc.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-800:]}")
            if is_mount(mountpoint):
                with contextlib.suppress(OSError):
                    if sorted(os.listdir(mountpoint)) == expected:
                        break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{binding} did not mount within 60 s")
            time.sleep(0.01)
        self.readahead = self._set_readahead(readahead_kb)
        self.sampler = Sampler(self.proc.pid)
        self.sampler.start()

    def _set_readahead(self, kb: int | None) -> int | None:
        """The mount's read-ahead in KiB (set to ``kb`` first, when given)."""
        dev = os.stat(self.mountpoint).st_dev
        path = Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb")
        if not path.exists():
            return None
        if kb is not None:
            path.write_text(f"{kb}\n")
        return int(path.read_text())

    def stop(self) -> dict:
        """Unmount, end the process (by its pid), return its request counts."""
        if getattr(self, "sampler", None) is not None:
            self.sampler.stop_event.set()
        if is_mount(self.mountpoint):
            done = subprocess.run(["fusermount3", "-u", str(self.mountpoint)], capture_output=True, check=False)
            if done.returncode != 0:
                subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], capture_output=True, check=False)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError, ValueError):
            return json.loads(self.stats_path.read_text())
        return {}


def bash(script: str, *args: str) -> list[str]:
    return ["bash", "-c", "set -o pipefail; " + script, "bench", *args]


RANDOM_READER = """\
import hashlib, os, random, sys
path, count = sys.argv[1], int(sys.argv[2])
blocks = os.path.getsize(path) // 4096
rng = random.Random(7)
h = hashlib.sha256()
fd = os.open(path, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
for _ in range(count):
    h.update(os.pread(fd, 4096, rng.randrange(blocks) * 4096))
os.close(fd)
print(h.hexdigest())
"""


def workloads(large_bytes: int, local: Path) -> list[tuple[str, list[str], int, int, str]]:
    """(name, command run in the mount, ops, bytes, expected stdout or "" for dd's byte check)."""
    entries = 1 + DIRS + FILES + 1
    tar_bytes = subprocess.run(bash("tar cf - --exclude=./large.bin . | wc -c"), cwd=local, capture_output=True,
                               text=True, check=True).stdout.strip()
    part = large_bytes // PARALLEL // MiB
    want_random = subprocess.run([sys.executable, "-c", RANDOM_READER, str(local / LARGE), str(RANDOM_READS)],
                                 capture_output=True, text=True, check=True).stdout.strip()
    parallel = ('t=$(mktemp -d); trap \'rm -rf "$t"\' EXIT; pids=(); for i in $(seq 0 $(($1 - 1))); do dd if=large.bin of=/dev/null bs=1M skip=$((i * $2)) '
                'count=$2 2> "$t/$i" & pids+=($!); done; rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done; '
                'cat "$t"/* >&2; exit $rc')
    return [
        ("find | wc -l", bash("find . | wc -l"), entries, 0, str(entries)),
        ("tar 10,000 × 4 KiB", bash("tar cf - --exclude=./large.bin . | wc -c"), FILES, FILES * FILE_BYTES,
         tar_bytes),
        (f"dd {large_bytes // MiB} MiB bs=1M", ["dd", "if=large.bin", "of=/dev/null", "bs=1M"], 1, large_bytes, ""),
        (f"{PARALLEL} × dd 1/{PARALLEL}", bash(parallel, str(PARALLEL), str(part)), PARALLEL, large_bytes, ""),
        (f"{RANDOM_READS:,} × pread 4 KiB", [sys.executable, "-c", RANDOM_READER, "large.bin", str(RANDOM_READS)],
         RANDOM_READS, RANDOM_READS * 4096, want_random),
    ]


def make_local(root: Path, large_bytes: int) -> Path:
    """The same tree on local disk (for the expected tar size, the random reads' sha256, a baseline)."""
    data = blob()
    for i, (folder, name) in enumerate(small_names()):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_bytes(small_data(data, i))
    with open(root / LARGE, "wb") as fh:
        fh.writelines(large_read(data, offset, 8 * MiB, large_bytes) for offset in range(0, large_bytes, 8 * MiB))
    return root


def check(name: str, done: subprocess.CompletedProcess, want: str, nbytes: int) -> None:
    if done.returncode != 0:
        raise RuntimeError(f"{name}: exit {done.returncode}: {done.stderr[-400:]}")
    if want:
        if done.stdout.strip() != want:
            raise RuntimeError(f"{name}: printed {done.stdout.strip()!r}, expected {want!r}")
    else:
        copied = sum(int(line.split()[0]) for line in done.stderr.splitlines()
                     if " bytes " in line and line.split()[0].isdigit())
        if copied != nbytes:
            raise RuntimeError(f"{name}: dd copied {copied} bytes, expected {nbytes}")


def run_binding(binding: str, python: str, work: Path, large_bytes: int, readahead_kb: int | None,
                jobs: list[tuple[str, list[str], int, int, str]], latency: float = 0.0) -> dict:
    """One mount per workload (cold: page cache dropped, fresh kernel inodes); times, memory, CPU, requests."""
    out: dict = {}
    for name, cmd, ops, nbytes, want in jobs:
        mnt = work / f"mnt-{binding}"
        server = Server(binding, python, mnt, work, large_bytes, readahead_kb, latency)
        try:
            idle = server.sampler.take()
            drop_caches()
            cpu0 = server.sampler.cpu()
            start = time.perf_counter()
            done = subprocess.run(cmd, cwd=mnt, capture_output=True, text=True, timeout=1800, check=False)
            seconds = time.perf_counter() - start
            cpu = server.sampler.cpu() - cpu0
            peak = server.sampler.take()
            check(f"{binding} {name}", done, want, nbytes)
        finally:
            stats = server.stop()
        out[name] = {"seconds": seconds, "ops": ops, "bytes": nbytes, "rss_peak": peak, "rss_idle": idle,
                     "cpu_s": cpu, "readahead_kb": server.readahead, "stats": stats}
    return out


def local_baseline(local: Path, jobs: list[tuple[str, list[str], int, int, str]]) -> dict:
    out = {}
    for name, cmd, ops, nbytes, want in jobs:
        drop_caches()
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=local, capture_output=True, text=True, timeout=1800, check=False)
        seconds = time.perf_counter() - start
        check(f"local {name}", done, want, nbytes)
        out[name] = {"seconds": seconds, "ops": ops, "bytes": nbytes}
    return out


def fmt_rate(name: str, r: dict) -> str:
    if r["bytes"] and "pread" not in name and "tar" not in name:
        return f"{r['bytes'] / MiB / r['seconds']:,.0f} MiB/s"
    return f"{r['ops'] / r['seconds']:,.0f} ops/s"


def summarize(runs: dict[str, list[dict]], names: list[str]) -> dict:
    """Median over the repeats of each binding/configuration and workload."""
    summary: dict = {}
    for key, reps in runs.items():
        summary[key] = {}
        for name in names:
            samples = [rep[name] for rep in reps if name in rep]
            if not samples:
                continue
            secs = sorted(s["seconds"] for s in samples)
            med = statistics.median(secs)
            first = samples[0]
            reads = {}
            for s in samples:
                for size, count in (s.get("stats", {}).get("read_sizes") or {}).items():
                    reads[int(size)] = reads.get(int(size), 0) + count
            summary[key][name] = {
                "seconds_median": med, "seconds_min": secs[0], "seconds_max": secs[-1], "runs": len(secs),
                "ops": first["ops"], "bytes": first["bytes"],
                "rss_peak_mib": max(s.get("rss_peak", 0) for s in samples) / MiB if "rss_peak" in first else None,
                "rss_idle_mib": max(s.get("rss_idle", 0) for s in samples) / MiB if "rss_idle" in first else None,
                "cpu_s_median": statistics.median(s["cpu_s"] for s in samples) if "cpu_s" in first else None,
                "readahead_kb": first.get("readahead_kb"),
                "requests": first.get("stats", {}).get("ops"),
                "threads": first.get("stats", {}).get("threads"),
                "read_sizes": dict(sorted(reads.items(), key=lambda kv: -kv[1])[:4]),
            }
    return summary


def print_summary(summary: dict, names: list[str], large_mb: int) -> None:
    keys = list(summary)
    print()
    print(f"FUSE bindings, in-memory read-only tree: {FILES:,} × 4 KiB in {DIRS} folders + 1 × {large_mb} MiB; "
          "cold (page cache dropped, fresh mount); median of runs (min–max)")
    for name in names:
        print(f"\n{name}")
        for key in keys:
            r = summary[key].get(name)
            if r is None:
                continue
            rate = fmt_rate(name, {"bytes": r["bytes"], "ops": r["ops"], "seconds": r["seconds_median"]})
            extra = ""
            if r.get("rss_peak_mib") is not None:
                sizes = ", ".join(f"{int(s) // 1024} KiB×{c // r['runs']:,}" for s, c in r["read_sizes"].items()
                                  if c >= r["runs"])  # per run
                extra = (f"  RSS {r['rss_idle_mib']:.0f}→{r['rss_peak_mib']:.0f} MiB  CPU {r['cpu_s_median']:.2f} s"
                         f"  reads {sizes or '-'}  threads {r['threads']}")
            print(f"  {key:<26} {r['seconds_median']:8.2f} s ({r['seconds_min']:.2f}–{r['seconds_max']:.2f})"
                  f"  {rate:>14}{extra}")


def drive(args: argparse.Namespace) -> int:
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        print("needs root, /dev/fuse and fusermount3", file=sys.stderr)
        return 2
    large_bytes = args.large_mb * MiB
    work = Path(tempfile.mkdtemp(prefix="fuse-bindings-"))
    try:
        log("building the same tree on local disk …")
        local = make_local(work / "local", large_bytes)
        jobs = workloads(large_bytes, local)
        names = [j[0] for j in jobs]
        configs = [(f"{b} (ra default)", b, None, 0.0, jobs) for b in args.bindings]
        if args.readahead_kb:
            configs += [(f"{b} (ra {args.readahead_kb} KiB)", b, args.readahead_kb, 0.0, jobs) for b in args.bindings]
        if args.latency_ms:
            # Reads of the large file that block: does the binding overlap them?
            slow = [j for j in jobs if j[0].startswith(("dd", f"{PARALLEL} ×"))]
            configs += [(f"{b} (+{args.latency_ms:g} ms/read)", b, None, args.latency_ms / 1000, slow)
                        for b in args.bindings]
        pythons = {"mfusepy": args.mfusepy_python, "pyfuse3": args.pyfuse3_python}
        runs: dict[str, list[dict]] = {"local disk": []}
        for key, *_ in configs:
            runs[key] = []
        for rep in range(args.repeat):
            log(f"run {rep + 1} of {args.repeat}: local disk …")
            runs["local disk"].append(local_baseline(local, jobs))
            for key, binding, ra, latency, todo in configs:
                log(f"run {rep + 1} of {args.repeat}: {key} …")
                runs[key].append(run_binding(binding, pythons[binding], work, large_bytes, ra, todo, latency))
        summary = summarize(runs, names)
        print_summary(summary, names, args.large_mb)
        versions = {}
        for b in args.bindings:
            done = subprocess.run([pythons[b], "-c", f"import importlib.metadata as m; print(m.version('{b}'))"],
                                  capture_output=True, text=True, check=False)
            versions[b] = done.stdout.strip()
        libfuse = subprocess.run(["fusermount3", "--version"], capture_output=True, text=True, check=False)
        machine = {"nproc": os.cpu_count(), "load": os.getloadavg(), "kernel": os.uname().release,
                   "versions": versions, "fusermount3": (libfuse.stdout or libfuse.stderr).strip()}
        print(f"\nversions: {versions}; {machine['fusermount3']}; kernel {machine['kernel']}; nproc "
              f"{machine['nproc']}; load {'/'.join(f'{x:.1f}' for x in machine['load'])} at the end")
        out = Path(__file__).resolve().parent / "out" / "fuse_bindings.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"args": vars(args), "machine": machine, "summary": summary, "runs": runs},
                                  indent=2) + "\n")
        print(f"results: {out}")
    finally:
        for mnt in work.glob("mnt-*"):
            if is_mount(mnt):
                subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        _, binding, mountpoint, stats_path, large_bytes, latency = argv
        {"mfusepy": serve_mfusepy, "pyfuse3": serve_pyfuse3}[binding](mountpoint, stats_path, int(large_bytes),
                                                                      float(latency))
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.fuse_bindings", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pyfuse3-python", default="/tmp/venv-pyfuse3/bin/python", help="a Python with pyfuse3 and trio")
    p.add_argument("--mfusepy-python", default=sys.executable, help="a Python with mfusepy (default: this one)")
    p.add_argument("--bindings", type=lambda v: v.split(","), default=["mfusepy", "pyfuse3"])
    p.add_argument("--large-mb", type=int, default=1024, help="MiB of the large file, a multiple of 8 (default 1024)")
    p.add_argument("--repeat", type=int, default=3, help="runs of everything, bindings alternating (default 3)")
    p.add_argument("--readahead-kb", type=int, default=1024,
                   help="also run with the mount's read_ahead_kb set to this (0: don't; default 1024)")
    p.add_argument("--latency-ms", type=float, default=2.0,
                   help="also run the dd workloads with this blocking delay per read of the large file "
                        "(0: don't; default 2)")
    return drive(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
