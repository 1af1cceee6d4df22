"""Tasks of the HTTP-archive creation path (the transfer reuses ``tasks/local.py``)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from datastore.creation.pipeline import CreateJob
from datastore.creation.sources import http
from datastore.model.progress import NO_PROGRESS, Reporter
from datastore.settings import Settings
from datastore_tasks.retry import RETRIES, RETRY_DELAYS, transient_only


@task(name="download-archive", cache_policy=NONE, retries=RETRIES, retry_delay_seconds=RETRY_DELAYS,
      retry_condition_fn=transient_only, task_run_name="download archive")
def download_archive(job: CreateJob, settings: Settings, url: str | None = None,
                     progress: Reporter = NO_PROGRESS) -> http.Archive:
    """Download (resuming) and identify the archive; returns its local path, format, sha256 and validators."""
    return http.fetch(job, settings, url, progress)


@task(name="extract-archive", cache_policy=NONE, retries=RETRIES, retry_delay_seconds=RETRY_DELAYS,
      retry_condition_fn=transient_only, task_run_name="extract archive")
def extract_archive(job: CreateJob, info: http.Archive, settings: Settings) -> str:
    """Safely extract the archive; returns the extracted folder's path."""
    return http.extract(job, info, settings)
