"""``datastore mount``: a version as a read-only FUSE filesystem, served by a background process.

Life of a mount:

1. **Before any work** the caller checks that FUSE works here (``/dev/fuse``, ``fusermount3``,
   libfuse 3), resolves the version and prepares the directory: a dead mount point left by a
   killed mount process ("Transport endpoint is not connected") is detached and reused; a live
   mount, a file or a non-empty folder is refused.
2. **A mount process** (``python -m datastore.reading.mountd``, its own session, its log in
   ``<cache_dir>/mounts/``) takes a lease on the version (``delete`` is refused naming
   ``host:dir``; a heartbeat renews it, so a killed process stops blocking), opens the
   manifest index (built once per version per machine), starts serving, and reports over a
   pipe. The caller returns as soon as the kernel has connected: the mount answers from then on.
   ``--foreground`` runs the same :func:`serve` in the calling process instead.
3. **Unmount** (``datastore unmount DIR``, or plain ``umount``/``fusermount3 -u``) ends the
   filesystem loop; the process then releases its lease and removes its registry entry.

The registry (``<cache_dir>/mounts/*.json``, one file per mount directory) is what
``datastore mounts`` lists; an entry whose process is gone is dropped when listed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from datastore.errors import AlreadyMounted, DatastoreError, MountBusy, MountFailed, NotMounted
from datastore.model.records import JsonRecord
from datastore.reading.download import check_target
from datastore.reading.fuse import check_available, load_binding
from datastore.settings import Settings, env_var
from datastore.store import inflight, leases, open_store, versions
from datastore.store.versions import VersionRecord

log = logging.getLogger("datastore.mount")

FSTYPE = "fuse.datastore"
"""The file system type of our mounts in ``/proc/self/mountinfo`` (libfuse: ``fuse.<subtype>``)."""

STATS_INTERVAL = 2.0
"""Seconds between updates of a mount's counters in its registry entry."""

MALLOC_MMAP_BYTES = 32 * 1024 * 1024
"""Allocations this large or larger get their own mapping in the mount process (:func:`tune_malloc`)."""

MALLOC_ARENAS = 2
"""Heaps glibc may keep in the mount process (:func:`tune_malloc`)."""

READ_AHEAD_KIB = 1024
"""Kernel read-ahead asked for each mount (:func:`raise_read_ahead`): one full FUSE request."""


@dataclass
class MountInfo(JsonRecord):
    """One mount of this machine, as the registry records it (``datastore mounts --json``).

    Attributes:
        name: Datastore name.
        version: Version number.
        dir: Mount directory (absolute).
        pid: The process serving it.
        host: This machine's host name (the lease names ``host:dir``).
        store: The store it reads from.
        started_at: Unix time the mount answered.
        log: Log file of the mount process ("" in the foreground: stderr).
        files: Files in the version.
        bytes: Their total size.
        fetched_bytes: Bytes read from the store so far.
        reads: Read calls answered.
        errors: Read calls answered with EIO.
        process: The serving process's identity (pid + boot + start time), so that a reused pid
            is not taken for it.
    """

    name: str
    version: int
    dir: str
    pid: int
    host: str
    store: str
    started_at: float
    log: str = ""
    files: int = 0
    bytes: int = 0
    fetched_bytes: int = 0
    reads: int = 0
    errors: int = 0
    process: str = ""


# --- the registry -------------------------------------------------------------------------------

def registry_dir(settings: Settings) -> Path:
    """Where this machine's mounts are recorded (next to the cache they share)."""
    return Path(settings.cache_dir) / "mounts"


def _entry_file(settings: Settings, target: Path) -> Path:
    return registry_dir(settings) / (hashlib.sha256(str(target).encode()).hexdigest()[:24] + ".json")


def _write_entry(settings: Settings, info: MountInfo) -> None:
    path = _entry_file(settings, Path(info.dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info.to_json(), sort_keys=True))
    os.replace(tmp, path)


def _read_entry(path: Path) -> MountInfo | None:
    try:
        return MountInfo.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


_children: dict[int, subprocess.Popen] = {}
"""Mount processes started by this process: polled so that their exit is reaped."""


