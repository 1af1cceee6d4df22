"""The kill matrix: ``kill -9`` every creation path before seeded random store writes, then check
what a user would: nothing half-made is visible, the re-run resumes and commits exactly one
version that verifies, and ``gc`` leaves only the bytes that version references.

Each path first runs once counting its store writes (``DATASTORE_FAILPOINT=store-write#0``); the
points are then drawn from ``1..count`` with a fixed seed (``DATASTORE_KILL_SEED`` to change it,
``DATASTORE_KILL_POINTS`` for more per path), always including the last two writes, which are
inside the commit (the version record and the end of the in-flight row). Every point gets a fresh
store, so dedup across points cannot hide a resume that redid work.
"""

from __future__ import annotations

import json
import os
import random
import dataclasses
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from datastore.reading import reader
from datastore.service.gc import gc
from datastore.service.verify import verify
from datastore.settings import Settings
from datastore.store import inflight, open_store, versions
from datastore.testing.http_server import serve
from tests.archives import tar_gz
from tests.conftest import Cli, make_tree, use_s3_env
from tests.creation.test_crash import kill_at
from tests.flows.test_flow_s3 import source_bucket

FILES = {f"d{i // 40}/f{i:04d}.bin": os.urandom(6_000 + i) for i in range(120)}
TOTAL = sum(map(len, FILES.values()))
BATCH = 40
# 3 batches, one after the other. The status heartbeat is timed, so it is held off: a slow run would
# otherwise make more store writes than the counting run, and the last points would never be reached.
SETTINGS = {"DATASTORE_BATCH_FILES": str(BATCH), "DATASTORE_WORKERS": "1", "DATASTORE_STATUS_INTERVAL": "3600"}
SEED = int(os.environ.get("DATASTORE_KILL_SEED", "20261203"))
POINTS = int(os.environ.get("DATASTORE_KILL_POINTS", "8"))
PATHS = ("local", "s3-copy", "s3-ref", "http")


@dataclass
class Case:
    """One creation path: the ``create`` arguments, and the store it writes to."""

    path: str
    args: tuple[str, ...]
    store_base: str  # a local directory or an s3:// prefix; each kill point gets its own under it


@pytest.fixture(scope="module")
def archive() -> Iterator[str]:
    with serve({"/set.tar.gz": tar_gz(FILES)}) as http:
        yield http.url("/set.tar.gz")


def case_for(path: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Case:
    if path == "local":
        return Case(path, (str(make_tree(tmp_path / "src", FILES)),), str(tmp_path / "stores"))
    seaweed = request.getfixturevalue("seaweed")
    use_s3_env(seaweed, monkeypatch)
    store_bucket = source_bucket(seaweed, {})
    if path == "http":
        monkeypatch.setenv("DATASTORE_HTTP_ALLOW_PRIVATE", "1")
        return Case(path, (request.getfixturevalue("archive"),), f"s3://{store_bucket}")
    source = f"s3://{source_bucket(seaweed, {f'p/{k}': v for k, v in FILES.items()})}/p/"
    return Case(path, (source, "--no-copy") if path == "s3-ref" else (source,), f"s3://{store_bucket}")


def data_bytes(store) -> int:  # noqa: ANN001 - a Store
    return sum(o.size for o in store.list("data/"))


def referenced_bytes(store) -> int:  # noqa: ANN001 - a Store
    keys = {e.object for r in versions.list_records(store) for e in reader.entries(store, r) if e.object}
    return sum(store.head(k).size for k in keys)


def numbers(store, name: str) -> set[int]:  # noqa: ANN001 - a Store
    return versions.scan_versions(store, name).get(name, {}).get("versions", set())


@pytest.mark.parametrize("path", PATHS)
def test_a_creation_killed_at_random_points_resumes_to_one_version(
        path: str, cli: Cli, tmp_path: Path, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    case = case_for(path, tmp_path, request, monkeypatch)
    counter = tmp_path / "count"
    counted = cli.run("create", *case.args, "--name", "kill", DATASTORE_STORE=f"{case.store_base}/count",
                      DATASTORE_FAILPOINT="store-write#0", DATASTORE_FAILPOINT_FILE=str(counter),
                      **SETTINGS)
    assert counted.returncode == 0, counted.stderr
    writes = int(counter.read_text())
    assert writes >= 6, writes  # three batches, the manifest, the record, the end of the run's row
    rng = random.Random(f"{SEED}-{path}")
    points = sorted({writes, writes - 1, *rng.sample(range(1, writes - 1), min(POINTS - 2, writes - 2))})
    print(f"{path}: {writes} store writes, killed before writes {points} (seed {SEED})")
    settings = Settings.from_env()
    # Two points at a time: each is its own store and its own processes (the CLI waits on Prefect).
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda point: check_point(cli, case, point, tmp_path, settings), points))


def check_point(cli: Cli, case: Case, point: int, tmp_path: Path, settings: Settings) -> None:
    """Kill ``case``'s creation before store write ``point`` in a fresh store, then check it all."""
    url = f"{case.store_base}/p{point}"
    env = {"DATASTORE_STORE": url}
    settings = dataclasses.replace(settings, store=url, gc_grace=0)
    store = open_store(url, settings)
    kill_at(cli, f"store-write#{point}", tmp_path / f"frozen-{point}", "create", *case.args, "--name", "kill",
            env=env | SETTINGS)
    visible = numbers(store, "kill")
    # Before the record's write nothing is visible; at or after it the version is whole.
    assert visible in (set(), {1}), (point, visible)
    if visible:
        verify("kill", 1, store=store).raise_for_problems()
    done_before = data_bytes(store)

    rerun = cli.run("create", *case.args, "--name", "kill", "--json", **env, **SETTINGS)
    assert rerun.returncode == 0, (point, rerun.stderr)
    rec = json.loads(rerun.stdout)
    assert rec["files"] == len(FILES), point
    assert numbers(store, "kill") == {1} | ({rec["version"]} if visible else set()), point
    if not visible:
        assert rec["version"] == 1, point
        # Finished batches are not redone: at most what was missing plus the batch in flight.
        assert rec["bytes_uploaded"] <= TOTAL - done_before + BATCH * max(map(len, FILES.values())), \
            (point, rec["bytes_uploaded"], done_before)
    for version in numbers(store, "kill"):
        checked = verify("kill", version, store=store).report
        assert checked.ok and checked.files == len(FILES), (point, checked.problems)
    left = [(r.status, r.reason) for r in inflight.read_all(store, settings.lease_ttl) if r.name == "kill"]
    assert left == [], (point, left)  # the killed run's row went with the commit

    gc(settings=settings)
    assert data_bytes(store) == referenced_bytes(store), point  # only referenced data is left
    again = gc(settings=settings).report
    assert (again.objects, again.bytes, again.incomplete) == (0, 0, []), point
