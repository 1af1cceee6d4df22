"""Starting Prefect work: a creation flow in this process, a flow run of a deployment, schedules.

The flows (``datastore_flows``) and deployment code (``datastore_deployments``) are imported
here, lazily: a command pays Prefect's start-up only once it has validated its input and
actually runs something.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from datastore.model.kinds import Kind
from datastore.store import Store, inflight

if TYPE_CHECKING:
    from datastore_deployments.schedule import Scheduled
    from datastore_deployments.submit import Submitted


def run_creation(kind: Kind | str, **params: Any) -> dict:
    """Run the creation flow of record kind ``kind`` here and return its committed version record.

    Args:
        kind: ``local``, ``s3-copy``, ``s3-reference`` or ``http-archive``.
        **params: The flow's parameters (``source``, ``name``, ``credentials`` …).
    """
    kind = Kind(kind)
    if kind is Kind.S3_REFERENCE:
        from datastore_flows.s3_reference import reference_s3 as flow
    elif kind is Kind.S3_COPY:
        from datastore_flows.s3_copy import create_from_s3 as flow
    elif kind is Kind.HTTP_ARCHIVE:
        from pydantic import SecretStr

        from datastore.model.urls import recorded_url
        from datastore_flows.http_archive import create_from_http as flow

        # Prefect keeps a run's parameters (API, UI, database): ``source`` gets the URL as records
        # show it; a signed URL itself goes as a SecretStr, which Prefect stores masked.
        real = params["source"]
        params["source"] = recorded_url(real)
        if params["source"] != real:
            params["url"] = SecretStr(real)
    else:
        from datastore_flows.local_folder import create_from_local as flow
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    # Prefect's flow-run heartbeat thread is joined when the run ends, which waits out its 1 s
    # sleep (~0.8 s of a 1 s create). A run in this process is watched by the command itself and
    # by the creation's own status record (its heartbeat); runs on workers keep Prefect's.
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        return flow(**params)


def warm_up() -> None:
    """Import everything a creation, a delete, a schedule or a status needs (a warm runner calls this once)."""
    import fastapi  # noqa: F401 - Prefect imports it when it serializes a flow's parameters (~0.35 s)
    import pydantic  # noqa: F401
    from prefect.events import emit_event  # noqa: F401
    from prefect.events.worker import EventsWorker  # noqa: F401
    from prefect.settings import temporary_settings  # noqa: F401

    import datastore_deployments.schedule  # noqa: F401
    import datastore_deployments.submit  # noqa: F401
    import datastore_flows.http_archive  # noqa: F401
    import datastore_flows.local_folder  # noqa: F401
    import datastore_flows.s3_copy  # noqa: F401
    import datastore_flows.s3_reference  # noqa: F401
    from datastore.orchestration import status  # noqa: F401


def submit(kind: Kind | str, name: str, parameters: dict) -> Submitted:
    """Create a flow run of the creation deployment of ``kind`` (see :func:`datastore_deployments.submit.submit`)."""
    from datastore_deployments.submit import submit as create_run

    return create_run(str(kind), name, parameters)


def wait(store: Store, sub: Submitted, name: str, *, stale_after: float, timeout: float | None = None,
         on_progress: Callable[[inflight.RunRecord], None] | None = None,
         on_notice: Callable[[str], None] | None = None) -> dict:
    """Follow a submitted run to its end (see :func:`datastore_deployments.submit.wait`)."""
    from datastore_deployments.submit import wait as follow

    return follow(store, sub, name, on_progress=on_progress, stale_after=stale_after, timeout=timeout,
                  on_notice=on_notice)


def build_schedule(cron: str | None, every: str | None, timezone: str | None):  # noqa: ANN201 - a Prefect schedule
    """The Prefect schedule for ``--cron`` or ``--every`` (see :func:`datastore_deployments.schedule.build_schedule`)."""
    from datastore_deployments import schedule

    return schedule.build_schedule(cron, every, timezone)


def describe_schedule(sched) -> str:  # noqa: ANN001
    """``every 1:00:00 (UTC)`` / ``cron '0 3 * * *' (Europe/Berlin)``."""
    from datastore_deployments import schedule

    return schedule.describe(sched)


def upsert_schedule(name: str, source: str, sched, **options: Any) -> tuple[str, int]:  # noqa: ANN001
    """Create or replace the periodic deployment of ``name``; returns its id and the workers online on its pool."""
    from datastore_deployments import schedule

    return schedule.upsert(name, source, sched, **options)


def schedules() -> list[Scheduled]:
    """Every periodic deployment on the server, by name."""
    from datastore_deployments import schedule

    return schedule.list_all()


def remove_schedule(name: str) -> None:
    """Delete the periodic deployment of ``name``."""
    from datastore_deployments import schedule

    schedule.remove(name)


def work_pool() -> str:
    """The work pool the deployments run on (see :func:`datastore_deployments.names.work_pool`)."""
    from datastore_deployments.names import work_pool as pool

    return pool()
