"""Reclaiming data no live version references, and expiring old failure records."""

from __future__ import annotations

from dataclasses import dataclass

from datastore.settings import Settings
from datastore.store import inflight, open_store
from datastore.store.gc import Report, collect


@dataclass(frozen=True)
class Collected:
    """What ``gc`` reclaimed (or, in a dry run, would)."""

    report: Report
    expired_failed_runs: tuple[str, ...]  #: status records of creations that failed long ago
    dry_run: bool

    def to_json(self) -> dict:
        """``gc --json``."""
        return self.report.to_json() | {"expired_failed_runs": len(self.expired_failed_runs)}


def gc(*, dry_run: bool = False, settings: Settings | None = None) -> Collected:
    """Reclaim data no live version references, after ``DATASTORE_GC_GRACE`` seconds.

    Status records of failed creations are kept for ``DATASTORE_FAILED_RETENTION``, then dropped.
    """
    settings = settings or Settings.from_env()
    store = open_store(settings.store, settings)
    report = collect(store, settings.gc_grace, dry_run=dry_run)
    expired = inflight.expire(store, settings.lease_ttl, settings.failed_retention, dry_run=dry_run)
    return Collected(report, tuple(expired), dry_run)
