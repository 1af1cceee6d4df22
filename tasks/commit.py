"""The task that ends every creation path: commit the manifest and the next version number."""

from __future__ import annotations

import re

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from datastore.creation import pipeline as creation
from datastore.creation.pipeline import CreateJob
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
        _details_artifact(record)
    except Exception as exc:  # noqa: BLE001 - the version is committed; a retry would commit it twice
        logger.warning("could not create the details artifact: %s", type(exc).__name__)
    notify.emit(notify.COMMITTED, record.name, _event_payload(record, store.url))
    return record.to_json()


def _event_payload(r: VersionRecord, store_url: str) -> dict:
    """What automations get with ``datastore.version.committed`` (enough to mount the version)."""
    return {"name": r.name, "version": r.version, "kind": r.kind, "source": r.source, "files": r.files,
            "bytes": r.bytes, "bytes_uploaded": r.bytes_uploaded, "digest": r.digest, "store": store_url,
            "flow_run_id": r.flow_run_id, "created_at": r.created_at}


def artifact_key(name: str) -> str:
    """``datastore-<name>``, in the alphabet Prefect allows for artifact keys (a-z, 0-9, '-')."""
    return "datastore-" + re.sub(r"[^a-z0-9-]", "-", name)


def _details_artifact(r: VersionRecord) -> None:
    """The version's details in the Prefect UI, keyed per datastore name (its history lists the versions)."""
    d = r.source_detail or {}
    rows = [("name", r.name), ("version", r.version), ("source", r.source), ("kind", r.kind),
            ("files", f"{r.files:,}"), ("bytes", f"{r.bytes:,}"), ("uploaded bytes", f"{r.bytes_uploaded:,}"),
            ("digest", f"`{r.digest}`"), ("skipped items", r.skipped), ("duration", f"{r.duration_s} s"),
            ("throughput", f"{r.bytes / max(r.duration_s or 0, 1e-3) / 2**20:.1f} MiB/s")]
    rows += [(k.replace("_", " "), v) for k, v in d.items() if v not in (None, "") and k not in ("url",)]
    table = "\n".join(f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows)
    create_markdown_artifact(key=artifact_key(r.name), markdown=f"### {r.name} version {r.version}\n\n| | |\n|---|---|\n{table}\n",
                             description=f"datastore {r.name} version {r.version}")
