"""The lazy-mount scenario: ``datastore mount`` (FUSE, read on demand) vs ``rclone mount`` and s3fs.

Every tool mounts the same data on the same SeaweedFS in the same run: datastore its versions (in
``s3://bench-lazy-store/store``), the peers the same trees uploaded as plain objects (untimed,
with s5cmd) to ``s3://bench-lazy-plain/<set>/``. Each step is timed from outside, as a user would
see it: a mount from starting the command until the mount folder lists the tree's top level, the
reads as ``find``, ``tar``, ``dd`` or a small Python reader in a subprocess. The memory column of
a step is the mount process's (and its children's) peak resident memory during that step, sampled
every 20 ms; S3 requests are SeaweedFS's own count.

Cold and warm, exactly:

- every timed step starts with ``sync; echo 3 > /proc/sys/vm/drop_caches`` (when writable) and
  then reads SeaweedFS's data files back in, so the server answers from memory as it did when
  the data had just been uploaded, while the mount's own pages and every tool's on-disk cache
  have to come from where the tool keeps them;
- "cold" steps run in a fresh mount with a fresh, empty cache folder of the tool's own (datastore
  ``DATASTORE_CACHE_DIR``, rclone ``--cache-dir``, s3fs ``use_cache``);
- "second" steps re-read, in the same mount, what the step before read: served from the tool's
  own cache, if it has one, read from the local disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.data import REF_SIZE, MiB
from bench.harness import (
    BIN,
    Context,
    Measurement,
    Row,
    RssSampler,
    VerifyError,
    datastore_cmd,
    log,
    run_measured,
    s5cmd_binary,
    server_env,
    tail,
)
from bench.metrics import request_delta, settled_requests
from bench.verify import verify_record

SCENARIO = "lazy-mount"
STORE_BUCKET = "bench-lazy-store"  # datastore's store for the scenario (s3://…/store)
PLAIN_BUCKET = "bench-lazy-plain"  # the same trees as plain objects, one prefix per set, for the peers
RANDOM_READS = 1_000  # random 4 KiB reads of the large file
RANDOM_BYTES = 4096
RANDOM_SEED = 13
PARALLEL = 8  # readers of disjoint parts of the large file at once
SAMPLE_CHECKS = 16  # 4 KiB pieces of the large file compared with the source after a whole-file read
MOUNT_TIMEOUT = 120.0  # seconds a mount may take to list its top level
STOP_TIMEOUT = 30.0  # seconds an unmount may take before it is forced (fusermount3 -u -z, SIGKILL)
PEAK_STEP = "peak RSS (whole run)"

# A fixed-seed random reader: offsets aligned to 4 KiB, the sha256 of what it read on stdout, so
# that the bench can check the bytes against the source file afterwards.
RANDOM_READER = """\
import hashlib, os, random, sys
path, count, size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
blocks = os.path.getsize(path) // size
rng = random.Random(seed)
h = hashlib.sha256()
fd = os.open(path, os.O_RDONLY)
try:
    for _ in range(count):
        data = os.pread(fd, size, rng.randrange(blocks) * size)
        if len(data) != size:
            sys.exit(f"short read: {len(data)} bytes")
        h.update(data)
finally:
    os.close(fd)
print(h.hexdigest())
"""


@dataclass(frozen=True)
class Tool:
    """One way of mounting the data."""

    key: str  # --mount-tools name
    label: str  # table label
    kind: str  # "datastore", "rclone" or "s3fs"
    options: tuple[str, ...] = ()  # extra command-line options (rclone) or -o options (s3fs)
    own_cache: bool = False  # s3fs: -o use_cache=<fresh folder>
    # The same tool in another cache mode, which lists exactly as this one does (its caches hold
    # file data only): the long listing of the big tree is not run twice.
    listing_as: str = ""


TOOLS: tuple[Tool, ...] = (
    Tool("datastore", "datastore mount", "datastore"),
    # off: reads go to S3 as they come, through rclone's in-memory read-ahead (--buffer-size 16M);
    # full: the same, plus a sparse on-disk copy of what was read (a second read is local).
    Tool("rclone-off", "rclone (vfs off)", "rclone", ("--vfs-cache-mode", "off")),
    Tool("rclone-full", "rclone (vfs full)", "rclone", ("--vfs-cache-mode", "full"), listing_as="rclone (vfs off)"),
    Tool("s3fs", "s3fs", "s3fs"),
    Tool("s3fs-cache", "s3fs (use_cache)", "s3fs", own_cache=True, listing_as="s3fs"),
)
TOOL_KEYS = tuple(t.key for t in TOOLS)
REFERENCE = TOOLS[0].label  # ratios are peer ÷ datastore


@dataclass
class DataSet:
    """One tree, as a local folder, a datastore version and a plain-object prefix."""

    key: str  # "small", "big", "large"
    local: Path
    files: int
    bytes: int
    name: str  # the datastore's name
    top: list[str] = field(default_factory=list)  # the tree's top-level names (what a mount must list)
    entries: int = 0  # lines of `find <root>`: files, folders and the root itself
    tar_bytes: int = 0  # bytes of `tar cf - -C <root> .` (the same for every tool: names and sizes)
    error: str = ""  # why the set-up of this set failed for datastore (its rows say so)
    plain_error: str = ""  # … for the peers

    @property
    def prefix(self) -> str:
        """Its plain objects' prefix in :data:`PLAIN_BUCKET`."""
        return f"{self.key}/"


