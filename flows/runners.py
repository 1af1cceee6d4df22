"""Where the transfer task runs of a creation run: the flow's own thread pool, or a Dask cluster.

The flow decorators keep ``ThreadPoolTaskRunner``; the runner of the transfer batches is chosen
when the run starts, from its settings (``DATASTORE_DASK_ADDRESS``, ``DATASTORE_TASK_RUNNER``),
so a deployment's worker, ``--submit`` and a local create all decide the same way, and a bad
variable fails the run with its message rather than the import of a flow module. On Dask the
transfer tasks run through ``prefect-dask``'s ``DaskTaskRunner``: still Prefect task runs of
this flow run (same graph, states, retries), executed by the cluster's workers. The scan and the
commit stay in the flow: one listing, one put-if-absent.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prefect.futures import PrefectFuture

from datastore.errors import DaskUnreachable
from datastore.settings import Settings

# Seconds a run waits for the scheduler at DATASTORE_DASK_ADDRESS before it fails (distributed's
# default is 30 s per attempt; a typo'd address should fail the run soon, with its name).
CONNECT_TIMEOUT = 15


@dataclass(frozen=True)
class TransferRunner:
    """How to submit one transfer task run, and what travels with it.

    Attributes:
        submit: ``submit(task, **parameters)`` → its future.
        limit: Task runs in flight at a time (None: all at once, the cluster schedules them).
        remote: Task runs execute in other processes: in-memory progress does not travel (the
            flow counts each group when it finishes) and every parameter is pickled.
        where: Named in logs: ``threads`` or the cluster.
    """

    submit: Callable[..., PrefectFuture]
    limit: int | None
    remote: bool
    where: str


def _threads(task: Any, **parameters: Any) -> PrefectFuture:
    return task.submit(**parameters)


@contextlib.contextmanager
def transfer_runner(settings: Settings, *, spread: bool = True) -> Iterator[TransferRunner]:
    """The runner of this run's transfer tasks; a Dask client (and local cluster) lives as long as the block.

    Args:
        settings: Settings of the run (``on_dask``, ``dask_address``, ``dask_workers``, ``workers``).
        spread: False for paths whose batches read files only this process's machine has (an
            archive extracted here): they stay in the flow's threads whatever the settings.

    Raises:
        DaskUnreachable: no scheduler answers at ``dask_address``, or the local cluster did not start.
    """
    if not (spread and settings.on_dask):
        yield TransferRunner(_threads, settings.workers, remote=False, where="threads")
        return
    from prefect_dask import DaskTaskRunner  # only here: importing distributed costs ~1 s

    if settings.dask_address:
        runner = DaskTaskRunner(address=settings.dask_address, client_kwargs={"timeout": CONNECT_TIMEOUT})
        where = f"the Dask cluster at {settings.dask_address}"
    else:
        n = settings.dask_workers or os.cpu_count() or 1
        runner = DaskTaskRunner(cluster_kwargs={
            "n_workers": n, "threads_per_worker": max(1, math.ceil(settings.workers / n)), "processes": True,
            # Loopback only, and a free port for the scheduler's HTTP endpoint (distributed's
            # default is 8787 on every interface; a second run on the machine would collide).
            "dashboard_address": "127.0.0.1:0", "host": "127.0.0.1"})
        where = f"a local Dask cluster of {n} worker processes"
    with runner:
        try:
            runner.client  # noqa: B018 - connects (or starts the local cluster) now, so a bad address fails here
        except (OSError, TimeoutError) as exc:
            raise DaskUnreachable(settings.dask_address or "a local cluster", str(exc)) from None

        def submit(task: Any, **parameters: Any) -> PrefectFuture:
            return runner.submit(task, parameters=parameters)

        yield TransferRunner(submit, None, remote=True, where=where)