def running(info: MountInfo) -> bool:
    """Whether the process serving ``info`` still runs (a reused pid or a zombie does not count)."""
    child = _children.get(info.pid)
    if child is not None and child.poll() is not None:
        _children.pop(info.pid, None)
    return inflight.process_identity(info.pid) is not None and inflight.same_process(info.pid, info.process)


def mounted_dirs() -> dict[str, str]:
    """Mount points of this machine's datastore mounts -> their source (``datastore:NAME@V``)."""
    return {target: source for target, source, _ in _our_mounts()}


def _our_mounts() -> Iterator[tuple[str, str, str]]:
    """(mount point, source, device ``major:minor``) of each datastore mount in mountinfo."""
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) >= 5 and tail and tail[0] == FSTYPE:
                yield _unescape(fields[4]), tail[1] if len(tail) > 1 else "", fields[2]


def raise_read_ahead(target: Path, kib: int = READ_AHEAD_KIB) -> bool:
    """Let the kernel read ahead ``kib`` KiB in the mount at ``target`` (root only).

    The kernel gives a FUSE mount the default 128 KiB read-ahead whatever the file system asks
    for, so a sequential reader costs one request per 128 KiB; with 1 MiB (the largest FUSE
    request) a 1 GiB file served from the cache takes about half the time (``bench``,
    "dd large, second"). The setting lives in sysfs under the mount's device and goes away
    with the mount; a user who is not root keeps the default.

    Returns:
        Whether the setting was written.
    """
    for where, _, device in _our_mounts():
        if where == str(target):
            try:
                Path(f"/sys/class/bdi/{device}/read_ahead_kb").write_text(f"{kib}\n")
            except OSError as exc:
                log.debug("read-ahead of %s stays the kernel's default (%s)", target, exc)
                return False
            return True
    return False


