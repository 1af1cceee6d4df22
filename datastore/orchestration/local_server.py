"""The local Prefect server of the out-of-the-box setup: started on first use, then shared.

Without a configured server, Prefect's "ephemeral mode" starts a temporary server inside every
command (~9 s here) and throws it away, with its run history. Instead the first ``datastore
create`` on a machine with no server configured starts ``prefect server start`` in the
background, on loopback, with its database under the user's state directory
(``DATASTORE_STATE_DIR``, default ``~/.local/state/datastore``); every later command uses it, so
runs stay visible in its UI (``datastore server status`` prints the address). ``datastore server
stop`` ends it. ``DATASTORE_LOCAL_SERVER=0`` keeps Prefect's ephemeral mode.

"Configured" means what Prefect itself would read: ``PREFECT_API_URL`` in the environment, in the
active profile (``$PREFECT_HOME/profiles.toml``), or in ``prefect.toml`` / ``pyproject.toml``
(``[tool.prefect]``) of the working directory. No Prefect import here: this runs before any.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from datastore.errors import LocalServerFailed
from datastore.settings import Settings

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class LocalServer:
    """A running local server, as its state file records it."""

    url: str  #: http://127.0.0.1:PORT (the UI)
    pid: int  #: the ``prefect server start`` process (leader of its process group)
    port: int

    @property
    def api_url(self) -> str:
        """The API base (``…/api``), what ``PREFECT_API_URL`` is set to."""
        return f"{self.url}/api"


def folder(settings: Settings) -> Path:
    """Where the server keeps its state file, log and PREFECT_HOME (its SQLite database)."""
    return Path(settings.state_dir) / "prefect-server"


def _toml(path: Path) -> dict:
    if not path.is_file():
        return {}
    import tomllib

    try:
        return tomllib.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # Prefect would fail on it too, with its own message


def configured_api_url(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> str | None:
    """The Prefect API URL the user configured (environment, active profile, project file), if any."""
    env = os.environ if environ is None else environ
    if env.get("PREFECT_API_URL"):
        return env["PREFECT_API_URL"]
    home = Path(env.get("PREFECT_HOME") or Path(env.get("HOME") or Path.home()) / ".prefect")
    profiles = _toml(home / "profiles.toml")
    active = env.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    url = profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL")
    if url:
        return str(url)
    here = cwd or Path.cwd()
    for conf in (_toml(here / "prefect.toml"), _toml(here / "pyproject.toml").get("tool", {}).get("prefect", {})):
        url = conf.get("api", {}).get("url") if isinstance(conf.get("api"), dict) else None
        if url:
            return str(url)
    return None


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running ``prefect server`` (a recycled pid is some other program)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"server" in cmdline and any(part.endswith(b"prefect") for part in cmdline)


def _answers(port: int, timeout: float = 1.0) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=timeout):
        return True
    return False


def _healthy(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/api/health", timeout=2) as r:  # noqa: S310 - our loopback server
            return r.status == 200
    except OSError:
        return False


def running(settings: Settings) -> LocalServer | None:
    """The local server if it is up (its process alive and its port answering), else None."""
    try:
        server = LocalServer(**json.loads((folder(settings) / "server.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return server if _alive(server.pid) and _answers(server.port) else None


def adopt(settings: Settings | None = None) -> LocalServer | None:
    """Point this process at the local server if it is up and no server is configured.

    For what reads Prefect blocks or reports to Prefect outside ``create`` (``verify``,
    ``download``, ``mount``, ``delete``, ``status``; a library user's ``datastore://`` reads): the
    blocks the user saved out of the box are on the local server. Only before Prefect is
    imported (it reads ``PREFECT_API_URL`` then); never starts the server.
    """
    if "prefect" in sys.modules or configured_api_url() is not None:
        return None
    try:
        settings = settings or Settings.from_env()
    except Exception:  # noqa: BLE001 - a bad setting is reported by whatever reads it for real
        return None
    if not settings.local_server:
        return None
    server = running(settings)
    if server is not None:
        point_at(server)
    return server


def point_at(server: LocalServer) -> None:
    """Make ``server`` this process's Prefect API (and UI, unless one is set)."""
    os.environ["PREFECT_API_URL"] = server.api_url
    os.environ.setdefault("PREFECT_UI_URL", server.url)


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    """One process at a time decides whether to start the server (two creates at once start one)."""
    base = folder(settings)
    base.mkdir(parents=True, exist_ok=True)
    with open(base / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _port(previous: int | None) -> int:
    """The previous port when it is free (the UI keeps its address across restarts), else any free one."""
    for port in ([previous] if previous else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise LocalServerFailed("no free loopback port", "")


def server_env(environ: Mapping[str, str], home: Path, url: str, port: int) -> dict[str, str]:
    """The server's environment: the user's, with its own PREFECT_HOME, on loopback, offline-friendly."""
    env = {k: v for k, v in environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_HOME")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_SERVER_API_PORT=str(port),
               PREFECT_API_URL=f"{url}/api", PREFECT_UI_API_URL=f"{url}/api", PREFECT_UI_URL=url,
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false")
    return env


def ensure(settings: Settings, on_start: Callable[[str], None] | None = None) -> LocalServer:
    """The running local server, started first if it is not up.

    Args:
        settings: Where its state lives (``state_dir``) and how long it may take to start.
        on_start: Called with a one-line notice before a (slow, first-use) start.

    Raises:
        LocalServerFailed: it did not answer within ``server_start_timeout`` (the log's last line).
    """
    up = running(settings)
    if up:
        return up
    with _locked(settings):
        up = running(settings)  # another command may have started it while this one waited
        if up:
            return up
        base = folder(settings)
        state = base / "server.json"
        try:
            previous = int((base / "port").read_text())
        except (OSError, ValueError):
            previous = None
        port = _port(previous)
        (base / "port").write_text(str(port))  # the next start tries it first (the UI keeps its address)
        url = f"http://127.0.0.1:{port}"
        home = base / "home"
        home.mkdir(parents=True, exist_ok=True)
        log = base / "server.log"
        if on_start:
            on_start(f"starting the local Prefect server at {url} (first use; it keeps running, "
                     f"'datastore server stop' ends it)")
        with open(log, "ab") as out:
            proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                    env=server_env(os.environ, home, url, port), cwd=base, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + settings.server_start_timeout
        while not _healthy(url):
            exited = proc.poll()
            if exited is not None or time.monotonic() > deadline:
                stop_group(proc.pid)
                tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:]
                raise LocalServerFailed(f"exit {exited}" if exited is not None else
                                        f"no answer in {settings.server_start_timeout} s", " ".join(tail), str(log))
            time.sleep(0.25)
        server = LocalServer(url=url, pid=proc.pid, port=port)
        tmp = state.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(server)))
        tmp.replace(state)
        return server


def stop_group(pid: int, timeout: float = 20) -> None:
    """SIGTERM the process group led by ``pid``, SIGKILL it after ``timeout`` s; returns when it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # our own child (a failed start): reap it
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def stop(settings: Settings) -> LocalServer | None:
    """Stop the local server (its whole process group); returns what was stopped, None if none ran."""
    with _locked(settings):
        state = folder(settings) / "server.json"
        try:
            server = LocalServer(**json.loads(state.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if _alive(server.pid):
            stop_group(server.pid)
        else:
            server = None
        with contextlib.suppress(OSError):
            state.unlink()
        return server
