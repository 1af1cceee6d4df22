"""``datastore verify``: check that every file of a version can still be read as recorded.

* Stored files with a sha256 (everything that passed through this process): every byte is read
  back and hashed; runs of files packed next to each other are read with one ranged GET (the
  rule of :mod:`datastore.mount`), large files are streamed. *missing*, *truncated* or
  *changed* (sha256 differs) is reported per file.
* Server-side copies (no sha256): a HEAD of the object, its ETag against the recorded one.
* Referenced files (``--no-copy``): a HEAD of the pinned object (by VersionId, or the current
  object compared with the pinned ETag and size): *missing* or *changed* is reported per file.

Checks run ``workers`` at a time over a bounded window, so memory does not grow with the version.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from datastore.errors import ObjectNotFound
from datastore.model.manifest import Entry
from datastore.reading import reader
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


def _check_run(store: Store, key: str, entries: list[Entry]) -> list[Problem]:
    """Read a run of packed entries with one ranged GET (or stream one large file) and hash each."""
    import hashlib

    start = entries[0].offset
    end = max(e.offset + e.size for e in entries)
    try:
        if len(entries) == 1 and entries[0].size > 8 * 1024 * 1024:
            h = hashlib.sha256()
            got = 0
            e = entries[0]
            with store.open_read(key) as body:
                if e.offset:
                    body.read(e.offset)
                while got < e.size and (chunk := body.read(min(8 * 1024 * 1024, e.size - got))):
                    h.update(chunk)
                    got += len(chunk)
            if got < e.size:
                return [Problem(e.path, "truncated", f"store object {key} ends after {got} of {e.size} bytes")]
            return [] if h.hexdigest() == e.sha256 else [Problem(e.path, "changed", f"sha256 of {key} differs")]
        data = store.get_range(key, start, end - start)
    except ObjectNotFound:
        return [Problem(e.path, "missing", f"store object {key} is missing") for e in entries]
    problems = []
    for e in entries:
        piece = data[e.offset - start: e.offset - start + e.size]
        if len(piece) < e.size:
            problems.append(Problem(e.path, "truncated", f"store object {key} is too short"))
        elif hashlib.sha256(piece).hexdigest() != e.sha256:
            problems.append(Problem(e.path, "changed", f"its bytes in {key} do not match the manifest's sha256"))
    return problems


def _checks(store: Store, rd: reader.Reader, report: Report) -> Iterator[Callable[[], list[Problem]]]:
    """One pass over the manifest: a check per run of hashed entries, per copied object, per reference."""
    from datastore.reading.download import Run

    run: Run | None = None  # hashed entries packed next to each other: one ranged read
    copy_key: str | None = None  # consecutive entries of one server-side copy: one HEAD
    copy_end = 0
    copy_etag: str | None = None
    copy_paths: list[str] = []

    def flush_run() -> Iterator[Callable[[], list[Problem]]]:
        if run is not None:
            yield lambda r=run: _check_run(store, r.key, r.entries)

    def flush_copy() -> Iterator[Callable[[], list[Problem]]]:
        if copy_key is not None:
            yield lambda k=copy_key, e=copy_end, t=copy_etag, p=copy_paths: _check_object(store, k, e, t, p)

    for entry in reader.entries(store, rd.record):
        report.files += 1
        if entry.referenced:
            yield lambda entry=entry: _check_reference(rd, entry)
        elif entry.sha256 is not None:
            if run is not None and run.accepts(entry):
                run.entries.append(entry)
                run.end = entry.offset + entry.size
            else:
                yield from flush_run()
                run = Run(entry.object or "", entry.offset, entry.offset + entry.size, [entry])
        else:
            if entry.object != copy_key:
                yield from flush_copy()
                copy_key, copy_end, copy_etag, copy_paths = entry.object, 0, entry.etag, []
            copy_end = max(copy_end, entry.offset + entry.size)
            copy_paths.append(entry.path)
    yield from flush_run()
    yield from flush_copy()


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
