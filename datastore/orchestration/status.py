"""What ``datastore status`` shows: creations in progress and recently failed.

Two sources, merged by flow run id:

* the store's status records (:mod:`datastore.inflight`): every creation writes one while it
  runs, wherever it runs (the CLI's own process, a worker, a schedule), with phase and progress,
  and keeps it with the reason when it fails;
* the Prefect API, when a server is configured: creation runs that are queued on the work pool
  and have not started yet, and runs that failed or crashed before they could write a record
  (e.g. a worker that could not start the flow).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from datastore.model.kinds import mask_urls, safe_source
from datastore.settings import Settings
from datastore.store import Store, inflight
from datastore.store.versions import KINDS

_QUEUED = ("SCHEDULED", "PENDING")
_FAILED = ("FAILED", "CRASHED")


@dataclass
class Row:
    """One line of ``status`` (and a non-version row of ``list``)."""

    name: str
    status: str  # processing | failed
    kind: str
    source: str
    since: str  # ISO time it started (or was queued)
    detail: str  # progress, or the reason it failed
    flow_run_id: str | None
    files: int = 0
    bytes: int = 0

    def to_json(self) -> dict:
        """Shaped like a version record (no ``version``/``digest`` yet), plus ``detail``."""
        return {"name": self.name, "version": None, "status": self.status, "kind": self.kind, "source": self.source,
                "files": self.files, "bytes": self.bytes, "digest": None, "created_at": self.since,
                "flow_run_id": self.flow_run_id, "detail": self.detail}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_store(store: Store, settings: Settings, name: str | None = None,
               found: list[inflight.RunRecord] | None = None) -> list[Row]:
    """Rows from the store's status records (processing, and failed within the retention)."""
    if found is None:
        found = inflight.recent(store, settings.lease_ttl, settings.failed_retention, name)
    rows = []
    for r in found:
        detail = r.progress_text() if r.status == "processing" else (r.reason or "failed")
        rows.append(Row(r.name, r.status, r.kind, r.source, _iso(r.started_at), detail, r.flow_run_id,
                        r.files_done, r.bytes_done))
    return rows


def from_prefect(settings: Settings, known: set[str], name: str | None = None) -> list[Row]:
    """Creation runs the store does not know about: queued ones, and failures before they started.

    Args:
        settings: For the failure retention.
        known: Flow run ids already covered by store records.
        name: Only runs of this datastore.
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
        rows.append(Row(run_name or str(params.get("name") or "?"), "processing" if queued_state else "failed", kind,
                        safe_source(str(params.get("source", ""))), _iso(start.timestamp()) if start else "",
                        f"queued on the work pool ({state.lower()})" if queued_state else reason, str(run.id)))
    return rows


def collect(store: Store, settings: Settings, name: str | None = None,
            with_prefect: bool = True) -> tuple[list[Row], str | None]:
    """Every row ``status`` shows, oldest first, and a warning when the Prefect API could not be asked.

    Store records come first; the Prefect API adds what only it knows. An unreachable server
    does not hide the store's rows: it becomes the warning instead.
    """
    found = inflight.recent(store, settings.lease_ttl, settings.failed_retention, name)
    rows = from_store(store, settings, name, found)
    warning = None
    if with_prefect:
        from datastore.orchestration.events import api_configured

        if api_configured():
            # A failed periodic run's creation reports through its own record: skip the parent too.
            known = {r.flow_run_id for r in found if r.flow_run_id} | {r.parent_flow_run_id for r in found
                                                                       if r.parent_flow_run_id}
            try:
                rows += from_prefect(settings, known, name)
            except Exception as exc:  # noqa: BLE001 - the store's rows are still worth showing
                warning = f"the Prefect API did not answer ({type(exc).__name__}); showing the store's records only"
    return sorted(rows, key=lambda r: r.since), warning
