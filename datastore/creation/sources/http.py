"""The HTTP-archive creation path: check the URL, download (resumable), check, safely extract.

The extracted tree then goes through the local pipeline (:class:`~datastore.creation.sources.local.LocalSource`).
The archive and its extracted tree live in a per-creation scratch folder under ``work_dir``
(named by datastore name and source id, so a re-run of a failed create resumes the download).
A refused or broken archive takes its scratch folder with it; a committed version removes it.
The version record keeps the URL (credential-free), the server's ETag/Last-Modified and the
archive's sha256 and size (:class:`~datastore.model.details.HttpDetail`), so a re-run of an
unchanged URL reuses the previous manifest. :mod:`~datastore.creation.sources.safe_extract` is
the extraction engine.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from datastore.backends.http import ALLOW_PRIVATE_ENV, PRIVATE_SUFFIX
from datastore.creation import pipeline as creation
from datastore.creation.pipeline import CreateJob
from datastore.errors import ArchiveInvalid, UnsafeArchive, UrlRefused
from datastore.model.details import HttpDetail, detail_from_json
from datastore.model.kinds import Kind
from datastore.model.naming import derive_name, validate_name
from datastore.model.progress import NO_PROGRESS, Reporter
from datastore.model.urls import recorded_url
from datastore.settings import Settings
from datastore.store import layout, open_store, versions


def refused_on_worker(exc: UrlRefused, host: str) -> UrlRefused:
    """``exc`` as a worker on ``host`` should say it: the setting that allows it is the worker's."""
    if not exc.reason.endswith(PRIVATE_SUFFIX):
        return exc  # refused whatever the setting (metadata, link-local): nothing to add
    reason = f"{exc.reason.removesuffix(PRIVATE_SUFFIX)}; set {ALLOW_PRIVATE_ENV}=1 on the worker on {host} to allow it"
    return UrlRefused(exc.url, reason, f"the worker's environment decides (where 'prefect worker start' runs on "
                                       f"{host}); setting {ALLOW_PRIVATE_ENV} where you submit does not reach it")


def prepare(url: str, name: str | None, settings: Settings) -> CreateJob:
    """Validate an HTTP creation before anything is downloaded.

    The URL is checked for scheme and credentials here; its addresses are checked again on
    every connection and redirect by :mod:`datastore.backends.http` (DNS can change meanwhile).

    Raises:
        UrlRefused, InvalidName, StoreError, QuotaExceeded.
    """
    from datastore.backends.http import check_url, resolve_checked

    check_url(url)
    clean = recorded_url(url)
    parts = urlsplit(url)
    # Fail fast on a forbidden address (metadata, private); the download checks every hop again.
    resolve_checked(parts.hostname or "", parts.port or (443 if parts.scheme.lower() == "https" else 80),
                    settings.http_allow_private, url=clean)
    name = validate_name(name) if name is not None else derive_name(clean)
    return creation.prepare(clean, name, Kind.HTTP_ARCHIVE, settings, HttpDetail(clean))


@dataclass(frozen=True)
class Archive:
    """A downloaded archive: where it is, its format (from its bytes) and what identifies it."""

    archive: str  # local path
    format: str
    archive_sha256: str
    archive_bytes: int
    etag: str | None
    last_modified: str | None
    url: str  # the credential-free URL it came from

    def to_json(self) -> dict:
        """The form kept next to the download (``archive.json``), to resume a later run."""
        return {"archive": self.archive, "format": self.format, "archive_sha256": self.archive_sha256,
                "archive_bytes": self.archive_bytes, "etag": self.etag, "last_modified": self.last_modified,
                "url": self.url}

    @classmethod
    def from_json(cls, d: dict) -> Archive:
        """Inverse of :meth:`to_json`."""
        return cls(d["archive"], d["format"], d["archive_sha256"], d["archive_bytes"], d.get("etag"),
                   d.get("last_modified"), d["url"])


def with_archive(job: CreateJob, info: Archive) -> CreateJob:
    """The job with the archive's fields in its detail (what the version record keeps)."""
    if not isinstance(job.detail, HttpDetail):
        raise TypeError(f"not an HTTP creation: {job.kind}")
    return replace(job, detail=replace(job.detail, format=info.format, archive_sha256=info.archive_sha256,
                                       archive_bytes=info.archive_bytes, etag=info.etag,
                                       last_modified=info.last_modified))


