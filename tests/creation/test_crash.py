"""kill -9 a create at a fail point, then run it again: it resumes and no partial version was ever visible."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from datastore.store import open_store, versions
from datastore.testing.cli import DATASTORE
from datastore.testing.servers import S3Server
from tests.conftest import Cli, make_tree
from tests.flows.test_flow_s3 import source_bucket

FILES = {f"d{i // 50}/f{i:04d}.bin": os.urandom(10_000) for i in range(300)}
SETTINGS = {"DATASTORE_BATCH_FILES": "100", "DATASTORE_WORKERS": "1"}  # 3 batches, one after the other


def data_bytes() -> int:
    return sum(o.size for o in open_store().list("data/"))


def kill_at(cli: Cli, failpoint: str, marker: Path, *args: str, env: dict[str, str] | None = None) -> None:
    """Start ``datastore ARGS``, wait until it freezes at ``failpoint``, kill -9 its whole process group.

    ``env`` replaces this module's batch settings (and adds variables) for the killed process.
    """
    env = cli.env(DATASTORE_FAILPOINT=failpoint, DATASTORE_FAILPOINT_FILE=str(marker), **(SETTINGS if env is None else env))
    proc = subprocess.Popen([DATASTORE, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < deadline, "the create never reached the fail point"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def source_for(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "local":
        return str(make_tree(tmp_path / "src", FILES))
    seaweed: S3Server = request.getfixturevalue("seaweed")
    return f"s3://{source_bucket(seaweed, {f'p/{k}': v for k, v in FILES.items()})}/p/"


@pytest.mark.parametrize("kind", ["local", "s3"])
@pytest.mark.parametrize("failpoint", ["after-batch", "before-commit"])
def test_killed_create_resumes(cli: Cli, tmp_path: Path, seaweed_store: str, kind: str, failpoint: str,
                               request: pytest.FixtureRequest) -> None:
    source = source_for(kind, tmp_path, request)
    kill_at(cli, failpoint, tmp_path / "frozen", "create", source, "--name", "crash")
    store = open_store()
    assert versions.scan_versions(store) == {}  # nothing visible after the kill
    done_before = data_bytes()
    assert done_before > 0
    rerun = cli.run("create", source, "--name", "crash", "--json", **SETTINGS)
    assert rerun.returncode == 0, rerun.stderr
    rec = json.loads(rerun.stdout)
    assert rec["version"] == 1 and rec["files"] == len(FILES)
    total = sum(map(len, FILES.values()))
    if failpoint == "before-commit":
        assert rec["bytes_uploaded"] == 0  # every batch was finished: nothing is sent again
    else:
        assert 0 < rec["bytes_uploaded"] <= total - done_before  # only what the killed run had not finished
    assert cli.run("verify", "crash").returncode == 0
