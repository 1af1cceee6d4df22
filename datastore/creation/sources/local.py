"""The local-folder creation path: a sorted, streaming walk and change-safe file reads.

:class:`LocalSource` is what :mod:`datastore.creation.pipeline` needs of a folder (the HTTP
path uses it too, on the extracted archive); :func:`scan` and :func:`transfer_batch` run the
pipeline with it, so the logic can be tested (and benchmarked) without an orchestrator.

Policy for what is not a regular file (documented in the README, recorded in the manifest):

* a symlink to a regular file is followed: the datastore holds the target's bytes at the
  link's path (what ``cp -L`` and ``aws s3 sync`` do);
* a symlink to a directory is skipped (following it could loop or leave the tree);
* a broken symlink, a FIFO, a socket or a device file is skipped;
* a name that is not valid UTF-8 is skipped (object stores and JSON need UTF-8 names).

Each skipped item appears as ``{"skipped": path, "reason": …}`` in the manifest and is counted
in the output of ``create``.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from datastore.creation import pipeline
from datastore.creation.pipeline import CreateJob, ServerCopy, SmallRead
from datastore.creation.plan import PlanSummary
from datastore.errors import SourceChanged, SourceNotFound, SourceUnreadable
from datastore.model.manifest import Entry, Skipped
from datastore.model.plan import Candidate
from datastore.model.progress import NO_PROGRESS, Reporter
from datastore.settings import Settings
from datastore.store import Store

# A file whose mtime is this close to the moment we read it may still be written within the
# same timestamp tick; we do not record its mtime, so the next create re-reads it rather than
# trusting (size, mtime) — the "racy git" rule.
RACY_NS = 2_000_000_000
READ_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A regular file found by the walk."""

    path: str  # relative, '/'-separated
    size: int
    mtime_ns: int


def resolve_source(source: str, worker: Callable[[], str | None] | None = None) -> Path:
    """Absolute path of a local source; raises :class:`SourceNotFound` if there is nothing.

    Args:
        source: The path as given.
        worker: Asked only when the path is missing: the host of the Prefect worker running
            the creation (None when not on a worker), named in the error, since the usual cause
            is a path only the user's machine has.
    """
    p = Path(os.path.abspath(os.path.expanduser(source)))
    if not p.exists():  # follows symlinks: a dangling link is "not found" too
        worker = worker() if worker is not None else None
        if worker:
            raise SourceNotFound(source, f"the worker on {worker} cannot see it; a local path works with --submit or a "
                                         "deployment only where the worker shares this filesystem: upload it from "
                                         "your machine without --submit, or use an s3:// or http(s):// source")
        raise SourceNotFound(source)
    return p


def check_submitted(source: str, worker_path: bool = False) -> str:
    """The absolute path of a local source handed to a worker, checked here unless ``worker_path``.

    A worker usually shares the submitting machine's filesystem (the same machine, or a shared
    mount); a path missing here is far more often a typo than a path only the worker has, and
    finding out from the worker costs a flow run. ``worker_path`` says the path is the
    worker's own: then only the worker can check it.

    Raises:
        SourceNotFound: the path does not exist here (and ``worker_path`` is not set).
    """
    path = os.path.abspath(os.path.expanduser(source))
    if not worker_path and not os.path.exists(path):
        raise SourceNotFound(source, "check the path (the worker reads it where you submit from); if only the "
                                     "worker's machine has it, add --worker-path")
    return path


def _classify(st: os.stat_result) -> str | None:
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISFIFO(mode):
        return "special file (FIFO)"
    if stat.S_ISSOCK(mode):
        return "special file (socket)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "special file (device)"
    return "special file"


def _check_readable(full: str, rel: str) -> None:
    if not os.access(full, os.R_OK):
        raise SourceUnreadable(rel, "permission denied")


def walk(root: Path) -> Iterator[LocalFile | Skipped]:
    """Yield the files under ``root`` in manifest order, plus what was skipped and why.

    Memory holds one directory listing per level of depth, never the whole tree.

    Raises:
        SourceUnreadable: a directory cannot be listed or a file cannot be read.
    """
    if root.is_file():
        st = root.stat()
        _check_readable(str(root), root.name)
        yield LocalFile(root.name, st.st_size, st.st_mtime_ns)
        return

    def listing(directory: str, rel: str) -> Iterator[LocalFile | Skipped]:
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except PermissionError:
            if not rel:
                raise SourceUnreadable(str(root), "permission denied", root=True) from None
            raise SourceUnreadable(rel.rstrip("/"), "permission denied", folder=True) from None
        items = []
        for e in entries:
            try:
                e.name.encode("utf-8")
            except UnicodeEncodeError:
                items.append((os.fsencode(e.name).decode("utf-8", "replace"), e, "name is not valid UTF-8"))
                continue
            is_dir = e.is_dir(follow_symlinks=False)
            # Sorting by name + '/' for real directories makes the depth-first walk come out in
            # plain string order of the full relative paths (the manifest's canonical order).
            items.append((e.name + "/" if is_dir else e.name, e, None))
        items.sort(key=lambda t: t[0])
        for sort_key, e, bad in items:
            path = rel + (sort_key if bad else e.name)
            if bad:
                yield Skipped(path, bad)
                continue
            if sort_key.endswith("/"):
                yield from listing(e.path, path + "/")
                continue
            try:
                st = os.stat(e.path)  # follows symlinks
            except FileNotFoundError:
                yield Skipped(path, "broken symlink")
                continue
            except PermissionError:
                raise SourceUnreadable(path, "permission denied") from None
            kind = _classify(st)
            if kind == "dir":
                yield Skipped(path, "symlink to a directory (not followed)")
            elif kind:
                yield Skipped(path, kind)
            else:
                _check_readable(e.path, path)
                yield LocalFile(path, st.st_size, st.st_mtime_ns)

    yield from listing(str(root), "")


