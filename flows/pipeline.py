"""What the creation flows share after ``prepare``: scan → transfer batches → commit.

:func:`run_batched` runs the tasks of one creation path under its monitor. The number of
transfer batches in flight is bounded here, by ``settings.workers`` read when the run starts
(not by the flow decorator's task runner, which is built when the flow module is imported: a
bad ``DATASTORE_*`` variable must fail the run with its message, not the import of the module).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prefect.futures import PrefectFuture, as_completed

from datastore.creation.pipeline import CreateJob
from datastore.creation.plan import PlanSummary, groups
from datastore.settings import Settings
from datastore_flows.common import Monitor
from datastore_tasks.commit import commit_version


def _bounded_map(transfer: Any, keys: Iterable[Any], limit: int, **kwargs: Any) -> list:
    """``transfer.submit(key, **kwargs)`` for each key, at most ``limit`` in flight; results in key order.

    Like ``Task.map``, every batch is submitted even after one fails (finished batches are what
    a re-run resumes from); the first failure, in key order, is raised once all have finished.
    """
    futures: list[PrefectFuture] = []
    running: set[PrefectFuture] = set()
    for key in keys:
        while len(running) >= limit:
            running.discard(next(as_completed(list(running))))
        future = transfer.submit(key, **kwargs)
        futures.append(future)
        running.add(future)
    return [f.result() for f in futures]


def run_batched(mon: Monitor, job: CreateJob, settings: Settings, *, scan: Callable[..., Any],
                transfer: Any | None = None, if_changed: bool = False,
                phases: tuple[str, ...] = ("scanning", "transferring"), **source_args: Any) -> dict:
    """Scan, transfer every batch (``settings.workers`` task runs at a time), commit; return the committed record.

    The batches are cut into at most ``settings.transfer_tasks`` task runs of consecutive batches
    (:func:`~datastore.creation.plan.groups`): a million files stay a readable graph.

    Args:
        mon: The flow's monitor (its progress is passed to every task).
        job: The prepared creation.
        settings: Settings of this run.
        scan: The task that lists the source. With ``transfer`` it returns the
            :class:`~datastore.creation.plan.PlanSummary` of the stored plans; without (a source
            with nothing to transfer, ``--no-copy``), the keys of the batch manifests it wrote.
        transfer: The task that transfers a group of batch plans: ``(group, job=, settings=,
            progress=)`` → [(batch manifest key, bytes uploaded)] in plan order.
        if_changed: Commit only when the manifest differs from the newest version's.
        phases: What the status shows during the scan and during the transfer.
        **source_args: Further arguments of both tasks (``root`` of an extracted archive).
    """
    mon.phase(phases[0])
    listed = scan(job, settings, progress=mon.progress, **source_args)
    if transfer is None:
        batch_keys, uploaded = list(listed), 0
    else:
        assert isinstance(listed, PlanSummary)
        mon.phase(phases[1])
        results = _bounded_map(transfer, groups(listed, settings.transfer_tasks), settings.workers, job=job,
                               settings=settings, progress=mon.progress, **source_args)
        done = [batch for group in results for batch in group]
        batch_keys, uploaded = [k for k, _ in done], sum(u for _, u in done)
    mon.phase("committing")
    return commit_version(job, batch_keys, uploaded, settings, if_changed)
