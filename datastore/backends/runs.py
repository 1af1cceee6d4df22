"""The flow run this process works for, and whether a flow run has ended: a port.

Leases (:mod:`datastore.store.leases`) name the flow run that holds them and stop honouring the
lease of a run that has ended. Flow runs are Prefect's, and only :mod:`datastore.orchestration`
talks to Prefect: ``import datastore.orchestration`` (which ``import datastore`` does) installs
its :class:`RunLookup` here. Without one every process is a plain process and no run is known to
have ended (its leases then expire by their heartbeat).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RunIdentity:
    """A flow run, as a lease names it."""

    id: str
    name: str | None


class RunLookup(Protocol):
    """What the orchestrator answers about flow runs (installed by :mod:`datastore.orchestration.runs`)."""

    def current(self) -> RunIdentity | None:
        """The flow run this code runs in, or ``None`` outside one."""
        ...

    def finished(self, run_id: str) -> bool:
        """Whether the run is in a terminal state (False when unknown or the API cannot say)."""
        ...


_lookup: RunLookup | None = None


def install(lookup: RunLookup | None) -> None:
    """Make ``lookup`` the source of flow-run answers (``None`` uninstalls it)."""
    global _lookup
    _lookup = lookup


def current() -> RunIdentity | None:
    """The flow run this code runs in, or ``None`` (outside one, or no orchestrator installed)."""
    return _lookup.current() if _lookup is not None else None


def finished(run_id: str) -> bool:
    """Whether flow run ``run_id`` has ended (False when nobody can tell)."""
    return _lookup.finished(run_id) if _lookup is not None else False
