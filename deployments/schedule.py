"""``datastore schedule``: one deployment of the periodic flow per datastore name.

The deployment ``datastore-periodic/<name>`` carries the source, the schedule and a concurrency
limit of 1 with ``CANCEL_NEW`` (a run that comes due while the previous one still runs is
cancelled, never run alongside). Creating it again replaces it in place (Prefect upserts a
deployment by flow and name and replaces its schedules), so scheduling twice never makes two
schedules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from datastore.errors import DeploymentMissing, InvalidSchedule
from datastore.model.kinds import check_options, safe_source
from datastore_deployments import secret_urls
from datastore_deployments.submit import with_url_stashed
from datastore_deployments.pools import ensure_work_pool, workers_online
from datastore_deployments.names import PERIODIC_ENTRYPOINT, PERIODIC_FLOW, REPO, server_api, work_pool

COMMAND = "datastore schedule"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+)([smhd])")


def parse_every(text: str) -> timedelta:
    """``90s``, ``15m``, ``1h30m``, ``1d`` → a timedelta.

    Raises:
        InvalidSchedule: not of that form, or zero.
    """
    compact = text.strip().lower().replace(" ", "")
    if not compact or _DURATION.sub("", compact):
        raise InvalidSchedule("--every", text, "use a number with a unit s, m, h or d, e.g. 30m, 1h30m or 1d")
    seconds = sum(int(n) * _UNITS[u] for n, u in _DURATION.findall(compact))
    if seconds < 1:
        raise InvalidSchedule("--every", text, "the interval must be at least 1s")
    return timedelta(seconds=seconds)


def build_schedule(cron: str | None, every: str | None, timezone: str | None):  # noqa: ANN201 - Prefect type, imported lazily
    """The Prefect schedule for ``--cron`` or ``--every`` (exactly one), in ``timezone``.

    Raises:
        InvalidSchedule: neither or both given, a bad cron expression, interval or time zone.
    """
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
    from pydantic import ValidationError

    if (cron is None) == (every is None):
        raise InvalidSchedule("schedule", f"--cron {cron!r} --every {every!r}" if cron else "(none)",
                              "give exactly one of --cron EXPR (e.g. '0 3 * * *') or --every DURATION (e.g. 6h)")
    tz = timezone or "UTC"
    try:
        if cron is not None:
            return CronSchedule(cron=cron, timezone=tz)
        return IntervalSchedule(interval=parse_every(every or ""), timezone=tz)
    except ValidationError as exc:
        msg = " ".join(str(exc.errors()[0].get("msg", exc)).split())
        if "timezone" in msg.lower() or "time zone" in msg.lower():
            raise InvalidSchedule("--timezone", tz, "use an IANA name such as UTC or Europe/Berlin") from None
        raise InvalidSchedule("--cron", cron or "", f"{msg}; use five fields, e.g. '0 3 * * *' (03:00 daily)") from None


def _client():  # noqa: ANN202
    server_api(COMMAND)
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


@dataclass(frozen=True)
class Scheduled:
    """One periodic deployment as ``schedule --list`` shows it."""

    name: str  # the datastore name (the deployment is datastore-periodic/<deployment>)
    deployment: str
    source: str  # as shown: signed query values masked
    schedule: str
    active: bool
    parameters: dict
    deployment_id: str
    work_pool: str | None

    def to_json(self) -> dict:
        """Plain dict for ``--json``."""
        return self.__dict__.copy()


def upsert(name: str, source: str, schedule, *, no_copy: bool = False, credentials: str | None = None,  # noqa: ANN001
           always: bool = False, store: str | None = None) -> tuple[str, int]:
    """Create or replace the periodic deployment of ``name``; returns its id and the workers polling its pool.

    Raises:
        NoPrefectServer: no server configured.

    The work pool is created when it is missing (:func:`~datastore_deployments.pools.ensure_work_pool`).
    """
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy, ConcurrencyOptions
    from prefect.utilities.callables import parameter_schema

    from datastore_flows.periodic import refresh_datastore

    pool = work_pool()
    with _client() as client:
        ensure_work_pool(client, pool)
        flow_id = client.create_flow_from_name(PERIODIC_FLOW)
        params = {"source": source, "name": name, "no_copy": no_copy, "credentials": credentials,
                  "always": always, "store": store}
        block = secret_urls.schedule_block(name)
        if check_options(source, no_copy, credentials) == "http":
            params = with_url_stashed("http-archive", params, block)
        if "url_block" not in params:
            secret_urls.drop(block)  # a signed URL it was scheduled with before
        dep_id = client.create_deployment(
            flow_id=flow_id,
            name=name,
            description=f"Periodic re-upload of {safe_source(source)} into datastore {name!r} (datastore schedule).",
            schedules=[DeploymentScheduleCreate(schedule=schedule, active=True)],
            concurrency_limit=1,
            concurrency_options=ConcurrencyOptions(collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
            parameters=params,
            work_pool_name=pool,
            tags=["datastore", f"datastore:{name}", "periodic"],
            entrypoint=PERIODIC_ENTRYPOINT,
            path=str(REPO),
            # The worker runs the flow from this checkout (it must see the same files).
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}],
            parameter_openapi_schema=parameter_schema(refresh_datastore).model_dump(),
            paused=False,
        )
        online = workers_online(client, pool)
    return str(dep_id), online


def describe(schedule) -> str:  # noqa: ANN001
    """``every 1:00:00 (UTC)`` / ``cron '0 3 * * *' (Europe/Berlin)``."""
    if getattr(schedule, "cron", None):
        return f"cron {schedule.cron!r} ({schedule.timezone or 'UTC'})"
    if getattr(schedule, "interval", None) is not None:
        return f"every {schedule.interval} ({schedule.timezone or 'UTC'})"
    return str(schedule)


def list_all() -> list[Scheduled]:
    """Every periodic deployment on the server, by name."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with _client() as client:
        deps = client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[PERIODIC_FLOW])))
    out = []
    for d in deps:
        scheds = d.schedules or []
        params = d.parameters or {}
        out.append(Scheduled(
            name=str(params.get("name") or d.name), deployment=d.name, source=safe_source(str(params.get("source", ""))),
            schedule="; ".join(describe(s.schedule) for s in scheds) or "(none)",
            active=bool(scheds) and all(s.active for s in scheds) and not d.paused,
            parameters={k: safe_source(v) if k == "source" and isinstance(v, str) else v for k, v in params.items()},
            deployment_id=str(d.id), work_pool=d.work_pool_name))
    return sorted(out, key=lambda s: s.name)


def remove(name: str) -> None:
    """Delete the periodic deployment of ``name`` (its scheduled runs go with it).

    Raises:
        DeploymentMissing: there is none.
    """
    from prefect.exceptions import ObjectNotFound as PrefectNotFound

    with _client() as client:
        try:
            dep_id = client.read_deployment_by_name(f"{PERIODIC_FLOW}/{name}").id
        except PrefectNotFound:
            # A deployment named otherwise (e.g. from prefect.yaml) that fills this datastore.
            ids = [s.deployment_id for s in list_all() if s.name == name]
            if len(ids) != 1:
                raise DeploymentMissing(f"a schedule for {name!r}", server_api(COMMAND),
                                        "see the scheduled names with: datastore schedule --list") from None
            dep_id = ids[0]
        client.delete_deployment(dep_id)
    secret_urls.drop(secret_urls.schedule_block(name))
