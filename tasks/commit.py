"""The task that ends every creation path: commit the manifest and the next version number."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from datastore.creation import pipeline as creation
from datastore.creation.pipeline import CreateJob
from datastore.orchestration import artifacts
from datastore.orchestration import events as notify
from datastore.settings import Settings
from datastore.store import open_store
from datastore.store.versions import VersionRecord
from datastore_tasks.retry import RETRIES, RETRY_DELAYS, transient_only


@task(name="commit-version", cache_policy=NONE, retries=RETRIES, retry_delay_seconds=RETRY_DELAYS,
      retry_condition_fn=transient_only, task_run_name="commit")
def commit_version(job: CreateJob, batch_keys: list[str], uploaded: int, settings: Settings,
                   if_changed: bool = False) -> dict:
    """Write the manifest and make the version visible with one put-if-absent.

    With ``if_changed`` and a manifest equal to the newest version's, nothing is committed and
    the newest record is returned with ``status: "unchanged"``. A committed version gets its
    details artifact and a ``datastore.version.committed`` event.
    """
    store = open_store(job.store, settings)
    # run_count > 1: this flow run was Running before (rescheduled after its worker was lost).
    record = creation.commit(store, job, batch_keys, uploaded, settings, flow_run.id, if_changed,
                             resumed=(flow_run.run_count or 1) > 1)
    logger = get_run_logger()
    if isinstance(record, creation.Unchanged):
        newest = record.newest
        logger.info("%s unchanged since version %d (digest %s): no new version", job.name, newest.version, newest.digest)
        return newest.to_json() | {"status": "unchanged"}
    try:
        artifacts.committed(record)
    except Exception as exc:  # noqa: BLE001 - the version is committed; a retry would commit it twice
        logger.warning("could not create the details artifact: %s", type(exc).__name__)
    notify.emit(notify.COMMITTED, record.name, _event_payload(record, store.url))
    return record.to_json()


def _event_payload(r: VersionRecord, store_url: str) -> dict:
    """What automations get with ``datastore.version.committed`` (enough to mount the version)."""
    return {"name": r.name, "version": r.version, "kind": r.kind, "source": r.source, "files": r.files,
            "bytes": r.bytes, "bytes_uploaded": r.bytes_uploaded, "digest": r.digest, "store": store_url,
            "flow_run_id": r.flow_run_id, "created_at": r.created_at}
