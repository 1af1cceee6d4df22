"""Deleting versions: the tombstone, the ``datastore.version.deleted`` event, and reclaiming what only they used."""

from __future__ import annotations

from dataclasses import dataclass

from datastore.errors import DatastoreNotFound
from datastore.orchestration import artifacts, events
from datastore.settings import Settings
from datastore.store import Store, deletion, inflight, open_store, versions
from datastore.store.gc import reclaim_version
from datastore.store.inflight import RunRecord
from datastore.store.versions import VersionRecord


@dataclass(frozen=True)
class Deleted:
    """What a delete removed."""

    name: str
    records: tuple[VersionRecord, ...]  #: the deleted versions, with ``deleted_at`` set
    objects: int  #: objects reclaimed (used by these versions only)
    bytes: int  #: their size

    @property
    def numbers(self) -> list[int]:
        """The deleted version numbers."""
        return [r.version for r in self.records]


def _finish(store: Store, name: str, gone: list[VersionRecord]) -> Deleted:
    """Announce the deletes, then reclaim the data only they used (others may share the rest)."""
    events.versions_deleted(store.url, gone)
    objects = size = 0
    for rec in gone:
        freed = reclaim_version(store, rec)
        objects, size = objects + freed.objects, size + freed.bytes
    artifacts.deleted(gone)  # the UI's history, last: nothing above waits for it
    return Deleted(name, tuple(gone), objects, size)


def delete_version(name: str, version: int, *, store: Store | None = None) -> Deleted:
    """Delete exactly ``name`` version ``version`` (immediately; its number is never reused).

    Raises:
        DatastoreNotFound: no such name or version.
        AlreadyDeleted: it was deleted before.
        VersionInUse: a live lease holds it; the message names the holder.
    """
    store = store or open_store()
    return _finish(store, name, [deletion.delete_version(store, name, version)])


def live_versions(name: str, *, store: Store | None = None) -> list[int]:
    """The live version numbers :func:`delete_all` would delete (to confirm with the user first).

    Raises:
        DatastoreNotFound: the name has no live version.
    """
    live = versions.live_numbers(store or open_store(), name)
    if not live:
        raise DatastoreNotFound(name)
    return live


def delete_all(name: str, *, store: Store | None = None) -> Deleted:
    """Delete every live version of ``name`` (none if one of them is held).

    Raises:
        DatastoreNotFound: the name has no live version.
        VersionInUse: a version is held; nothing was deleted.
    """
    store = store or open_store()
    return _finish(store, name, deletion.delete_all(store, name))


def failed_creations(name: str, *, settings: Settings | None = None) -> list[RunRecord]:
    """The store's records of failed creations of ``name`` (the ``failed`` rows of ``list``/``status``)."""
    settings = settings or Settings.from_env()
    store = open_store(settings.store, settings)
    return [r for r in inflight.read_all(store, settings.lease_ttl) if r.name == name and r.status == "failed"]


def dismiss_failed(name: str, *, settings: Settings | None = None) -> list[RunRecord]:
    """Remove the failed creations of ``name`` from ``list`` and ``status`` (their runs stay in Prefect)."""
    settings = settings or Settings.from_env()
    return inflight.dismiss_failed(open_store(settings.store, settings), settings.lease_ttl, name)
