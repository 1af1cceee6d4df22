"""Settings read from the environment, with the defaults a fresh machine needs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1024 * 1024


def default_store_path() -> Path:
    """The embedded default store: under the user's data directory (XDG), no server needed."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "datastore" / "store"


def default_work_dir() -> Path:
    """Scratch space for downloads and extracted archives (XDG cache; safe to delete when idle)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "datastore" / "work"


def _int(name: str, default: int, minimum: int = 1) -> int:
    from datastore.errors import DatastoreError

    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise DatastoreError(f"{name}={raw!r} is not a whole number", f"set {name} to an integer >= {minimum}") from None
    if value < minimum:
        raise DatastoreError(f"{name}={raw!r} is too small", f"set {name} to an integer >= {minimum}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything tunable, in one value object.

    Attributes:
        store: Store location, a local path or ``s3://bucket/prefix``.
        max_versions: Quota of live versions across all names.
        batch_files: At most this many files a transfer batch (one Prefect task run).
        batch_bytes: At most this many new bytes a transfer batch.
        pack_bytes: Small files are packed into objects of about this size.
        large_file_bytes: Files this big or bigger are stored as objects of their own.
        part_bytes: Multipart part size for large objects on S3.
        workers: Concurrent transfer batches (Prefect thread pool size).
        part_workers: Concurrent multipart parts per large object.
        reuse_lines: A batch may carry at most this many reused (unchanged) entries.
        fetch_workers: Concurrent GETs of small S3 source objects per transfer batch.
        copy_multipart_bytes: S3 objects bigger than this are copied server-side in parts
            (``UploadPartCopy``); S3's single ``CopyObject`` limit is 5 GiB.
        copy_part_bytes: Part size of a multipart server-side copy.
        list_run: Listed keys sorted in memory at a time (more spill to disk, then merge).
        max_extracted_bytes: An archive may expand to at most this many bytes (HTTP sources).
        max_extract_ratio: ... and to at most this many times its own size (zip/gzip bombs).
        max_archive_members: ... and hold at most this many entries (files, folders, links).
        http_allow_private: Allow HTTP sources on loopback and private addresses (tests, LANs);
            link-local and cloud metadata addresses are refused regardless.
        mount_dir: Base folder of ``datastore mount`` (``<mount_dir>/<name>``).
        gc_grace: Seconds an unreferenced object must be old before ``gc`` reclaims it.
        lease_ttl: Seconds a reader's lease lives without a heartbeat (renewed every third of it).
        status_interval: Seconds between a running creation's status/progress updates (store
            record and Prefect progress artifact).
        failed_retention: Seconds a failed creation stays in ``status`` / ``list`` (gc removes
            older ones).
        work_dir: Local scratch space of HTTP creations (download, extracted tree); a failed
            create leaves its download there so the next run resumes it.
    """

    store: str = field(default_factory=lambda: str(default_store_path()))
    max_versions: int = 50
    batch_files: int = 1000
    batch_bytes: int = 128 * MiB
    pack_bytes: int = 32 * MiB
    large_file_bytes: int = 32 * MiB
    part_bytes: int = 8 * MiB
    workers: int = 4
    part_workers: int = 8
    reuse_lines: int = 100_000
    fetch_workers: int = 16
    copy_multipart_bytes: int = 5 * 1024 * MiB
    copy_part_bytes: int = 512 * MiB
    list_run: int = 200_000
    max_extracted_bytes: int = 256 * 1024 * MiB
    max_extract_ratio: int = 1000
    max_archive_members: int = 10_000_000
    http_allow_private: bool = False
    work_dir: str = field(default_factory=lambda: str(default_work_dir()))
    lease_ttl: int = 120
    gc_grace: int = 3600
    mount_dir: str = "/datastores"
    status_interval: int = 2
    failed_retention: int = 7 * 24 * 3600

    @classmethod
    def from_env(cls) -> Settings:
        """Build settings from ``DATASTORE_*`` environment variables."""
        return cls(
            store=os.environ.get("DATASTORE_STORE") or str(default_store_path()),
            max_versions=_int("DATASTORE_MAX_VERSIONS", 50, minimum=0),
            batch_files=_int("DATASTORE_BATCH_FILES", 1000),
            batch_bytes=_int("DATASTORE_BATCH_BYTES", 128 * MiB),
            pack_bytes=_int("DATASTORE_PACK_BYTES", 32 * MiB),
            large_file_bytes=_int("DATASTORE_LARGE_FILE_BYTES", 32 * MiB),
            part_bytes=_int("DATASTORE_PART_BYTES", 8 * MiB, minimum=5 * MiB),
            workers=_int("DATASTORE_WORKERS", 4),
            part_workers=_int("DATASTORE_PART_WORKERS", 8),
            fetch_workers=_int("DATASTORE_FETCH_WORKERS", 16),
            copy_multipart_bytes=_int("DATASTORE_COPY_MULTIPART_BYTES", 5 * 1024 * MiB, minimum=5 * MiB),
            copy_part_bytes=_int("DATASTORE_COPY_PART_BYTES", 512 * MiB, minimum=5 * MiB),
            list_run=_int("DATASTORE_LIST_RUN", 200_000),
            max_extracted_bytes=_int("DATASTORE_MAX_EXTRACTED_BYTES", 256 * 1024 * MiB),
            max_extract_ratio=_int("DATASTORE_MAX_EXTRACT_RATIO", 1000),
            max_archive_members=_int("DATASTORE_MAX_ARCHIVE_MEMBERS", 10_000_000),
            http_allow_private=os.environ.get("DATASTORE_HTTP_ALLOW_PRIVATE", "").strip().lower() in ("1", "true", "yes"),
            work_dir=os.environ.get("DATASTORE_WORK_DIR") or str(default_work_dir()),
            lease_ttl=_int("DATASTORE_LEASE_TTL", 120, minimum=3),
            gc_grace=_int("DATASTORE_GC_GRACE", 3600, minimum=0),
            mount_dir=os.environ.get("DATASTORE_MOUNT_DIR") or "/datastores",
            status_interval=_int("DATASTORE_STATUS_INTERVAL", 2),
            failed_retention=_int("DATASTORE_FAILED_RETENTION", 7 * 24 * 3600, minimum=0),
        )
