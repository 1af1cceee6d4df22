"""Shared fixtures: real servers on loopback (SeaweedFS, moto), Prefect test harness, stores."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from datastore.backends import s3
from datastore.orchestration import runtime
from datastore.store import open_store
from datastore.testing.cli import popen_cli, run_cli
from datastore.testing.servers import S3Server, moto_server, seaweedfs

# Before Prefect is first imported (by the fixtures and the tests); none of the imports above
# imports it, so they need not wait for this.
runtime.configure(quiet=True)

REPO = Path(__file__).resolve().parent.parent

# Fixtures that start a real server or process (Prefect API, S3 servers, the CLI in a
# subprocess). A test that uses none of them is a unit test: `make test-fast` runs only those.
SERVER_FIXTURES = frozenset({"prefect_api", "seaweed", "moto", "seaweed_store", "moto_store", "cli", "cli_home",
                             "cli_prefect", "cli_ephemeral", "local_prefect", "private_s3"})
SERVER_PARAMS = frozenset({"moto", "seaweed"})  # parametrized tests that pick a server by name
# What these packages test is a whole command or flow run: every test in them is integration.
INTEGRATION_PACKAGES = frozenset({"cli", "flows", "deployments", "service"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs a server ``integration`` (judged by its fixtures, so it cannot drift)."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        package = item.path.parent.name
        if names & SERVER_FIXTURES or SERVER_PARAMS & {v for v in params.values() if isinstance(v, str)} \
                or package in INTEGRATION_PACKAGES or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def own_block_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test reads through a block cache of its own (a shared one would serve other tests' bytes)."""
    monkeypatch.setenv("DATASTORE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session", autouse=True)
def own_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The local Prefect server and the warm runners that CLI subprocesses start live under a
    state folder of this test session, whatever HOME a test gives them; stopped at the end."""
    state = tmp_path_factory.mktemp("state")
    os.environ["DATASTORE_STATE_DIR"] = str(state)
    yield state
    stop_helpers(state)
    # A test that gave its commands a state folder of its own and did not stop what they started:
    # fail the run, after stopping them (by the pid of each runner whose folder is this worker's).
    left = stray_runners(tmp_path_factory.getbasetemp())
    for pid in left:
        os.kill(pid, signal.SIGTERM)
    assert not left, f"warm runners left running by tests: {left}"


def stray_runners(base: Path) -> list[int]:
    """Pids of warm runners whose state folder is under ``base``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"datastore.cli.warm" in args and any(a.startswith(str(base).encode()) for a in args):
            found.append(int(proc.name))
    return found


def stop_helpers(state: Path) -> None:
    """Stop the worker, the warm runners and the local Prefect server whose state lives in ``state``."""
    from datastore.cli import warm
    from datastore.orchestration import local_stack
    from datastore.settings import Settings

    settings = Settings(state_dir=str(state))
    local_stack.stop_worker(settings)
    warm.stop_all(settings)


