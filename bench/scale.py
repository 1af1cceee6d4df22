"""Scaling out (issue 16): one creation over Dask, and many creations over many workers.

``dask-copy``: a ``--dask-files``-object S3 prefix (1 KiB objects, default 200,000) copied into a
fresh store by ``s5cmd cp`` (the reference, server-side copies), by ``datastore create`` with its
transfer tasks on the flow's threads, on a ``LocalCluster`` of 2 worker processes
(``DATASTORE_TASK_RUNNER=dask``), and on 2 separate ``dask worker`` processes of a ``dask
scheduler`` started here (``DATASTORE_DASK_ADDRESS``). Each row's check carries the Prefect task
runs of its flow run (counted by the server) and the peak RSS of each Dask worker process
(sampled here). The per-task cost that Dask adds is measured on its own: one flow run of
``NOOP_TASKS`` no-op Prefect tasks on threads, then on the same cluster.

``many-workers``: 8 concurrent ``datastore create --submit --wait`` (two names, four versions
each, ``--fleet-files`` files of 10 KiB per source) on a Prefect server with 2 process workers
(``--limit 4`` each), once on SQLite (the reference) and once on PostgreSQL (started here).
Checks: every creation succeeded with versions 1–4 per name; the failed API calls the clients
retried (their logs) and the errors in the server's log.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from bench.data import make_small_tree
from bench.harness import (
    BIN,
    Context,
    Measurement,
    Row,
    VerifyError,
    datastore_cmd,
    fresh_bucket,
    log,
    measured_row,
    s5cmd_binary,
    server_env,
    stop_helpers,
    tail,
)
from bench.verify import verify_record, verify_s3
from datastore.testing.postgres import postgres
from datastore.testing.prefect_server import POOL, PrefectServer, prefect_server
from datastore.testing.servers import free_port

DASK_SRC = ("bench-src-dask", "objects/")
DASK_SIZE = 1024  # bytes per object: the object count is what the scenario is about
NOOP_TASKS = 200
FLEET_RUNS = 8
FLEET_NAMES = ("fleeta", "fleetb")

# Lines of a Prefect client's log that mean an API call failed and was retried (or gave up).
CLIENT_FAILURES = re.compile(r"retryable|Encountered retryable|HTTPStatusError|ReadTimeout|ConnectError|"
                             r"database is locked", re.IGNORECASE)
# Lines of the server's log that mean it answered with an error.
SERVER_ERRORS = re.compile(r"\bERROR\b|Traceback|database is locked|\b50[0-9]\b Internal")

NOOP_FLOW = """\
import sys, time
from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner

@task
def noop(i):
    return i

def run(runner):
    @flow(task_runner=runner)
    def many():
        return sum(f.result() for f in [noop.submit(i) for i in range(int(sys.argv[1]))])
    start = time.perf_counter()
    assert many() == sum(range(int(sys.argv[1])))
    return time.perf_counter() - start

if len(sys.argv) > 2:
    from prefect_dask import DaskTaskRunner
    print(run(DaskTaskRunner(address=sys.argv[2])))
else:
    print(run(ThreadPoolTaskRunner(max_workers=4)))
"""


class WorkerRss(threading.Thread):
    """Peak RSS of every Dask worker process on the machine while a row runs (pid → bytes).

    Dask runs tasks in processes that its nannies spawn with ``multiprocessing``; those (not the
    nannies, not multiprocessing's resource tracker) are what a user sizes machines by.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peaks: dict[int, int] = {}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.25):
            for proc in psutil.process_iter(["cmdline", "memory_info"]):
                cmd = " ".join(proc.info["cmdline"] or [])
                if "multiprocessing" in cmd and "resource_tracker" not in cmd and proc.info["memory_info"]:
                    self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0), proc.info["memory_info"].rss)

    def stop(self) -> str:
        self._done.set()
        self.join()
        if not self.peaks:
            return "no Dask worker processes"
        mib = sorted(v / 2**20 for v in self.peaks.values())
        return f"{len(mib)} Dask worker processes, peak RSS " + " / ".join(f"{m:.0f}" for m in mib) + " MiB"


def _task_runs(ctx: Context, row: Row) -> str:
    from bench.scenarios import task_runs  # the server's count, shared with million-local

    runs = task_runs(ctx, (row.record or {}).get("flow_run_id"))
    return f"task runs {runs:,}" if runs is not None else "task runs not counted"