def _unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (``\\040`` is a space)."""
    if "\\" not in field:
        return field
    out, i = bytearray(), 0
    raw = field.encode("utf-8", "surrogateescape")
    while i < len(raw):
        if raw[i] == 0x5C and i + 3 < len(raw) and raw[i + 1:i + 4].isdigit():
            out.append(int(raw[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "surrogateescape")


def mounts(settings: Settings | None = None) -> list[MountInfo]:
    """The live datastore mounts of this machine, by directory; dead entries are dropped."""
    settings = settings or Settings.from_env()
    live = mounted_dirs()
    found = []
    reg = registry_dir(settings)
    for path in sorted(reg.glob("*.json")) if reg.is_dir() else []:
        info = _read_entry(path)
        alive = info is not None and running(info)
        if not alive or info.dir not in live:
            if not alive:
                path.unlink(missing_ok=True)
            continue
        found.append(info)
    return sorted(found, key=lambda i: i.dir)


# --- the directory ------------------------------------------------------------------------------

#: What ``stat`` of a FUSE mount point whose process is gone fails with. The kernel answers
#: ENOTCONN when the connection was closed and ECONNABORTED when it was aborted (a killed server
#: can leave either, depending on whether the kernel saw ``/dev/fuse`` close before the stat).
DEAD_MOUNT_ERRNOS = frozenset({errno.ENOTCONN, errno.ECONNABORTED})


def _is_dead_mount(target: Path) -> bool:
    """True for a FUSE mount point whose process is gone ("Transport endpoint is not connected")."""
    try:
        os.stat(target)
    except OSError as exc:
        return exc.errno in DEAD_MOUNT_ERRNOS
    return False


def _fusermount(target: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(["fusermount3", "-u", *flags, str(target)], capture_output=True, text=True, check=False)


def prepare_target(target: Path, settings: Settings) -> None:
    """Make ``target`` an empty directory we may mount on, or refuse it.

    Raises:
        AlreadyMounted: something is mounted there and answering.
        MountTargetNotEmpty: it is a file, a symlink or a folder with contents.
        MountFailed: it cannot be created.
    """
    if _is_dead_mount(target):
        log.warning("%s: a dead mount (its process was killed); detaching it", target)
        _fusermount(target, "-z")
        _entry_file(settings, target).unlink(missing_ok=True)
    if os.path.ismount(target):
        what = mounted_dirs().get(str(target), "")
        holder = _read_entry(_entry_file(settings, target))
        desc = f"{what}, pid {holder.pid}" if holder is not None and what else (what or "another file system")
        raise AlreadyMounted(target, desc)
    check_target(target)  # the same rule as a download's folder: absent or empty
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MountFailed(target, None, exc.strerror or str(exc),
                          "choose a --dir whose parent folder you may write to") from exc


# --- mounting -----------------------------------------------------------------------------------

def mount(name: str, version: int | None = None, dest: str | Path | None = None, *, foreground: bool = False,
          settings: Settings | None = None, ready_timeout: float = 600.0) -> MountInfo:
    """Mount a version read-only at ``dest`` and return once it answers.

    Args:
        name: Datastore name.
        version: Default: the newest live version.
        dest: Mount directory (default: ``DATASTORE_MOUNT_DIR/<name>``).
        foreground: Serve from this process until unmounted (returns after the unmount).
        settings: Default: from the environment.
        ready_timeout: Longest wait for the mount process (it indexes a big manifest first).

    Raises:
        FuseUnavailable: this machine cannot mount (the message suggests ``datastore download``).
        DatastoreNotFound: no such (live) version.
        AlreadyMounted, MountTargetNotEmpty, MountFailed: the directory cannot take the mount.
    """
    settings = settings or Settings.from_env()
    check_available(name)
    store = open_store(settings.store, settings)
    record = versions.resolve_live(store, name, version)
    target = Path(dest if dest is not None else Path(settings.mount_dir) / record.name).absolute()
    prepare_target(target, settings)
    if foreground:
        return serve(record, target, settings)
    return _spawn(record, target, settings, ready_timeout)


def _spawn(record: VersionRecord, target: Path, settings: Settings, ready_timeout: float) -> MountInfo:
    """Start the mount process and wait for its report (the mount answers, or why not)."""
    logs = registry_dir(settings)
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / (_entry_file(settings, target).stem + ".log")
    r, w = os.pipe()
    # The record goes along: the mount process need not read it again (its lease re-checks that
    # the version is still live).
    args = {"record": record.to_json(), "dir": str(target), "fd": w, "log": str(log_path)}
    if threading.active_count() == 1:  # a plain program (the CLI): fork, everything is imported already
        proc: subprocess.Popen | _Forked = _fork(args, r, settings)
    else:  # threads (a flow run, a test harness) make fork unsafe: a fresh interpreter
        env = {**os.environ, **settings_env(settings)}
        with open(log_path, "ab") as logf:
            proc = subprocess.Popen([sys.executable, "-m", "datastore.reading.mountd", json.dumps(args)],
                                    stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, pass_fds=(w,), env=env,
                                    start_new_session=True)
    os.close(w)
    _children[proc.pid] = proc
    try:
        report = _read_report(r, proc, ready_timeout)
    finally:
        os.close(r)
    if isinstance(report, BaseException):
        proc.wait(timeout=30)
        raise report
    if report is None:
        code = proc.poll()
        if code is None:
            proc.kill()
            proc.wait()
        tail = _tail(log_path)
        raise MountFailed(target, None, f"the mount process {'ended' if code is not None else 'did not answer'}"
                          f"{f' ({tail})' if tail else ''}", f"see its log {log_path}")
    return report


class _Forked:
    """A forked mount process, with the part of ``Popen``'s interface used here."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            with contextlib.suppress(ChildProcessError):
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid == 0:
                    return None
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.02)
        return self.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, 9)