@pytest.fixture
def own_state(tmp_path: Path) -> Iterator[dict[str, str]]:
    """``DATASTORE_STATE_DIR`` of this test only (for a CLI's extra env): the warm runner and
    local server its commands start are this test's, and stopped after it."""
    state = tmp_path / "state"
    yield {"DATASTORE_STATE_DIR": str(state)}
    stop_helpers(state)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A real (temporary, SQLite-backed) Prefect API for flows run in this process."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real SeaweedFS S3 server for the whole session."""
    with seaweedfs(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


@pytest.fixture(scope="session")
def moto() -> Iterator[S3Server]:
    """moto's S3 server (threaded, in this process) for the whole session."""
    with moto_server() as server:
        yield server


def use_s3_env(server: S3Server, monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    """Point this process's boto3 at ``server`` (endpoint and keys, plus ``extra`` variables)."""
    for k, v in (server.env() | extra).items():
        monkeypatch.setenv(k, v)
    s3.reset_clients()


def _use_s3(server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/store"
    use_s3_env(server, monkeypatch, DATASTORE_STORE=url)
    return url


@pytest.fixture
def local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """DATASTORE_STORE set to a fresh local directory."""
    path = tmp_path / "store"
    monkeypatch.setenv("DATASTORE_STORE", str(path))
    return str(path)


@pytest.fixture
def seaweed_store(seaweed: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """DATASTORE_STORE set to a fresh bucket on SeaweedFS."""
    return _use_s3(seaweed, monkeypatch)


@pytest.fixture
def moto_store(moto: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """DATASTORE_STORE set to a fresh bucket on moto."""
    return _use_s3(moto, monkeypatch)


@pytest.fixture(params=["local", "moto", "seaweed"])
def any_store(request: pytest.FixtureRequest) -> str:
    """Each store backend in turn."""
    return request.getfixturevalue(f"{request.param}_store")


def store_objects(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Every object of the store ``env`` names (``DATASTORE_STORE``, ``AWS_*``), by key, gzip'd
    ones (manifests) decompressed: what a test greps for a secret."""
    s3.reset_clients()  # the clients of this process were made for other settings
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    store = open_store()
    out: dict[str, bytes] = {}
    for obj in store.list(""):
        data = store.get_bytes(obj.key)
        out[obj.key] = gzip.decompress(data) if obj.key.endswith(".gz") else data
    return out


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Write ``{relative path: bytes}`` under ``root``."""
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


@pytest.fixture(scope="session")
def cli_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PREFECT_HOME and HOME shared by CLI subprocesses."""
    return tmp_path_factory.mktemp("cli-home")


@pytest.fixture(scope="session")
def cli_prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``prefect server`` that CLI subprocesses talk to (its API URL).

    A user with a server configured is the setup the product recommends; without one, every
    ``create`` would start Prefect's ephemeral server (~9 s each, hundreds of times in a run).
    Tests of the no-server setup use :func:`cli_ephemeral`.
    """
    from datastore.testing.prefect_server import prefect_server

    with prefect_server(tmp_path_factory.mktemp("cli-prefect"), dict(os.environ), ui=False) as server:
        yield server.env["PREFECT_API_URL"]


class Cli:
    """Runs the console script in subprocesses with the test's current DATASTORE_*/AWS_* vars.

    Args:
        home: HOME and PREFECT_HOME of the subprocesses.
        api_url: The Prefect API they use; None for the out-of-the-box setup (no server
            configured: the local server, started on first use; with DATASTORE_LOCAL_SERVER=0
            Prefect's ephemeral one per command).
    """

    def __init__(self, home: Path, api_url: str | None = None) -> None:
        self.home = home
        self.api_url = api_url

    def env(self, **extra: str) -> dict[str, str]:
        """The environment a subprocess gets (read at call time, after fixtures set variables)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(PREFECT_HOME=str(self.home / "prefect"), HOME=str(self.home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        env["COLUMNS"] = "250"  # tables of long temporary paths stay one line per row (whatever the caller's terminal)
        if self.api_url:
            env["PREFECT_API_URL"] = self.api_url
        env.update(extra)
        return env

    def run(self, *args: str, restricted: bool = False, **extra: str) -> subprocess.CompletedProcess:
        """Run ``datastore ARGS`` to completion; ``restricted`` drops root's permission bypass."""
        return run_cli(*args, env=self.env(**extra), restricted=restricted)

    def start(self, *args: str, restricted: bool = False, **extra: str) -> subprocess.Popen:
        """Start ``datastore ARGS`` without waiting."""
        return popen_cli(*args, env=self.env(**extra), restricted=restricted)


@pytest.fixture
def cli(cli_home: Path, cli_prefect: str) -> Cli:
    """Run the CLI as a user with a Prefect server would, in a subprocess."""
    return Cli(cli_home, cli_prefect)


@pytest.fixture(scope="session")
def local_prefect(cli_home: Path) -> str:
    """The local Prefect server of the out-of-the-box setup, started as a user's first create would.

    Started once per session, as on a user's machine after the first command (what that first
    start does is tests/orchestration/test_local_server.py's subject). Only the server: ``datastore
    server start`` would also deploy and start a worker (tests/orchestration/test_local_stack.py).
    """
    from datastore.orchestration import local_server
    from datastore.settings import Settings

    return local_server.ensure(Settings.from_env()).url


@pytest.fixture
def cli_ephemeral(cli_home: Path, local_prefect: str) -> Cli:
    """Run the CLI as a user who configured no Prefect server (the out-of-the-box setup: the
    local server, started on first use)."""
    return Cli(cli_home)
