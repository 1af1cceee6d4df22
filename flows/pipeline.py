"""What the creation flows share after ``prepare``: scan → transfer batches → commit.

:func:`run_batched` runs the tasks of one creation path under its monitor. Where the transfer
task runs execute (the flow's threads, or Dask) and how many are in flight are decided here, from
the settings read when the run starts (see :mod:`datastore_flows.runners`), not by the flow
decorator's task runner, which is built when the flow module is imported: a bad ``DATASTORE_*``
variable must fail the run with its message, not the import of the module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prefect.futures import PrefectFuture, as_completed

from datastore.creation.pipeline import CreateJob
from datastore.creation.plan import PlanSummary, TransferGroup, groups
from datastore.model.progress import NO_PROGRESS, Progress
from datastore.settings import Settings
from datastore_flows.common import Monitor
from datastore_flows.runners import TransferRunner, transfer_runner
from datastore_tasks.commit import commit_version


def _bounded_map(runner: TransferRunner, transfer: Any, todo: Iterable[TransferGroup], progress: Progress,
                 **kwargs: Any) -> list:
    """Submit ``transfer(group, **kwargs)`` for each group through ``runner``; results in group order.

    At most ``runner.limit`` are in flight (all at once on Dask, whose scheduler spreads them).
    Like ``Task.map``, every group is submitted even after one fails (finished batches are what
    a re-run resumes from); the first failure, in group order, is raised once all have finished.
    On a remote runner the flow's progress cannot be passed along: each group is counted here
    when it finishes.
    """
    futures: list[PrefectFuture] = []
    running: dict[PrefectFuture, TransferGroup] = {}

    def settle(done: PrefectFuture) -> None:
        group = running.pop(done)
        if runner.remote and done.state.is_completed():
            progress.advance(group.files, group.nbytes, sum(u for _, u in done.result()))

    for group in todo:
        while runner.limit is not None and len(running) >= runner.limit:
            settle(next(as_completed(list(running))))
        future = runner.submit(transfer, group=group, progress=NO_PROGRESS if runner.remote else progress, **kwargs)
        futures.append(future)
        running[future] = group
    for done in as_completed(list(running)):
        settle(done)
    return [f.result() for f in futures]


def run_batched(mon: Monitor, job: CreateJob, settings: Settings, *, scan: Callable[..., Any],
                transfer: Any | None = None, if_changed: bool = False,
                phases: tuple[str, ...] = ("scanning", "transferring"), spread: bool = True,
                **source_args: Any) -> dict:
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
        spread: Whether the transfers may run on Dask when the settings ask for it (False: the
            batches read files only this machine has).
        **source_args: Further arguments of both tasks (``root`` of an extracted archive).
    """
    mon.phase(phases[0])
    listed = scan(job, settings, progress=mon.progress, **source_args)
    if transfer is None:
        batch_keys, uploaded = list(listed), 0
    else:
        assert isinstance(listed, PlanSummary)
        mon.phase(phases[1])
        with transfer_runner(settings, spread=spread) as runner:
            results = _bounded_map(runner, transfer, groups(listed, settings.transfer_tasks), mon.progress, job=job,
                                   settings=settings, **source_args)
        done = [batch for group in results for batch in group]
        batch_keys, uploaded = [k for k, _ in done], sum(u for _, u in done)
    mon.phase("committing")
    return commit_version(job, batch_keys, uploaded, settings, if_changed)
