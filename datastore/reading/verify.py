"""``datastore verify``: check that every file of a version can still be read as recorded.

* Stored files with a sha256 (everything that passed through this process): every byte is read
  back and hashed; runs of files packed next to each other are read with one ranged GET, large
  files are streamed (both planned and read by :class:`~datastore.reading.reader.Reader`).
  *missing*, *truncated* or *changed* (sha256 differs) is reported per file.
* Server-side copies (no sha256): a HEAD of the object, its ETag against the recorded one.
* Referenced files (``--no-copy``): a HEAD of the pinned object (by VersionId, or the current
  object compared with the pinned ETag and size): *missing* or *changed* is reported per file.

Checks run ``workers`` at a time over a bounded window, so memory does not grow with the version.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from datastore.errors import ObjectNotFound, StoreError
from datastore.model.hashing import Hashed, copy_hashed
from datastore.model.manifest import BLOCK_BYTES, Entry
from datastore.reading.reader import Reader, Run
from datastore.store import Store
from datastore.store.versions import VersionRecord


@dataclass(frozen=True)
class Problem:
    """One file that cannot be read as recorded."""

    path: str
    problem: str  # "missing" | "changed" | "truncated"
    detail: str


@dataclass
class Report:
    """The outcome of verifying one version."""

    name: str
    version: int
    files: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every file checked out."""
        return not self.problems

    def to_json(self) -> dict:
        """Machine-readable form (``verify --json``)."""
        return {"name": self.name, "version": self.version, "files": self.files, "ok": self.ok,
                "problems": [p.__dict__ for p in self.problems]}


def _check_reference(rd: Reader, entry: Entry) -> list[Problem]:
    where = rd.pinned_location(entry)
    found = rd.head_pinned(entry)
    if found is None:
        return [Problem(entry.path, "missing", f"{where} no longer exists")]
    if found.etag != (entry.source or {}).get("etag") or found.size != entry.size:
        return [Problem(entry.path, "changed", f"{where} now has ETag {found.etag} and {found.size} bytes")]
    return []


def _check_object(store: Store, key: str, end: int, etag: str | None, paths: list[str]) -> list[Problem]:
    try:
        info = store.head(key)
    except ObjectNotFound:
        return [Problem(p, "missing", f"store object {key} is missing") for p in paths]
    if info.size < end:
        return [Problem(p, "truncated", f"store object {key} has {info.size} bytes, needs {end}") for p in paths]
    if etag is not None and info.etag is not None and info.etag != etag:
        return [Problem(p, "changed", f"store object {key} has ETag {info.etag}, recorded {etag}") for p in paths]
    return []


def _check_run(rd: Reader, run: Run) -> list[Problem]:
    """Read a run of packed entries with one ranged GET and hash each."""
    key = run.key
    problems = []
    try:
        for e, piece in rd.read_run(run, check=False):
            if len(piece) < e.size:
                problems.append(Problem(e.path, "truncated", f"store object {key} is too short"))
            elif hashlib.sha256(piece).hexdigest() != e.sha256:
                problems.append(Problem(e.path, "changed", f"its bytes in {key} do not match the manifest's sha256"))
    except ObjectNotFound:
        return [Problem(e.path, "missing", f"store object {key} is missing") for e in run.entries]
    return problems


def _check_large(rd: Reader, e: Entry) -> list[Problem]:
    """Stream one large hashed file and hash it."""
    key = e.object or ""
    try:
        got = copy_hashed(rd.stream(e), block_bytes=BLOCK_BYTES if e.blocks else None)
    except ObjectNotFound:
        return [Problem(e.path, "missing", f"store object {key} is missing")]
    except StoreError:
        # S3 refuses a range that starts past the end of an object (a pack cut short before
        # this file): a truncation, as the same pack in a local store shows it.
        size = rd.store.head(key).size
        if size >= e.offset + e.size:
            raise
        got = Hashed(max(0, size - e.offset), "")
    if got.size < e.size:
        return [Problem(e.path, "truncated", f"store object {key} ends after {got.size} of {e.size} bytes")]
    if got.sha256 != e.sha256:
        return [Problem(e.path, "changed", f"sha256 of {key} differs")]
    if e.blocks and got.blocks != e.blocks:  # the bytes are right, the record is not: a mount would refuse them
        bad = next(i for i, (a, b) in enumerate(zip(e.blocks, got.blocks or ())) if a != b) if got.blocks else 0
        return [Problem(e.path, "changed", f"the manifest's hash of block {bad} does not match the file's bytes")]
    return []


def _checks(rd: Reader, report: Report) -> Iterator[Callable[[], list[Problem]]]:
    """One pass over the manifest: a check per run of hashed entries, per copied object, per reference."""
    store = rd.store
    copy_key: str | None = None  # consecutive entries of one server-side copy: one HEAD
    copy_end = 0
    copy_etag: str | None = None
    copy_paths: list[str] = []

    def flush_copy() -> Iterator[Callable[[], list[Problem]]]:
        if copy_key is not None:
            yield lambda k=copy_key, e=copy_end, t=copy_etag, p=copy_paths: _check_object(store, k, e, t, p)

    def counted() -> Iterator[Entry]:
        for entry in rd.entries():
            report.files += 1
            yield entry

    for read in rd.runs(counted()):
        if isinstance(read, Run):
            yield lambda r=read: _check_run(rd, r)
        elif read.referenced:
            yield lambda entry=read: _check_reference(rd, entry)
        elif read.sha256 is not None:
            yield lambda entry=read: _check_large(rd, entry)
        else:
            if read.object != copy_key:
                yield from flush_copy()
                copy_key, copy_end, copy_etag, copy_paths = read.object, 0, read.etag, []
            copy_end = max(copy_end, read.offset + read.size)
            copy_paths.append(read.path)
    yield from flush_copy()


def verify(store: Store, record: VersionRecord, workers: int = 32, limit: int = 10_000) -> Report:
    """Check every file of ``record``; at most ``limit`` problems are kept (all are counted in order)."""
    report = Report(record.name, record.version)
    rd = Reader(store, record)  # its planning opens a no-copy source here, not in a worker thread
    window: deque[Future] = deque()

    def collect(fut: Future) -> None:
        for p in fut.result():
            if len(report.problems) < limit:
                report.problems.append(p)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") as pool:
        for check in _checks(rd, report):
            window.append(pool.submit(check))
            if len(window) >= 4 * workers:
                collect(window.popleft())
        while window:
            collect(window.popleft())
    return report
