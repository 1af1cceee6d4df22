"""Materializing a version as a verified read-only folder (``datastore download``).

A downloaded copy holds no lease once written: its files are checked against the manifest and
then are independent of the store, so deleting the version cannot change one byte of them (a
lease would only keep ``delete`` from freeing space for a copy that no longer needs the store).
While the files are being written, a lease keeps the version from being deleted under the copy.
"""

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

    A process lease holds the version while the files are written; the finished copy holds none
    (see the module docstring).

    Args:
        name: The datastore name.
        version: Default: the newest live version.
        dest: Target folder, empty or new (default: ``./<name>``).
        settings: Default: from the environment.
    """
    from datastore.reading.download import download as materialize

    settings = settings or Settings.from_env()
    store = open_store(settings.store, settings)
    r = versions.resolve_live(store, name, version)
    target = Path(dest) if dest else Path(r.name)
    with leases.acquire(store, r.name, r.version, ttl=settings.lease_ttl):
        summary = materialize(store, r, target)
    return Downloaded(r.name, r.version, target, summary.files, summary.bytes)