@contextlib.contextmanager
def dask_cluster(ctx: Context, workers: int = 2, threads: int = 4) -> Iterator[str]:
    """A ``dask scheduler`` and ``workers`` separate ``dask worker`` processes on loopback; yields the address.

    The workers get the S3 variables (they write the store themselves) and the Prefect server's
    (they report their task runs to it; without PREFECT_API_URL each worker process would start
    a temporary Prefect server of its own), as a worker machine is configured; stopped by pid.
    """
    assert ctx.s3 is not None
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**server_env(ctx, str(ctx.root / "stores" / "unused")), **ctx.s3.env()}
    logs = ctx.root / "dask"
    logs.mkdir(exist_ok=True)
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", "127.0.0.1:0", "--no-show"], env=env,
                              stdout=(logs / "scheduler.log").open("w"), stderr=subprocess.STDOUT,
                              start_new_session=True)]
    try:
        for i in range(workers):
            procs.append(subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", str(threads),
                                           "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0",
                                           "--name", f"bench-{i}"], env=env,
                                          stdout=(logs / f"worker-{i}.log").open("w"), stderr=subprocess.STDOUT,
                                          start_new_session=True))
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
        yield address
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()


def _noop_seconds(ctx: Context, address: str | None) -> float | None:
    script = ctx.root / "noop_flow.py"
    script.write_text(NOOP_FLOW)
    env = {**server_env(ctx, str(ctx.root / "stores" / "noop")), **(ctx.s3.env() if ctx.s3 else {})}
    done = subprocess.run([sys.executable, str(script), str(NOOP_TASKS), *([address] if address else [])], env=env,
                          capture_output=True, text=True, timeout=ctx.args.timeout, check=False, cwd=ctx.root)
    if done.returncode != 0:
        log(f"dask-copy: no-op flow failed: {tail(done.stderr)}")
        return None
    return float(done.stdout.strip().splitlines()[-1])


def dask_copy_rows(ctx: Context) -> list[Row]:
    """The S3 prefix → a fresh store: s5cmd, datastore on threads, on a LocalCluster, on 2 dask workers."""
    from bench.scenarios import upload_source

    files = ctx.args.dask_files
    nbytes = files * DASK_SIZE
    scenario = "dask-copy"
    tools = ("s5cmd", "datastore (threads)", "datastore (LocalCluster, 2 processes)", "datastore (2 dask workers)")
    if ctx.s3 is None:
        return [Row(scenario, tool, files, nbytes, error=f"FAILED: {ctx.s3_error}") for tool in tools]
    assert ctx.dask_dir is not None, "prepare() generates the objects"
    s3 = ctx.s3
    bucket, prefix = DASK_SRC
    upload_source(ctx, ctx.dask_dir, bucket, prefix, files, nbytes)
    source = f"s3://{bucket}/{prefix}"
    rows = []
    dst = fresh_bucket(s3, scenario, "s5cmd")
    cmd = [str(s5cmd_binary()), "--endpoint-url", s3.endpoint, "--log", "error", "cp", f"{source}*", f"s3://{dst}/"]
    rows.append(measured_row(ctx, scenario, "s5cmd", cmd, {**ctx.env, **s3.env()}, files, nbytes,
                             verify_s3(s3, dst, "", files, nbytes)))
    if ctx.api_url is None:
        return rows + [Row(scenario, tool, files, nbytes, error=f"FAILED: {ctx.api_error}") for tool in tools[1:]]

    def datastore(tool: str, extra: dict[str, str], note: str = "") -> Row:
        store = f"s3://{fresh_bucket(s3, scenario, tool.split('(')[1][:10])}/store"
        sampler = WorkerRss()
        sampler.start()
        row = measured_row(ctx, scenario, tool, datastore_cmd(source, "daskcopy"),
                           {**server_env(ctx, store), **s3.env(), **extra}, files, nbytes,
                           verify_record(files, nbytes))
        workers = sampler.stop()
        if row.error is None:
            row.check += f"; {_task_runs(ctx, row)}; {workers}{note}"
        return row

    rows.append(datastore(tools[1], {}))
    rows.append(datastore(tools[2], {"DATASTORE_TASK_RUNNER": "dask", "DATASTORE_DASK_WORKERS": "2"}))
    with dask_cluster(ctx) as address:
        threads, on_dask = _noop_seconds(ctx, None), _noop_seconds(ctx, address)
        note = ""
        if threads is not None and on_dask is not None:
            note = (f"; {NOOP_TASKS} no-op Prefect tasks: {on_dask / NOOP_TASKS * 1000:.1f} ms each on this cluster, "
                    f"{threads / NOOP_TASKS * 1000:.1f} ms on threads")
        rows.append(datastore(tools[3], {"DATASTORE_DASK_ADDRESS": address}, note))
    return rows


# --- many creations, many workers ----------------------------------------------------------------

FLEET_DRIVER = """\
import concurrent.futures, json, subprocess, sys
bin, sources, names = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
def one(i):
    done = subprocess.run([bin, "create", sources[i], "--name", names[i], "--submit", "--wait", "--json"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return {"exit": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
with concurrent.futures.ThreadPoolExecutor(len(sources)) as pool:
    print(json.dumps(list(pool.map(one, range(len(sources))))))
"""


