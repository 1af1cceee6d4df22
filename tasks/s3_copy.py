"""Tasks of the S3-copy creation path."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from datastore.creation.pipeline import CreateJob
from datastore.creation.plan import PlanSummary, TransferGroup
from datastore.creation.sources import s3_copy
from datastore.model.progress import NO_PROGRESS, Reporter
from datastore.settings import Settings
from datastore_tasks.placement import check_visible
from datastore_tasks.retry import RETRIES, RETRY_DELAYS, transient_only


@task(name="scan-s3", cache_policy=NONE, retries=RETRIES, retry_delay_seconds=RETRY_DELAYS,
      retry_condition_fn=transient_only, task_run_name="scan")
def scan_s3(job: CreateJob, settings: Settings, progress: Reporter = NO_PROGRESS) -> PlanSummary:
    """List the prefix and store batch plans; returns their keys and the totals."""
    return s3_copy.scan(job, settings, progress)


@task(name="copy-s3", cache_policy=NONE, retries=RETRIES, retry_delay_seconds=RETRY_DELAYS,
      retry_condition_fn=transient_only, task_run_name="{group.label}")
def copy_s3(group: TransferGroup, job: CreateJob, settings: Settings,
                  progress: Reporter = NO_PROGRESS) -> list[tuple[str, int]]:
    """Copy the new objects of a group of batches; returns (batch manifest key, bytes written) of each.

    A retry redoes only the batches whose manifest is missing.
    """
    check_visible(job)
    return [s3_copy.transfer_batch(job, key, settings, progress) for key in group.plan_keys]
