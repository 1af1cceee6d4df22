"""Warm runners: Prefect commands run in a forked child of a process that imported Prefect once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from datastore.cli import warm
from datastore.settings import Settings
from datastore.store import open_store, versions
from datastore.testing.cli import can_drop_privileges
from tests.conftest import Cli, make_tree


def wait_for(what: str, check, timeout: float = 120):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def own(own_state: dict[str, str], local_store: str) -> dict[str, str]:
    """A state folder of this test only: the runner it starts is this test's."""
    return own_state


def warm_runner(cli: Cli, own: dict[str, str], src: Path) -> int:
    """Run one create (which starts the runner) and wait until the runner listens; its pid."""
    first = cli.run("create", str(src), "--name", "first", **own)
    assert first.returncode == 0, first.stderr
    settings = Settings(state_dir=own["DATASTORE_STATE_DIR"])
    (pid,) = wait_for("the warm runner", lambda: warm.runners(settings))
    (pid_file,) = warm.runners_dir(settings).glob("*.pid")
    wait_for("the runner to listen", lambda: listening(pid_file.stem))
    return pid


def listening(key: str) -> bool:
    sock = warm._connect(key)
    if sock is None:
        return False
    sock.close()
    return True


def test_the_second_create_runs_in_the_warm_runner_as_a_prefect_flow_run(cli: Cli, own: dict[str, str],
                                                                        tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": b"a" * 10, "d/b.txt": b"b" * 20})
    runner = warm_runner(cli, own, src)
    settings = Settings(state_dir=own["DATASTORE_STATE_DIR"])

    proc = cli.start("create", str(src), "--name", "second", "--json", **own)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    rec = json.loads(out)
    assert (rec["name"], rec["version"], rec["files"], rec["bytes"]) == ("second", 1, 2, 30)
    (log,) = warm.runners_dir(settings).glob("*.log")
    served = [line for line in log.read_text().splitlines() if f"for client {proc.pid}:" in line]
    assert served and served[0].endswith("datastore create"), log.read_text()
    child = int(served[0].split("child ")[1].split()[0])
    assert child != proc.pid and child != runner

    # A real flow run on the configured server, completed, with its task runs.
    with urllib.request.urlopen(f"{cli.api_url}/flow_runs/{rec['flow_run_id']}", timeout=30) as r:
        run = json.load(r)
    assert run["state"]["type"] == "COMPLETED" and run["parameters"]["name"] == "second"

    # The child's errors are the command's: one line on the client's stderr, its exit code.
    bad = cli.run("create", str(src), "--name", "Bad Name", **own)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith("error: invalid datastore name 'Bad Name': a name is 1-64 characters")
    usage = cli.run("create", str(src), "--bogus", **own)
    assert usage.returncode == 2 and usage.stderr.strip() == "error: no such option: --bogus: see 'datastore create --help'"
    assert sum("datastore create" in line for line in log.read_text().splitlines()) >= 3

    stopped = cli.run("server", "stop", **own)
    assert stopped.returncode == 0 and "stopped 1 warm runner" in stopped.stdout, stopped.stdout
    wait_for("the runner to exit", lambda: not alive(runner), timeout=15)
    assert warm.runners(settings) == []


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_client_takes_its_command_with_it(cli: Cli, own: dict[str, str], tmp_path: Path,
                                                   how: signal.Signals) -> None:
    src = make_tree(tmp_path / "src", {f"f{i}.bin": os.urandom(1000) for i in range(5)})
    warm_runner(cli, own, src)
    marker = tmp_path / "frozen"
    proc = cli.start("create", str(src), "--name", "killed", DATASTORE_FAILPOINT="before-commit",
                     DATASTORE_FAILPOINT_FILE=str(marker), **own)
    wait_for("the fail point", lambda: marker.exists() and marker.read_text())
    child = int(marker.read_text())
    assert child != proc.pid and alive(child)  # the command runs in the runner's child
    proc.send_signal(how)
    proc.communicate(timeout=30)
    assert proc.returncode == -how  # the client dies of the signal, as if it had run the command itself
    wait_for("the child to die with its client", lambda: not alive(child), timeout=10)
    assert "killed" not in versions.scan_versions(open_store())


def test_a_runner_serves_only_clients_like_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = make_tree(tmp_path / "lib" / "fakepkg", {"__init__.py": b"", "mod.py": b"x = 1\n"})
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    monkeypatch.setattr(warm, "PACKAGES", ("fakepkg",))
    env = {"HOME": str(tmp_path), "PREFECT_API_URL": "http://127.0.0.1:1/api", "DATASTORE_STORE": "/a"}
    key = warm.runner_key(env, str(tmp_path))
    assert warm.runner_key({**env, "DATASTORE_STORE": "/b", "AWS_PROFILE": "x"}, str(tmp_path)) == key  # per command
    assert warm.runner_key({**env, "PREFECT_API_URL": "http://127.0.0.1:2/api"}, str(tmp_path)) != key
    assert warm.runner_key({**env, "PYTHONPATH": "/elsewhere"}, str(tmp_path)) != key
    assert warm.runner_key(env, str(tmp_path), "/other/state") != key  # `server stop` there stops its own
    (tmp_path / "prefect.toml").write_text("[api]\nurl = 'http://127.0.0.1:3/api'\n")  # read by Prefect at import
    assert warm.runner_key(env, str(tmp_path)) != key
    (tmp_path / "prefect.toml").unlink()
    assert warm.runner_key(env, str(tmp_path)) == key
    (pkg / "mod.py").write_text("x = 22\n")  # changed code: a new runner
    assert warm.runner_key(env, str(tmp_path)) != key


@pytest.mark.skipif(os.geteuid() != 0 or not can_drop_privileges(), reason="needs root and setpriv (util-linux)")
def test_a_privilege_dropped_client_gets_a_runner_of_its_own() -> None:
    code = "import os,sys; from datastore.cli import warm; print(warm.runner_key(dict(os.environ), os.getcwd()))"
    env = dict(os.environ)
    plain = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    dropped = subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-c", code],
                             env=env, capture_output=True, text=True, check=True)
    assert plain.stdout.strip() != dropped.stdout.strip()


def test_help_and_commands_without_prefect_run_in_place() -> None:
    assert warm.wanted(["create", "x"]) and warm.wanted(["delete", "x"]) and warm.wanted(["status"])
    assert not warm.wanted(["create", "--help"]) and not warm.wanted(["list"]) and not warm.wanted([])
    assert not warm.wanted(["mount", "x"]) and not warm.wanted(["server", "status"])
