"""The console script as a user runs it: subprocesses, a real Prefect server (or none), real stores."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from datastore.store import open_store, versions
from datastore.testing.cli import DATASTORE, can_drop_privileges
from tests.conftest import Cli, make_tree


def assert_one_line_error(proc, *fragments: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert proc.stdout == ""


def assert_nothing_stored(store_url: str) -> None:
    store = open_store(store_url)
    assert versions.scan_versions(store) == {}
    assert [o.key for o in store.list("data/")] == []
    assert [o.key for o in store.list("manifests/")] == []
    assert [o.key for o in store.list("staging/")] == []


def test_create_list_show_json(cli_ephemeral: Cli, tmp_path: Path, local_store: str) -> None:
    cli = cli_ephemeral  # no server configured: the out-of-the-box setup
    src = make_tree(tmp_path / "My Photos", {"a.jpg": b"a" * 100, "sub/b.jpg": b"b" * 50})
    created = cli.run("create", str(src), "--json")
    assert created.returncode == 0, created.stderr
    assert created.stderr == ""  # offline: no telemetry or update-check noise
    rec = json.loads(created.stdout)
    for field in ("name", "version", "status", "kind", "source", "files", "bytes", "digest", "created_at",
                  "flow_run_id", "bytes_uploaded"):
        assert field in rec
    assert (rec["name"], rec["version"], rec["status"], rec["kind"]) == ("myphotos", 1, "succeeded", "local")
    assert (rec["files"], rec["bytes"], rec["bytes_uploaded"], rec["source"]) == (2, 150, 150, str(src))

    listed = cli.run("list", "--json")
    assert listed.returncode == 0
    assert [(r["name"], r["version"], r["status"]) for r in json.loads(listed.stdout)] == [("myphotos", 1, "succeeded")]

    shown = cli.run("show", "myphotos", "--json")
    assert json.loads(shown.stdout) == rec
    human = cli.run("show", "myphotos")
    assert str(src) in human.stdout and rec["digest"] in human.stdout


@pytest.mark.parametrize("store_fixture", ["local_store", "seaweed_store"])
def test_four_concurrent_creates_get_versions_one_to_four(
    cli: Cli, tmp_path: Path, store_fixture: str, request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue(store_fixture)
    src = make_tree(tmp_path / "src", {f"f{i}": os.urandom(2000) for i in range(50)})
    procs = [cli.start("create", str(src), "--name", "race", "--json") for _ in range(4)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    got = sorted(json.loads(o[0])["version"] for o in outs)
    assert got == [1, 2, 3, 4]
    assert versions.live_numbers(open_store(), "race") == [1, 2, 3, 4]
    assert len({json.loads(o[0])["digest"] for o in outs}) == 1


def test_missing_path(cli: Cli, tmp_path: Path, local_store: str) -> None:
    proc = cli.run("create", str(tmp_path / "nope"))
    assert_one_line_error(proc, "does not exist", "check the path")
    assert_nothing_stored(local_store)


def test_empty_folder(cli: Cli, tmp_path: Path, local_store: str) -> None:
    (tmp_path / "empty").mkdir()
    proc = cli.run("create", str(tmp_path / "empty"))
    assert_one_line_error(proc, "contains no files", "add files")
    assert_nothing_stored(local_store)


def test_invalid_name(cli: Cli, tmp_path: Path, local_store: str) -> None:
    src = make_tree(tmp_path / "src", {"a": b"a"})
    proc = cli.run("create", str(src), "--name", "Not Valid")
    assert_one_line_error(proc, "invalid datastore name 'Not Valid'", "lowercase letters")
    assert_nothing_stored(local_store)


def test_explicit_name_longer_than_64_is_refused_with_the_rule(cli: Cli, tmp_path: Path, local_store: str) -> None:
    src = make_tree(tmp_path / "src", {"a": b"a"})
    proc = cli.run("create", str(src), "--name", "n" * 65)
    assert_one_line_error(proc)
    assert proc.stderr.strip() == (f"error: invalid datastore name {'n' * 65!r}: a name is 1-64 characters of lowercase "
                                   "letters a-z, digits, '-', '_' or '.', starting with a letter or digit "
                                   "(for example 'imagenet-2024')")
    assert_nothing_stored(local_store)


def test_derived_name_longer_than_64_is_refused_with_the_name_to_pass(cli: Cli, tmp_path: Path,
                                                                      local_store: str) -> None:
    folder = " ".join(["Quarterly Sales Export"] * 4)  # 91 characters, 80 once spaces are dropped
    src = make_tree(tmp_path / folder, {"a.csv": b"a"})
    cut = "quarterlysalesexport" * 3 + "quar"
    proc = cli.run("create", str(src))
    assert_one_line_error(proc)
    assert proc.stderr.strip() == (f"error: the name derived from {str(src)!r} would be 80 characters, longer than the "
                                   f"limit of 64: pass --name {cut}")
    assert_nothing_stored(local_store)
    again = cli.run("create", str(src), *proc.stderr.strip().rsplit(": pass ", 1)[1].split(), "--json")  # as copied
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["name"] == cut


def test_over_quota_fails_before_transferring(cli: Cli, tmp_path: Path, local_store: str) -> None:
    src = make_tree(tmp_path / "src", {"a": b"a"})
    assert cli.run("create", str(src), "--name", "one", DATASTORE_MAX_VERSIONS="1").returncode == 0
    store = open_store()
    before = sorted(o.key for o in store.list(""))
    other = make_tree(tmp_path / "other", {"b": os.urandom(5000)})
    proc = cli.run("create", str(other), "--name", "two", DATASTORE_MAX_VERSIONS="1")
    assert_one_line_error(proc, "1 live versions exist and the limit is 1", "datastore delete", "DATASTORE_MAX_VERSIONS")
    assert sorted(o.key for o in store.list("")) == before


def test_unsupported_scheme(cli: Cli, local_store: str) -> None:
    assert_one_line_error(cli.run("create", "ftp://host/x.zip"), "unsupported scheme 'ftp'")
    assert_one_line_error(cli.run("create", "file:///etc/passwd"), "unsupported scheme 'file'")


needs_setpriv = pytest.mark.skipif(not can_drop_privileges(), reason="root needs setpriv (util-linux) to drop its permission bypass")


@needs_setpriv
def test_unreadable_file(cli: Cli, tmp_path: Path, local_store: str) -> None:
    src = make_tree(tmp_path / "src", {"ok.txt": b"fine", "secret.txt": b"no", "z/more.txt": b"more"})
    (src / "secret.txt").chmod(0o000)
    proc = cli.run("create", str(src), restricted=True)
    assert_one_line_error(proc, "cannot read source file 'secret.txt'", "permission denied", "chmod")
    assert_nothing_stored(local_store)


@needs_setpriv
def test_store_not_writable(cli: Cli, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"a": b"a"})
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    proc = cli.run("create", str(src), restricted=True, DATASTORE_STORE=str(locked / "store"))
    assert_one_line_error(proc, "is not writable", "DATASTORE_STORE")
    assert not (locked / "store").exists()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB filesystem (tmpfs), unmounted afterwards; mounting needs root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_disk_full_store_says_so_and_the_creation_reads_as_failed(cli: Cli, tmp_path: Path, small_disk: Path) -> None:
    src = make_tree(tmp_path / "src", {f"f{i:02d}.bin": os.urandom(512 * 1024) for i in range(12)})  # 6 MiB > 4 MiB
    store = small_disk / "store"
    proc = cli.run("create", str(src), "--name", "big", DATASTORE_STORE=str(store))
    assert_one_line_error(proc)
    assert proc.stderr.strip() == (f"error: store {str(store)!r} is full (no space left on device): "
                                   f"free space on {small_disk} (tmpfs) and run the command again")

    def listed(**env: str) -> list[dict]:
        shown = cli.run("list", "--json", DATASTORE_STORE=str(store), **env)
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)

    # On this machine: the failed record the full store refused was kept locally, with its reason.
    rows = listed()
    assert [(r["name"], r["version"], r["status"]) for r in rows] == [("big", None, "failed")]  # no version
    assert rows[0]["detail"] == proc.stderr.strip().removeprefix("error: ")
    assert versions.scan_versions(open_store(str(store))) == {}
    # Without that copy (another user, a cleared cache) the record in the store is judged by its
    # process, which has ended: failed at once, not "processing" until the heartbeat expires.
    raw = json.loads(next((store / "runs").iterdir()).read_text())
    [row] = listed(XDG_CACHE_HOME=str(tmp_path / "empty-cache"))
    assert row["status"] == "failed"
    if raw["status"] == "processing":  # the store was too full to take even the small failed record
        assert row["detail"].startswith(f"the creation stopped: process {raw['pid']} on {raw['host']} ended "
                                        "without recording the outcome")
        assert row["detail"].endswith(": run the same create again, it resumes what was transferred")
    else:
        assert row["detail"] == rows[0]["detail"]


def test_s3_bucket_missing(cli: Cli, tmp_path: Path, seaweed_store: str) -> None:
    src = make_tree(tmp_path / "src", {"a": b"a"})
    proc = cli.run("create", str(src), DATASTORE_STORE="s3://no-such-bucket-xyz/store")
    assert_one_line_error(proc, "s3://no-such-bucket-xyz/store/", "does not exist", "create the bucket")


def test_wrong_s3_credentials(cli: Cli, tmp_path: Path, seaweed_store: str) -> None:
    src = make_tree(tmp_path / "src", {"a": b"a"})
    proc = cli.run("create", str(src), AWS_SECRET_ACCESS_KEY="definitely-wrong")
    assert_one_line_error(proc, "access to", "denied", "AWS_ACCESS_KEY_ID")
    assert "definitely-wrong" not in proc.stderr
    assert_nothing_stored(seaweed_store)


def test_show_missing(cli: Cli, local_store: str) -> None:
    assert_one_line_error(cli.run("show", "ghost"), "datastore 'ghost' does not exist", "datastore list")


PHASES = ["starting Prefect", "preparing", "scanning", "transferring", "committing", "done"]


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script (util-linux) to give the CLI a terminal")
def test_progress_bar_on_a_terminal_only(cli: Cli, tmp_path: Path, local_store: str) -> None:
    import time

    src = make_tree(tmp_path / "src", {f"f{i}": os.urandom(1000) for i in range(20)})
    cmd = f"{DATASTORE} create {shlex.quote(str(src))} --name tty"
    began = time.time()
    proc = subprocess.run(["script", "-qec", cmd, "/dev/null"], env=cli.env(COLUMNS="120"), capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    wall = time.time() - began
    assert proc.returncode == 0, proc.stdout
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", proc.stdout)  # drop colours and cursor moves
    assert "20/20 files" in screen  # the bar's last frame, drawn on the terminal
    frames = [f.strip() for f in re.split(r"[\r\n]+", screen) if "━" in f]
    seen = [next(p for p in PHASES if f.startswith(p)) for f in frames]
    # Phases only move forward, from Prefect's start-up (its own phase) to the end: never back to one left.
    assert seen[0] == "starting Prefect" and seen[-1] == "done", seen
    assert [PHASES.index(p) for p in seen] == sorted(PHASES.index(p) for p in seen), seen
    assert not any(re.match(r"starting Prefect \d", f) for f in frames)  # no "0/0 files" before there are any
    # The summary's time is the command's wall time, split into its phases.
    (summary,) = [line for line in screen.splitlines() if line.startswith("created tty version 1: 20 files")]
    took = re.search(r" in (\d+\.\d)s \((.*)\)$", summary.strip())
    assert took, summary
    parts = dict(re.fullmatch(r"(.+) (\d+\.\d)s", part).groups() for part in took[2].split(", "))
    assert list(parts) == [p for p in PHASES if p in parts] and "starting Prefect" in parts
    assert sum(map(float, parts.values())) <= float(took[1]) + 0.1 * len(parts) <= wall + 1
    piped = cli.run("create", str(src), "--name", "tty")
    assert "files" not in piped.stderr and piped.stderr == ""
    # In a 60-column terminal every frame still fits on one line (the rate and the bar are dropped).
    narrow = subprocess.run(["script", "-qec", cmd, "/dev/null"], env=cli.env(COLUMNS="60"), capture_output=True,
                            text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert narrow.returncode == 0, narrow.stdout
    frames = [f.strip() for f in re.split(r"[\r\n]+", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", narrow.stdout))
              if re.search(r"\d:\d\d:\d\d$", f.strip())]
    assert frames and all(len(f) <= 60 and f.startswith(tuple(PHASES)) for f in frames), frames
    assert any(f.startswith("done 20/20 files") for f in frames), frames
    assert re.fullmatch(r"created tty version 2: 20 files, 19\.5 KiB \(0 B uploaded\) in \d+\.\ds \(starting Prefect .*\)",
                        piped.stdout.splitlines()[0]), piped.stdout


@pytest.mark.parametrize("where", ["after-batch", "before-commit"])
def test_ctrl_c_says_what_was_kept_and_a_rerun_resumes(cli: Cli, tmp_path: Path, local_store: str, where: str) -> None:
    import signal
    import time

    src = make_tree(tmp_path / "src", {f"f{i:02d}": os.urandom(1000) for i in range(20)})
    marker = tmp_path / "at-failpoint"
    # Two batches of 10 in one transfer task run: the first batch waits after it is stored (the
    # task would go on to the second), or every batch is stored and the creation waits just
    # before its commit.
    release = tmp_path / "release"
    proc = cli.start("create", str(src), "--name", "intr", DATASTORE_FAILPOINT=where,
                     DATASTORE_FAILPOINT_FILE=str(marker), DATASTORE_FAILPOINT_RELEASE=str(release),
                     DATASTORE_BATCH_FILES="10", DATASTORE_TRANSFER_TASKS="1")
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    time.sleep(1)
    release.touch()  # the frozen thread goes on, as a transfer in flight would: it must stop, not finish
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode in (-signal.SIGINT, 130), (proc.returncode, stderr)
    assert stdout == ""
    kept = "finished batches are kept for at least 3,600 s (DATASTORE_GC_GRACE)"
    assert stderr.strip().splitlines()[-1] == {
        "after-batch": f"interrupted while transferring: no version was committed; 10 of 20 files were transferred "
                       f"and {kept}: run the same command again to resume",
        "before-commit": "interrupted while committing: the version may or may not have been committed: 'datastore "
                         f"list' shows it; if it is not there, run the same command again to resume ({kept})",
    }[where], stderr
    assert versions.live_numbers(open_store(), "intr") == []
    again = cli.run("create", str(src), "--name", "intr", "--json", DATASTORE_BATCH_FILES="10")
    assert again.returncode == 0, again.stderr
    rec = json.loads(again.stdout)
    # Resumed: what was stored is not sent again (after one batch, only the other batch's 10 files).
    assert (rec["version"], rec["files"]) == (1, 20)
    assert rec["bytes_uploaded"] == {"after-batch": 10_000, "before-commit": 0}[where]


def test_unreachable_prefect_api_is_one_line(cli: Cli, tmp_path: Path, local_store: str) -> None:
    from datastore.testing.servers import free_port

    src = make_tree(tmp_path / "src", {"a": b"a"})
    proc = cli.run("create", str(src), PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api")
    assert_one_line_error(proc, "Prefect could not run the creation", "PREFECT_API_URL", "nothing was committed")
    assert versions.scan_versions(open_store()) == {}


def test_delete_from_the_command_line(cli: Cli, tmp_path: Path, local_store: str) -> None:
    src = make_tree(tmp_path / "src", {"a": b"a"})
    for _ in range(2):
        assert cli.run("create", str(src), "--name", "del").returncode == 0
    assert_one_line_error(cli.run("delete", "--name", "del"), "give either --version N (one version) or --all",
                          "datastore delete del --version 1")
    assert_one_line_error(cli.run("delete", "--name", "del", "--version", "9"), "datastore 'del' version 9 does not exist")
    assert_one_line_error(cli.run("delete", "--name", "nope", "--all", "--yes"), "datastore 'nope' does not exist")
    assert_one_line_error(cli.run("delete", "--name", "del", "--all"),
                          "refusing to delete all 2 versions of 'del' (1, 2) without confirmation", "--yes")
    done = cli.run("delete", "--name", "del", "--version", "1")
    assert done.returncode == 0 and "deleted del version 1 (reclaimed" in done.stdout
    assert_one_line_error(cli.run("delete", "--name", "del", "--version", "1"), "was already deleted")
    shown = cli.run("show", "del", "--version", "1", "--json")
    assert json.loads(shown.stdout)["deleted_at"]
    assert [r["version"] for r in json.loads(cli.run("list", "--json").stdout)] == [2]
    assert cli.run("delete", "--name", "del", "--all", "--yes").returncode == 0
    assert json.loads(cli.run("list", "--json").stdout) == []


def test_download_writes_a_verified_read_only_copy_independent_of_the_store(cli: Cli, tmp_path: Path,
                                                                           local_store: str) -> None:
    tree = {"a.txt": b"alpha", "sub/b.bin": os.urandom(3000)}
    src = make_tree(tmp_path / "src", tree)
    assert cli.run("create", str(src), "--name", "mnt").returncode == 0
    dest = tmp_path / "copies" / "mnt"
    done = cli.run("download", "mnt@1", "--dir", str(dest))
    assert done.returncode == 0, done.stderr
    assert f"downloaded mnt version 1 to {dest}: 2 files" in done.stdout
    assert {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == tree
    assert oct((dest / "a.txt").stat().st_mode & 0o777) == "0o444"
    assert_one_line_error(cli.run("download", "mnt", "--dir", str(src)), f"directory {src} is not empty",
                          "choose an empty or new directory with --dir")
    assert_one_line_error(cli.run("download", "mnt@x", "--dir", str(tmp_path / "x")),
                          "'mnt@x' is not NAME or NAME@VERSION")
    # A written copy holds no lease: the version can be deleted, and the copy keeps every byte.
    assert cli.run("delete", "--name", "mnt", "--version", "1").returncode == 0
    assert {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == tree


def test_failed_creations_can_be_dismissed_and_a_later_commit_of_the_source_drops_them(
        cli: Cli, tmp_path: Path, local_store: str) -> None:
    """Defect (issue 14, checked against 737561e): a failed row stayed for 7 days, ``delete --all``
    said the name did not exist, and a later successful create left the row beside the version."""
    def listed() -> list[tuple]:
        shown = cli.run("list", "--json")
        assert shown.returncode == 0, shown.stderr
        return [(r["name"], r["version"], r["status"]) for r in json.loads(shown.stdout)]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.run("create", str(empty), "--name", "emptysrc").returncode != 0
    assert listed() == [("emptysrc", None, "failed")]
    gone = cli.run("delete", "--name", "emptysrc", "--all", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert " ".join(gone.stdout.split()) == ("removed 1 failed creation of emptysrc from 'list' and 'status' "
                                   "(their flow runs stay in Prefect)")
    assert listed() == []
    missing = cli.run("delete", "--name", "emptysrc", "--all", "--yes")
    assert_one_line_error(missing)
    assert "datastore 'emptysrc' does not exist" in missing.stderr

    # The same source fails, then commits: the failure is superseded. Another source's stays.
    other = tmp_path / "other"
    other.mkdir()
    assert cli.run("create", str(empty), "--name", "later").returncode != 0
    assert cli.run("create", str(other), "--name", "later").returncode != 0
    assert listed() == [("later", None, "failed"), ("later", None, "failed")]
    (empty / "now.txt").write_text("not empty any more")
    made = cli.run("create", str(empty), "--name", "later")
    assert made.returncode == 0, made.stderr
    shown = cli.run("list", "--json")
    rows = json.loads(shown.stdout)
    assert [(r["name"], r["version"], r["status"]) for r in rows] == [("later", 1, "succeeded"), ("later", None, "failed")]
    assert rows[1]["source"] == str(other)


def test_submit_and_schedule_check_a_local_path_here_unless_it_is_the_workers(cli_ephemeral: Cli, tmp_path: Path,
                                                                                local_store: str,
                                                                                own_state: dict[str, str]) -> None:
    """Defect (issue 14, checked against 737561e): both accepted a path that does not exist and
    failed later on the worker, blaming it."""
    cli = cli_ephemeral  # no server configured: the out-of-the-box setup
    missing = str(tmp_path / "no-such-folder")
    hint = ("check the path (the worker reads it where you submit from); if only the worker's machine has it, "
            "add --worker-path")
    for args in (["create", missing, "--submit"], ["schedule", missing, "--name", "nightly", "--every", "1d"]):
        proc = cli.run(*args)
        assert_one_line_error(proc)
        assert proc.stderr.strip() == f"error: source {missing!r} does not exist: {hint}", args
    # --worker-path: nothing checked here, so the next thing missing is the deployment: the local
    # server is up (both commands use it), but nothing was deployed to it.
    proc = cli.run("create", missing, "--submit", "--worker-path")
    assert_one_line_error(proc, "deployment 'datastore-create-local/local' does not exist on the Prefect server at "
                                "http://127.0.0.1:", "prefect deploy --all")
    # schedule creates the work pool it needs, and says that no worker polls it yet.
    proc = cli.run("schedule", missing, "--name", "nightly", "--every", "1d", "--worker-path", "--json")
    assert proc.returncode == 0, proc.stderr
    scheduled = json.loads(proc.stdout)
    assert (scheduled["work_pool"], scheduled["workers_online"]) == ("datastore-process", 0)
    assert proc.stderr.strip().splitlines()[-1] == (
        "note: no worker polls the work pool 'datastore-process' now, so the runs will wait in it: 'datastore server "
        "start' starts one (or: prefect worker start --pool datastore-process)")
    assert cli.run("schedule", "--list").stdout.startswith("nightly\tevery 1 day")
    # With no local server up either, the server itself is what is missing (and neither starts one:
    # a server without the deployments and a worker would not run the creation).
    for args in (["create", missing, "--submit", "--worker-path"],
                 ["schedule", missing, "--name", "nightly", "--every", "1d", "--worker-path"]):
        proc = cli.run(*args, **own_state)
        assert_one_line_error(proc, "PREFECT_API_URL is not set")
    assert not (Path(own_state["DATASTORE_STATE_DIR"]) / "prefect-server").exists()
    proc = cli.run("create", missing, "--worker-path")
    assert_one_line_error(proc)
    assert proc.stderr.strip() == ("error: --worker-path is for a path only a worker's machine has: add --submit, or "
                                   "drop --worker-path (without --submit the create reads it here)")
