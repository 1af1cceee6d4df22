"""``download``: materialize one version as a verified read-only folder tree, fast for many small files.

(This was ``datastore mount`` before the mount became a FUSE filesystem read on demand,
:mod:`datastore.reading.mount`; a download is for when a full local copy is wanted.)

What it does, in order:

1. **Check the target.** ``dest`` must not exist or be an empty directory; anything else is
   refused before a byte moves (:class:`MountTargetNotEmpty`).
2. **Plan reads while streaming the manifest.** Small files of one version mostly sit next to
   each other in the same pack object (a batch packs them in path order), so
   :meth:`~datastore.reading.reader.Reader.runs` merges consecutive manifest entries of one
   object into *runs*, each fetched with ONE ranged GET (the coalescing rule is
   :class:`~datastore.reading.reader.Run`'s: holes up to 1 MiB are read through, a run stays
   within 8 MiB, enough runs to keep every worker busy). Entries reused from an older version
   can point into other packs: they simply start new runs, so the plan never needs the whole
   manifest in memory.
3. **Fetch runs in parallel with bounded memory.** ``workers`` threads; at most ``2 × workers``
   tasks and :data:`MAX_INFLIGHT_BYTES` of planned reads are in flight, so memory does not grow
   with the version. Each run is split in memory and every file's sha256 is checked *before*
   it is written (:class:`~datastore.reading.reader.ChecksumMismatch` on a mismatch).
4. **Stream large files.** A file of at least ``DATASTORE_LARGE_FILE_BYTES`` (or bigger than one
   coalesced read) is streamed (:meth:`~datastore.reading.reader.Reader.stream`, 8 MiB pieces)
   into a temporary name, hashed on the way, and renamed to its own name only after the check.
5. **Referenced files** (``--no-copy``) and small files without a sha256 go through
   :meth:`datastore.reading.reader.Reader.read`, which pins the exact S3 object (VersionId or ETag) and
   checks the size; large ones are streamed from the pinned object in pinned ranged reads.
6. **Publish atomically.** Everything is written into a hidden folder next to ``dest`` (same
   file system, so the final step is a rename); files are ``0o444`` and folders ``0o555`` once
   written, then the folder is renamed to ``dest``. A failed mount removes its hidden folder, so
   it never leaves a half-written tree behind.

Skipped manifest items (``{"skipped": …}`` lines) are not materialized.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from datastore.errors import DatastoreError, MountFailed, MountTargetNotEmpty, UsageError
from datastore.model.hashing import Stopped, copy_hashed
from datastore.model.manifest import Entry
from datastore.model.paths import safe_parts
from datastore.reading import reader as reading
from datastore.reading.reader import Reader, Run
from datastore.settings import Settings
from datastore.store import Store
from datastore.store.versions import VersionRecord

MiB = 1024 * 1024

MAX_INFLIGHT_BYTES = 256 * MiB
"""Planned bytes in flight across all workers (bounds memory, independent of the version size)."""

FILE_MODE = 0o444
DIR_MODE = 0o555


@dataclass(frozen=True)
class DownloadSummary:
    """What a mount wrote.

    Attributes:
        files: Files materialized (skipped manifest items are not counted).
        bytes: Their total size.
    """

    files: int
    bytes: int


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
        self.stream_from = min(settings.large_file_bytes, reading.MAX_READ)
        self.stop = threading.Event()  # tells streaming tasks to give up once another task failed
        self.umask_drops = _umask() & FILE_MODE != 0
        self._dirs: set[str] = {""}
        self.files = 0
        self.bytes = 0

    # --- planning (main thread) -------------------------------------------------------------

    def tasks(self) -> Iterator[tuple[int, Callable[[], None]]]:
        """``(planned bytes in memory, task)`` for the whole version, streamed from the manifest."""
        for read in self.reader.runs(self._planned(), stream_from=self.stream_from):
            if isinstance(read, Run):
                yield read.length, self._run_task(read)
            elif read.size >= self.stream_from:
                yield min(read.size, reading.STREAM_CHUNK), self._stream_task(read)
            else:
                # a no-copy reference or a small server-side copy: the Reader pins and size-checks it
                yield read.size, self._reader_task(read)

    def _planned(self) -> Iterator[Entry]:
        """The version's entries, each one's folders created and counted as it passes."""
        for e in self.reader.entries():
            self._target(e)
            self.files += 1
            self.bytes += e.size
            yield e

    def _target(self, e: Entry) -> None:
        """Check where ``e`` goes in the hidden folder; its parent folders are created here, once each."""
        parts = safe_parts(e.path)
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

    # --- tasks (worker threads) -------------------------------------------------------------

    def _path(self, e: Entry) -> Path:
        """Where ``e`` goes in the hidden folder (its path was checked by :meth:`_target`)."""
        return self.tmp.joinpath(*e.path.split("/"))

    def _run_task(self, run: Run) -> Callable[[], None]:
        def task() -> None:
            for e, piece in self.reader.read_run(run):  # every piece checked before it is written
                self._write_file(e, self._path(e), piece)

        return task

    def _reader_task(self, e: Entry) -> Callable[[], None]:
        def task() -> None:
            self._write_file(e, self._path(e), self.reader.read(e))

        return task

    def _stream_task(self, e: Entry) -> Callable[[], None]:
        def task() -> None:
            target = self._path(e)
            part = target.with_name(f".{target.name}.part-{uuid.uuid4().hex[:12]}")
            try:
                fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
                with open(fd, "wb", closefd=True) as out:
                    got = copy_hashed(self.reader.stream(e), out.write, stop=self.stop)
                self.reader.check(e, got)
                os.replace(part, target)  # only checked bytes get the real name
                os.chmod(target, FILE_MODE)
            except Stopped:
                return  # another task failed: the mount is being abandoned
            except OSError as exc:
                if isinstance(exc, DatastoreError):
                    raise
                raise self._write_error(e.path, exc) from exc
            finally:
                if part.exists():
                    part.unlink()

        return task

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
                           "check the permissions and space of the target directory's parent")

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


def download(store: Store, record: VersionRecord, dest: Path, workers: int = 16) -> DownloadSummary:
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
        raise UsageError(f"workers={workers} is too small", "use at least 1 worker")
    # Same parent as dest: the final rename never crosses a file system.
    tmp = dest.parent / f".{dest.name}.download-{uuid.uuid4().hex[:12]}"
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
    return DownloadSummary(files=m.files, bytes=m.bytes)
