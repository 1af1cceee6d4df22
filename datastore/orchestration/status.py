"""Creation runs only the Prefect API knows about, as rows of ``datastore status``.

The store's status records (:mod:`datastore.store.inflight`) cover every creation that started,
wherever it runs. The Prefect API adds, when a server is configured, creation runs that are
queued on the work pool and have not started yet, and runs that failed or crashed before they
could write a record (e.g. a worker that could not start the flow). :mod:`datastore.service.status`
merges the two.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from datastore.model.kinds import mask_urls, safe_source
from datastore.settings import Settings
from datastore.store.inflight import StatusRow, iso
from datastore.store.versions import KINDS

_QUEUED = ("SCHEDULED", "PENDING")
_FAILED = ("FAILED", "CRASHED")


def from_prefect(settings: Settings, known: set[str], name: str | None = None) -> list[StatusRow]:
    """Creation runs the store does not know about: queued ones, and failures before they started.

    Args:
        settings: For the failure retention.
        known: Flow run ids already covered by store records.
        name: Only runs of this datastore.

    Raises:
        Exception: whatever the Prefect client raises when the API does not answer (see
            :func:`datastore.orchestration.failures.is_orchestration_failure`).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    tag = f"datastore:{name}" if name else "datastore"
    now_dt = datetime.now(timezone.utc)
    since = now_dt - timedelta(seconds=settings.failed_retention)
    rows = []
    with get_client(sync_client=True) as client:
        # Runs due now; a schedule's future runs (up to 100 per schedule) are not creations yet.
        queued = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[tag]), expected_start_time=FlowRunFilterExpectedStartTime(
                before_=now_dt + timedelta(seconds=5)),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(s) for s in _QUEUED]))), limit=200)
        failed = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[tag]), start_time=FlowRunFilterStartTime(after_=since),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(s) for s in _FAILED]))), limit=200)
    for run in [*queued, *failed]:
        if str(run.id) in known or run.parent_task_run_id is not None:
            continue  # covered by a store record; subflows of a periodic run report through their own record
        params = run.parameters or {}
        kind = next((t for t in run.tags if t in KINDS), "")
        run_name = next((t.split(":", 1)[1] for t in run.tags if t.startswith("datastore:")), None)
        state = run.state.type.value if run.state else "PENDING"
        queued_state = state in _QUEUED
        start = run.expected_start_time or run.created
        reason = mask_urls(f"{state.lower()}: {(run.state.message if run.state else '') or 'no message'}")
        rows.append(StatusRow(run_name or str(params.get("name") or "?"), "processing" if queued_state else "failed",
                              kind, safe_source(str(params.get("source", ""))), iso(start.timestamp()) if start else "",
                              f"queued on the work pool ({state.lower()})" if queued_state else reason, str(run.id)))
    return rows
