"""``datastore server start``: the whole local Prefect stack in one command.

Running the deployments by hand takes five steps in the right order (server, ``export
PREFECT_API_URL``, work pool, worker, ``prefect deploy --all``). :func:`start` does them, each only
if it is not done yet: the local server (:mod:`datastore.orchestration.local_server`), the
``datastore-process`` work pool, the deployments of ``prefect.yaml`` (always re-applied: the file
may have changed), and one process worker in the background, its pid and log next to the
server's. :func:`stop_worker` ends the worker; ``datastore server stop`` calls it before it stops
the server. Only the ``prefect`` CLI and the server's REST API are used, so no Prefect import
is paid here.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from datastore.errors import LocalStackFailed
from datastore.orchestration import local_server
from datastore.orchestration.local_server import BIN, LocalServer
from datastore.settings import Settings

DEPLOY_TIMEOUT = 300  # `prefect deploy --all` of prefect.yaml's deployments: ~10 s here, far more on a loaded machine


@dataclass(frozen=True)
class Worker:
    """The background process worker ``server start`` started."""

    pid: int  #: leader of its process group (its flow runs are children)
    pool: str
    log: str


@dataclass(frozen=True)
class Stack:
    """What runs after :func:`start`."""

    server: LocalServer
    pool: str
    deployments: tuple[str, ...]  #: ``flow/deployment`` names on the server
    worker: Worker
    started_worker: bool  #: False: a worker from an earlier ``start`` was still running


def _state(settings: Settings) -> Path:
    return local_server.folder(settings) / "worker.json"


def _is_worker(pid: int) -> bool:
    """``pid`` is alive and still a ``prefect worker`` (not a recycled pid)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"worker" in args and b"start" in args


def worker_running(settings: Settings) -> Worker | None:
    """The worker an earlier ``server start`` left running, if it still runs."""
    try:
        worker = Worker(**json.loads(_state(settings).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return worker if _is_worker(worker.pid) else None


def client_env(settings: Settings, server: LocalServer) -> dict[str, str]:
    """The environment of the ``prefect`` commands and the worker: the user's, pointed at ``server``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_PROFILE",)}
    env.update(PREFECT_API_URL=server.api_url, PREFECT_UI_URL=server.url, DATASTORE_REPO_DIR=settings.repo_dir)
    return env


def _api(server: LocalServer, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{server.api_url}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - our own loopback server
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def _prefect(step: str, args: list[str], env: dict[str, str], cwd: str, log: Path, timeout: float) -> None:
    """Run ``prefect ARGS``, its output appended to ``log``; a failure is one line naming ``step``."""
    with open(log, "ab") as out:
        out.write(f"\n$ prefect {' '.join(args)}\n".encode())
        out.flush()
        try:
            proc = subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LocalStackFailed(step, f"no result in {timeout:.0f} s", str(log)) from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        raise LocalStackFailed(step, lines[-1] if lines else f"exit {proc.returncode}", str(log))


def ensure_pool(server: LocalServer, pool: str, env: dict[str, str], log: Path) -> bool:
    """Create the process work pool unless it exists; True when it was created."""
    status, _ = _api(server, "GET", f"/work_pools/{pool}")
    if status == 200:
        return False
    # The CLI, not a bare POST: it fills in the process worker's default job template.
    _prefect(f"create the work pool {pool!r}", ["work-pool", "create", pool, "--type", "process"], env,
             str(log.parent), log, 120)
    return True


def deployment_names(server: LocalServer) -> tuple[str, ...]:
    """``flow/deployment`` of every deployment on ``server``."""
    status, deps = _api(server, "POST", "/deployments/filter", {"limit": 200})
    status_f, flows = _api(server, "POST", "/flows/filter", {"limit": 200})
    if status != 200 or status_f != 200 or not isinstance(deps, list) or not isinstance(flows, list):
        return ()
    flow_names = {f["id"]: f["name"] for f in flows}
    return tuple(sorted(f"{flow_names.get(d['flow_id'], '?')}/{d['name']}" for d in deps))


def start(settings: Settings, on_step: Callable[[str], None] = lambda _: None) -> Stack:
    """Bring up the local server, the work pool, the deployments and a worker (each if missing).

    Args:
        settings: Where the state lives (``state_dir``) and which checkout to deploy (``repo_dir``).
        on_step: Called with a short line before each slow step.

    Raises:
        LocalServerFailed: the server did not start.
        LocalStackFailed: the pool, the deployments or the worker did not come up (names the log).
        ConfigError: ``repo_dir`` has no ``prefect.yaml``.
    """
    from datastore.errors import ConfigError
    from datastore_deployments.names import work_pool

    pool = work_pool()
    repo = Path(settings.repo_dir)
    if not (repo / "prefect.yaml").is_file():
        raise ConfigError(f"no prefect.yaml in {repo} (DATASTORE_REPO_DIR)",
                          "set DATASTORE_REPO_DIR to the datastore checkout whose deployments to run")
    server = local_server.ensure(settings, on_start=on_step)
    base = local_server.folder(settings)
    log = base / "stack.log"
    env = client_env(settings, server)
    if ensure_pool(server, pool, env, log):
        on_step(f"created the work pool {pool!r}")
    on_step(f"deploying {repo / 'prefect.yaml'}")
    _prefect("deploy prefect.yaml", ["deploy", "--all", "--no-prompt"], env, str(repo), log, DEPLOY_TIMEOUT)
    worker, started = worker_running(settings), False
    if worker is None or worker.pool != pool:
        if worker is not None:
            local_server.stop_group(worker.pid)
        worker_log = base / "worker.log"
        with open(worker_log, "ab") as out:
            proc = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process"],
                                    env=env, cwd=str(repo), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        worker, started = Worker(pid=proc.pid, pool=pool, log=str(worker_log)), True
        tmp = _state(settings).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(worker)))
        tmp.replace(_state(settings))
    return Stack(server, pool, deployment_names(server), worker, started)


def stop_worker(settings: Settings) -> Worker | None:
    """Stop the worker ``start`` started (and the flow runs it runs); None if none ran."""
    worker = worker_running(settings)
    if worker is not None:
        local_server.stop_group(worker.pid)
    with contextlib.suppress(OSError):
        _state(settings).unlink()
    return worker
