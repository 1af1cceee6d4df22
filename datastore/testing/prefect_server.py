"""A real ``prefect server`` and a real process worker on loopback, for deployment and UI tests and the benchmark."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from datastore.testing.servers import free_port

BIN = Path(sys.executable).parent
# The checkout (datastore/testing/ → repository root): `prefect deploy` reads its prefect.yaml.
REPO = Path(__file__).resolve().parent.parent.parent
POOL = "datastore-process"


@dataclass
class PrefectServer:
    """A running server; ``env`` is what a client (CLI, worker, ``prefect deploy``) needs."""

    url: str  # http://127.0.0.1:PORT
    home: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        """The API base (``…/api``)."""
        return f"{self.url}/api"

    def run(self, *args: str, check: bool = True, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
        """Run a ``prefect`` CLI command against this server from the repository root."""
        proc = subprocess.run([str(BIN / "prefect"), *args], env=self.env | extra, cwd=REPO, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"prefect {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def start_worker(self, limit: int | None = None, **extra: str) -> subprocess.Popen:
        """Start a process worker on the project's pool (the pool is created if missing).

        Args:
            limit: Flow runs it runs at a time (``--limit``); None: as many as are scheduled.
            **extra: Environment variables of the worker (and its flow runs).
        """
        log = self.home / f"worker-{len(self.procs)}.log"
        self.logs.append(log)
        args = ["--limit", str(limit)] if limit else []
        proc = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process", *args],
                                env=self.env | extra, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        return proc

    def log_tail(self, lines: int = 60) -> str:
        """The end of every log (server, workers), for assertion messages."""
        return "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
                         for p in self.logs if p.exists())


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/health", timeout=2) as r:  # noqa: S310 - loopback test server
            return r.status == 200
    except OSError:
        return False


def _stop_group(proc: subprocess.Popen, timeout: float = 20) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def prefect_server(home: Path, base_env: dict[str, str], startup_timeout: float = 180, *, fast_loops: bool = True,
                   ui: bool = True, database_url: str | None = None) -> Iterator[PrefectServer]:
    """Run ``prefect server start`` on a free loopback port with its own home and database.

    Args:
        home: Its HOME; PREFECT_HOME is ``home/prefect`` (the database), logs go here too.
        base_env: The environment to start from (its PREFECT_* variables are dropped).
        startup_timeout: Seconds to wait for ``/api/health``.
        fast_loops: Shorten the scheduler and worker loops so that schedules of seconds work in
            tests; the benchmark keeps Prefect's defaults so the server loads the CPU as usual.
        ui: Serve the UI (the benchmark does not need it).
        database_url: ``postgresql+asyncpg://…`` for a PostgreSQL database (see
            :mod:`datastore.testing.postgres`); None keeps Prefect's SQLite file under ``home``.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in base_env.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home / "prefect"), HOME=str(home), PREFECT_API_URL=f"{url}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false",
        PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_SERVER_API_PORT=str(port),
        PREFECT_UI_API_URL=f"{url}/api", PREFECT_UI_URL=url,
    )
    if fast_loops:
        env.update(PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="1", PREFECT_WORKER_QUERY_SECONDS="1",
                   PREFECT_WORKER_PREFETCH_SECONDS="2", PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS="2")
    if not ui:
        env["PREFECT_UI_ENABLED"] = "false"
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    home.mkdir(parents=True, exist_ok=True)
    server = PrefectServer(url=url, home=home, env=env)
    log = home / "server.log"
    server.logs.append(log)
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, cwd=home, stdout=log.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + startup_timeout
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prefect server did not start:\n{server.log_tail()}")
            time.sleep(0.5)
        yield server
    finally:
        for p in server.procs:
            _stop_group(p)
        _stop_group(proc, timeout=5)  # busy after flow runs it can take 20 s+ to exit; its database is scratch
