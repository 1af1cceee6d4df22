"""Deployments, schedules, ``--submit``, status, events and the UI against a real Prefect server.

One ``prefect server`` and one process worker on the project's pool serve the whole module; the
deployments come from ``prefect.yaml`` via ``prefect deploy --all``. Everything is asserted
through the server's REST API (or the UI, in a real headless Chromium), not through this
process's Prefect settings.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import requests

from datastore.testing.cli import run_cli
from datastore.testing.http_server import Server, serve
from datastore.testing.prefect_server import POOL, REPO, PrefectServer, prefect_server
from tests.archives import tar_gz
from tests.conftest import make_tree, stop_helpers

pytestmark = pytest.mark.slow


@dataclass
class Deployed:
    """The server, its worker, a store both sides use, and an HTTP server for slow sources."""

    server: PrefectServer
    store: Path
    http: Server
    env: dict[str, str]

    def cli(self, *args: str, timeout: float = 300):  # noqa: ANN201
        return run_cli(*args, env=self.env, timeout=timeout)

    def api(self, method: str, path: str, body: dict | None = None):  # noqa: ANN201
        # The server (SQLite, 2 cores shared with the other pytest worker) can stall under load:
        # a read that times out is asked again rather than failing the test.
        for attempt in range(3):
            try:
                r = requests.request(method, f"{self.server.api_url}{path}", json=body, timeout=60)
                break
            except (requests.Timeout, requests.ConnectionError):
                if attempt == 2:
                    raise
                time.sleep(2)
        r.raise_for_status()
        return r.json() if r.content else None

    def flow_run(self, run_id: str) -> dict:
        return self.api("GET", f"/flow_runs/{run_id}")

    def events(self, name: str, resource: str) -> list[dict]:
        body = {"filter": {"event": {"name": [name]}, "resource": {"id": [resource]}}, "limit": 50}
        return self.api("POST", "/events/filter", body)["events"]

    def runs_of(self, deployment_id: str) -> list[dict]:
        return self.api("POST", "/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment_id]}},
                                                      "limit": 200})

    def deployment(self, full_name: str) -> dict:
        flow, name = full_name.split("/")
        return self.api("GET", f"/deployments/name/{flow}/{name}")


def wait_until(what: str, check: Callable[[], object], timeout: float = 180, every: float = 1.0, why: Callable[[], str] = str) -> object:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{why()}")
        time.sleep(every)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    home = tmp_path_factory.mktemp("prefect-server")
    store = home / "store"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATASTORE_", "AWS_"))}
    base.update(DATASTORE_STORE=str(store), DATASTORE_HTTP_ALLOW_PRIVATE="1", DATASTORE_STATUS_INTERVAL="1",
                DATASTORE_WORK_DIR=str(home / "work"), DATASTORE_REPO_DIR=str(REPO),
                DATASTORE_STATE_DIR=str(home / "state"))  # the warm runners its CLI commands start
    try:
        with serve({}) as http, prefect_server(home, base) as server:
            server.run("work-pool", "create", POOL, "--type", "process")
            server.run("deploy", "--all", "--no-prompt")
            server.start_worker()
            yield Deployed(server, store, http, server.env)
    finally:
        stop_helpers(home / "state")


def test_prefect_yaml_deploys_every_creation_flow_and_a_periodic_example(deployed: Deployed) -> None:
    for full in ("datastore-create-local/local", "datastore-create-s3-copy/s3-copy",
                 "datastore-create-s3-reference/s3-reference", "datastore-create-http-archive/http-archive"):
        dep = deployed.deployment(full)
        assert dep["work_pool_name"] == POOL
        assert "datastore" in dep["tags"]
        assert "source" in dep["parameter_openapi_schema"]["properties"]  # the UI's run form asks for it
    example = deployed.deployment("datastore-periodic/example-nightly")
    assert example["global_concurrency_limit"]["limit"] == 1
    assert example["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    assert [s["schedule"]["cron"] for s in example["schedules"]] == ["0 3 * * *"]
    assert [s["active"] for s in example["schedules"]] == [False]  # an example: off until pointed at data


def test_submit_wait_commits_on_the_worker_with_events_and_artifacts(deployed: Deployed, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "Survey Data", {"a.csv": b"x,y\n1,2\n", "sub/b.bin": os.urandom(5000), "c.txt": b""})
    r = deployed.cli("create", str(src), "--submit", "--wait", "--json")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert (rec["name"], rec["version"], rec["files"], rec["status"]) == ("surveydata", 1, 3, "succeeded")
    run = deployed.flow_run(rec["flow_run_id"])
    # It ran on the worker, as a run of the 'local' deployment, named and tagged for the UI.
    assert run["state_type"] == "COMPLETED"
    assert run["work_pool_name"] == POOL and run["deployment_id"]
    assert run["name"] == "create-surveydata"
    assert {"datastore", "datastore:surveydata", "local"} <= set(run["tags"])

    # Events (the event persister writes in batches: wait for it).
    committed = wait_until("the committed event", lambda: deployed.events("datastore.version.committed",
                                                                          "datastore.surveydata"))
    (event,) = committed
    assert event["resource"]["prefect.resource.name"] == "surveydata"
    assert event["payload"]["version"] == 1 and event["payload"]["digest"] == rec["digest"]
    assert event["payload"]["store"] == str(deployed.store)
    assert any(rel["prefect.resource.id"] == f"prefect.flow-run.{rec['flow_run_id']}" for rel in event["related"])

    # The details artifact, keyed per name, and the progress artifact of the run.
    arts = deployed.api("POST", "/artifacts/filter", {"artifacts": {"key": {"any_": ["datastore-surveydata"]}}})
    (details,) = arts
    assert details["flow_run_id"] == rec["flow_run_id"] and details["type"] == "markdown"
    assert f"| source | {src} |" in details["data"] and "| files | 3 |" in details["data"]
    assert f"| digest | `{rec['digest']}` |" in details["data"]
    progress = deployed.api("POST", "/artifacts/filter", {"artifacts": {
        "flow_run_id": {"any_": [rec["flow_run_id"]]}, "type": {"any_": ["progress"]}}})
    assert [p["data"] for p in progress] == [100.0]

    # Deleting the version emits its event too (the CLI talks to the configured server).
    r = deployed.cli("delete", "--name", "surveydata", "--version", "1")
    assert r.returncode == 0, r.stderr
    deleted = wait_until("the deleted event", lambda: deployed.events("datastore.version.deleted", "datastore.surveydata"))
    assert [e["payload"]["version"] for e in deleted] == [1]


def test_submit_returns_at_once_and_status_shows_progress_then_the_version(deployed: Deployed) -> None:
    # ~3 MB at 120 KB/s: about 25 s to download; progress is reported per MiB read, so status
    # has ~16 s to catch it (each `datastore status` is a new process importing Prefect).
    deployed.http.files["/slowset.tar.gz"] = tar_gz({f"f{i:03d}.bin": os.urandom(20_000) for i in range(150)})
    deployed.http.configure("/slowset.tar.gz", rate=120_000)
    r = deployed.cli("create", deployed.http.url("/slowset.tar.gz"), "--submit", "--json")
    assert r.returncode == 0, r.stderr
    sub = json.loads(r.stdout)
    assert sub["status"] == "submitted" and sub["ui_url"].endswith(f"/runs/flow-run/{sub['flow_run_id']}")
    assert deployed.flow_run(sub["flow_run_id"])["state_type"] in ("SCHEDULED", "PENDING", "RUNNING")

    def downloading() -> dict | None:
        rows = json.loads(deployed.cli("status", "--json").stdout)
        return next((row for row in rows if row["flow_run_id"] == sub["flow_run_id"] and row["status"] == "processing"
                     and row["detail"].startswith("downloading") and row["bytes"] > 0), None)

    row = wait_until("status to show the download in progress", downloading, timeout=120)
    assert row["name"] == "slowset" and row["kind"] == "http-archive"
    human = deployed.cli("status")
    assert "slowset\tprocessing\thttp-archive\t" in human.stdout and "downloading" in human.stdout
    listed = json.loads(deployed.cli("list", "--json").stdout)
    assert any(x["name"] == "slowset" and x["status"] == "processing" and x["version"] is None for x in listed)

    wait_until("the run to finish", lambda: deployed.flow_run(sub["flow_run_id"])["state_type"] == "COMPLETED",
               why=deployed.server.log_tail)
    (version,) = json.loads(deployed.cli("list", "slowset", "--json").stdout)
    assert (version["version"], version["files"], version["status"]) == (1, 150, "succeeded")
    assert not [x for x in json.loads(deployed.cli("status", "--json").stdout) if x["name"] == "slowset"]


def test_a_failed_creation_shows_in_status_with_its_reason(deployed: Deployed) -> None:
    r = deployed.cli("create", deployed.http.url("/missing.zip"), "--submit", "--wait")
    assert r.returncode == 1
    error = r.stderr.strip().splitlines()[-1]
    assert error.startswith("error: flow run 'create-missing' ended failed, nothing was committed:") and "404" in error, \
        r.stderr
    rows = json.loads(deployed.cli("status", "--json").stdout)
    (row,) = [x for x in rows if x["name"] == "missing"]
    assert row["status"] == "failed" and "404" in row["detail"]
    human = deployed.cli("status").stdout
    assert "missing\tfailed\thttp-archive\t" in human and "404" in human
    (event,) = wait_until("the failed event", lambda: deployed.events("datastore.create.failed", "datastore.missing"))
    assert event["payload"]["version"] is None and "404" in event["payload"]["reason"]


def test_bad_submissions_fail_with_one_line(deployed: Deployed, tmp_path: Path) -> None:
    r = deployed.cli("create", str(tmp_path), "--wait")
    assert r.returncode == 1 and r.stderr.startswith("error: --wait follows a submitted run: add --submit")
    no_server = {k: v for k, v in deployed.env.items() if k != "PREFECT_API_URL"}
    r = run_cli("create", str(tmp_path), "--submit", env=no_server)
    assert r.returncode == 1
    assert r.stderr.startswith("error: --submit needs a Prefect server with a worker, and PREFECT_API_URL is not set")
    r = deployed.cli("create", "s3:/bad", "--submit")
    assert r.returncode == 1 and "s3://" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_schedule_commits_only_when_the_source_changed(deployed: Deployed, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "feed", {"day1.csv": b"1\n"})
    for _ in range(2):  # idempotent: the second call replaces, it does not add a schedule
        r = deployed.cli("schedule", str(src), "--name", "feed", "--every", "6s")
        assert r.returncode == 0, r.stderr
        assert "scheduled feed: every 0:00:06 (UTC)" in r.stdout
    dep = deployed.deployment("datastore-periodic/feed")
    assert len(dep["schedules"]) == 1 and dep["global_concurrency_limit"]["limit"] == 1
    assert dep["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    listed = json.loads(deployed.cli("schedule", "--list", "--json").stdout)
    assert [(x["name"], x["deployment"], x["source"], x["active"]) for x in listed if x["name"] == "feed"] \
        == [("feed", "feed", str(src), True)]

    def versions() -> list[int]:
        return [x["version"] for x in json.loads(deployed.cli("list", "feed", "--json").stdout) if x["version"]]

    def completed() -> list[dict]:
        return [r for r in deployed.runs_of(dep["id"]) if r["state_type"] == "COMPLETED"]

    wait_until("the first scheduled version", lambda: versions() == [1], why=deployed.server.log_tail)
    (src / "day2.csv").write_bytes(b"2\n")
    wait_until("the next version after the change", lambda: versions() == [1, 2], why=deployed.server.log_tail)
    # +3: the run that committed version 2 may not have completed yet; two more come after it.
    done = len(completed())
    wait_until("two more scheduled runs", lambda: len(completed()) >= done + 3, why=deployed.server.log_tail)
    assert versions() == [1, 2]  # unchanged source: runs completed, no new version
    def committed_versions() -> list[int]:
        return sorted(e["payload"]["version"] for e in deployed.events("datastore.version.committed", "datastore.feed"))

    committed = wait_until("both committed events", lambda: len(committed_versions()) >= 2 and committed_versions())
    time.sleep(3)  # the persister flushes every ~2 s: an event of an unchanged run would be there now
    assert committed == [1, 2] == committed_versions()  # no commit event for the unchanged runs
    assert all(r["name"].startswith("refresh-feed") for r in completed())

    r = deployed.cli("schedule", "--remove", "--name", "feed")
    assert r.returncode == 0 and "removed the schedule of feed" in r.stdout
    assert not [x for x in json.loads(deployed.cli("schedule", "--list", "--json").stdout) if x["name"] == "feed"]
    r = deployed.cli("schedule", "--remove", "--name", "feed")
    assert r.returncode == 1 and "a schedule for 'feed' does not exist on the Prefect server" in r.stderr


def test_bad_schedules_fail_with_one_line(deployed: Deployed, tmp_path: Path) -> None:
    cases = [
        (["--every", "soon"], "invalid --every 'soon': use a number with a unit s, m, h or d"),
        (["--cron", "61 * * * *"], "invalid --cron '61 * * * *'"),
        (["--every", "1h", "--timezone", "Mars/Olympus"], "invalid --timezone 'Mars/Olympus'"),
        (["--every", "1h", "--cron", "0 3 * * *"], "give exactly one of --cron EXPR"),
        ([], "give exactly one of --cron EXPR"),
    ]
    for extra, message in cases:
        r = deployed.cli("schedule", str(tmp_path), "--name", "bad", *extra)
        assert r.returncode == 1 and message in r.stderr, (extra, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
    r = deployed.cli("schedule", str(tmp_path), "--name", "Bad Name", "--every", "1h")
    assert r.returncode == 1 and "invalid datastore name" in r.stderr.lower()
    assert not [x for x in json.loads(deployed.cli("schedule", "--list", "--json").stdout) if x["name"] == "bad"]


SIGNATURE = "SIGNEDSIG-do-not-leak-5b27c0"
SIGNED = f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600&X-Amz-Signature={SIGNATURE}"
MASKED = "?X-Amz-Algorithm=***&X-Amz-Expires=***&X-Amz-Signature=***"


def test_a_signed_url_reaches_the_worker_only_through_a_secret_block(deployed: Deployed) -> None:
    """--submit and schedule of a presigned URL: the worker fetches the real URL, while every run
    and deployment parameter, log and database row Prefect keeps shows it masked."""
    deployed.http.files["/signed/drop.tar.gz"] = tar_gz({"a.txt": b"alpha\n"})
    url = deployed.http.url("/signed/drop.tar.gz")

    def secret_blocks() -> list[str]:
        docs = deployed.api("POST", "/block_documents/filter", {"block_types": {"slug": {"any_": ["secret"]}}})
        return sorted(d["name"] for d in docs if d["name"].startswith("datastore-url-"))

    r = deployed.cli("create", url + SIGNED, "--name", "signed-drop", "--submit", "--wait", "--json")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["source"] == url + MASKED and rec["files"] == 1
    params = deployed.flow_run(rec["flow_run_id"])["parameters"]
    assert params["source"] == url + MASKED and params["url_block"].startswith("datastore-url-run-")
    assert secret_blocks() == []  # the one-off block went with the run that committed
    assert any(SIGNATURE in p for m, p, _ in deployed.http.requests_for("/signed/drop.tar.gz") if m == "GET")

    r = deployed.cli("schedule", url + SIGNED, "--name", "signed-feed", "--every", "4s")
    assert r.returncode == 0, r.stderr
    dep = deployed.deployment("datastore-periodic/signed-feed")
    assert dep["parameters"]["source"] == url + MASKED
    assert secret_blocks() == [dep["parameters"]["url_block"]]  # lives as long as the schedule
    wait_until("the scheduled version", lambda: json.loads(deployed.cli("list", "signed-feed", "--json").stdout),
               why=deployed.server.log_tail)
    listed = json.loads(deployed.cli("schedule", "--list", "--json").stdout)
    assert [x["source"] for x in listed if x["name"] == "signed-feed"] == [url + MASKED]
    assert deployed.cli("schedule", "--remove", "--name", "signed-feed").returncode == 0
    assert secret_blocks() == []

    # What Prefect and the worker kept: the database (WAL included), the server's and worker's logs.
    for path in deployed.server.home.rglob("*"):
        if path.is_file():
            assert SIGNATURE.encode() not in path.read_bytes(), f"the signature leaked into {path}"


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_scheduled_run_that_comes_due_while_one_runs_is_cancelled(deployed: Deployed) -> None:
    deployed.http.files["/ticker.tar.gz"] = tar_gz({f"t{i:03d}.bin": os.urandom(4000) for i in range(100)})
    deployed.http.configure("/ticker.tar.gz", rate=40_000)  # ~400 KB: each run downloads for ~10 s
    r = deployed.cli("schedule", deployed.http.url("/ticker.tar.gz"), "--name", "ticker", "--every", "3s", "--always")
    assert r.returncode == 0, r.stderr
    dep = deployed.deployment("datastore-periodic/ticker")

    def settled() -> bool:
        states = [r["state_type"] for r in deployed.runs_of(dep["id"])]
        return states.count("COMPLETED") >= 1 and states.count("CANCELLED") >= 2

    wait_until("a completed run and cancelled newcomers", settled, timeout=240, why=deployed.server.log_tail)
    deployed.cli("schedule", "--remove", "--name", "ticker")
    ran = sorted((_ts(r["start_time"]), _ts(r["end_time"]) if r["end_time"] else float("inf"))
                 for r in deployed.runs_of(dep["id"]) if r["run_count"] > 0)
    for (_, end), (start, _) in zip(ran, ran[1:]):
        assert start >= end, f"two runs of one name overlapped: {ran}"
    cancelled = [r for r in deployed.runs_of(dep["id"]) if r["state_type"] == "CANCELLED"]
    # Cancelled before they ran, not stopped mid-way.
    assert {(r["run_count"], r["state"]["message"]) for r in cancelled} == {(0, "Deployment concurrency limit reached.")}


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it")
def test_the_prefect_ui_shows_the_run_graph_the_failure_and_the_artifact_history(deployed: Deployed,
                                                                                 tmp_path: Path) -> None:
    """What a user reads in the UI, read from the rendered pages (headless Chromium), with screenshots.

    The screenshots (run graph, failed run, artifact history, one version's details) stay in
    this test's temporary folder, ``screenshots/``.
    """
    from playwright.sync_api import sync_playwright

    src = make_tree(tmp_path / "uiset", {f"img/{i}.png": os.urandom(100) for i in range(7)})
    # Version 1 here, in batches of 2 files (a graph of four transfers); version 2 on the worker.
    first = run_cli("create", str(src), "--json", env=deployed.env | {"DATASTORE_BATCH_FILES": "2"})
    assert first.returncode == 0, first.stderr
    rec = json.loads(first.stdout)
    second = json.loads(deployed.cli("create", str(src), "--submit", "--wait", "--json").stdout)
    assert (rec["version"], second["version"]) == (1, 2)
    assert deployed.cli("delete", "uiset", "--version", "1").returncode == 0
    deployed.http.files["/broken.tar.gz"] = b"not an archive at all"
    broken = deployed.cli("create", deployed.http.url("/broken.tar.gz"))
    reason = broken.stderr.strip().removeprefix("error: ")
    assert broken.returncode == 1 and "is not a usable archive" in reason, broken.stderr
    (failed,) = deployed.api("POST", "/flow_runs/filter", {"flow_runs": {"name": {"any_": ["create-broken"]}}})
    assert (failed["state_type"], failed["state"]["message"]) == ("FAILED", reason)  # the one-line reason, no prefix
    (details,) = [a for a in deployed.api("POST", "/artifacts/filter", {"artifacts": {"key": {"any_": ["datastore-uiset"]}}})
                  if a["flow_run_id"] == second["flow_run_id"]]

    shots = tmp_path / "screenshots"
    shots.mkdir()
    ui = deployed.server.url
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # The run: its graph (a canvas) over its logs, whose last line names the committed version.
            page.goto(f"{ui}/runs/flow-run/{rec['flow_run_id']}")
            page.get_by_text(f"committed uiset version 1: 7 files, 700 B from {src}").first.wait_for(timeout=90_000)
            page.wait_for_timeout(1500)  # the graph draws its bars after the data arrives
            page.screenshot(path=str(shots / "run-graph.png"), full_page=True)
            run_page = page.inner_text("body")
            page.get_by_text("Task Runs", exact=True).first.click()
            page.get_by_text("transfer 4/4").first.wait_for(timeout=90_000)
            task_tab = page.inner_text("body")
            # The failed run: its state message is the reason, as the CLI printed it.
            page.goto(f"{ui}/runs/flow-run/{failed['id']}")
            page.get_by_text("Failed", exact=True).first.wait_for(timeout=90_000)
            page.get_by_text(reason, exact=True).first.wait_for(timeout=90_000)
            page.screenshot(path=str(shots / "failed-run.png"), full_page=True)
            failed_page = page.inner_text("body")
            # The name's artifact history, every entry opened: versions 1 and 2, and version 1 deleted.
            page.goto(f"{ui}/artifacts/key/datastore-uiset")
            page.get_by_text("Created datastore-uiset").wait_for(timeout=90_000)
            headings = page.locator(".artifact-timeline-item-content__heading")
            for i in range(headings.count()):
                headings.nth(i).click()
            entries = ("datastore uiset version 1 (deleted)", "uiset version 1 — deleted", "datastore uiset version 2",
                       "datastore uiset version 1\n")
            for _ in range(180):  # an opened entry shows its body after a moment
                history = page.inner_text("body")
                if all(text in history for text in entries):
                    break
                page.wait_for_timeout(500)
            page.screenshot(path=str(shots / "artifact-history.png"), full_page=True)
            # One version's details page (an entry's link). The history shows the same source
            # path, so wait for the new page's address first, then for its content.
            page.get_by_text(details["id"][:8], exact=True).first.click()
            page.wait_for_url(lambda url: details["id"] in url, timeout=90_000)
            for _ in range(180):  # the route changes before its content has rendered
                details_page = page.inner_text("body")
                if "uiset version 2" in details_page and str(src) in details_page:
                    break
                page.wait_for_timeout(500)
            page.screenshot(path=str(shots / "artifact.png"), full_page=True)
        finally:
            browser.close()
    assert "Completed" in run_page and "6 Task runs" in run_page
    assert f"Finished in state Completed('committed uiset version 1: 7 files, 700 B from {src}')" in run_page
    names = ["scan", "transfer 1/4 · 2 files · 200 B", "transfer 2/4 · 2 files · 200 B", "transfer 3/4 · 2 files · 200 B",
             "transfer 4/4 · 1 file · 100 B", "commit"]
    assert [n for n in names if n not in task_tab.splitlines()] == [], task_tab
    assert "transfer-staging" not in task_tab and "plans/" not in task_tab  # no storage paths in the names
    assert "create-broken" in failed_page and failed_page.count("Traceback") == 0
    order = [history.index(text) for text in entries]
    assert order == sorted(order), history  # newest first: the deletion, version 2, version 1
    assert "uiset version 2" in details_page and str(src) in details_page, details_page[:2000]
    for shot in ("run-graph.png", "failed-run.png", "artifact-history.png", "artifact.png"):
        assert (shots / shot).stat().st_size > 10_000
