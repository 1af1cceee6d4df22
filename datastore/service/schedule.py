"""Periodic re-uploads: one deployment of the periodic flow per datastore name, on the Prefect server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from datastore.model.kinds import check_options, safe_source
from datastore.model.naming import validate_name
from datastore.orchestration import launch
from datastore.settings import Settings
from datastore.store import open_store

if TYPE_CHECKING:
    from datastore_deployments.schedule import Scheduled


def check_name(name: str) -> str:
    """The datastore name a schedule is for, validated.

    Raises:
        InvalidName: not a valid datastore name.
    """
    return validate_name(name)


@dataclass(frozen=True)
class ScheduleSet:
    """A schedule as :func:`schedule` created or replaced it."""

    name: str
    source: str  #: as shown: signed query values masked
    schedule: str  #: e.g. ``every 1 day, 0:00:00 (UTC)``
    deployment_id: str
    always: bool
    pool: str  #: the work pool its runs wait in
    workers_online: int  #: workers polling that pool when it was scheduled (0: the runs will wait)

    def to_json(self) -> dict:
        """``schedule --json``."""
        return {"name": self.name, "source": self.source, "schedule": self.schedule,
                "deployment_id": self.deployment_id, "work_pool": self.pool, "workers_online": self.workers_online}


def schedule(source: str, name: str, *, cron: str | None = None, every: str | None = None,
             timezone: str | None = None, no_copy: bool = False, credentials: str | None = None,
             always: bool = False, worker_path: bool = False, settings: Settings | None = None) -> ScheduleSet:
    """Re-upload ``source`` into ``name`` periodically (creates or replaces its deployment).

    Args:
        source: Local path (as the worker sees it), ``s3://`` or ``http(s)://`` URL.
        name: The datastore name.
        cron: A cron expression (exactly one of ``cron`` and ``every``).
        every: An interval such as ``30m``, ``6h``, ``1d``.
        timezone: IANA time zone of the schedule (default UTC).
        no_copy: Reference S3 objects in place.
        credentials: ``AwsCredentials`` block for an S3 source.
        always: Commit a version every run, even if nothing changed.
        worker_path: A local ``source`` is the worker's path: do not check that it exists here.
        settings: Default: from the environment (the store the runs write to).

    Raises:
        InvalidName, InvalidSource, InvalidSchedule, NoPrefectServer, DeploymentMissing.
    """
    check_name(name)
    kind = check_options(source, no_copy, credentials)
    sched = launch.build_schedule(cron, every, timezone)
    if kind == "local":
        from datastore.creation.sources.local import check_submitted

        src = check_submitted(source, worker_path)
    else:
        src = source
    settings = settings or Settings.from_env()
    dep_id, online = launch.upsert_schedule(name, src, sched, no_copy=no_copy, credentials=credentials,
                                            always=always, store=open_store(settings.store, settings).url)
    return ScheduleSet(name, safe_source(src), launch.describe_schedule(sched), dep_id, always, launch.work_pool(),
                       online)


def schedules() -> list[Scheduled]:
    """Every scheduled datastore, by name."""
    return launch.schedules()


def unschedule(name: str) -> None:
    """Remove the schedule of ``name`` (its versions stay).

    Raises:
        DeploymentMissing: there is none.
    """
    check_name(name)
    launch.remove_schedule(name)
