"""Tasks of the local-folder creation path (the HTTP path runs them on the extracted archive)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from datastore.creation.pipeline import CreateJob
from datastore.creation.plan import PlanSummary, TransferGroup
from datastore.creation.sources import local
from datastore.model.progress import NO_PROGRESS, Reporter
from datastore.settings import Settings
from datastore_tasks.placement import check_visible
from datastore_tasks.retry import RETRIES, RETRY_DELAYS, transient_only


@task(name="scan-local", cache_policy=NONE, retries=RETRIES, retry_delay_seconds=RETRY_DELAYS,
      retry_condition_fn=transient_only, task_run_name="scan")
def scan_local(job: CreateJob, settings: Settings, root: str | None = None,
               progress: Reporter = NO_PROGRESS) -> PlanSummary:
    """Walk the folder (``root``, default the job's source) and store batch plans; returns their keys and totals."""
    return local.scan(job, settings, root, progress)


@task(name="transfer-local", cache_policy=NONE, retries=RETRIES, retry_delay_seconds=RETRY_DELAYS,
      retry_condition_fn=transient_only, task_run_name="{group.label}")
def transfer_local(group: TransferGroup, job: CreateJob, settings: Settings, root: str | None = None,
                         progress: Reporter = NO_PROGRESS) -> list[tuple[str, int]]:
    """Pack and store the new files of a group of batches; returns (batch manifest key, bytes uploaded) of each.

    A retry redoes only the batches whose manifest is missing.
    """
    check_visible(job, root or job.source)
    return [local.transfer_batch(job, key, settings, root, progress) for key in group.plan_keys]
