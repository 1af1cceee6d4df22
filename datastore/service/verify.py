"""Checking that every file of a version is still there as recorded."""

from __future__ import annotations

from dataclasses import dataclass

from datastore.errors import VerificationFailed
from datastore.reading.verify import Report
from datastore.reading.verify import verify as check
from datastore.store import Store, open_store, versions
from datastore.store.versions import VersionRecord


@dataclass(frozen=True)
class Verified:
    """A version and what checking it found."""

    record: VersionRecord
    report: Report

    def raise_for_problems(self) -> None:
        """Raise the one-line error of a failed verification (nothing when every file is intact).

        Raises:
            VerificationFailed: some files are missing, truncated or changed (listed in ``report``).
        """
        r, report = self.record, self.report
        if not report.ok:
            raise VerificationFailed(r.name, r.version, len(report.problems), report.files)


def verify(name: str, version: int | None = None, *, store: Store | None = None) -> Verified:
    """Check every file of ``name`` version ``version`` (default: newest live), pinned S3 objects too."""
    store = store or open_store()
    r = versions.resolve_live(store, name, version)
    return Verified(r, check(store, r))
