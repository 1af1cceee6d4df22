"""``datastore server start``: the local stack in one command, and the UI's Run button on the delete deployment."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import requests

from datastore.orchestration import local_stack
from datastore.settings import Settings
from tests.conftest import Cli, make_tree
from tests.deployments.test_deployments import wait_until

FAST_WORKER = {"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "2"}
TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def alive(pid: int) -> bool:
    """``pid`` runs (a zombie, ended but not yet reaped, does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # "pid (comm) STATE ...": comm may hold spaces


def test_server_start_brings_up_the_stack_and_the_run_button_deletes_one_version(
        tmp_path: Path, local_store: str, own_state: dict[str, str]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    cli = Cli(home)  # no server configured: the out-of-the-box user
    settings = Settings(state_dir=own_state["DATASTORE_STATE_DIR"])

    started = cli.run("server", "start", **own_state, **FAST_WORKER)
    assert started.returncode == 0, started.stderr
    # stdout is the one line to eval; everything else is for the reader, on stderr.
    (export,) = started.stdout.splitlines()
    match = re.fullmatch(r"export PREFECT_API_URL=(http://127\.0\.0\.1:\d+)/api", export)
    assert match, export
    ui = match.group(1)
    api = f"{ui}/api"
    notes = started.stderr.splitlines()
    assert notes[0] == (f"note: starting the local Prefect server at {ui} (first use; it keeps running, "
                        "'datastore server stop' ends it)")
    assert "note: created the work pool 'datastore-process'" in notes
    worker = local_stack.worker_running(settings)
    assert worker is not None
    assert f"Prefect UI:   {ui}" in notes and f"Prefect API:  {api}" in notes
    assert f"work pool:    datastore-process, worker pid {worker.pid} (started; log {worker.log})" in notes
    (deps,) = [line for line in notes if line.startswith("deployments:")]
    for name in ("datastore-create-local/local", "datastore-create-s3-copy/s3-copy", "datastore-delete/delete",
                 "datastore-verify/verify", "datastore-gc/gc"):
        assert name in deps, deps

    def call(method: str, path: str, body: dict | None = None) -> requests.Response:
        # The local server's SQLite database, on 2 cores shared with the other pytest worker,
        # sometimes answers 503 (its transaction rolled back: nothing was done); the UI's user
        # would press Run again, and so does the test.
        for attempt in range(4):
            r = requests.request(method, f"{api}{path}", json=body, timeout=60)
            if r.status_code != 503 or attempt == 3:
                return r
            time.sleep(2)
        return r

    # The worker polls the pool (the UI's work pool page shows it online).
    wait_until("the worker online", lambda: any(
        w["status"] == "ONLINE" for w in call("POST", "/work_pools/datastore-process/workers/filter", {}).json()))
    gc_dep = call("GET", "/deployments/name/datastore-gc/gc").json()
    assert [s["active"] for s in gc_dep["schedules"]] == [False]  # the scheduled gc is paused until turned on

    for n in (1, 2, 3):
        src = make_tree(tmp_path / f"src{n}", {f"f{i}.txt": b"v%d" % i for i in range(1, n + 1)})
        made = cli.run("create", str(src), "--name", "three", **own_state)
        assert made.returncode == 0, made.stderr

    dep = call("GET", "/deployments/name/datastore-delete/delete").json()

    def run_delete(params: dict) -> dict:
        """What the UI's Run button does: a flow run of the deployment, then the worker runs it."""
        created = call("POST", f"/deployments/{dep['id']}/create_flow_run", {"parameters": params})
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
        return wait_until("the delete run's end", lambda: (lambda r: r if r["state_type"] in TERMINAL else None)(
            call("GET", f"/flow_runs/{run_id}").json()), timeout=300)

    done = run_delete({"name": "three", "version": 2})
    assert done["state_type"] == "COMPLETED", done["state"]
    assert done["name"] == "delete-three-v2"
    assert re.fullmatch(r"deleted three version 2 \(reclaimed \d+ objects? only it used, .+\)", done["state"]["message"])
    listed = json.loads(cli.run("list", "three", "--json", **own_state).stdout)
    assert [r["version"] for r in listed] == [1, 3]

    # A refused delete is a failed run whose state message is the one-line reason.
    again = run_delete({"name": "three", "version": 2})
    assert again["state_type"] == "FAILED"
    assert re.fullmatch(r"datastore 'three' version 2 was already deleted \(at .+\): nothing to do; "
                        r"'datastore list' shows the live versions", again["state"]["message"]), again["state"]
    # A parameter of the wrong type never becomes a run: the Run form's validation.
    bad = call("POST", f"/deployments/{dep['id']}/create_flow_run", {"parameters": {"name": "three", "version": "two"}})
    assert bad.status_code == 409, bad.text  # Prefect checks parameters against the flow's schema
    assert "'two' is not of type 'integer'" in bad.text

    # A second start adopts what runs (the same worker), and status shows it.
    second = cli.run("server", "start", **own_state, **FAST_WORKER)
    assert second.returncode == 0 and second.stdout == started.stdout, second.stderr
    assert f"work pool:    datastore-process, worker pid {worker.pid} (already running; log {worker.log})" \
        in second.stderr.splitlines()
    assert "note: created the work pool" not in second.stderr
    status = json.loads(cli.run("server", "status", "--json", **own_state).stdout)
    assert status["worker"] == {"pid": worker.pid, "pool": "datastore-process", "log": worker.log}

    server_pid = status["local_server"]["pid"]
    stopped = cli.run("server", "stop", **own_state)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.splitlines()[:2] == [f"stopped the worker (pid {worker.pid})",
                                               f"stopped the local server (pid {server_pid})"]
    assert not alive(worker.pid) and not alive(server_pid)
    assert local_stack.worker_running(settings) is None
