"""The local Prefect server of the out-of-the-box setup: started by the first create, then shared."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from datastore.orchestration import local_server
from datastore.settings import Settings
from datastore.store import open_store, versions
from tests.conftest import Cli, make_tree


def test_what_counts_as_a_configured_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"HOME": str(home)}
    assert local_server.configured_api_url(env, tmp_path) is None
    assert local_server.configured_api_url({**env, "PREFECT_API_URL": "http://h:1/api"}, tmp_path) == "http://h:1/api"
    (home / ".prefect").mkdir(parents=True)
    (home / ".prefect" / "profiles.toml").write_text(
        'active = "work"\n[profiles.work]\nPREFECT_API_URL = "http://work:4200/api"\n[profiles.ephemeral]\n')
    assert local_server.configured_api_url(env, tmp_path) == "http://work:4200/api"
    assert local_server.configured_api_url({**env, "PREFECT_PROFILE": "ephemeral"}, tmp_path) is None
    (tmp_path / "pyproject.toml").write_text('[tool.prefect.api]\nurl = "http://proj:4200/api"\n')
    assert local_server.configured_api_url({**env, "PREFECT_PROFILE": "ephemeral"}, tmp_path) == "http://proj:4200/api"
    (tmp_path / "prefect.toml").write_text('[api]\nurl = "http://toml:4200/api"\n')
    assert local_server.configured_api_url({**env, "PREFECT_PROFILE": "ephemeral"}, tmp_path) == "http://toml:4200/api"


@pytest.fixture
def fresh(tmp_path: Path, local_store: str, own_state: dict[str, str]) -> tuple[Cli, dict[str, str], Settings]:
    """A user with no server configured and no local server started yet (a state folder of this test)."""
    home = tmp_path / "home"
    home.mkdir()
    return Cli(home), own_state, Settings(state_dir=own_state["DATASTORE_STATE_DIR"])


def test_the_first_create_starts_the_local_server_and_the_next_ones_use_it(fresh, tmp_path: Path) -> None:
    cli, own, settings = fresh
    src = make_tree(tmp_path / "src", {"a.txt": b"a"})
    first = cli.run("create", str(src), "--name", "one", "--json", **own)
    assert first.returncode == 0, first.stderr
    (note,) = first.stderr.splitlines()
    assert note.startswith("note: starting the local Prefect server at http://127.0.0.1:") and \
        note.endswith("'datastore server stop' ends it)")
    server = local_server.running(settings)
    assert server is not None and server.url in note
    rec = json.loads(first.stdout)
    with urllib.request.urlopen(f"{server.api_url}/flow_runs/{rec['flow_run_id']}", timeout=30) as r:
        assert json.load(r)["state"]["type"] == "COMPLETED"  # the run is in the local server (and its UI)
    with urllib.request.urlopen(server.url, timeout=30) as r:
        assert r.status == 200 and b"<html" in r.read().lower()

    # A Python program of the same user (use_datastore, datastore://) finds its blocks there too.
    code = ("import os; from datastore.orchestration import local_server; s = local_server.adopt(); "
            "print(s.url, os.environ['PREFECT_API_URL'])")
    adopted = subprocess.run([sys.executable, "-c", code], env=cli.env(**own), capture_output=True, text=True)
    assert adopted.stdout.split() == [server.url, server.api_url], adopted.stderr

    second = cli.run("create", str(src), "--name", "two", "--json", **own)
    assert second.returncode == 0 and second.stderr == "", second.stderr
    assert local_server.running(settings) == server  # the same server, not a new one
    status = json.loads(cli.run("server", "status", "--json", **own).stdout)
    assert status["configured_api_url"] is None and status["local_server"]["pid"] == server.pid

    stopped = cli.run("server", "stop", **own)
    assert stopped.returncode == 0 and f"stopped the local server (pid {server.pid})" in stopped.stdout
    assert local_server.running(settings) is None
    assert "not running (the next 'datastore create' starts it)" in cli.run("server", "status", **own).stdout


def test_a_local_server_that_does_not_start_fails_the_create_with_one_line(fresh, tmp_path: Path) -> None:
    cli, own, settings = fresh
    src = make_tree(tmp_path / "src", {"a.txt": b"a"})
    failed = cli.run("create", str(src), "--name", "one", DATASTORE_SERVER_START_TIMEOUT="1", **own)
    assert failed.returncode == 1 and failed.stdout == ""
    lines = failed.stderr.strip().splitlines()
    assert lines[0].startswith("note: starting the local Prefect server")
    assert len(lines) == 2 and lines[1].startswith("error: the local Prefect server did not start (no answer in 1 s)")
    assert "DATASTORE_LOCAL_SERVER=0 for Prefect's ephemeral mode; nothing was committed" in lines[1]
    assert local_server.running(settings) is None  # the half-started server was stopped
    assert versions.scan_versions(open_store()) == {}


def test_a_configured_server_is_used_and_the_local_one_left_alone(cli: Cli, tmp_path: Path, local_store: str,
                                                                 own_state: dict[str, str]) -> None:
    own = own_state
    src = make_tree(tmp_path / "src", {"a.txt": b"a"})
    done = cli.run("create", str(src), "--name", "one", **own)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert local_server.running(Settings(state_dir=own["DATASTORE_STATE_DIR"])) is None
    refused = cli.run("server", "start", **own)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"error: a Prefect server is configured ({cli.api_url}), the local one would not "
                                      "be used: unset PREFECT_API_URL (and the profile's) to use the local server")


def test_without_the_local_server_a_create_runs_in_prefects_ephemeral_mode(fresh, tmp_path: Path) -> None:
    cli, own, settings = fresh
    src = make_tree(tmp_path / "src", {"a.txt": b"a"})
    done = cli.run("create", str(src), "--name", "one", "--json", DATASTORE_LOCAL_SERVER="0", **own)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert json.loads(done.stdout)["flow_run_id"]
    assert local_server.running(settings) is None  # nothing left running
    assert (cli.home / "prefect" / "prefect.db").exists()  # the temporary server's database, under PREFECT_HOME
