"""Tasks of the local-folder creation path."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from datastore.creation.pipeline import CreateJob
from datastore.creation.plan import PlanSummary
from datastore.creation.sources import local_transfer
from datastore.settings import Settings
from datastore_tasks.retry import RETRIES, RETRY_DELAYS, transient_only


@task(name="scan-local", cache_policy=NONE, retries=RETRIES, retry_delay_seconds=RETRY_DELAYS,
      retry_condition_fn=transient_only)
def scan_local(job: CreateJob, settings: Settings, root: str | None = None) -> PlanSummary:
    """Walk the folder (``root``, default the job's source) and store batch plans; returns their keys and totals."""
    return local_transfer.scan(job, settings, root)


@task(name="transfer-local-batch", cache_policy=NONE, retries=RETRIES, retry_delay_seconds=RETRY_DELAYS,
      retry_condition_fn=transient_only, task_run_name="transfer-{plan_key}")
def transfer_local_batch(plan_key: str, job: CreateJob, settings: Settings, root: str | None = None) -> tuple[str, int]:
    """Pack and store the new files of one batch; returns (batch manifest key, bytes uploaded)."""
    return local_transfer.transfer_batch(job, plan_key, settings, root)
