"""The process work pool the deployments run on, created when a command finds it missing."""

from __future__ import annotations

from typing import Any


def ensure_work_pool(client: Any, pool: str) -> bool:  # noqa: ANN401 - a Prefect SyncPrefectClient
    """Create ``pool`` as a process work pool with the process worker's default job template unless it exists.

    ``schedule`` and ``create --submit`` call this, so the first of them on a fresh server does not
    fail on a missing pool (a run waits in it until a worker polls it).

    Returns:
        True when the pool was created here.
    """
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.exceptions import ObjectNotFound as PrefectNotFound
    from prefect.workers.process import ProcessWorker

    try:
        client.read_work_pool(pool)
        return False
    except PrefectNotFound:
        pass
    try:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process",
                                               base_job_template=ProcessWorker.get_default_base_job_template()))
    except ObjectAlreadyExists:  # another command created it meanwhile
        return False
    return True


def workers_online(client: Any, pool: str) -> int:  # noqa: ANN401 - a Prefect SyncPrefectClient
    """How many workers poll ``pool`` now (Prefect marks a worker offline when its heartbeats stop)."""
    from prefect.client.schemas.objects import WorkerStatus
    from prefect.exceptions import ObjectNotFound as PrefectNotFound

    try:
        return sum(1 for w in client.read_workers_for_work_pool(pool) if w.status == WorkerStatus.ONLINE)
    except PrefectNotFound:
        return 0
