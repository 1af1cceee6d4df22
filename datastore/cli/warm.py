"""Warm runners: Prefect commands run in a process that has Prefect imported already.

A ``datastore create`` spends ~2 s importing Prefect and the flows before any data moves; the
work itself often takes less. So the commands that talk to Prefect (``create``, ``delete``,
``schedule``, ``status``) hand themselves to a *warm runner*: a background process of the same
user that imported everything once and forks a child per command. The child takes over the
client's stdin/stdout/stderr (passed over a Unix socket), its working directory, environment
and arguments, and runs the very same CLI code; the flow run is a normal Prefect flow run with
its task runs, logs, artifacts and events. The client waits for the child's exit code and exits
with it, forwards SIGINT/SIGTERM/SIGHUP to it, and if the client dies the child is killed (it
watches the socket). A command that finds no runner runs in its own process, as before, and
starts one in the background for the next command.

A runner serves only clients that would behave exactly like it: same user, same capabilities
(a privilege-dropped client gets its own runner), same interpreter and code (a changed source
file starts a new runner), same Prefect settings (``PREFECT_*`` variables, profiles, project
files), so settings Prefect reads at import are the client's. ``DATASTORE_*`` and all other
variables are the client's own, per command. A runner exits after ``DATASTORE_WARM_IDLE``
seconds without a command, on SIGTERM, or by ``datastore server stop``. ``DATASTORE_WARM=0``
turns it off.

The socket is in Linux's abstract namespace (no file to go stale, no path length limit); both
ends check the other's uid (``SO_PEERCRED``), so no other user can reach a runner or pose as one.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import importlib.util
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn
from pathlib import Path

from datastore.settings import Settings

if TYPE_CHECKING:
    from datastore.orchestration.local_server import LocalServer

#: Commands that import Prefect when they run (the others never pay for it, so run in place).
COMMANDS = frozenset({"create", "delete", "schedule", "status"})
PACKAGES = ("datastore", "datastore_flows", "datastore_tasks", "datastore_deployments")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_UCRED = struct.Struct("3i")  # pid, uid, gid
MAX_REQUEST = 16 * 1024 * 1024


def runs(argv: list[str], commands: frozenset[str]) -> bool:
    """Whether ``datastore ARGV`` runs one of ``commands`` (not a help request for it)."""
    return bool(argv) and argv[0] in commands and not {"--help", "-h"} & set(argv[1:])


def wanted(argv: list[str]) -> bool:
    """Whether ``datastore ARGV`` is a command a warm runner should run (not a help request)."""
    return runs(argv, COMMANDS)


# --- which runner ---------------------------------------------------------------------------------


def _code_fingerprint() -> list:
    """Name, size and mtime of every source file of the project's packages (~1 ms)."""
    out: list = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        for base in (spec.submodule_search_locations or []) if spec else []:
            for root, dirs, files in os.walk(base):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                for f in sorted(files):
                    if f.endswith(".py"):
                        st = os.stat(os.path.join(root, f))
                        out.append((os.path.join(root, f), st.st_size, st.st_mtime_ns))
    return out


