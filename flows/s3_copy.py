"""Flow: create a datastore version by copying an S3 prefix into the store.

scan (1 task: paginated listing, sorted with bounded memory, merged with the previous version)
→ copy batches (1 task per ~1,000 new objects or ~128 MB, in parallel) → commit (1 task).
Unchanged objects (same key, size and ETag) are reused, not copied again.
"""

from __future__ import annotations

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from datastore.creation.sources import s3 as s3_job
from datastore.model.kinds import Kind
from datastore_flows.common import monitored, reported, run_name, settings_for
from datastore_flows.pipeline import run_batched
from datastore_tasks.s3_copy import copy_s3, scan_s3


# Batches in flight are bounded by settings.workers in run_batched, read when the run starts.
@flow(name="datastore-create-s3-copy", flow_run_name=run_name, task_runner=ThreadPoolTaskRunner())
@reported
def create_from_s3(source: str, name: str | None = None, credentials: str | None = None,
                   store: str | None = None, if_changed: bool = False) -> dict:
    """Create the next version of a datastore by copying ``s3://bucket/prefix/``.

    Args:
        source: The S3 URL.
        name: Datastore name; derived from the last "directory" of the prefix when omitted.
        credentials: Name of a Prefect ``AwsCredentials`` block to read the source with; when
            omitted the default AWS chain is tried, then registered blocks.
        store: Store location; ``DATASTORE_STORE`` or the embedded default when omitted.
        if_changed: Commit only if the contents differ from the newest version (periodic runs).

    Returns:
        The committed version record (``status: "unchanged"`` when ``if_changed`` found no change).
    """
    settings = settings_for(store)
    with monitored(Kind.S3_COPY, source, name, settings) as mon:
        job = mon.started(s3_job.prepare(source, name, False, credentials, settings))
        return run_batched(mon, job, settings, scan=scan_s3, transfer=copy_s3, if_changed=if_changed,
                           phases=("listing", "copying"))
