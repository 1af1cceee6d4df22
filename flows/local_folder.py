"""Flow: create a datastore version from a local folder or file.

scan (1 task) → transfer batches (1 task per ~1,000 new files or ~128 MB, in parallel) →
commit (1 task). Everything before commit is invisible; a re-run resumes finished batches.
"""

from __future__ import annotations

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from datastore.creation.pipeline import prepare
from datastore.creation.sources.local import resolve_source
from datastore.model.kinds import Kind
from datastore_flows.common import monitored, reported, run_name, settings_for, worker_host
from datastore_flows.pipeline import run_batched
from datastore_tasks.local import scan_local, transfer_local


# Batches in flight are bounded by settings.workers in run_batched, read when the run starts.
@flow(name="datastore-create-local", flow_run_name=run_name, task_runner=ThreadPoolTaskRunner())
@reported
def create_from_local(source: str, name: str | None = None, store: str | None = None,
                      if_changed: bool = False) -> dict:
    """Create the next version of a datastore from a local folder or file.

    Args:
        source: Path of the folder or file (as seen by the machine running the flow).
        name: Datastore name; derived from the last path component when omitted.
        store: Store location; ``DATASTORE_STORE`` or the embedded default when omitted.
        if_changed: Commit only if the contents differ from the newest version (periodic runs).

    Returns:
        The committed version record (see DESIGN.md for the fields); ``status`` is
        ``"unchanged"`` (and the record the newest version's) when ``if_changed`` found no change.
    """
    settings = settings_for(store)
    with monitored(Kind.LOCAL, source, name, settings) as mon:
        root = resolve_source(source, worker=worker_host)
        job = mon.started(prepare(str(root), name, Kind.LOCAL, settings))
        return run_batched(mon, job, settings, scan=scan_local, transfer=transfer_local, if_changed=if_changed)