def file_path(root: Path, rel: str, single: bool | None = None) -> str:
    """Absolute path of a relative manifest path under a source root.

    Args:
        single: Whether ``root`` is one file (the source is that file); looked up when not given.
    """
    if single is None:
        single = root.is_file()
    return str(root) if single else os.path.join(root, *rel.split("/"))


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns and a.st_ino == b.st_ino


def stable_mtime(st: os.stat_result) -> int | None:
    """The mtime to record for reuse, or None when it is too recent to be trusted."""
    return st.st_mtime_ns if time.time_ns() - st.st_mtime_ns > RACY_NS else None


def read_small(full: str, rel: str) -> tuple[bytes, os.stat_result]:
    """Read a whole (small) file, detecting concurrent modification.

    The file is read once; if its size, mtime or inode differ between before and after the read,
    it is read again, up to :data:`READ_ATTEMPTS` times.

    Raises:
        SourceUnreadable: permission denied.
        SourceChanged: the file kept changing or vanished.
    """
    for _ in range(READ_ATTEMPTS):
        fd, before = open_checked(full, rel)
        try:
            chunks = []
            want = before.st_size + 1  # one byte more than expected tells us it grew
            while want > 0:
                chunk = os.read(fd, max(want, 65536))
                if not chunk:
                    break
                chunks.append(chunk)
                want -= len(chunk)
            data = b"".join(chunks) if len(chunks) != 1 else chunks[0]
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if len(data) == before.st_size and _same(before, after):
            return data, after
    raise SourceChanged(rel, f"size or mtime differed across {READ_ATTEMPTS} reads")


def open_checked(full: str, rel: str) -> tuple[int, os.stat_result]:
    """Open a (large) file for streaming; returns the fd and its stat before reading."""
    try:
        fd = os.open(full, os.O_RDONLY)
    except PermissionError:
        raise SourceUnreadable(rel, "permission denied") from None
    except FileNotFoundError:
        raise SourceChanged(rel, "it was deleted after the scan") from None
    return fd, os.fstat(fd)


def unchanged_since(fd: int, before: os.stat_result, read: int) -> bool:
    """Whether a streamed file still matches the stat taken before reading ``read`` bytes."""
    return read == before.st_size and _same(before, os.fstat(fd))


class _LargeFile:
    """One read of a large local file (see :class:`datastore.creation.pipeline.LargeRead`)."""

    def __init__(self, fd: int, before: os.stat_result) -> None:
        self.fd = fd
        self.before = before
        self.size = before.st_size
        self.mtime_ns = stable_mtime(before)

    def read(self, n: int = -1, /) -> bytes:
        return os.read(self.fd, n)

    def intact(self, read: int) -> bool:
        return unchanged_since(self.fd, self.before, read)


class LocalSource:
    """A local folder or file, for :mod:`datastore.creation.pipeline`.

    Files are read one by one in plan order (the disk, not the latency, is the limit), and a
    file that changes while it is read is read again, up to :data:`READ_ATTEMPTS` times.
    """

    empty_hint: str | None = None
    fetch_workers = 0
    read_attempts = READ_ATTEMPTS

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._single = self.root.is_file()  # once per batch, not one stat per file read

    def candidates(self) -> Iterator[Candidate | Skipped]:
        for item in walk(self.root):
            yield Candidate(item.path, item.size, item.mtime_ns) if isinstance(item, LocalFile) else item

    def unchanged(self, candidate: Candidate, previous: Entry) -> bool:
        # No recorded mtime (too recent when stored: the racy-git rule) means "read it again".
        return previous.mtime_ns is not None and candidate.size == previous.size \
            and candidate.stamp == previous.mtime_ns

    def fetch_small(self, candidate: Candidate) -> SmallRead:
        data, st = read_small(file_path(self.root, candidate.path, self._single), candidate.path)
        return SmallRead(data, stable_mtime(st))

    @contextmanager
    def open_large(self, candidate: Candidate) -> Iterator[_LargeFile]:
        fd, before = open_checked(file_path(self.root, candidate.path, self._single), candidate.path)
        try:
            yield _LargeFile(fd, before)
        finally:
            os.close(fd)

    def server_copy(self, store: Store, candidate: Candidate) -> ServerCopy | None:  # noqa: ARG002
        return None


def scan(job: CreateJob, settings: Settings, root: str | None = None,
         progress: Reporter = NO_PROGRESS) -> PlanSummary:
    """Walk the source, merge with the previous version, and store the batch plans.

    ``root`` is the folder to walk when it is not ``job.source`` itself (an extracted archive).

    Raises:
        EmptySource: nothing to store.
        SourceUnreadable: a file or directory cannot be read.
    """
    return pipeline.scan(LocalSource(root or job.source), job, settings, progress)


def transfer_batch(job: CreateJob, plan_key: str, settings: Settings, root: str | None = None,
                   progress: Reporter = NO_PROGRESS) -> tuple[str, int]:
    """Transfer the new files of one batch plan and write its batch manifest (``root`` as in :func:`scan`).

    Returns:
        The batch manifest key and the data bytes uploaded by this call.
    """
    return pipeline.transfer_batch(LocalSource(root or job.source), job, plan_key, settings, progress)
