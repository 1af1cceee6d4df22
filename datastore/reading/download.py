"""``mount``: materialize one version as a read-only folder tree, fast for many small files.

What it does, in order:

1. **Check the target.** ``dest`` must not exist or be an empty directory; anything else is
   refused before a byte moves (:class:`MountTargetNotEmpty`).
2. **Plan reads while streaming the manifest.** Small files of one version mostly sit next to
   each other in the same pack object (a batch packs them in path order), so consecutive
   manifest entries that share ``object`` and have increasing offsets are merged into one *run*
   and fetched with ONE ranged GET. The coalescing rule: an entry joins the current run when it
   is in the same object, starts at or after the run's end, the hole in between is at most
   :data:`COALESCE_GAP` (1 MiB; the hole's bytes are fetched and thrown away, which is cheaper
   than another request) and the run stays within :data:`MAX_READ` (8 MiB: enough runs to keep every worker busy). Anything else
   closes the run. Entries reused from an older version can point into other packs: they simply
   start new runs, so the rule never needs the whole manifest in memory.
3. **Fetch runs in parallel with bounded memory.** ``workers`` threads; at most ``2 × workers``
   tasks and :data:`MAX_INFLIGHT_BYTES` of planned reads are in flight, so memory does not grow
   with the version. Each run is split in memory and every file's sha256 is checked *before*
   it is written (:class:`~datastore.reading.reader.ChecksumMismatch` on a mismatch).
4. **Stream large files.** A file of at least ``DATASTORE_LARGE_FILE_BYTES`` (or bigger than one
   coalesced read) is streamed in :data:`STREAM_CHUNK` pieces into a temporary name, hashed on
   the way, and renamed to its own name only after the check.
5. **Referenced files** (``--no-copy``) and small files without a sha256 go through
   :meth:`datastore.reading.reader.Reader.read`, which pins the exact S3 object (VersionId or ETag) and
   checks the size; large ones are streamed from the pinned object the same way.
6. **Publish atomically.** Everything is written into a hidden folder next to ``dest`` (same
   file system, so the final step is a rename); files are ``0o444`` and folders ``0o555`` once
   written, then the folder is renamed to ``dest``. A failed mount removes its hidden folder, so
   it never leaves a half-written tree behind.

Skipped manifest items (``{"skipped": …}`` lines) are not materialized.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from datastore.errors import DatastoreError, SourceChanged
from datastore.model.manifest import Entry
from datastore.reading.reader import ChecksumMismatch, Reader, entries
from datastore.settings import Settings
from datastore.store import Store
from datastore.store.versions import VersionRecord

MiB = 1024 * 1024

COALESCE_GAP = 1 * MiB
"""Largest hole between two entries of one object that is read through rather than split."""

MAX_READ = 8 * MiB
"""Largest coalesced ranged read (also the pack size, so one run is at most one pack)."""

STREAM_CHUNK = 8 * MiB
"""Piece size when streaming a large file."""

MAX_INFLIGHT_BYTES = 256 * MiB
"""Planned bytes in flight across all workers (bounds memory, independent of the version size)."""

FILE_MODE = 0o444
DIR_MODE = 0o555


class MountTargetNotEmpty(DatastoreError, FileExistsError):
    """The mount directory exists and holds something (or is not a directory)."""

    def __init__(self, dest: Path, what: str = "is not empty") -> None:
        self.dest = dest
        super().__init__(f"mount directory {dest} {what}",
                         "choose an empty or new directory with --dir, or remove its contents")


class MountFailed(DatastoreError, OSError):
    """Writing the mounted tree failed (disk full, a path that cannot be a file here …)."""

    def __init__(self, dest: Path, path: str | None, reason: str, hint: str) -> None:
        self.dest = dest
        self.path = path
        self.reason = reason
        what = f"write {path!r} under mount directory {dest}" if path else f"create mount directory {dest}"
        super().__init__(f"cannot {what} ({reason})", hint)


@dataclass(frozen=True)
class MountSummary:
    """What a mount wrote.

    Attributes:
        files: Files materialized (skipped manifest items are not counted).
        bytes: Their total size.
    """

    files: int
    bytes: int


@dataclass
class Run:
    """Adjacent (or nearly adjacent) small entries of one store object, read with one GET."""

    key: str
    start: int
    end: int
    entries: list[Entry] = field(default_factory=list)

    def accepts(self, e: Entry) -> bool:
        """Whether ``e`` can join this run under the coalescing rule."""
        return (e.object == self.key and e.offset >= self.end and e.offset - self.end <= COALESCE_GAP
                and e.offset + e.size - self.start <= MAX_READ)


def _safe_parts(path: str) -> list[str] | None:
    """The components of a manifest path, or None when it could escape or collide with the tree."""
    if not path or path.startswith("/") or "\x00" in path:
        return None
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    return parts


def check_target(dest: Path) -> None:
    """Refuse a ``dest`` that exists and is not an empty directory.

    Raises:
        MountTargetNotEmpty: ``dest`` is a non-empty directory, a file, or a symlink.
    """
    if dest.is_symlink():
        raise MountTargetNotEmpty(dest, "is a symlink")
    if not dest.exists():
        return
    if not dest.is_dir():
        raise MountTargetNotEmpty(dest, "is a file")
    with os.scandir(dest) as it:
        if next(it, None) is not None:
            raise MountTargetNotEmpty(dest)


class _Mounter:
    """One mount in progress: plans, schedules and writes; owns the hidden folder."""

    def __init__(self, store: Store, record: VersionRecord, dest: Path, tmp: Path, workers: int,
                 settings: Settings) -> None:
        self.store = store
        self.record = record
        self.dest = dest
        self.tmp = tmp
        self.workers = workers
        self.reader = Reader(store, record)
        # Large files stream; so does anything too big to be one coalesced read.
        self.stream_from = min(settings.large_file_bytes, MAX_READ)
        self.stop = threading.Event()  # tells streaming tasks to give up once another task failed
        self.umask_drops = _umask() & FILE_MODE != 0
        self._dirs: set[str] = {""}
        self.files = 0
        self.bytes = 0

    # --- planning (main thread) -------------------------------------------------------------

    def tasks(self) -> Iterator[tuple[int, Callable[[], None]]]:
        """``(planned bytes in memory, task)`` for the whole version, streamed from the manifest."""
        run: Run | None = None
        for e in entries(self.store, self.record):
            target = self._target(e)
            self.files += 1
            self.bytes += e.size
            if e.object is not None and e.sha256 is not None and e.size < self.stream_from:
                if run is not None and run.accepts(e):
                    run.entries.append(e)
                    run.end = e.offset + e.size
                    continue
                if run is not None:
                    yield run.end - run.start, self._run_task(run)
                run = Run(e.object, e.offset, e.offset + e.size, [e])
                continue
            if e.referenced:
                _ = self.reader.source  # opened (once, cached) here rather than racing in the workers
            if e.size >= self.stream_from:
                yield min(e.size, STREAM_CHUNK), self._stream_task(e, target)
            else:
                # a no-copy reference or a small server-side copy: the Reader pins and size-checks it
                yield e.size, self._reader_task(e, target)
        if run is not None:
            yield run.end - run.start, self._run_task(run)

    def _target(self, e: Entry) -> Path:
        """Where ``e`` goes in the hidden folder; its parent folders are created here, once each."""
        parts = _safe_parts(e.path)
        if parts is None:
            raise MountFailed(self.dest, e.path, "the path is absolute or has an empty, '.' or '..' segment",
                              "the manifest is damaged; run 'datastore verify' on this version")
        parent = "/".join(parts[:-1])
        if parent not in self._dirs:
            try:
                self.tmp.joinpath(*parts[:-1]).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise self._write_error(e.path, exc) from exc
            self._dirs.add(parent)
        return self.tmp.joinpath(*parts)

    # --- tasks (worker threads) -------------------------------------------------------------

    def _run_task(self, run: Run) -> Callable[[], None]:
        def task() -> None:
            data = self.store.get_range(run.key, run.start, run.end - run.start)
            view = memoryview(data)
            for e in run.entries:
                part = view[e.offset - run.start: e.offset - run.start + e.size]
                actual = hashlib.sha256(part).hexdigest()
                if actual != e.sha256 or len(part) != e.size:
                    raise ChecksumMismatch(e.path, e.sha256 or "", actual)
                self._write_file(e, self.tmp.joinpath(*e.path.split("/")), part)

        return task

    def _reader_task(self, e: Entry, target: Path) -> Callable[[], None]:
        def task() -> None:
            self._write_file(e, target, self.reader.read(e))

        return task

    def _stream_task(self, e: Entry, target: Path) -> Callable[[], None]:
        def task() -> None:
            part = target.with_name(f".{target.name}.part-{uuid.uuid4().hex[:12]}")
            h = hashlib.sha256()
            written = 0
            try:
                fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
                with open(fd, "wb", closefd=True) as out:
                    for chunk in self._chunks(e):
                        if self.stop.is_set():
                            return
                        h.update(chunk)
                        written += len(chunk)
                        out.write(chunk)
                if e.sha256 is not None and (h.hexdigest() != e.sha256 or written != e.size):
                    raise ChecksumMismatch(e.path, e.sha256, h.hexdigest())
                if written != e.size:
                    raise ChecksumMismatch(e.path, f"{e.size} bytes", f"{written} bytes")
                os.replace(part, target)  # only checked bytes get the real name
                os.chmod(target, FILE_MODE)
            except OSError as exc:
                if isinstance(exc, DatastoreError):
                    raise
                raise self._write_error(e.path, exc) from exc
            finally:
                if part.exists():
                    part.unlink()

        return task

    def _chunks(self, e: Entry) -> Iterator[bytes]:
        """The bytes of a large entry in pieces of at most :data:`STREAM_CHUNK` (bounded memory)."""
        if e.referenced:
            try:
                body = self.reader.source.open(e.source or {})
                yield from _read_exact(body, e.size)
            except SourceChanged as exc:
                raise self.reader.broken(e, exc.detail) from None
        elif e.offset == 0:
            # an object of its own: one streaming GET rather than one GET per chunk
            yield from _read_exact(self.store.open_read(e.object or ""), e.size)
        else:
            done = 0
            while done < e.size:
                n = min(STREAM_CHUNK, e.size - done)
                chunk = self.store.get_range(e.object or "", e.offset + done, n)
                if not chunk:
                    return  # truncated object: the size/sha256 check names the file
                yield chunk
                done += len(chunk)

    def _write_file(self, e: Entry, target: Path, data: bytes | memoryview) -> None:
        try:
            # Created read-only from the start: the open descriptor may still write it. Plain
            # os.write: a Python file object per file costs more than the write of 10 KB itself.
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if self.umask_drops:
                    os.fchmod(fd, FILE_MODE)  # the umask dropped bits of FILE_MODE
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._write_error(e.path, exc) from exc

    def _write_error(self, path: str, exc: OSError) -> MountFailed:
        if exc.errno == errno.ENOSPC:
            return MountFailed(self.dest, path, "no space left on device",
                               "free space or choose a directory on another disk with --dir")
        if exc.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            return MountFailed(self.dest, path, "the version has both a file and a folder at this path",
                               "such a version cannot be a folder tree; read the file with the fsspec "
                               "protocol (datastore://NAME@VERSION/PATH) instead")
        return MountFailed(self.dest, path, exc.strerror or str(exc),
                           "check the permissions and space of the mount directory's parent")

    # --- scheduling ---------------------------------------------------------------------------

    def run(self) -> None:
        """Run every task with at most ``2 × workers`` tasks and ``MAX_INFLIGHT_BYTES`` in flight."""
        pending: dict[Future, int] = {}
        inflight = 0
        max_tasks = 2 * self.workers  # enough queued work that no thread waits for the planner

        def reap(block: bool) -> None:
            nonlocal inflight
            done, _ = wait(pending, return_when=FIRST_COMPLETED, timeout=None if block else 0)
            for f in done:
                inflight -= pending.pop(f)
                f.result()  # re-raise the first failure in the main thread

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="mount") as pool:
            try:
                for cost, task in self.tasks():
                    while pending and (len(pending) >= max_tasks or inflight + cost > MAX_INFLIGHT_BYTES):
                        reap(block=True)
                    pending[pool.submit(task)] = cost
                    inflight += cost
                    reap(block=False)
                while pending:
                    reap(block=True)
            except BaseException:
                self.stop.set()
                for f in pending:
                    f.cancel()
                raise


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for every thread, for a moment)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o777  # unknown: assume the worst, so every file gets its mode set explicitly


def _read_exact(body: BinaryIO, size: int) -> Iterator[bytes]:
    """Up to ``size`` bytes of ``body`` in :data:`STREAM_CHUNK` pieces; closes ``body``."""
    try:
        left = size
        while left > 0:
            chunk = body.read(min(STREAM_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
    finally:
        body.close()


def _make_read_only(root: Path) -> None:
    """``0o555`` on every folder below ``root`` (children first; ``root`` itself is left writable)."""
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        if dirpath != str(root):
            os.chmod(dirpath, DIR_MODE)


def remove_tree(root: Path) -> None:
    """Remove a (possibly already read-only) hidden folder."""
    if not root.exists():
        return
    for dirpath, _dirs, _files in os.walk(root):
        with contextlib.suppress(OSError):
            os.chmod(dirpath, 0o700)  # read-only folders would refuse unlinking their files
    shutil.rmtree(root, ignore_errors=True)


def _publish(tmp: Path, dest: Path) -> None:
    """Move the finished hidden folder to ``dest`` (absent or an empty directory)."""
    try:
        # rename(2) replaces an empty directory atomically and refuses a non-empty one.
        os.rename(tmp, dest)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise MountTargetNotEmpty(dest, "was filled by something else during the mount") from None
        if exc.errno not in (errno.EBUSY, errno.EXDEV):
            raise
        # dest is itself a mount point (cannot be replaced): move the children into it instead.
        for child in os.listdir(tmp):
            os.rename(tmp / child, dest / child)
        os.rmdir(tmp)
    os.chmod(dest, DIR_MODE)


def mount(store: Store, record: VersionRecord, dest: Path, workers: int = 16) -> MountSummary:
    """Materialize ``record`` read-only at ``dest``.

    Args:
        store: The store holding the version.
        record: The version (see :func:`datastore.store.versions.resolve`).
        dest: A directory that does not exist yet or is empty; its parents are created.
        workers: Parallel reads.

    Returns:
        How many files and bytes were written.

    Raises:
        MountTargetNotEmpty: ``dest`` exists and is not an empty directory (nothing was read).
        ChecksumMismatch: stored bytes differ from the manifest (nothing is left behind).
        ReferenceBroken: a pinned source object of a ``--no-copy`` version is gone or changed.
        MountFailed: the tree could not be written (disk full, a path both file and folder …).
    """
    dest = Path(dest).absolute()
    check_target(dest)
    if workers < 1:
        raise DatastoreError(f"workers={workers} is too small", "use at least 1 worker")
    # Same parent as dest: the final rename never crosses a file system.
    tmp = dest.parent / f".{dest.name}.mount-{uuid.uuid4().hex[:12]}"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as exc:
        raise MountFailed(dest, None, exc.strerror or str(exc),
                          "choose a --dir whose parent folder you may write to") from exc
    try:
        m = _Mounter(store, record, dest, tmp, workers, Settings.from_env())
        m.run()
        _make_read_only(tmp)
        check_target(dest)  # something may have appeared there while we were reading
        _publish(tmp, dest)
    except BaseException:
        remove_tree(tmp)
        raise
    return MountSummary(files=m.files, bytes=m.bytes)