def _capabilities() -> list[str]:
    """The process's capability sets (root with a dropped bounding set differs from plain root)."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return []
    return [line for line in lines if line.startswith(("Cap", "Uid:", "Gid:", "Groups:"))]


def _file(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def runner_key(environ: dict[str, str], cwd: str, state_dir: str = "") -> str:
    """What a runner must share with a client to run its commands (see the module docstring).

    ``state_dir`` too: ``datastore server stop`` stops the runners whose pid files are in it.
    """
    prefect_home = Path(environ.get("PREFECT_HOME") or Path(environ.get("HOME") or Path.home()) / ".prefect")
    here = Path(cwd)
    facts = {
        "python": sys.executable,
        "pythonpath": environ.get("PYTHONPATH", ""),
        "code": _code_fingerprint(),
        "caps": _capabilities(),
        "prefect_env": sorted((k, v) for k, v in environ.items() if k.startswith("PREFECT_")),
        "home": environ.get("HOME", ""),
        "state_dir": state_dir,
        "profiles": _file(prefect_home / "profiles.toml"),
        # Prefect reads these from the working directory when it is imported.
        "project": [_file(here / f) for f in ("prefect.toml", "pyproject.toml", ".env")],
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _address(key: str) -> str:
    return f"\0datastore-warm-{os.getuid()}-{key}"


def runners_dir(settings: Settings) -> Path:
    """Where runners leave their pid files (for ``datastore server status|stop``)."""
    return Path(settings.state_dir) / "warm"


# --- the client -----------------------------------------------------------------------------------


def _peer(sock: socket.socket) -> tuple[int, int, int]:
    return _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))


def _connect(key: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(_address(key))
    except OSError:
        sock.close()
        return None
    if _peer(sock)[1] != os.getuid():  # someone else holds the name: never hand them our environment
        sock.close()
        return None
    return sock


def spawn(key: str, settings: Settings) -> None:
    """Start a runner for ``key`` in the background (it imports Prefect, then listens)."""
    base = runners_dir(settings)
    base.mkdir(parents=True, exist_ok=True)
    with open(base / f"{key}.log", "ab") as log:
        # In the client's directory, where Prefect reads project settings at import (they are part
        # of the key); -P: that directory is not put on sys.path (its files are not our modules).
        subprocess.Popen([sys.executable, "-P", "-m", "datastore.cli.warm", key, str(settings.warm_idle), str(base)],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                         close_fds=True)


def _send(sock: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    payload = struct.pack("!I", len(data)) + data
    sent = 0
    if fds:  # the descriptors travel with the first bytes; a large environment may need more sends
        sent = sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    sock.sendall(payload[sent:])


def _lines(sock: socket.socket):  # noqa: ANN202 - a generator of decoded messages
    buf = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except InterruptedError:
            continue
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield json.loads(line)


def delegate(argv: list[str], settings: Settings) -> int | None:
    """Run ``datastore ARGV`` in a warm runner and return its exit code; None to run it here.

    None when warm runners are off or none is up for this client yet (one is started then, for
    the next command). Does not return when the child was killed by a signal: this process then
    dies of the same signal, as if it had run the command itself.
    """
    if not settings.warm:
        return None
    env = dict(os.environ)
    cwd = os.getcwd()
    key = runner_key(env, cwd, settings.state_dir)
    sock = _connect(key)
    if sock is None:
        spawn(key, settings)
        return None
    with sock:
        try:
            _send(sock, {"argv": argv, "env": env, "cwd": cwd}, [0, 1, 2])
        except OSError:
            return None  # the runner went away between connect and send: nothing ran
        messages = _lines(sock)
        first = next(messages, None)
        if first is None:  # it exited (idle) before forking: nothing ran
            return None
        child = first["pid"]
        forwarded: list[int] = []

        def forward(signum: int, _frame: object) -> None:
            forwarded.append(signum)
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

        for s in FORWARDED:
            signal.signal(s, forward)
        died_of = None
        for message in messages:
            if "exit" in message:
                return int(message["exit"])
            died_of = message.get("signal")
    # A signal ended the child (or the runner went away with it): die of the same one.
    signum = died_of or (forwarded[-1] if forwarded else signal.SIGKILL)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    time.sleep(5)
    return 128 + signum


# --- the runner -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One command: what the child becomes."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    fds: list[int]
    client_pid: int


def _receive(conn: socket.socket) -> Request | None:
    pid, uid, _gid = _peer(conn)
    if uid != os.getuid():
        return None
    conn.settimeout(10)  # a client that connects and says nothing must not stall the runner
    try:
        return _read_request(conn, pid)
    except (OSError, ValueError, KeyError):
        return None
    finally:
        conn.settimeout(None)


def _read_request(conn: socket.socket, pid: int) -> Request | None:
    fds = array.array("i")
    head, ancdata, _flags, _addr = conn.recvmsg(65536, socket.CMSG_LEN(3 * fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if len(head) < 4:
        for fd in fds:
            os.close(fd)
        return None
    (size,) = struct.unpack("!I", head[:4])
    body = head[4:]
    while len(body) < size <= MAX_REQUEST:
        chunk = conn.recv(size - len(body))
        if not chunk:
            break
        body += chunk
    try:
        if len(fds) != 3 or len(body) != size:
            raise ValueError("incomplete request")
        message = json.loads(body)
        return Request(list(message["argv"]), dict(message["env"]), str(message["cwd"]), list(fds), pid)
    except (ValueError, KeyError, TypeError):
        for fd in fds:
            os.close(fd)
        return None


def _reply(conn: socket.socket, message: dict) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps(message).encode() + b"\n")


def _become(conn: socket.socket, req: Request) -> None:
    """In the forked child: take over the client's descriptors, directory, environment, arguments."""
    for s in (*FORWARDED, signal.SIGCHLD):
        signal.signal(s, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C: KeyboardInterrupt, as in any CLI
    for target, fd in enumerate(req.fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(req.cwd)
    os.environ.clear()
    os.environ.update(req.env)
    sys.argv = ["datastore", *req.argv]

    def watch() -> None:  # the client is gone (killed): so is its command
        while True:
            try:
                if not conn.recv(1):
                    break
            except InterruptedError:
                continue
            except OSError:
                break
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="warm-client-watch", daemon=True).start()


def run_child(conn: socket.socket, req: Request) -> NoReturn:
    """Run the client's command in this (forked) process; ends the process like the command would.

    Ends the process as the interpreter's exit would: non-daemon threads are joined and Prefect's
    exit handlers flush logs and events, as when the command runs on its own. The runner reports
    the exit status to the client once the process is gone.
    """
    _become(conn, req)
    from datastore.cli import app

    app.reset_consoles()
    code = 1
    try:
        app.main(req.argv)
    except SystemExit as exc:
        if isinstance(exc.code, int) or exc.code is None:
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        # What an uncaught Ctrl-C does to a Python program: it dies of SIGINT.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        code = -signal.SIGINT
    except BaseException:  # noqa: BLE001 - what the interpreter would print for an uncaught error
        import traceback

        traceback.print_exc()
    # The interpreter's exit, minus tearing down its modules (~0.7 s for Prefect's, and nothing
    # outside this process depends on it): join non-daemon threads, run the exit handlers
    # (Prefect flushes logs and events there), flush, end.
    threading._shutdown()
    import atexit

    atexit._run_exitfuncs()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    if code < 0:
        os.kill(os.getpid(), -code)
    os._exit(code & 0xFF)


def _exit_message(status: int) -> dict:
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1}


