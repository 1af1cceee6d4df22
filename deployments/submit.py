"""``datastore create --submit``: run a creation as a flow run of its deployment, on a worker.

The calling process only creates the flow run and returns (or, with ``--wait``, follows it), so
an upload started from a laptop, a session or a cluster survives a closed terminal. The worker
writes to the store the caller uses (passed as the ``store`` parameter) and reports progress
through the store's status record, which ``--wait`` and ``datastore status`` read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from datastore.errors import CreationFailed, DeploymentMissing, OrchestrationError, WaitTimedOut
from datastore.model.kinds import mask_urls
from datastore.model.urls import recorded_url
from datastore.orchestration.runs import TERMINAL_STATES
from datastore.store import Store, inflight, versions
from datastore_deployments import secret_urls
from datastore_deployments.pools import ensure_work_pool
from datastore_deployments.names import full_name, server_api, work_pool


@dataclass(frozen=True)
class Submitted:
    """A creation handed to the work pool."""

    flow_run_id: str
    flow_run_name: str
    deployment: str
    ui_url: str


def ui_link(flow_run_id: str) -> str:
    """The flow run's page in the Prefect UI."""
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value() or server_api("--submit").removesuffix("/api")
    return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}"


def with_url_stashed(kind: str, parameters: dict, block: str | None = None) -> dict:
    """``parameters`` with a signed archive URL moved into a Secret block (see :mod:`.secret_urls`):
    ``source`` as records show it, ``url_block`` naming the block."""
    source = parameters.get("source")
    if kind != "http-archive" or not isinstance(source, str) or recorded_url(source) == source:
        return parameters
    return {**parameters, "source": recorded_url(source), "url_block": secret_urls.stash(source, block)}


def submit(kind: str, name: str, parameters: dict) -> Submitted:
    """Create a flow run of the creation deployment for ``kind`` and return at once.

    Args:
        kind: The record kind (``local``, ``s3-copy``, ``s3-reference``, ``http-archive``).
        name: The datastore name (for the run's tags).
        parameters: The flow's parameters (``source``, ``name``, ``store``, …).

    Raises:
        NoPrefectServer: no server configured.
        DeploymentMissing: the deployment is not on the server (``prefect deploy --all``).
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound as PrefectNotFound

    url = server_api("--submit")
    deployment = full_name(kind)
    parameters = with_url_stashed(kind, parameters)
    with get_client(sync_client=True) as client:
        try:
            dep = client.read_deployment_by_name(deployment)
        except PrefectNotFound:
            raise DeploymentMissing(f"deployment {deployment!r}", url,
                                    "deploy the project's deployments first: datastore server start (or "
                                    "DATASTORE_REPO_DIR=$PWD prefect deploy --all, and a worker: "
                                    f"prefect worker start --pool {work_pool()})") from None
        ensure_work_pool(client, dep.work_pool_name or work_pool())
        run = client.create_flow_run_from_deployment(
            dep.id, parameters=parameters, name=f"create-{name}", tags=["datastore", f"datastore:{name}", kind])
    return Submitted(str(run.id), run.name, deployment, ui_link(str(run.id)))


def wait(store: Store, sub: Submitted, name: str, on_progress: Callable[[inflight.RunRecord], None] | None = None,
         poll: float = 2.0, stale_after: float = 120, timeout: float | None = None,
         on_notice: Callable[[str], None] | None = None, queued_notice_after: float = 60) -> dict:
    """Follow a submitted run to its end; return the committed version record.

    Args:
        store: The store the run writes to (its status record and, finally, the version).
        sub: What :func:`submit` returned.
        name: The datastore name.
        on_progress: Called with the run's status record whenever it is read.
        poll: Seconds between polls.
        stale_after: Heartbeat age after which a status record counts as dead.
        timeout: Stop waiting after this many seconds (the run goes on); None waits for the end.
        on_notice: Called once with a hint when the run is still queued after
            ``queued_notice_after`` seconds (no worker on the pool, or all busy).
        queued_notice_after: See ``on_notice``.

    Raises:
        CreationFailed: the run failed, crashed or was cancelled (the reason from the status
            record when the creation got that far, else from Prefect's state message), or its
            status record stopped beating (the worker died) while Prefect still says RUNNING.
        WaitTimedOut: ``timeout`` passed.
        OrchestrationError: the Prefect API kept failing for about a minute.
    """
    from prefect.client.orchestration import get_client

    started = time.monotonic()
    errors = 0
    noticed = False
    rec = None
    with get_client(sync_client=True) as client:
        while True:
            try:
                run = client.read_flow_run(sub.flow_run_id)
                errors = 0
            except Exception as exc:  # noqa: BLE001 - a server restart or a blip must not end the wait
                errors += 1
                if errors * poll > 60:
                    raise OrchestrationError(f"lost the Prefect API while waiting for {sub.flow_run_name!r}: "
                                             f"{type(exc).__name__}") from None
                time.sleep(poll)
                continue
            state = run.state.type.value if run.state else "PENDING"
            rec = inflight.read(store, sub.flow_run_id, stale_after)
            if rec is not None and on_progress is not None:
                on_progress(rec)
            if state in TERMINAL_STATES:
                break
            if rec is not None and rec.silent and state == "RUNNING":
                raise CreationFailed(sub.flow_run_name, "without a heartbeat", rec.reason or "the worker stopped")
            waited = time.monotonic() - started
            if not noticed and state in ("SCHEDULED", "PENDING") and waited > queued_notice_after and on_notice:
                on_notice(f"still queued after {waited:.0f} s: is a worker running on pool {work_pool()!r}? "
                          f"(prefect worker start --pool {work_pool()})")
                noticed = True
            if timeout is not None and waited > timeout:
                raise WaitTimedOut(sub.flow_run_name, timeout, sub.ui_url)
            time.sleep(poll)
    if state == "COMPLETED":
        # Newest first: the run's version is almost always the newest (one GET, not one per version).
        for v in reversed(versions.live_numbers(store, name)):
            r = versions.read_record(store, name, v)
            if r.flow_run_id == sub.flow_run_id:
                return r.to_json()
        raise CreationFailed(sub.flow_run_name, "completed", f"no version of {name!r} records this run in {store.url}; "
                                                             "does the worker use another store?")
    reason = (rec.reason if rec is not None and rec.reason else None) or (run.state.message if run.state else "") or state
    raise CreationFailed(sub.flow_run_name, state.lower(), mask_urls(reason))