# --- the mount process's memory ------------------------------------------------------------------


class MountSampler(RssSampler):
    """A mount process's :class:`~bench.harness.RssSampler`, with a window per step.

    :meth:`take` returns the peaks since the previous call (one step's) and starts a new window;
    ``peak_tree``/``peak_main`` are the peaks over the process's whole life.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(pid)
        self._lock = threading.Lock()
        self.window_tree = self.window_main = 0

    def _sample(self, children: list[psutil.Process]) -> tuple[int, int] | None:
        with self._lock:
            sample = super()._sample(children)
            if sample is not None:
                self.window_main = max(self.window_main, sample[0])
                self.window_tree = max(self.window_tree, sample[1])
        return sample

    def take(self) -> tuple[int, int]:
        """(tree, main) peak RSS in bytes since the last call, after one fresh sample."""
        if self._root is not None:
            with contextlib.suppress(psutil.Error):
                self._sample(self._root.children(recursive=True))
        with self._lock:
            peaks = (self.window_tree, self.window_main)
            self.window_tree = self.window_main = 0
        return peaks


# --- mounting and unmounting ---------------------------------------------------------------------


class MountError(Exception):
    """A tool did not mount (or list) its tree."""


@dataclass
class Mounted:
    """A live mount of one tool."""

    tool: Tool
    dir: Path
    env: dict[str, str]
    pid: int
    seconds: float  # from starting the command until the top level listed
    proc: subprocess.Popen | None = None  # the peers' foreground process
    sampler: MountSampler | None = None
    log: Path | None = None


def _fusermount(directory: Path, *flags: str) -> bool:
    """``fusermount3 -u [flags] DIR``; True when it succeeded."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        done = subprocess.run(["fusermount3", "-u", *flags, str(directory)], capture_output=True, timeout=30,
                              check=False)
        return done.returncode == 0
    return False


def _is_mount(directory: Path) -> bool:
    """True while ``directory`` is a mount point (a dead FUSE mount included)."""
    target = str(directory.resolve())
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 1 and fields[1].replace("\\040", " ") == target:
                return True
    return False


