"""What exists and what is under way: ``list``, ``show`` and ``status`` as Python calls."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from datastore.settings import Settings
from datastore.store import Store, inflight, open_store, versions
from datastore.store.inflight import StatusRow
from datastore.store.versions import VersionRecord


@dataclass(frozen=True)
class Listing:
    """Versions, and creations in flight or recently failed (from the store only)."""

    records: tuple[VersionRecord, ...]
    pending: tuple[StatusRow, ...]


def listing(name: str | None = None, *, settings: Settings | None = None) -> Listing:
    """Every version record (of ``name``, or all), plus the store's rows of unfinished creations.

    No Prefect round trip: ``list`` answers from the store alone.
    """
    settings = settings or Settings.from_env()
    store = open_store(settings.store, settings)
    records = versions.list_records(store, name)
    found = inflight.recent(store, settings.lease_ttl, settings.failed_retention, name)
    return Listing(tuple(records), tuple(inflight.status_rows(found)))


@dataclass(frozen=True)
class Shown:
    """One version and the store it lives in."""

    record: VersionRecord
    store: Store

    def skipped(self) -> Iterator[tuple[str, str]]:
        """``(path, reason)`` of each item the creation skipped (none once gc reclaimed a deleted manifest)."""
        from datastore.model.manifest import Skipped
        from datastore.store.manifests import manifest_items

        r = self.record
        if not (r.skipped and r.manifest and not r.deleted_at):
            return
        for item in manifest_items(self.store, r.manifest):
            if isinstance(item, Skipped):
                yield item.path, item.reason


def show(name: str, version: int | None = None, *, store: Store | None = None) -> Shown:
    """The record of ``name`` version ``version`` (default: the newest live one).

    Raises:
        DatastoreNotFound: no such name or version.
    """
    store = store or open_store()
    return Shown(versions.resolve(store, name, version), store)


@dataclass(frozen=True)
class Status:
    """Creations in progress and recently failed, oldest first."""

    rows: tuple[StatusRow, ...]
    warning: str | None  #: why the Prefect API's part is missing, if it is


def status(name: str | None = None, *, settings: Settings | None = None, with_prefect: bool = True) -> Status:
    """Every row ``datastore status`` shows, and a warning when the Prefect API could not be asked.

    Store records come first; the Prefect API (when a server is configured) adds what only it
    knows. An unreachable server does not hide the store's rows: it becomes the warning instead.
    """
    from datastore.orchestration.events import api_configured

    settings = settings or Settings.from_env()
    store = open_store(settings.store, settings)
    found = inflight.recent(store, settings.lease_ttl, settings.failed_retention, name)
    rows = inflight.status_rows(found)
    warning = None
    if with_prefect and api_configured():
        from datastore.orchestration.status import from_prefect

        # A failed periodic run's creation reports through its own record: skip the parent too.
        known = {r.flow_run_id for r in found if r.flow_run_id} | {r.parent_flow_run_id for r in found
                                                                   if r.parent_flow_run_id}
        try:
            rows += from_prefect(settings, known, name)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong there, the store's rows are still worth showing
            warning = f"the Prefect API did not answer ({type(exc).__name__}); showing the store's records only"
    return Status(tuple(sorted(rows, key=lambda r: r.since)), warning)
