"""Creations whose transfer task runs execute on Dask (``prefect-dask``), against a real cluster.

A ``distributed.LocalCluster`` of 2 worker processes (its own scheduler on loopback) and
SeaweedFS as the shared store: where the tasks ran is asked of the cluster (its task stream),
not of our logs; what was committed is compared with the same creation run on threads.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from datastore.creation.pipeline import CreateJob
from datastore.errors import DaskUnreachable, NotOnDaskWorker
from datastore.model.kinds import Kind
from datastore.reading.verify import verify
from datastore.store import open_store, versions
from datastore.testing.servers import S3Server, free_port
from datastore_flows import runners
from datastore_flows.local_folder import create_from_local
from datastore_flows.s3_copy import create_from_s3
from datastore_tasks.placement import check_visible
from tests.conftest import make_tree
from tests.flows.test_flow_local import task_runs_of
from tests.flows.test_flow_s3 import many, source_bucket

distributed = pytest.importorskip("distributed", reason="prefect-dask (a dependency) brings distributed")

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(seaweed: S3Server) -> Iterator[distributed.Client]:
    """2 worker processes, 2 threads each; they reach SeaweedFS with the same variables as this process."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0", env=seaweed.env()) as lc:
        # Not the default client: prefect-dask uses a process's default client over any address,
        # and the runs here must reach the cluster the way a deployment's run does, by address.
        with distributed.Client(lc, set_as_default=False) as client:
            yield client


def tree_of(n: int) -> dict[str, bytes]:
    return {f"part-{i % 3}/f{i:03d}.bin": hashlib.sha256(str(i).encode()).digest() * (1 + i % 40) for i in range(n)}


def ran_on(stream: list[dict], task: str) -> list[str]:
    """The worker (address) the cluster ran each task run of ``task`` on, one per task run.

    Keyed by the Dask key, so a task the scheduler recomputed after it replaced a worker (a worker
    that missed its heartbeats, e.g. on a stalled machine) counts once, at the worker that last ran it.
    """
    last: dict[str, str] = {}
    for t in stream:
        if distributed.utils.key_split(t["key"]) == task:
            last[t["key"]] = t["worker"]
    return list(last.values())


def test_a_local_folder_on_two_dask_workers_commits_what_threads_commit(
        cluster: distributed.Client, seaweed_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_tree(tmp_path / "src", tree_of(60))
    monkeypatch.setenv("DATASTORE_BATCH_FILES", "5")  # 12 batches, 12 transfer task runs
    on_threads = create_from_local(str(src), name="threads")

    monkeypatch.setenv("DATASTORE_DASK_ADDRESS", cluster.scheduler.address)
    with distributed.get_task_stream(cluster) as ts:
        state = create_from_local(str(src), name="spread", return_state=True)
    on_dask = state.result()

    assert on_dask["digest"] == on_threads["digest"]
    assert (on_dask["files"], on_dask["bytes"]) == (60, on_threads["bytes"])
    workers = ran_on(ts.data, "transfer_local")
    assert len(workers) == 12 and len(set(workers)) >= 2  # every group on the cluster, both workers used
    transfers = [t for t in task_runs_of(state.state_details.flow_run_id) if t.name.startswith("transfer ")]
    assert len(transfers) == 12 and all(t.state.is_completed() for t in transfers)  # Prefect task runs all the same
    store = open_store()
    assert verify(store, versions.read_record(store, "spread", 1)).ok


def test_an_s3_prefix_copied_on_dask_matches_threads(
        cluster: distributed.Client, seaweed: S3Server, seaweed_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = source_bucket(seaweed, many(300))
    monkeypatch.setenv("DATASTORE_BATCH_FILES", "50")
    on_threads = create_from_s3(f"s3://{bucket}/data/", name="threads")
    monkeypatch.setenv("DATASTORE_DASK_ADDRESS", cluster.scheduler.address)
    with distributed.get_task_stream(cluster) as ts:
        on_dask = create_from_s3(f"s3://{bucket}/data/", name="spread")
    assert on_dask["digest"] == on_threads["digest"] and on_dask["files"] == 300
    assert len(ran_on(ts.data, "copy_s3")) == 6


def test_a_dask_worker_that_cannot_see_a_local_path_says_which(cluster: distributed.Client, tmp_path: Path) -> None:
    gone = str(tmp_path / "only-on-the-flow-machine")
    store = tmp_path / "store"
    store.mkdir()
    job = CreateJob(name="x", kind=Kind.LOCAL, source=str(tmp_path), store=gone, staging="staging/x")
    with pytest.raises(NotOnDaskWorker) as info:
        cluster.submit(check_visible, job, pure=False).result()
    worker = info.value.worker
    assert worker.split(" on ")[0] in cluster.scheduler_info()["workers"]  # it ran on a worker, and names it
    assert str(info.value) == (f"the Dask worker {worker} cannot see the store {gone!r}: use an s3:// store "
                               "(DATASTORE_STORE) that every worker reaches, or unset DATASTORE_DASK_ADDRESS to "
                               "transfer in the flow's own process")
    job = CreateJob(name="x", kind=Kind.LOCAL, source=gone, store=str(store), staging="staging/x")
    with pytest.raises(NotOnDaskWorker, match="cannot see the source .*a shared filesystem"):
        cluster.submit(check_visible, job, gone, pure=False).result()
    check_visible(job, gone)  # in the flow's own process nothing is checked here (the scan already was)


def test_no_scheduler_at_the_address_fails_the_run_with_one_line(
        local_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_tree(tmp_path / "src", tree_of(3))
    address = f"tcp://127.0.0.1:{free_port()}"
    monkeypatch.setenv("DATASTORE_DASK_ADDRESS", address)
    monkeypatch.setattr(runners, "CONNECT_TIMEOUT", 2)
    with pytest.raises(DaskUnreachable) as info:
        create_from_local(str(src), name="nowhere")
    assert str(info.value).startswith(f"no Dask scheduler answers at {address} (")
    assert str(info.value).endswith(f": start one ('dask scheduler', then 'dask worker {address}') or unset "
                                    "DATASTORE_DASK_ADDRESS to transfer in the flow's own process; nothing was committed")
    assert versions.live_numbers(open_store(), "nowhere") == []


def test_task_runner_dask_starts_a_local_cluster_for_the_run(
        local_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_tree(tmp_path / "src", tree_of(20))
    monkeypatch.setenv("DATASTORE_BATCH_FILES", "5")
    on_threads = create_from_local(str(src), name="threads")
    monkeypatch.setenv("DATASTORE_TASK_RUNNER", "dask")
    monkeypatch.setenv("DATASTORE_DASK_WORKERS", "2")
    seen: list[str] = []
    real = runners.transfer_runner

    @contextlib.contextmanager
    def watched(settings, **kw):  # noqa: ANN001, ANN202 - records where the run said it transfers
        with real(settings, **kw) as runner:
            seen.append(runner.where)
            yield runner

    monkeypatch.setattr("datastore_flows.pipeline.transfer_runner", watched)
    on_dask = create_from_local(str(src), name="spread")
    assert on_dask["digest"] == on_threads["digest"]
    assert seen == ["a local Dask cluster of 2 worker processes"]

