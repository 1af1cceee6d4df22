"""``datastore verify``: check that every file of a version can still be read as recorded.

* Referenced files (``--no-copy``): a HEAD of the pinned object (by VersionId, or the current
  object compared with the pinned ETag and size): *missing* or *changed* is reported per file.
* Stored files: a HEAD of each data object (once per run of files sharing a pack): *missing*,
  *truncated* (smaller than the recorded offset + size), or *changed* (a server-side copy whose
  ETag differs from the recorded one).

HEADs run ``workers`` at a time over a bounded window, so memory does not grow with the version.
Content hashing of stored bytes is left to reads, which check every sha256 (see ``reader``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from datastore import reader
from datastore.errors import ObjectNotFound
from datastore.manifest import Entry
from datastore.store import Store
from datastore.versions import VersionRecord


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


def _check_reference(rd: reader.Reader, entry: Entry) -> list[Problem]:
    pin = entry.source or {}
    where = rd.pinned_location(entry)
    found = rd.source.head(pin["key"], pin.get("version_id"))
    if found is None:
        return [Problem(entry.path, "missing", f"{where} no longer exists")]
    if found.etag != pin["etag"] or found.size != entry.size:
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


def _checks(store: Store, rd: reader.Reader, report: Report) -> Iterator[Callable[[], list[Problem]]]:
    run_key: str | None = None
    run_end = 0
    run_etag: str | None = None
    run_paths: list[str] = []

    def close_run() -> Callable[[], list[Problem]]:
        k, e, t, p = run_key, run_end, run_etag, run_paths
        return lambda: _check_object(store, k, e, t, p)  # type: ignore[arg-type]

    for entry in reader.entries(store, rd.record):
        report.files += 1
        if entry.referenced:
            yield lambda entry=entry: _check_reference(rd, entry)
            continue
        if entry.object != run_key:
            if run_key is not None:
                yield close_run()
            run_key, run_end, run_etag, run_paths = entry.object, 0, entry.etag, []
        run_end = max(run_end, entry.offset + entry.size)
        run_paths.append(entry.path)
    if run_key is not None:
        yield close_run()


def verify(store: Store, record: VersionRecord, workers: int = 32, limit: int = 10_000) -> Report:
    """Check every file of ``record``; at most ``limit`` problems are kept (all are counted in order)."""
    report = Report(record.name, record.version)
    rd = reader.Reader(store, record)
    if record.source_detail.get("no_copy"):
        _ = rd.source  # open the source (and load its credentials block) here, not in a worker thread
    window: deque[Future] = deque()

    def collect(fut: Future) -> None:
        for p in fut.result():
            if len(report.problems) < limit:
                report.problems.append(p)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") as pool:
        for check in _checks(store, rd, report):
            window.append(pool.submit(check))
            if len(window) >= 4 * workers:
                collect(window.popleft())
        while window:
            collect(window.popleft())
    return report
