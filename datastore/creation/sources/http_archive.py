"""The HTTP-archive creation path: download (resumable), check, safely extract; then the local pipeline.

The archive and its extracted tree live in a per-creation scratch folder under ``work_dir``
(named by datastore name and source id, so a re-run of a failed create resumes the download).
A refused or broken archive takes its scratch folder with it; a committed version removes it.
The version record keeps the URL (credential-free), the server's ETag/Last-Modified and the
archive's sha256 and size, so a re-run of an unchanged URL reuses the previous manifest.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urlsplit

from datastore.creation.pipeline import CreateJob
from datastore.errors import ArchiveInvalid, UnsafeArchive
from datastore.settings import Settings
from datastore.store import layout, open_store, versions


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


def fetch(job: CreateJob, settings: Settings, url: str | None = None) -> dict:
    """Download the archive (resuming a partial one) and decide its format from its bytes.

    ``url`` is the real URL when ``job.source`` shows it with secret query values masked.

    Returns:
        ``archive`` (local path), ``format``, ``archive_sha256``, ``archive_bytes``, ``etag``,
        ``last_modified``.

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
            return info
    dl = http_fetch.download(url or job.source, archive, settings.http_allow_private)
    try:
        fmt = safe_extract.detect_format(archive, job.source)
        safe_extract.check_suffix(urlsplit(job.source).path, fmt, job.source)
    except ArchiveInvalid:
        shutil.rmtree(wd, ignore_errors=True)  # an HTML page is no start for a resume
        raise
    info = {"archive": str(archive), "format": fmt, "archive_sha256": dl.sha256, "archive_bytes": dl.size,
            "etag": dl.etag, "last_modified": dl.last_modified, "url": job.source}
    done.write_text(json.dumps(info))
    return info


def previous_same_archive(job: CreateJob, archive_sha256: str) -> str | None:
    """Manifest key of the newest live version made from byte-identical archive at the same URL."""
    store = open_store(job.store)
    prev = versions.latest_live(store, job.name)
    if prev and prev.kind == job.kind and prev.source == job.source and prev.manifest \
            and prev.source_detail.get("archive_sha256") == archive_sha256:
        return prev.manifest
    return None


def extract(job: CreateJob, info: dict, settings: Settings) -> str:
    """Extract the archive into the scratch folder (once per archive content); return the tree's path.

    Raises:
        UnsafeArchive: a member breaks a safety rule (the scratch folder is removed).
        ArchiveInvalid: truncated or corrupt (the scratch folder is removed).
    """
    from datastore.creation.sources import safe_extract

    wd = workdir(job, settings)
    dest = wd / f"tree-{info['archive_sha256'][:16]}"
    done = wd / f"tree-{info['archive_sha256'][:16]}.done"
    if done.exists():
        return str(dest)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    try:
        safe_extract.extract(Path(info["archive"]), dest, info["format"], job.source,
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
