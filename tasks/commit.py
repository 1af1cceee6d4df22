"""The task that ends every creation path: commit the manifest and the next version number."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from datastore import creation
from datastore.creation import CreateJob
from datastore.settings import Settings
from datastore.store import open_store
from tasks.retry import RETRIES, RETRY_DELAYS, transient_only


@task(name="commit-version", cache_policy=NONE, retries=RETRIES, retry_delay_seconds=RETRY_DELAYS,
      retry_condition_fn=transient_only)
def commit_version(job: CreateJob, batch_keys: list[str], uploaded: int, settings: Settings) -> dict:
    """Write the manifest and make the version visible with one put-if-absent."""
    store = open_store(job.store, settings)
    record = creation.commit(store, job, batch_keys, uploaded, settings, flow_run.id)
    return record.to_json()