def _verify_fleet(server: PrefectServer, files_each: int) -> Callable[[Measurement], str]:
    def verify(m: Measurement) -> str:
        results = json.loads(m.stdout)
        failed = [r for r in results if r["exit"] != 0]
        if failed:
            raise VerifyError(f"{len(failed)} of {len(results)} creations failed: {tail(failed[0]['stderr'])}")
        records = [json.loads(r["stdout"]) for r in results]
        for name in FLEET_NAMES:
            got = sorted(r["version"] for r in records if r["name"] == name)
            if got != list(range(1, FLEET_RUNS // len(FLEET_NAMES) + 1)):
                raise VerifyError(f"{name} got versions {got}")
        if any(r["files"] != files_each or r["status"] != "succeeded" for r in records):
            raise VerifyError("a record has the wrong file count or status")
        client = sum(len(CLIENT_FAILURES.findall(r["stderr"])) for r in results)
        client += sum(len(CLIENT_FAILURES.findall(p.read_text(errors="replace"))) for p in server.logs[1:])
        bad = [line for line in server.logs[0].read_text(errors="replace").splitlines() if SERVER_ERRORS.search(line)]
        first = next((line for line in bad if "Error" in line or "locked" in line), bad[0] if bad else "")
        return (f"{len(records)} creations, versions 1-{FLEET_RUNS // len(FLEET_NAMES)} of each name; "
                f"failed API calls (client/worker logs) {client}; server log error lines {len(bad)}"
                + (f" (e.g. {' '.join(first.split())[-160:]!r})" if bad else ""))

    return verify


def many_workers_rows(ctx: Context) -> list[Row]:
    """8 concurrent --submit creations over 2 workers: the Prefect server on SQLite, then on PostgreSQL."""
    scenario = "many-workers"
    files_each = ctx.args.fleet_files
    files, nbytes = files_each * FLEET_RUNS, files_each * FLEET_RUNS * 10 * 1024
    if ctx.s3 is None:
        return [Row(scenario, tool, files, nbytes, error=f"FAILED: {ctx.s3_error}") for tool in ("SQLite", "PostgreSQL")]
    assert ctx.fleet_dirs, "prepare() generates the sources"
    driver = ctx.root / "fleet_driver.py"
    driver.write_text(FLEET_DRIVER)
    rows = []
    for tool in ("SQLite", "PostgreSQL"):
        home = ctx.root / f"fleet-{tool.lower()}"
        store = f"s3://{fresh_bucket(ctx.s3, scenario, tool)}/store"
        base = {**ctx.env, **ctx.s3.env(), "DATASTORE_STORE": store, "DATASTORE_STATE_DIR": str(home / "state"),
                "DATASTORE_REPO_DIR": str(Path(__file__).resolve().parent.parent)}
        try:
            with contextlib.ExitStack() as stack:
                url = stack.enter_context(postgres()).url if tool == "PostgreSQL" else None
                log(f"{scenario}: starting a Prefect server on {tool} with 2 workers …")
                server = stack.enter_context(prefect_server(home, base, ui=False, database_url=url))
                server.run("work-pool", "create", POOL, "--type", "process")
                server.run("deploy", "--all", "--no-prompt")
                server.start_worker(limit=4)
                server.start_worker(limit=4)
                sources = ",".join(str(d) for d in ctx.fleet_dirs)
                names = ",".join(FLEET_NAMES[i % len(FLEET_NAMES)] for i in range(FLEET_RUNS))
                cmd = [sys.executable, str(driver), str(BIN / "datastore"), sources, names]
                rows.append(measured_row(ctx, scenario, tool, cmd, server.env, files, nbytes,
                                         _verify_fleet(server, files_each)))
                stop_helpers(home / "state")  # the warm runners the driver's commands started
        except Exception as exc:  # noqa: BLE001 - one backend failing must not hide the other
            rows.append(Row(scenario, tool, files, nbytes, error=f"FAILED: {type(exc).__name__}: {exc}"))
    return rows


def prepare_scale(ctx: Context, dask: bool, fleet: bool) -> None:
    """Generate the data of the two scenarios (untimed)."""
    if dask:
        log(f"generating {ctx.args.dask_files} files of {DASK_SIZE} bytes …")
        ctx.dask_dir = make_small_tree(ctx.root / "data" / "dask", ctx.args.dask_files, DASK_SIZE)
    if fleet:
        log(f"generating {FLEET_RUNS} sources of {ctx.args.fleet_files} files of 10 KiB …")
        ctx.fleet_dirs = [make_small_tree(ctx.root / "data" / f"fleet-{i}", ctx.args.fleet_files, 10 * 1024)
                          for i in range(FLEET_RUNS)]
