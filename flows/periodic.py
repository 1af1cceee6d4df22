"""Flow: periodic re-upload of a source (what ``datastore schedule`` deploys).

Each run hands the source to its creation flow (as a subflow, so the Prefect UI shows the usual
``create-<name>`` run under ``refresh-<name>``) with ``if_changed``: the new manifest is built
(unchanged files are reused, so an unchanged source transfers nothing) and committed only if
its digest differs from the newest version's. ``always`` forces a version every run. Runs of one
name never overlap: the deployment has a concurrency limit of 1 that cancels the newcomer.
"""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from datastore.model.kinds import check_options
from datastore_flows.common import display_name, reported


def _run_name() -> str:
    return f"refresh-{display_name(flow_run.parameters)}"


@flow(name="datastore-periodic", flow_run_name=_run_name)
@reported
def refresh_datastore(source: str, name: str, no_copy: bool = False, credentials: str | None = None,
                      always: bool = False, store: str | None = None, url_block: str | None = None) -> dict:
    """Create the next version of ``name`` from ``source`` if the source changed.

    Args:
        source: Local path (as the worker sees it), ``s3://bucket/prefix/`` or an archive URL.
        name: Datastore name.
        no_copy: Reference an S3 prefix in place instead of copying it.
        credentials: Prefect ``AwsCredentials`` block for an S3 source.
        always: Commit a version every run, even when nothing changed.
        store: Store location; ``DATASTORE_STORE`` (of the worker) or the default when omitted.
        url_block: The Prefect Secret block holding a signed archive URL (``source`` then shows
            it masked); see :mod:`datastore_deployments.secret_urls`.

    Returns:
        The committed version record, or the newest one with ``status: "unchanged"``.
    """
    kind = check_options(source, no_copy, credentials)
    if_changed = not always
    if kind == "s3":
        if no_copy:
            from datastore_flows.s3_reference import reference_s3

            record = reference_s3(source=source, name=name, credentials=credentials, store=store, if_changed=if_changed)
        else:
            from datastore_flows.s3_copy import create_from_s3

            record = create_from_s3(source=source, name=name, credentials=credentials, store=store, if_changed=if_changed)
    elif kind == "http":
        from datastore_flows.http_archive import create_from_http

        record = create_from_http(source=source, name=name, store=store, if_changed=if_changed, url_block=url_block)
    else:
        from datastore_flows.local_folder import create_from_local

        record = create_from_local(source=source, name=name, store=store, if_changed=if_changed)
    return record  # @reported logs the outcome and makes it the state message
