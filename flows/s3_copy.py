"""Flow: create a datastore version by copying an S3 prefix into the store.

scan (1 task: paginated listing, sorted with bounded memory, merged with the previous version)
→ copy batches (1 task per ~1,000 new objects or ~128 MB, in parallel) → commit (1 task).
Unchanged objects (same key, size and ETag) are reused, not copied again.
"""

from __future__ import annotations

from datastore.orchestration import runtime

runtime.configure()

from prefect import flow, unmapped  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from datastore.creation.sources import s3_prepare as s3_job  # noqa: E402
from datastore.settings import Settings  # noqa: E402
from datastore_flows.common import monitored, run_name, settings_for  # noqa: E402
from datastore_tasks.commit import commit_version  # noqa: E402
from datastore_tasks.s3_copy import copy_s3_batch, scan_s3  # noqa: E402


@flow(name="datastore-create-s3-copy", flow_run_name=run_name,
      task_runner=ThreadPoolTaskRunner(max_workers=Settings.from_env().workers))
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
    with monitored("s3-copy", source, name, settings) as mon:
        job = mon.started(s3_job.prepare(source, name, False, credentials, settings))
        mon.phase("listing")
        plan = scan_s3(job, settings)
        mon.phase("copying")
        results = copy_s3_batch.map(plan.plan_keys, job=unmapped(job), settings=unmapped(settings)).result()
        mon.phase("committing")
        return commit_version(job, [k for k, _ in results], sum(u for _, u in results), settings, if_changed)
