"""What a transfer task checks when it runs on a Dask worker, possibly on another machine.

On the flow's own threads every path the scan saw is there; a Dask worker elsewhere sees only
what it shares with the flow's machine. A local store or a local source it cannot see must fail
the task with one line naming the worker, not write a batch to the worker's own disk (which the
commit would then miss) or read as if the files had vanished.
"""

from __future__ import annotations

import os
import socket

from datastore.creation.pipeline import CreateJob
from datastore.errors import NotOnDaskWorker


def dask_worker() -> str | None:
    """``tcp://10.0.0.7:40213 on gpu-7`` when this task run executes on a Dask worker, else None."""
    try:
        from distributed import get_worker  # only installed with prefect-dask; only asked on a worker
        return f"{get_worker().address} on {socket.gethostname()}"
    except (ImportError, ValueError):  # ValueError: not inside a Dask worker
        return None


def check_visible(job: CreateJob, source_root: str | None = None) -> None:
    """On a Dask worker, make sure the job's local store and ``source_root`` (a local folder) exist here.

    Raises:
        NotOnDaskWorker: one of them is a local path this worker does not have.
    """
    worker = dask_worker()
    if worker is None:
        return
    if "://" not in job.store and not os.path.isdir(job.store):
        raise NotOnDaskWorker("store", job.store, worker)
    if source_root is not None and not os.path.exists(source_root):
        raise NotOnDaskWorker("source", source_root, worker)
