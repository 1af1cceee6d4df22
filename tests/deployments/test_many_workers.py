"""Many creations on many Prefect workers, one S3 store, the Prefect server on PostgreSQL.

A real PostgreSQL (started here on a free loopback port, data in a temporary folder) backs a
real ``prefect server``; two process workers poll the project's pool; SeaweedFS is the store.
The resume path uses the automations users install (``deployments/automations.yaml``, only its
wait shortened): a SIGKILLed worker's run loses its heartbeats, is marked Crashed, put back on
the pool, and taken up by the other worker. Everything is asserted through the server's API and
the store, not through this process's Prefect settings.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from datastore.reading.verify import verify
from datastore.store import open_store, versions
from datastore.testing.cli import run_cli
from datastore.testing.postgres import Postgres, bin_dir, postgres
from datastore.testing.prefect_server import POOL, REPO, PrefectServer, prefect_server
from datastore.testing.servers import S3Server
from tests.conftest import make_tree, stop_helpers, use_s3_env
from tests.deployments.test_deployments import wait_until

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bin_dir() is None, reason="PostgreSQL (apt-get install postgresql) is not installed")]

HEARTBEAT = 30  # Prefect's minimum flow-run heartbeat interval
LOST_AFTER = 70  # the automation's wait for a heartbeat (the shipped file waits 600 s)


@dataclass
class Fleet:
    server: PrefectServer
    db: Postgres
    store: str
    env: dict[str, str]

    def api(self, method: str, path: str, body: dict | None = None):  # noqa: ANN201
        r = requests.request(method, f"{self.server.api_url}{path}", json=body, timeout=60)
        r.raise_for_status()
        return r.json() if r.content else None

    def flow_run(self, run_id: str) -> dict:
        return self.api("GET", f"/flow_runs/{run_id}")

    def workers_that_ran(self, run_ids: set[str]) -> dict[str, set[str]]:
        """Flow run id → the workers (resource ids) that Prefect's events say submitted it."""
        out: dict[str, set[str]] = {}
        for run in run_ids:
            body = {"filter": {"event": {"name": ["prefect.worker.submitted-flow-run"]},
                               "related": {"id": [f"prefect.flow-run.{run}"]}}, "limit": 50}
            for event in self.api("POST", "/events/filter", body)["events"]:
                out.setdefault(run, set()).add(event["resource"]["prefect.resource.id"])
        return out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, seaweed: S3Server) -> Iterator[Fleet]:
    home = tmp_path_factory.mktemp("fleet")
    bucket = f"fleet-{uuid.uuid4().hex[:10]}"
    seaweed.client().create_bucket(Bucket=bucket)
    store = f"s3://{bucket}/store"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATASTORE_", "AWS_"))}
    base |= seaweed.env() | {"DATASTORE_STORE": store, "DATASTORE_STATUS_INTERVAL": "1",
                             "DATASTORE_REPO_DIR": str(REPO), "DATASTORE_STATE_DIR": str(home / "state"),
                             "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT)}
    automations = yaml.safe_load((REPO / "deployments" / "automations.yaml").read_text())
    for automation in automations["automations"]:
        if automation["trigger"]["posture"] == "Proactive":
            automation["trigger"]["within"] = LOST_AFTER
    (home / "automations.yaml").write_text(yaml.safe_dump(automations))
    try:
        with postgres() as db, prefect_server(home, base, database_url=db.url, ui=False) as server:
            server.run("work-pool", "create", POOL, "--type", "process")
            server.run("deploy", "--all", "--no-prompt")
            server.run("automation", "create", "--from-file", str(home / "automations.yaml"))
            # Three runs at a time each (a machine's share): six concurrent creations need both.
            server.start_worker(limit=3)
            server.start_worker(limit=3)
            yield Fleet(server, db, store, server.env)
    finally:
        stop_helpers(home / "state")


def test_the_server_runs_on_postgresql(fleet: Fleet) -> None:
    assert fleet.server.env["PREFECT_API_DATABASE_CONNECTION_URL"] == fleet.db.url
    log = fleet.db.log.read_text(errors="replace")
    assert "database system is ready to accept connections" in log
    # Prefect's tables are in that database (its migrations ran there, not in a SQLite file).
    assert not list((fleet.server.home / "prefect").glob("*.db"))


def test_six_concurrent_creations_of_two_names_on_two_workers(
        fleet: Fleet, seaweed: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = [make_tree(tmp_path / f"src{i}", {f"d/f{j}.bin": os.urandom(2000 + i) for j in range(30)} |
                         {"which.txt": str(i).encode()}) for i in range(6)]
    names = ["alpha", "beta"] * 3

    def create(i: int) -> dict:
        r = run_cli("create", str(sources[i]), "--name", names[i], "--submit", "--wait", "--json", env=fleet.env,
                    timeout=600)
        assert r.returncode == 0, r.stderr + fleet.server.log_tail()
        return json.loads(r.stdout)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        records = list(pool.map(create, range(6)))

    for name in ("alpha", "beta"):
        assert sorted(r["version"] for r in records if r["name"] == name) == [1, 2, 3]
    use_s3_env(seaweed, monkeypatch, DATASTORE_STORE=fleet.store)
    store = open_store(fleet.store)
    for r in records:
        assert versions.live_numbers(store, r["name"]) == [1, 2, 3]
        record = versions.read_record(store, r["name"], r["version"])
        assert record.digest == r["digest"] and record.flow_run_id == r["flow_run_id"]
        assert verify(store, record).ok
    runs = {r["flow_run_id"] for r in records}
    assert all(fleet.flow_run(run)["state_type"] == "COMPLETED" for run in runs)
    ran = fleet.workers_that_ran(runs)
    assert set(ran) == runs and len(set().union(*ran.values())) == 2  # every run on a worker, both workers used
    # The server stayed healthy under the load: no database lock errors (SQLite's failure mode).
    assert "database is locked" not in fleet.server.log_tail(lines=100_000)


def _worker_of(fleet: Fleet, pid: int) -> int:
    """The worker (one of ours) whose descendant process ``pid`` is."""
    ours = {p.pid for p in fleet.server.procs}
    while pid > 1:
        if pid in ours:
            return pid
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    raise AssertionError("the flow run process is not a descendant of a worker")


def test_a_run_whose_worker_is_killed_is_resumed_by_the_other_worker_and_commits_once(
        fleet: Fleet, seaweed: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_tree(tmp_path / "src", {f"p{i % 4}/f{i:03d}.bin": os.urandom(3000 + i) for i in range(60)})
    marker = tmp_path / "frozen"
    # Only this flow run freezes (its job variables), once: after its 3rd finished batch, in one
    # transfer thread, so 3 of 12 batches are durable when the worker dies.
    env = {"DATASTORE_BATCH_FILES": "5", "DATASTORE_WORKERS": "1", "DATASTORE_FAILPOINT": "after-batch#3",
           "DATASTORE_FAILPOINT_ONCE": "1", "DATASTORE_FAILPOINT_FILE": str(marker)}
    dep = fleet.api("GET", "/deployments/name/datastore-create-local/local")
    run = fleet.api("POST", f"/deployments/{dep['id']}/create_flow_run",
                    {"parameters": {"source": str(src), "name": "resumed"}, "job_variables": {"env": env}})
    wait_until("the run to freeze after its 3rd batch", marker.exists, timeout=180, why=fleet.server.log_tail)
    flow_pid = int(marker.read_text())
    worker = _worker_of(fleet, flow_pid)
    os.killpg(os.getpgid(flow_pid), signal.SIGKILL)  # the machine is gone: worker and flow run process
    os.killpg(worker, signal.SIGKILL)
    killed_at = time.monotonic()

    final = wait_until("the run to be resumed and completed", lambda: (
        r if (r := fleet.flow_run(run["id"]))["state_type"] in ("COMPLETED", "FAILED", "CANCELLED") else None),
        timeout=LOST_AFTER + 240, every=2, why=fleet.server.log_tail)
    assert final["state_type"] == "COMPLETED", final["state"]
    assert final["run_count"] == 2
    states = [s["name"] for s in fleet.api("GET", f"/flow_run_states/?flow_run_id={run['id']}")]
    assert "Crashed" in states and "AwaitingRetry" in states  # lost, then put back on the pool
    ran = fleet.workers_that_ran({run["id"]})[run["id"]]
    assert len(ran) == 2  # submitted by the killed worker, then by the other one
    assert time.monotonic() - killed_at >= LOST_AFTER - HEARTBEAT  # not before the heartbeats were missed

    use_s3_env(seaweed, monkeypatch, DATASTORE_STORE=fleet.store)
    store = open_store(fleet.store)
    assert versions.live_numbers(store, "resumed") == [1]  # exactly one version
    record = versions.read_record(store, "resumed", 1)
    assert record.flow_run_id == run["id"] and record.files == 60
    assert 0 < record.bytes_uploaded < record.bytes  # the 3 finished batches were reused, not sent again
    assert verify(store, record).ok
