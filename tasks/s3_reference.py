"""Task of the S3-reference (``--no-copy``) creation path."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from datastore.creation.pipeline import CreateJob
from datastore.creation.sources import s3_reference
from datastore.model.progress import NO_PROGRESS, Reporter
from datastore.settings import Settings
from datastore_tasks.retry import RETRIES, RETRY_DELAYS, transient_only


@task(name="pin-s3-prefix", cache_policy=NONE, retries=RETRIES, retry_delay_seconds=RETRY_DELAYS,
      retry_condition_fn=transient_only, task_run_name="pin objects")
def pin_s3_prefix(job: CreateJob, settings: Settings, progress: Reporter = NO_PROGRESS) -> list[str]:
    """List the prefix and store manifests pinning every object (no data copied)."""
    return s3_reference.pin(job, settings, progress)
