"""Shared fixtures: real servers on loopback (SeaweedFS, moto), Prefect test harness, stores."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from datastore import runtime

runtime.configure(quiet=True)

from datastore import s3  # noqa: E402
from tests.support.servers import S3Server, moto_server, seaweedfs  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


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


def _use_s3(server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=bucket)
    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    url = f"s3://{bucket}/store"
    monkeypatch.setenv("DATASTORE_STORE", url)
    s3.reset_clients()
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


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Write ``{relative path: bytes}`` under ``root``."""
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for running the CLI in a subprocess (inherits the test's DATASTORE_/AWS_ vars)."""
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)  # subprocesses use their own ephemeral Prefect
    env.update(extra or {})
    return env
