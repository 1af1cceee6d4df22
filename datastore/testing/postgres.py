"""A real PostgreSQL (Debian's ``postgresql`` package) on a free loopback port, for a Prefect server to use.

Its data lives in a fresh folder under the system temp dir and goes when the block ends. As
root (CI, containers) the cluster runs as the ``postgres`` user, because ``initdb`` refuses
root; the folder is handed to that user. ``fsync`` is off: the database is scratch.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from datastore.testing.servers import free_port

DATABASE = "prefect"


@dataclass(frozen=True)
class Postgres:
    """A running cluster with one database, :data:`DATABASE`, owned by ``postgres`` (trust auth on loopback)."""

    port: int
    root: Path
    pid: int

    @property
    def url(self) -> str:
        """What ``PREFECT_API_DATABASE_CONNECTION_URL`` takes."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def log(self) -> Path:
        """The server's log."""
        return self.root / "postgres.log"


def bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are (on PATH, or Debian's versioned folder), None without PostgreSQL."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _as_owner(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *args]


@contextlib.contextmanager
def postgres(startup_timeout: float = 60) -> Iterator[Postgres]:
    """Start a throw-away PostgreSQL on 127.0.0.1 and a free port; stop it (by its pid) and remove its data.

    Raises:
        RuntimeError: PostgreSQL is not installed, or it did not start (the log's end is included).
    """
    bins = bin_dir()
    if bins is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (the tests start their own)")
    root = Path(tempfile.mkdtemp(prefix="datastore-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    pid = 0
    try:
        subprocess.run(_as_owner([str(bins / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                  "-E", "UTF8", "--no-sync"]), check=True, capture_output=True, timeout=120)
        subprocess.run(_as_owner([str(bins / "pg_ctl"), "-D", str(data), "-l", str(root / "postgres.log"), "-w",
                                  "-t", str(int(startup_timeout)), "-o",
                                  f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off -c max_connections=200",
                                  "start"]), check=True, capture_output=True, timeout=startup_timeout + 10)
        pid = int((data / "postmaster.pid").read_text().split()[0])
        subprocess.run(_as_owner([str(bins / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                                  DATABASE]), check=True, capture_output=True, timeout=60)
        yield Postgres(port, root, pid)
    except subprocess.CalledProcessError as exc:
        log = root / "postgres.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr!r}\n{tail}") from exc
    finally:
        if pid:
            _stop(pid)
        shutil.rmtree(root, ignore_errors=True)


def _stop(pid: int, timeout: float = 20) -> None:
    """SIGINT is PostgreSQL's fast shutdown (its children end with it); SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
