"""Flow: create a datastore version that references an S3 prefix in place (``--no-copy``).

pin (1 task: one paginated listing into manifests that pin each object by VersionId or ETag)
→ commit (1 task). No data is copied; reads fetch exactly the pinned objects.
"""

from __future__ import annotations

from prefect import flow

from datastore.creation.sources import s3 as s3_job
from datastore.model.kinds import Kind
from datastore_flows.common import monitored, reported, run_name, settings_for
from datastore_flows.pipeline import run_batched
from datastore_tasks.s3_reference import pin_s3_prefix


@flow(name="datastore-create-s3-reference", flow_run_name=run_name)
@reported
def reference_s3(source: str, name: str | None = None, credentials: str | None = None,
                 store: str | None = None, if_changed: bool = False) -> dict:
    """Create the next version of a datastore that references ``s3://bucket/prefix/`` in place.

    Args:
        source: The S3 URL.
        name: Datastore name; derived from the last "directory" of the prefix when omitted.
        credentials: Name of a Prefect ``AwsCredentials`` block (see :func:`flows.s3_copy.create_from_s3`).
        store: Store location; ``DATASTORE_STORE`` or the embedded default when omitted.
        if_changed: Commit only if some pinned object changed since the newest version.

    Returns:
        The committed version record (``bytes_uploaded`` is 0; ``status: "unchanged"`` when
        ``if_changed`` found no change).
    """
    settings = settings_for(store)
    with monitored(Kind.S3_REFERENCE, source, name, settings) as mon:
        job = mon.started(s3_job.prepare(source, name, True, credentials, settings))
        return run_batched(mon, job, settings, scan=pin_s3_prefix, if_changed=if_changed, phases=("pinning",))