def _kill(pid: int, proc: subprocess.Popen | None) -> None:
    """SIGTERM, then SIGKILL after a while; only this pid (the bench started it or its CLI did)."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc is not None:
                if proc.poll() is not None:
                    return
            elif not _pid_alive(pid):
                return
            time.sleep(0.05)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def _wait_listed(directory: Path, top: list[str], deadline: float, proc: subprocess.Popen | None,
                 log_file: Path | None) -> None:
    """Poll until ``directory`` is a mount that lists ``top``.

    Raises:
        MountError: the process exited first, the listing differs or the deadline passed.
    """
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            text = log_file.read_text(errors="replace") if log_file and log_file.exists() else ""
            raise MountError(f"exited {proc.returncode} before mounting: {tail(text)}")
        if os.path.ismount(directory):
            try:
                names = sorted(os.listdir(directory))
            except OSError as exc:
                last = str(exc)
            else:
                if names == top:
                    return
                last = f"lists {names[:5]}…, expected {top[:5]}…"
        time.sleep(0.002)
    raise MountError(f"not mounted within {MOUNT_TIMEOUT:.0f}s{': ' + last if last else ''}")


def _tool_pid(env: dict[str, str], directory: Path) -> int:
    """The pid of datastore's mount process at ``directory``, from ``datastore mounts --json``."""
    done = subprocess.run([str(BIN / "datastore"), "mounts", "--json"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    if done.returncode != 0:
        raise MountError(f"datastore mounts --json: exit {done.returncode}: {tail(done.stderr or done.stdout)}")
    try:
        found = json.loads(done.stdout)
    except ValueError as exc:
        raise MountError(f"datastore mounts --json printed no JSON ({exc}): {tail(done.stdout)}") from None
    if isinstance(found, dict):
        found = found.get("mounts", [])
    want = str(directory.resolve())
    for entry in found:
        where = entry.get("dir") or entry.get("path") or ""
        if where and str(Path(where).resolve()) == want and isinstance(entry.get("pid"), int):
            return entry["pid"]
    raise MountError(f"datastore mounts --json lists no mount at {want}: {tail(done.stdout)}")


def mount_tool(run: LazyRun, tool: Tool, ds: DataSet, directory: Path, cache: Path) -> Mounted:
    """Mount ``ds`` with ``tool`` at ``directory`` (its cache in ``cache``); timed until it lists.

    Raises:
        MountError: it did not mount; nothing of it is left running.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    if tool.kind == "datastore":
        env = {**run.ds_env, "DATASTORE_CACHE_DIR": str(cache)}
        cmd = [str(BIN / "datastore"), "mount", ds.name, "--dir", str(directory)]
        with tempfile.TemporaryFile() as out:
            # A file, not a pipe: the mount process it leaves behind must not hold our pipe open.
            start = time.perf_counter()
            try:
                done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                      timeout=MOUNT_TIMEOUT, start_new_session=True, check=False)
            except subprocess.TimeoutExpired:
                _abandon(tool, env, directory)
                raise MountError(f"datastore mount did not return within {MOUNT_TIMEOUT:.0f}s") from None
            out.seek(0)
            text = out.read().decode(errors="replace")
        if done.returncode != 0:
            _abandon(tool, env, directory)
            raise MountError(f"datastore mount exit {done.returncode}: {tail(text)}")
        try:
            _wait_listed(directory, ds.top, time.monotonic() + MOUNT_TIMEOUT, None, None)
            seconds = time.perf_counter() - start
            pid = _tool_pid(env, directory)
        except MountError:
            _abandon(tool, env, directory)
            raise
        m = Mounted(tool, directory, env, pid, seconds)
    else:
        env, cmd = _peer_command(run, tool, ds, directory, cache)
        log_file = run.ctx.root / "logs" / f"{tool.key}-{ds.key}-{directory.name}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "wb") as fh:
            # In the foreground (rclone without --daemon, s3fs -f): the same start-up work as a
            # daemon, and the pid to sample and to stop is the one started here.
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        m = Mounted(tool, directory, env, proc.pid, 0.0, proc=proc, log=log_file)
        m.sampler = MountSampler(proc.pid)
        m.sampler.start()
        try:
            _wait_listed(directory, ds.top, time.monotonic() + MOUNT_TIMEOUT, proc, log_file)
        except MountError:
            stop_mount(m)
            raise
        m.seconds = time.perf_counter() - start
        return m
    m.sampler = MountSampler(m.pid)
    m.sampler.start()
    return m


def _abandon(tool: Tool, env: dict[str, str], directory: Path) -> None:
    """After a failed ``datastore mount``: unmount what it may have left, ending its process if listed."""
    pid = 0
    with contextlib.suppress(MountError, OSError, subprocess.TimeoutExpired):
        pid = _tool_pid(env, directory)
    stop_mount(Mounted(tool, directory, env, pid, 0.0))


def _peer_command(run: LazyRun, tool: Tool, ds: DataSet, directory: Path,
                  cache: Path) -> tuple[dict[str, str], list[str]]:
    """Environment and command line of a peer's foreground mount of ``ds``'s plain objects."""
    s3 = run.ctx.s3
    assert s3 is not None
    remote = f"{PLAIN_BUCKET}/{ds.prefix.rstrip('/')}"
    if tool.kind == "rclone":
        # The S3 remote from the environment (no config file; credentials off the command line):
        # the same as ":s3,provider=Other,endpoint=…,access_key_id=…,secret_access_key=…:<remote>".
        env = {**run.ctx.env, "RCLONE_CONFIG": str(run.rclone_conf), "RCLONE_S3_PROVIDER": "Other",
               "RCLONE_S3_ENDPOINT": s3.endpoint, "RCLONE_S3_ACCESS_KEY_ID": s3.access_key,
               "RCLONE_S3_SECRET_ACCESS_KEY": s3.secret_key, "RCLONE_S3_REGION": "us-east-1"}
        # --use-server-modtime: the objects' LastModified as mtime, instead of a HEAD per file to
        # look for rclone's own mtime metadata (absent here: s5cmd uploaded them). It halves
        # rclone's tar of 10,000 files and changes no byte read.
        cmd = ["rclone", "mount", f":s3:{remote}", str(directory), "--read-only", "--use-server-modtime",
               "--cache-dir", str(cache), *tool.options]
        return env, cmd
    options = [f"url={s3.endpoint}", "use_path_request_style", f"passwd_file={run.s3fs_passwd}", "ro"]
    if tool.own_cache:
        options.append(f"use_cache={cache}")
    options += list(tool.options)
    return dict(run.ctx.env), ["s3fs", f"{PLAIN_BUCKET}:/{ds.prefix.rstrip('/')}", str(directory), "-f",
                               "-o", ",".join(options)]


def _cleanup_dir(directory: Path) -> None:
    """Detach whatever is still mounted at ``directory`` (lazily: open files cannot block it)."""
    if _is_mount(directory) and not _fusermount(directory):
        _fusermount(directory, "-z")


def stop_mount(m: Mounted) -> str:
    """Unmount ``m`` and end its process; forced (lazy detach, SIGTERM/SIGKILL) if it resists.

    Returns:
        "" after a clean unmount, else what had to be forced.
    """
    forced = []
    if m.sampler is not None:
        m.sampler.stop()
    if m.tool.kind == "datastore":
        done = None
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            done = subprocess.run([str(BIN / "datastore"), "unmount", str(m.dir)], env=m.env, capture_output=True,
                                  text=True, timeout=STOP_TIMEOUT, check=False)
        if done is None or done.returncode != 0:
            forced.append(f"datastore unmount failed: {tail(done.stderr or done.stdout) if done else 'timed out'}")
    elif _is_mount(m.dir) and not _fusermount(m.dir):
        forced.append("fusermount3 -u failed")
    if _is_mount(m.dir):
        _fusermount(m.dir, "-z")
        forced.append("detached with fusermount3 -u -z")
    if m.pid:
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            alive = m.proc.poll() is None if m.proc is not None else _pid_alive(m.pid)
            if not alive:
                break
            time.sleep(0.05)
        else:
            _kill(m.pid, m.proc)
            forced.append(f"pid {m.pid} killed")
    return "; ".join(forced)


def _pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# --- the run ---------------------------------------------------------------------------------------


@dataclass
class LazyRun:
    """The scenario's state: data sets, environments, rows, live mounts."""

    ctx: Context
    tools: list[Tool]
    sets: dict[str, DataSet] = field(default_factory=dict)
    ds_env: dict[str, str] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    live: list[Mounted] = field(default_factory=list)
    peaks: dict[str, tuple[int, int]] = field(default_factory=dict)  # tool label → (tree, main) over the run
    drop_note: str = ""
    rclone_conf: Path = Path()
    s3fs_passwd: Path = Path()
    sessions: int = 0

    @property
    def root(self) -> Path:
        """Where the mounts and caches live."""
        return self.ctx.root / "lazy"

    @contextlib.contextmanager
    def mounted(self, tool: Tool, ds: DataSet, cache: Path) -> Iterator[Mounted]:
        """A mount for a block of steps, always unmounted (and its process ended) afterwards."""
        self.sessions += 1
        directory = self.root / "mnt" / f"{tool.key}-{ds.key}-{self.sessions}"
        m = mount_tool(self, tool, ds, directory, cache)
        self.live.append(m)
        try:
            yield m
        finally:
            self.live.remove(m)
            self._keep_peak(m)
            note = stop_mount(m)
            if note:
                log(f"{SCENARIO}: {tool.label}: unmount of {directory.name} forced: {note}")

    def _keep_peak(self, m: Mounted) -> None:
        if m.sampler is None:
            return
        tree, main = self.peaks.get(m.tool.label, (0, 0))
        self.peaks[m.tool.label] = (max(tree, m.sampler.peak_tree), max(main, m.sampler.peak_main))

    def stop_all(self) -> None:
        """Unmount everything still mounted (after an error), then detach any mount left under the run."""
        for m in list(self.live):
            self.live.remove(m)
            stop_mount(m)
        mnt = self.root / "mnt"
        if mnt.exists():
            for directory in mnt.iterdir():
                _cleanup_dir(directory)


def drop_page_cache(ctx: Context) -> str:
    """Drop the kernel page cache, then read SeaweedFS's files back in; "" or why it could not drop."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:
        return f"page cache not dropped ({exc.strerror or exc})"
    weed = ctx.root / "seaweedfs"
    buf = bytearray(8 * MiB)
    for dirpath, _, names in os.walk(weed):
        for name in names:
            with contextlib.suppress(OSError), open(os.path.join(dirpath, name), "rb", buffering=0) as fh:
                while fh.readinto(buf):
                    pass
    return ""


def _count_tree(root: Path) -> tuple[list[str], int]:
    """Top-level names and the number of lines ``find root`` prints."""
    entries = 1
    for _, dirs, files in os.walk(root):
        entries += len(dirs) + len(files)
    return sorted(os.listdir(root)), entries


def _tar_bytes(root: Path) -> int:
    """Bytes of ``tar cf - -C root .`` (GNU tar skips reading files when writing to /dev/null itself)."""
    done = subprocess.run(["bash", "-c", 'set -o pipefail; tar cf - -C "$1" . | wc -c', "tar", str(root)],
                          capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


def _store(run: LazyRun, ds: DataSet) -> None:
    """Upload ``ds`` as plain objects (s5cmd) for the peers and store it as a datastore version; untimed.

    With only the datastore mount in the run (``--mount-tools datastore``) nobody reads the plain
    objects: they are not uploaded (a million files take s5cmd many minutes).
    """
    if any(t.kind != "datastore" for t in run.tools):
        _upload_plain(run, ds)
    if any(t.kind == "datastore" for t in run.tools):
        _store_version(run, ds)


def _upload_plain(run: LazyRun, ds: DataSet) -> None:
    """Upload ``ds`` as plain objects with s5cmd, for the peers; untimed."""
    ctx = run.ctx
    s3 = ctx.s3
    assert s3 is not None
    log(f"{SCENARIO}: uploading {ds.files:,} files of the {ds.key} set to s3://{PLAIN_BUCKET}/{ds.prefix} "
        "with s5cmd (untimed) …")
    start = time.perf_counter()
    cmd = [str(s5cmd_binary()), "--endpoint-url", s3.endpoint, "--log", "error", "cp", f"{ds.local}/*",
           f"s3://{PLAIN_BUCKET}/{ds.prefix}"]
    done = subprocess.run(cmd, env={**ctx.env, **s3.env()}, cwd=ctx.root, capture_output=True, text=True,
                          timeout=ctx.args.timeout, check=False)
    if done.returncode != 0:
        ds.plain_error = f"FAILED: set-up: s5cmd cp exit {done.returncode}: {tail(done.stderr or done.stdout)}"
    else:
        count = total = 0
        for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=PLAIN_BUCKET, Prefix=ds.prefix):
            for obj in page.get("Contents", []):
                count += 1
                total += obj["Size"]
        if (count, total) != (ds.files, ds.bytes):
            ds.plain_error = (f"FAILED: set-up: s3://{PLAIN_BUCKET}/{ds.prefix} holds {count} objects / {total} "
                              f"bytes, expected {ds.files} / {ds.bytes}")
        else:
            log(f"{SCENARIO}: uploaded in {time.perf_counter() - start:.1f}s")


def _store_version(run: LazyRun, ds: DataSet) -> None:
    """Store ``ds`` as a datastore version with ``datastore create``; untimed."""
    ctx = run.ctx
    if ctx.api_url is None:
        ds.error = f"FAILED: set-up: {ctx.api_error}"
        return
    log(f"{SCENARIO}: storing the {ds.key} set as {ds.name} with datastore create (untimed) …")
    start = time.perf_counter()
    done = subprocess.run(datastore_cmd(ds.local, ds.name), env=run.ds_env, cwd=ctx.root, capture_output=True,
                          text=True, timeout=ctx.args.timeout, check=False)
    if done.returncode != 0:
        ds.error = f"FAILED: set-up: datastore create exit {done.returncode}: {tail(done.stderr or done.stdout)}"
        return
    try:
        verify_record(ds.files, ds.bytes)(Measurement(0, 0.0, 0, 0, done.stdout, done.stderr))
    except VerifyError as exc:
        ds.error = f"FAILED: set-up: datastore create: {exc}"
        return
    log(f"{SCENARIO}: stored in {time.perf_counter() - start:.1f}s")


def prepare_lazy(ctx: Context, tools: list[Tool]) -> LazyRun:
    """The scenario's data (untimed): three sets, each stored as a version (and uploaded as plain objects when a peer runs)."""
    args = ctx.args
    assert ctx.small_dir is not None and ctx.s3 is not None
    run = LazyRun(ctx, tools)
    run.root.mkdir(parents=True, exist_ok=True)
    run.rclone_conf = run.root / "rclone.conf"
    run.rclone_conf.write_text("")
    run.s3fs_passwd = run.root / "s3fs.passwd"
    run.s3fs_passwd.write_text(f"{ctx.s3.access_key}:{ctx.s3.secret_key}\n")
    run.s3fs_passwd.chmod(0o600)  # s3fs refuses a password file others can read
    ctx.s3.client().create_bucket(Bucket=STORE_BUCKET)
    ctx.s3.client().create_bucket(Bucket=PLAIN_BUCKET)
    run.ds_env = {**server_env(ctx, f"s3://{STORE_BUCKET}/store"), **ctx.s3.env(),
                  "DATASTORE_CACHE_DIR": str(run.root / "cache-create")}

    big, large = ctx.mount_big_dir, ctx.mount_large_dir
    assert big is not None and large is not None, "prepare() generates the lazy-mount data"
    run.sets = {
        "small": DataSet("small", ctx.small_dir, args.files, ctx.small_bytes, "lazysmall"),
        "big": DataSet("big", big, args.mount_files_big, args.mount_files_big * REF_SIZE, "lazybig"),
        "large": DataSet("large", large, 1, args.mount_large_mb * MiB, "lazylarge"),
    }
    for ds in run.sets.values():
        ds.top, ds.entries = _count_tree(ds.local)
        if ds.key == "small":
            ds.tar_bytes = _tar_bytes(ds.local)
        _store(run, ds)
    run.drop_note = drop_page_cache(ctx)
    if run.drop_note:
        log(f"{SCENARIO}: {run.drop_note}: cold steps are cold in a fresh mount only")
    return run


# --- steps ----------------------------------------------------------------------------------------


def _new_row(tool: Tool, step: str, files: int, nbytes: int, command: list[str] | None = None) -> Row:
    return Row(SCENARIO, tool.label, files, nbytes, command=command or [], step=step)


def _requests_before(ctx: Context) -> dict | None:
    if ctx.s3 is None or ctx.metrics_error or not ctx.s3.metrics_url:
        return None
    with contextlib.suppress(OSError, ValueError):
        return settled_requests(ctx.s3.metrics_url)
    return None


def _count_requests(ctx: Context, row: Row, before: dict | None) -> None:
    if before is None or ctx.s3 is None or not ctx.s3.metrics_url:
        return
    with contextlib.suppress(OSError, ValueError):
        by_type = request_delta(before, settled_requests(ctx.s3.metrics_url))
        row.s3_requests = sum(by_type.values())
        row.s3_requests_by_type = by_type


def _finish(run: LazyRun, row: Row, m: Mounted, seconds: float, check: str) -> Row:
    """Fill a successful row: time, the mount process's peak memory during the step, notes."""
    row.seconds = seconds
    assert m.sampler is not None
    tree, main = m.sampler.take()
    row.peak_tree_mib = tree / MiB if tree else None
    row.peak_main_mib = main / MiB if main else None
    notes = [check] if check else []
    if row.s3_requests is not None:
        notes.append(f"S3 req {row.s3_requests:,}")
    row.check = "; ".join(notes)
    log(f"{SCENARIO}: {row.step}: {row.tool}: {seconds:.2f}s, {row.check}")
    return row


def mount_step(run: LazyRun, tool: Tool, ds: DataSet, step: str, cache: Path,
               then: Callable[[Mounted], list[Row]] | None = None) -> list[Row]:
    """Time a mount of ``ds`` (until it lists its top level); run ``then`` in it; unmount."""
    note = drop_page_cache(run.ctx)
    before = _requests_before(run.ctx)
    row = _new_row(tool, step, ds.files, 0)
    rows = [row]
    try:
        with run.mounted(tool, ds, cache) as m:
            row.command = _describe(tool, ds, m)
            _count_requests(run.ctx, row, before)
            _finish(run, row, m, m.seconds, ", ".join(x for x in (f"lists {len(ds.top)} top-level names", note) if x))
            if then is not None:
                rows += then(m)
    except MountError as exc:
        row.error = f"FAILED: {exc}"
        log(f"{SCENARIO}: {step}: {tool.label}: {row.error}")
    return rows


def _describe(tool: Tool, ds: DataSet, m: Mounted) -> list[str]:
    """The mount command for results.json (no secrets: they are in the environment or a file)."""
    if tool.kind == "datastore":
        return [str(BIN / "datastore"), "mount", ds.name, "--dir", str(m.dir)]
    return list(m.proc.args) if m.proc is not None else []  # type: ignore[arg-type]


def client_step(run: LazyRun, m: Mounted, step: str, cmd: list[str], files: int, nbytes: int,
                verify: Callable[[Measurement], str]) -> Row:
    """Time one reading command in mount ``m``: page cache dropped first, S3 requests counted."""
    row = _new_row(m.tool, step, files, nbytes, cmd)
    note = drop_page_cache(run.ctx)
    before = _requests_before(run.ctx)
    assert m.sampler is not None
    m.sampler.take()  # the step's memory window starts now
    meas = run_measured(cmd, run.ctx.env, m.dir, run.ctx.args.timeout)
    _count_requests(run.ctx, row, before)
    if meas.returncode is None:
        row.error = f"FAILED: timed out after {run.ctx.args.timeout:.0f}s: {tail(meas.stderr or meas.stdout)}"
    elif meas.returncode != 0:
        row.error = f"FAILED: exit {meas.returncode}: {tail(meas.stderr or meas.stdout)}"
    else:
        try:
            check = verify(meas)
        except VerifyError as exc:
            row.error = f"FAILED: verification: {exc}"
        else:
            return _finish(run, row, m, meas.seconds, ", ".join(x for x in (check, note) if x))
    m.sampler.take()
    log(f"{SCENARIO}: {step}: {m.tool.label}: {row.error}")
    return row


def _bash(script: str, *args: str) -> list[str]:
    return ["bash", "-c", "set -o pipefail; " + script, "bench", *args]


def _counting_step(run: LazyRun, m: Mounted, step: str, script: list[str], want: int, what: str,
                   files: int, nbytes: int) -> Row:
    """A shell pipeline ending in ``wc``: verified by its count equal to the source tree's."""

    def verify(meas: Measurement) -> str:
        got = int(meas.stdout.strip() or 0)
        if got != want:
            raise VerifyError(f"{what}: {got:,} in the mount, {want:,} in the source tree")
        return f"{what} = source ({got:,})"

    return client_step(run, m, step, script, files, nbytes, verify)


def find_step(run: LazyRun, m: Mounted, ds: DataSet, step: str) -> Row:
    """``find DIR | wc -l``: every entry listed, the count equal to the source tree's."""
    return _counting_step(run, m, step, _bash('find "$1" | wc -l', str(m.dir)), ds.entries, "entries found",
                          ds.entries, 0)


def tar_step(run: LazyRun, m: Mounted, ds: DataSet, step: str) -> Row:
    """``tar cf - . | wc -c`` in the mount: every file read; the archive as long as the source's."""
    # To a pipe: GNU tar does not read the files at all when its archive is /dev/null itself.
    return _counting_step(run, m, step, _bash("tar cf - . | wc -c"), ds.tar_bytes, "tar bytes", ds.files, ds.bytes)


def _sample_check(path: Path, source: Path, size: int) -> str:
    """Compare :data:`SAMPLE_CHECKS` fixed-seed 4 KiB pieces of ``path`` with ``source``."""
    rng = random.Random(RANDOM_SEED + 1)
    with open(path, "rb") as got, open(source, "rb") as want:
        for offset in [0, size - RANDOM_BYTES] + [rng.randrange(size - RANDOM_BYTES) for _ in range(SAMPLE_CHECKS)]:
            got.seek(offset)
            want.seek(offset)
            if got.read(RANDOM_BYTES) != want.read(RANDOM_BYTES):
                raise VerifyError(f"bytes at offset {offset:,} differ from the source file")
    return f"{SAMPLE_CHECKS + 2} sampled pieces = source"


def _dd_bytes(stderr: str) -> list[int]:
    """Byte counts of the ``N bytes … copied`` lines dd printed."""
    return [int(line.split()[0]) for line in stderr.splitlines() if " bytes " in line and line.split()[0].isdigit()]


def dd_step(run: LazyRun, m: Mounted, ds: DataSet, step: str) -> Row:
    """``dd bs=1M`` of the whole large file to /dev/null; byte count checked, then a sample of its bytes."""
    path = m.dir / ds.top[0]

    def verify(meas: Measurement) -> str:
        copied = _dd_bytes(meas.stderr)
        if copied != [ds.bytes]:
            raise VerifyError(f"dd copied {copied} bytes, expected {ds.bytes:,}")
        return _sample_check(path, ds.local / ds.top[0], ds.bytes)

    return client_step(run, m, step, ["dd", f"if={path}", "of=/dev/null", "bs=1M"], 1, ds.bytes, verify)


def random_step(run: LazyRun, m: Mounted, ds: DataSet, step: str) -> Row:
    """1,000 fixed-seed random 4 KiB ``os.pread`` calls; the sha256 of what was read = the source's."""
    path = m.dir / ds.top[0]
    args = [str(RANDOM_READS), str(RANDOM_BYTES), str(RANDOM_SEED)]
    want = subprocess.run([sys.executable, "-c", RANDOM_READER, str(ds.local / ds.top[0]), *args],
                          capture_output=True, text=True, check=True).stdout.strip()

    def verify(meas: Measurement) -> str:
        if meas.stdout.strip() != want:
            raise VerifyError("the bytes read differ from the source file's (sha256)")
        return f"sha256 of {RANDOM_READS:,} reads = source"

    return client_step(run, m, step, [sys.executable, "-c", RANDOM_READER, str(path), *args], RANDOM_READS,
                       RANDOM_READS * RANDOM_BYTES, verify)


def parallel_step(run: LazyRun, m: Mounted, ds: DataSet, step: str) -> Row:
    """:data:`PARALLEL` ``dd`` processes at once, each reading its own 1/8 of the large file."""
    path = m.dir / ds.top[0]
    part = ds.bytes // PARALLEL // MiB  # MiB per reader (the size is a multiple of 8 MiB)
    script = ('t=$(mktemp -d); trap \'rm -rf "$t"\' EXIT; pids=(); for i in $(seq 0 $(($2 - 1))); do dd if="$1" of=/dev/null bs=1M skip=$((i * $3)) '
              'count=$3 2> "$t/$i" & pids+=($!); done; rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done; '
              'cat "$t"/* >&2; exit $rc')

    def verify(meas: Measurement) -> str:
        copied = _dd_bytes(meas.stderr)
        if len(copied) != PARALLEL or sum(copied) != ds.bytes:
            raise VerifyError(f"the readers copied {copied} bytes, expected {PARALLEL} × {part} MiB")
        return f"{PARALLEL} × {part} MiB; " + _sample_check(path, ds.local / ds.top[0], ds.bytes)

    return client_step(run, m, step, _bash(script, str(path), str(PARALLEL), str(part)), PARALLEL, ds.bytes, verify)


# --- the scenario ---------------------------------------------------------------------------------

STEPS = (  # the table's order
    "mount 10k, first", "mount 10k, again", "find 10k", "tar 10k, cold", "tar 10k, second",
    "mount big, first", "mount big, again", "find big",
    "dd large, cold", "dd large, second", "4 KiB random ×1000, cold", f"{PARALLEL} readers, cold", PEAK_STEP,
)


def step_label(step: str, args: object) -> str:
    """A step's name with the sizes of this run (10k = --files, big = --mount-files-big, large = MiB)."""
    files = getattr(args, "files", 10_000)
    big = getattr(args, "mount_files_big", 0)
    large = getattr(args, "mount_large_mb", 0)
    return (step.replace("10k", f"{files:,} files").replace("big", f"{big:,} files")
            .replace("large", f"{large:,} MiB" if large < 1024 or large % 1024 else f"{large // 1024} GiB"))


def _failed(tool: Tool, steps: list[tuple[str, int, int]], error: str) -> list[Row]:
    return [Row(SCENARIO, tool.label, files, nbytes, step=step, error=error) for step, files, nbytes in steps]


def tool_rows(run: LazyRun, tool: Tool) -> list[Row]:
    """Every step of one tool, mount by mount."""
    small, big, large = run.sets["small"], run.sets["big"], run.sets["large"]
    caches = run.root / "caches" / tool.key
    rows: list[Row] = []

    def usable(ds: DataSet, steps: list[tuple[str, int, int]]) -> bool:
        error = ds.error if tool.kind == "datastore" else ds.plain_error
        if error:
            rows.extend(_failed(tool, steps, error))
        return not error

    # Small set: a first mount (datastore builds its index) and find; a second mount with the
    # same cache folder (the index is built), a cold tar and a second tar.
    if usable(small, [(s, small.files, 0) for s in STEPS[:5]]):
        rows += mount_step(run, tool, small, "mount 10k, first", caches / "small",
                           lambda m: [find_step(run, m, small, "find 10k")])
        rows += mount_step(run, tool, small, "mount 10k, again", caches / "small",
                           lambda m: [tar_step(run, m, small, "tar 10k, cold"),
                                      tar_step(run, m, small, "tar 10k, second")])
    if usable(big, [(s, big.files, 0) for s in STEPS[5:8]]):
        rows += mount_step(run, tool, big, "mount big, first", caches / "big")
        if tool.listing_as and any(t.label == tool.listing_as for t in run.tools):
            rows += mount_step(run, tool, big, "mount big, again", caches / "big")
            rows.append(Row(SCENARIO, tool.label, big.entries, 0, step="find big",
                            error=f"n/a (lists as {tool.listing_as}: its cache holds file data only)"))
        else:
            rows += mount_step(run, tool, big, "mount big, again", caches / "big",
                               lambda m: [find_step(run, m, big, "find big")])
    if usable(large, [(s, 1, large.bytes) for s in STEPS[8:12]]):
        # Each cold step in a mount of its own with an empty cache folder; these mounts are not rows.
        blocks: list[tuple[str, list[tuple[Callable[..., Row], str]]]] = [
            ("large-seq", [(dd_step, "dd large, cold"), (dd_step, "dd large, second")]),
            ("large-random", [(random_step, "4 KiB random ×1000, cold")]),
            ("large-parallel", [(parallel_step, f"{PARALLEL} readers, cold")]),
        ]
        for cache, steps in blocks:
            try:
                with run.mounted(tool, large, caches / cache) as m:
                    for fn, name in steps:
                        rows.append(fn(run, m, large, name))
            except MountError as exc:
                rows.extend(Row(SCENARIO, tool.label, 1, large.bytes, step=name, error=f"FAILED: mount: {exc}")
                            for _, name in steps)
    tree, main = run.peaks.get(tool.label, (0, 0))
    peak = Row(SCENARIO, tool.label, 0, 0, step=PEAK_STEP, check="the mount processes' peak over all steps")
    if tree:
        peak.peak_tree_mib, peak.peak_main_mib = tree / MiB, main / MiB
    else:
        peak.error = "n/a (no mount ran)"
    rows.append(peak)
    return rows


def _missing(tool: Tool) -> str:
    """Why a tool cannot run here, or ""."""
    if tool.kind != "datastore" and shutil.which(tool.kind) is None:
        return f"n/a ({tool.kind} is not installed)"
    if shutil.which("fusermount3") is None:
        return "n/a (fusermount3 is not installed)"
    if not os.path.exists("/dev/fuse"):
        return "n/a (no /dev/fuse)"
    return ""


def lazy_mount_rows(ctx: Context) -> list[Row]:
    """The lazy-mount scenario: every selected tool, every step; all mounts ended afterwards."""
    tools = [t for t in TOOLS if t.key in ctx.args.mount_tools]
    if ctx.s3 is None:
        return [Row(SCENARIO, t.label, 0, 0, step=s, error=f"FAILED: {ctx.s3_error}") for t in tools for s in STEPS]
    rows: list[Row] = []
    run = prepare_lazy(ctx, tools)
    try:
        for tool in tools:
            missing = _missing(tool)
            if missing:
                rows += [Row(SCENARIO, tool.label, 0, 0, step=s, error=missing) for s in STEPS]
                continue
            try:
                rows += tool_rows(run, tool)
            finally:
                run.stop_all()
    finally:
        run.stop_all()
    order = {s: i for i, s in enumerate(STEPS)}
    keys = {t.label: i for i, t in enumerate(TOOLS)}
    rows.sort(key=lambda r: (order.get(r.step, len(order)), keys.get(r.tool, len(keys))))
    return rows