def workdir(job: CreateJob, settings: Settings) -> Path:
    """Scratch folder of one name + source."""
    return Path(settings.work_dir) / f"{job.name}-{layout.source_id(job.kind, job.source)}"


_locks: dict[str, int] = {}
_locks_guard = threading.Lock()


def _acquire(job: CreateJob, settings: Settings) -> None:
    """Hold the scratch folder for this creation until :func:`release`.

    Two creates of the same name and URL on one machine would otherwise write the same partial
    download; the second waits for the first instead (the kernel drops the lock if a process dies).
    """
    with _locks_guard:
        if job.create_id in _locks:  # a retried download task of the same creation
            return
        base = Path(settings.work_dir)
        base.mkdir(parents=True, exist_ok=True)
        fd = os.open(base / f"{workdir(job, settings).name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        _locks[job.create_id] = fd
    fcntl.flock(fd, fcntl.LOCK_EX)


def release(job: CreateJob) -> None:
    """Let the next creation of the same name and URL use the scratch folder."""
    with _locks_guard:
        fd = _locks.pop(job.create_id, None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops the flock


def fetch(job: CreateJob, settings: Settings, url: str | None = None,
          progress: Reporter = NO_PROGRESS) -> Archive:
    """Download the archive (resuming a partial one) and decide its format from its bytes.

    ``url`` is the real URL when ``job.source`` shows it with secret query values masked.

    Raises:
        UrlRefused, DownloadFailed, ArchiveInvalid (not an archive, or the URL suffix disagrees).
    """
    from datastore.backends import http as http_fetch
    from datastore.creation.sources import safe_extract

    _acquire(job, settings)
    wd = workdir(job, settings)
    wd.mkdir(parents=True, exist_ok=True)
    archive = wd / "archive"
    done = wd / "archive.json"
    if done.exists() and archive.exists():
        # A run that failed after the download (transfer, commit) left it complete: reuse it.
        info = json.loads(done.read_text())
        if info.get("url") == job.source and archive.stat().st_size == info["archive_bytes"]:
            return Archive.from_json(info)
    dl = http_fetch.download(url or job.source, archive, settings.http_allow_private, reporter=progress)
    try:
        fmt = safe_extract.detect_format(archive, job.source)
        safe_extract.check_suffix(urlsplit(job.source).path, fmt, job.source)
    except ArchiveInvalid:
        shutil.rmtree(wd, ignore_errors=True)  # an HTML page is no start for a resume
        raise
    got = Archive(str(archive), fmt, dl.sha256, dl.size, dl.etag, dl.last_modified, job.source)
    done.write_text(json.dumps(got.to_json()))
    return got


def previous_same_archive(job: CreateJob, archive_sha256: str, settings: Settings | None = None) -> str | None:
    """Manifest key of the newest live version made from byte-identical archive at the same URL."""
    store = open_store(job.store, settings)
    prev = versions.latest_live(store, job.name)
    if prev and prev.kind == job.kind and prev.source == job.source and prev.manifest \
            and detail_from_json(prev.kind, prev.source_detail).archive_sha256 == archive_sha256:
        return prev.manifest
    return None


def extract(job: CreateJob, info: Archive, settings: Settings) -> str:
    """Extract the archive into the scratch folder (once per archive content); return the tree's path.

    Raises:
        UnsafeArchive: a member breaks a safety rule (the scratch folder is removed).
        ArchiveInvalid: truncated or corrupt (the scratch folder is removed).
    """
    from datastore.creation.sources import safe_extract

    wd = workdir(job, settings)
    dest = wd / f"tree-{info.archive_sha256[:16]}"
    done = wd / f"tree-{info.archive_sha256[:16]}.done"
    if done.exists():
        return str(dest)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    try:
        safe_extract.extract(Path(info.archive), dest, info.format, job.source,
                             settings.max_extracted_bytes, settings.max_extract_ratio, settings.max_archive_members)
    except (UnsafeArchive, ArchiveInvalid):
        shutil.rmtree(wd, ignore_errors=True)
        raise
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    done.touch()
    return str(dest)


def cleanup(job: CreateJob, settings: Settings) -> None:
    """Remove the scratch folder (after a commit, or a refusal) and release it."""
    shutil.rmtree(workdir(job, settings), ignore_errors=True)
    release(job)
