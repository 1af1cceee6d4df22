"""Materializing a version as a verified read-only folder (``datastore mount``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datastore.settings import Settings
from datastore.store import leases, open_store, versions


@dataclass(frozen=True)
class Downloaded:
    """Where a version was materialized."""

    name: str
    version: int
    path: Path
    files: int
    bytes: int


def download(name: str, version: int | None = None, dest: str | Path | None = None, *,
             settings: Settings | None = None) -> Downloaded:
    """Write a read-only, checksum-verified copy of a version to ``dest``.

    A process lease holds the version while the files are written, then a mount lease lasts as
    long as the folder exists (deletes of the version are refused until it is removed).

    Args:
        name: The datastore name.
        version: Default: the newest live version.
        dest: Target folder (default: ``DATASTORE_MOUNT_DIR/<name>``).
        settings: Default: from the environment.
    """
    from datastore.reading.download import mount as materialize

    settings = settings or Settings.from_env()
    store = open_store(settings.store, settings)
    r = versions.resolve(store, name, version)
    target = Path(dest) if dest else Path(settings.mount_dir) / r.name
    with leases.acquire(store, r.name, r.version, ttl=settings.lease_ttl):
        summary = materialize(store, r, target)
        leases.acquire(store, r.name, r.version, ttl=None, mount_path=str(target.absolute()))
    return Downloaded(r.name, r.version, target, summary.files, summary.bytes)
