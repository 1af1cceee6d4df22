"""The periodic flow (what schedules run) and the status bookkeeping every creation flow does.

In-process through the test harness; the scheduled runs on a real server and worker are in
``test_deployments.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from datastore.errors import SourceNotFound
from datastore.store import inflight, open_store, versions
from datastore_flows.local_folder import create_from_local
from datastore_flows.periodic import refresh_datastore
from tests.conftest import Cli, make_tree

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_a_version_only_when_the_source_changed_unless_always(tmp_path: Path, local_store: str) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": b"one", "b/c.bin": os.urandom(1000)})
    first = refresh_datastore(source=str(src), name="feed")
    assert (first["version"], first["status"]) == (1, "succeeded")
    same = refresh_datastore(source=str(src), name="feed")
    assert (same["version"], same["status"], same["digest"]) == (1, "unchanged", first["digest"])
    (src / "a.txt").write_bytes(b"two!")
    changed = refresh_datastore(source=str(src), name="feed")
    assert (changed["version"], changed["status"]) == (2, "succeeded") and changed["digest"] != first["digest"]
    forced = refresh_datastore(source=str(src), name="feed", always=True)
    assert (forced["version"], forced["digest"]) == (3, changed["digest"])
    store = open_store()
    assert versions.live_numbers(store, "feed") == [1, 2, 3]
    assert inflight.read_all(store, 120) == []  # committed and unchanged runs leave no status record


def test_periodic_refuses_options_of_another_source_kind(tmp_path: Path, local_store: str) -> None:
    with pytest.raises(Exception, match="--no-copy and --credentials apply to s3:// sources only"):
        refresh_datastore(source=str(tmp_path), name="x", no_copy=True)


def test_a_failed_creation_leaves_its_reason_for_status(tmp_path: Path, local_store: str, cli_ephemeral: Cli) -> None:
    # The store's records only: the CLI gets no Prefect server (a shared one shows other tests' runs).
    cli = cli_ephemeral
    with pytest.raises(SourceNotFound):
        create_from_local(source=str(tmp_path / "nope"), name="gone")
    (rec,) = inflight.read_all(open_store(), 120)
    assert (rec.name, rec.status, rec.kind) == ("gone", "failed", "local")
    assert rec.reason and rec.reason.startswith(f"source '{tmp_path / 'nope'}' does not exist")
    assert rec.flow_run_id

    r = cli.run("status", "--json")
    (row,) = json.loads(r.stdout)
    assert (row["name"], row["status"], row["flow_run_id"]) == ("gone", "failed", rec.flow_run_id)
    assert row["detail"] == rec.reason
    r = cli.run("status")
    assert r.stdout.startswith("gone\tfailed\tlocal\t") and "does not exist" in r.stdout  # piped: tab-separated
    r = cli.run("list", "--json")
    assert [(x["name"], x["status"], x["version"]) for x in json.loads(r.stdout)] == [("gone", "failed", None)]
    r = cli.run("gc", "--json", DATASTORE_FAILED_RETENTION="0")
    assert json.loads(r.stdout)["expired_failed_runs"] == 1
    r = cli.run("status")
    assert r.stdout == "" and r.stderr.startswith("no creation in progress, and none failed in the last 7 days")