def _fork(args: dict, r: int, settings: Settings) -> _Forked:
    """Fork the mount process: its own session, stdio on its log, then :func:`mountd.run`."""
    from datastore.reading import mountd

    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return _Forked(pid)
    code = 1
    try:
        os.setsid()
        os.close(r)
        log_fd = os.open(args["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.environ.update(settings_env(settings))
        code = mountd.run(args)
    except BaseException:  # noqa: BLE001 - the child must never return into the caller's code
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def _read_report(fd: int, proc: subprocess.Popen | _Forked, timeout: float) -> MountInfo | BaseException | None:
    """The pickled report the mount process writes to ``fd``, or None when it ends without one."""
    import select

    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
            continue
        if proc.poll() is not None and not data:
            break
    if not data:
        return None
    try:
        return pickle.loads(data)  # noqa: S301 - our own child process, over our own pipe
    except Exception:  # noqa: BLE001 - a garbled report is the same as none
        return None


def _tail(path: Path) -> str:
    """The last non-empty line of a log (why a mount process ended)."""
    with contextlib.suppress(OSError):
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else ""
    return ""


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``DATASTORE_*`` variables that rebuild it in a child process."""
    out = {}
    for name, value in asdict(settings).items():
        out[env_var(name)] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    return out


def serve(record: VersionRecord, target: Path, settings: Settings,
          report: Callable[[MountInfo | BaseException], None] | None = None) -> MountInfo:
    """Serve one version at ``target`` from this process until it is unmounted.

    Args:
        record: The version (as resolved by :func:`mount`; the lease checks it is still live).
        report: Called once: with the :class:`MountInfo` when the mount answers, or with the
            error that kept it from starting.

    Raises:
        DatastoreError: the version cannot be leased or indexed, or libfuse failed (also
            passed to ``report``).
    """
    from datastore.reading.blocks import CachedReader
    from datastore.reading.cache import BlockCache
    from datastore.reading.fuse import VersionFS
    from datastore.reading.index import ManifestIndex
    from datastore.reading.reader import Reader

    tune_malloc()
    reported = threading.Event()

    def tell(what: MountInfo | BaseException) -> None:
        if report is not None and not reported.is_set():
            reported.set()
            report(what)

    stop = threading.Event()
    info: MountInfo | None = None
    reads: CachedReader | None = None
    try:
        mfusepy = load_binding()
        store = open_store(settings.store, settings)
        name, version = record.name, record.version
        lease = leases.acquire(store, name, version, ttl=settings.lease_ttl, mount_path=str(target))
    except BaseException as exc:
        tell(exc)
        raise
    try:
        index = ManifestIndex.open(store, record, settings.cache_dir)
        reader = Reader(store, record)
        reads = CachedReader(reader, BlockCache(Path(settings.cache_dir) / "blocks", settings.cache_bytes),
                             following=index.following, timeout=settings.read_timeout)
        info = MountInfo(name, version, str(target), os.getpid(), socket.gethostname(), store.url, 0.0,
                         os.environ.get("DATASTORE_MOUNT_LOG", ""), index.files, index.bytes,
                         process=inflight.process_identity(os.getpid()) or "")

        def ready() -> None:
            assert info is not None
            info.started_at = time.time()
            _write_entry(settings, info)
            raise_read_ahead(target)
            threading.Thread(target=_keep_stats, args=(settings, info, fs, stop), daemon=True).start()
            log.info("mounted %s version %d at %s (%d files)", name, version, target, index.files)
            tell(info)

        fs = VersionFS(index, reads, on_ready=ready)
        options = {"ro": True, "fsname": f"datastore:{name}@{version}", "subtype": "datastore",
                   "default_permissions": True, "max_threads": 32}
        if os.getuid() == 0:
            options["allow_other"] = True  # training jobs may run as other users than the mount
        mfusepy.FUSE(fs, str(target), foreground=True, nothreads=False, **options)
    except BaseException as exc:
        tell(exc if isinstance(exc, DatastoreError) else MountFailed(target, None, str(exc), "see the mount log"))
        raise
    finally:
        stop.set()
        if reads is not None:
            reads.close()  # writes the cache entries still queued, for the next mount to find
        _entry_file(settings, target).unlink(missing_ok=True)
        try:
            lease.release()
        except Exception as exc:  # noqa: BLE001 - the store is unreachable: the heartbeat's expiry frees it
            log.warning("could not remove the lease on %s version %d (%s); it expires in %d s", name, version,
                        exc, settings.lease_ttl)
    if not reported.is_set():  # libfuse gave up before the kernel connected (it printed why)
        tell(MountFailed(target, None, "libfuse could not mount it", "see the mount log"))
        raise MountFailed(target, None, "libfuse could not mount it", "see the mount log")
    log.info("unmounted %s version %d from %s", name, version, target)
    assert info is not None
    return info


def tune_malloc(nbytes: int = MALLOC_MMAP_BYTES, arenas: int = MALLOC_ARENAS) -> bool:
    """Make glibc serve the mount's blocks from a few reused heaps (call before threads start).

    Left alone, glibc gives each of the mount's ~60 threads a heap of its own (up to 8 per core)
    and raises its mmap threshold as large blocks are freed, so freed 8 MiB blocks pile up in
    every heap: the process grew to 590 MiB reading a 1 GiB file with 128 MiB of block memory.
    The previous cure, a fixed 1 MiB threshold, gave every block (and every 1 MiB slice handed
    to the kernel) a fresh mapping, and on a VM each fresh page costs a fault in the
    hypervisor too: a cold ``dd`` of 1 GiB took 4.3-6.4 s, and a second one from the disk cache
    2-3 s. Two heaps and a fixed 32 MiB threshold reuse the same pages for every block: 3.4-3.7 s
    and 1.1-1.3 s, peak RSS 290-308 MiB (``/tmp`` script in the closing note of issue 13).
    Elsewhere than glibc, nothing to do.

    Returns:
        Whether glibc took both settings.
    """
    import ctypes
    import ctypes.util

    m_mmap_threshold, m_arena_max = -3, -8  # <malloc.h>
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(m_arena_max, arenas)) and bool(libc.mallopt(m_mmap_threshold, nbytes))
    except (OSError, AttributeError):
        return False


def _keep_stats(settings: Settings, info: MountInfo, fs: object, stop: threading.Event) -> None:
    """Refresh the mount's counters in its registry entry (``datastore mounts`` shows them)."""
    while not stop.wait(STATS_INTERVAL):
        info.fetched_bytes = fs.reads.fetched_bytes  # type: ignore[attr-defined]
        info.reads = fs.reads_served  # type: ignore[attr-defined]
        info.errors = fs.errors  # type: ignore[attr-defined]
        with contextlib.suppress(OSError):
            if not stop.is_set():
                _write_entry(settings, info)


# --- unmounting ---------------------------------------------------------------------------------

def unmount(dest: str | Path, *, lazy: bool = False, settings: Settings | None = None,
            wait: float = 30.0) -> MountInfo | None:
    """Unmount a datastore mount and wait for its process to end (its lease is then released).

    A dead mount point (its process was killed) is detached too.

    Args:
        lazy: Detach now even if files are open; the process ends when the last one closes.
        wait: Seconds to wait for the mount process to end.

    Returns:
        The mount that ended (None for a dead mount point).

    Raises:
        NotMounted: ``dest`` is not a datastore mount.
        MountBusy: a process still uses it (and not ``lazy``).
    """
    settings = settings or Settings.from_env()
    target = Path(dest).absolute()
    entry = _entry_file(settings, target)
    if _is_dead_mount(target):
        _fusermount(target, "-z")
        entry.unlink(missing_ok=True)
        return None
    source = mounted_dirs().get(str(target))
    if source is None:
        raise NotMounted(target)
    # No entry: mounted with another DATASTORE_CACHE_DIR (each keeps its own registry); the
    # mount table still says what it is.
    info = _read_entry(entry) or _from_source(source, target)
    done = _fusermount(target, *(["-z"] if lazy else []))
    if done.returncode != 0:
        if "busy" in done.stderr.lower():
            raise MountBusy(target)
        raise MountFailed(target, None, done.stderr.strip() or f"fusermount3 exited {done.returncode}",
                          f"try 'umount -l {target}'")
    if info is not None and not lazy:
        deadline = time.monotonic() + wait
        while running(info) and time.monotonic() < deadline:
            time.sleep(0.05)
    return info


def _from_source(source: str, target: Path) -> MountInfo:
    """What the mount table tells of a mount this registry has no entry for (pid 0: unknown)."""
    name, _, version = source.removeprefix("datastore:").rpartition("@")
    return MountInfo(name, int(version) if version.isdigit() else 0, str(target), 0, socket.gethostname(), "", 0.0)


@contextlib.contextmanager
def mounted(name: str, version: int | None = None, dest: str | Path | None = None, *,
            settings: Settings | None = None) -> Iterator[MountInfo]:
    """Mount for the duration of a ``with`` block (``use_datastore``'s default)."""
    info = mount(name, version, dest, settings=settings)
    try:
        yield info
    finally:
        try:
            unmount(info.dir, settings=settings)
        except MountBusy:
            unmount(info.dir, lazy=True, settings=settings)
