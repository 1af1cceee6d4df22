"""A local store whose disk fills up or whose permissions change under a running create:
the right one-line message, nothing visible, the store consistent, and ``gc`` cleans up."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from datastore.store import open_store, versions
from tests.cli.test_cli import assert_one_line_error, needs_setpriv, small_disk  # noqa: F401 - a fixture
from tests.conftest import Cli, make_tree

BATCH = {"DATASTORE_BATCH_FILES": "4", "DATASTORE_WORKERS": "1"}


def store_files(store: Path, top: str) -> list[Path]:
    return [p for p in (store / top).rglob("*") if p.is_file()] if (store / top).exists() else []


def collect_all(cli: Cli, store: Path) -> dict:
    done = cli.run("gc", "--json", DATASTORE_STORE=str(store), DATASTORE_GC_GRACE="0")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_full_disk_leaves_nothing_that_gc_does_not_clean(cli: Cli, tmp_path: Path, small_disk: Path) -> None:  # noqa: F811
    src = make_tree(tmp_path / "src", {f"f{i:02d}.bin": os.urandom(512 * 1024) for i in range(12)})  # 6 MiB > 4 MiB
    store = small_disk / "store"
    proc = cli.run("create", str(src), "--name", "full", DATASTORE_STORE=str(store), **BATCH)
    assert_one_line_error(proc, "is full (no space left on device)", "free space on")
    assert versions.scan_versions(open_store(str(store))) == {}
    assert store_files(store, "data")  # the batches that fitted are kept for a resume …
    report = collect_all(cli, store)
    assert report["bytes"] > 0 and store_files(store, "data") == [] and store_files(store, "staging") == []
    assert store_files(store, ".tmp") == []  # … and no partial write holds the space
    # With room again (a smaller source), the same store takes a version that verifies.
    for p in sorted(src.iterdir())[4:]:
        p.unlink()
    again = cli.run("create", str(src), "--name", "full", "--json", DATASTORE_STORE=str(store))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["version"] == 1
    assert cli.run("verify", "full", DATASTORE_STORE=str(store)).returncode == 0


@needs_setpriv
def test_permissions_taken_away_during_a_create(cli: Cli, tmp_path: Path) -> None:
    files = {f"d/f{i:02d}.bin": os.urandom(20_000) for i in range(12)}
    src = make_tree(tmp_path / "src", files)
    store = tmp_path / "store"
    marker, release = tmp_path / "frozen", tmp_path / "go"
    env = {"DATASTORE_STORE": str(store), "DATASTORE_FAILPOINT": "after-batch", "DATASTORE_FAILPOINT_FILE": str(marker),
           "DATASTORE_FAILPOINT_RELEASE": str(release), **BATCH}
    proc = cli.start("create", str(src), "--name", "perm", restricted=True, **env)
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the create never finished a batch"
        time.sleep(0.05)
    # An administrator makes the store read-only while the first batch is done.
    dirs = [store, *(p for p in store.rglob("*") if p.is_dir())]
    for d in dirs:
        d.chmod(0o555)
    release.touch()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    failed = type("P", (), {"returncode": proc.returncode, "stderr": stderr, "stdout": ""})()
    assert_one_line_error(failed, f"store {str(store)!r}", "not writable", "DATASTORE_STORE")
    assert versions.scan_versions(open_store(str(store))) == {}  # nothing half-made is visible
    for d in dirs:
        d.chmod(0o755)
    # Writable again: the re-run resumes (the finished batch is not sent again) and commits v1.
    again = cli.run("create", str(src), "--name", "perm", "--json", DATASTORE_STORE=str(store), **BATCH)
    assert again.returncode == 0, again.stderr
    rec = json.loads(again.stdout)
    assert rec["version"] == 1 and 0 < rec["bytes_uploaded"] < sum(map(len, files.values()))
    assert cli.run("verify", "perm", DATASTORE_STORE=str(store)).returncode == 0
    collect_all(cli, store)
    after = collect_all(cli, store)
    assert (after["objects"], after["bytes"], after["incomplete"]) == (0, 0, [])
