"""Prefect flow runs as :mod:`datastore.backends.runs` asks about them (installed on import of
:mod:`datastore.orchestration`)."""

from __future__ import annotations

import sys

from datastore.backends.runs import RunIdentity
from datastore.orchestration.imports import importing

#: Prefect state types after which a flow run does nothing more (leases, ``--wait``).
TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


def flow_run_state(run_id: str) -> str | None:
    """The state type of flow run ``run_id`` (``COMPLETED``, ``RUNNING``, …), or None if unknown."""
    try:
        with importing:
            from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id)
        return run.state.type.value if run.state else None
    except Exception:  # noqa: BLE001 - unknown to this API (or API down): the caller falls back to heartbeats
        return None


class PrefectRuns:
    """A :class:`datastore.backends.runs.RunLookup` over the Prefect runtime and API."""

    def current(self) -> RunIdentity | None:
        """The flow run this code runs in (from Prefect's runtime context), or None."""
        if "prefect" not in sys.modules:  # not inside a flow run; importing Prefect would cost ~1 s
            return None
        try:
            with importing:  # "prefect" is in sys.modules while another thread is still importing it
                from prefect.runtime import flow_run

            run_id = flow_run.id
        except Exception:  # noqa: BLE001 - not inside a flow run (or Prefect absent): a plain process
            return None
        return RunIdentity(str(run_id), flow_run.name) if run_id else None

    def finished(self, run_id: str) -> bool:
        """Whether the Prefect API reports the run in a terminal state."""
        return flow_run_state(run_id) in TERMINAL_STATES