def serve(key: str, idle: float, base: Path) -> tuple[socket.socket, Request] | None:
    """Import what the commands need, then fork a child per command until idle for ``idle`` s.

    Returns:
        In a forked child: its connection and request (the caller runs it, see
        :func:`run_child`). In the runner: None, when it stops.
    """
    from datastore.cli import app  # noqa: F401 - imported here so that children start warm
    from datastore.orchestration.launch import warm_up
    from datastore.service import create, delete, schedule, status  # noqa: F401

    warm_up()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(_address(key))
    except OSError:
        return None  # another runner for the same key won the race
    listener.listen(64)
    me = os.getpid()
    pid_file = base / f"{key}.pid"
    pid_file.write_text(str(me))
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    # A child's end wakes the loop at once (its client is waiting for the exit status).
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda signum, _frame: None)
    children: dict[int, socket.socket] = {}  # pid → its client's connection
    last = time.monotonic()
    try:
        while not stopping:
            ready, _, _ = select.select([listener, wake_r], [], [], 1.0)
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    wake_r.recv(4096)
            for pid in list(children):
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done, status = pid, 0
                if done:
                    conn = children.pop(pid)
                    _reply(conn, _exit_message(status))
                    conn.close()
                    last = time.monotonic()
            if listener not in ready:
                if not children and time.monotonic() - last > idle:
                    break
                continue
            conn, _ = listener.accept()
            last = time.monotonic()
            req = _receive(conn)
            if req is None:
                conn.close()
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                listener.close()
                wake_r.close()
                wake_w.close()
                for other in children.values():
                    other.close()
                _reply(conn, {"pid": os.getpid()})
                return conn, req
            for fd in req.fds:
                os.close(fd)
            children[pid] = conn
            print(f"{time.strftime('%H:%M:%S')} child {pid} for client {req.client_pid}: "
                  f"datastore {' '.join(req.argv[:1])}", flush=True)
    finally:
        if os.getpid() == me:
            listener.close()
            with contextlib.suppress(OSError):
                pid_file.unlink()
    return None


def runners(settings: Settings) -> list[int]:
    """The pids of this user's live runners under ``state_dir``."""
    out = []
    for f in sorted(runners_dir(settings).glob("*.pid")) if runners_dir(settings).is_dir() else []:
        try:
            pid = int(f.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                f.unlink()
            continue
        if b"datastore.cli.warm" in cmdline:
            out.append(pid)
    return out


def stop_runners(settings: Settings, timeout: float = 10) -> list[int]:
    """SIGTERM every runner (commands they are running go on to their end); returns their pids."""
    pids = runners(settings)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline and _running(pid):
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
    return pids


def _running(pid: int) -> bool:
    """Alive and not a zombie (in a container nobody may reap an orphan that exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def stop_all(settings: Settings) -> tuple[list[int], LocalServer | None]:
    """``datastore server stop``: the warm runners, then the local Prefect server, of ``state_dir``."""
    from datastore.orchestration import local_server

    return stop_runners(settings), local_server.stop(settings)


if __name__ == "__main__":
    forked = serve(sys.argv[1], float(sys.argv[2]), Path(sys.argv[3]))
    if forked is not None:
        run_child(*forked)
