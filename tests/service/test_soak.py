"""The concurrency soak: creators (same and different names), a deleter, readers (``download``,
``datastore://`` in threads and in forked children as a DataLoader's workers read, and the FUSE
mount) and ``gc`` with a short grace, all at once on one S3 store.

Afterwards: every version number was handed out once and is never reused, every live version
verifies and holds exactly what its creation was given, no reader ever saw a wrong byte, and a
final ``gc`` leaves no unreferenced byte. ``DATASTORE_SOAK_SECONDS`` (default 45) sets how long
the load runs; ``make test`` keeps the default, a longer soak is one variable away.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import fsspec
import pytest

from datastore.errors import DatastoreError
from datastore.reading import reader
from datastore.service.delete import delete_version
from datastore.service.download import download
from datastore.service.gc import gc
from datastore.service.verify import verify
from datastore.settings import Settings
from datastore.store import open_store, versions
from tests.conftest import Cli, make_tree
from tests.readers import forked_read, mounted_tree, tree_of

SECONDS = float(os.environ.get("DATASTORE_SOAK_SECONDS", "45"))
NAMES = ("soak-a", "soak-b", "soak-c")
GRACE = 5  # seconds: far below the default hour, so gc runs against creations in flight
COMMON = {f"common/c{i:02d}.bin": hashlib.sha256(b"common%d" % i).digest() * 200 for i in range(8)}


def tree_for(n: int) -> dict[str, bytes]:
    """Creation ``n``'s files: shared ones (deduplicated across versions) and its own."""
    own = {f"own/{n}/f{i:02d}.bin": hashlib.sha256(b"%d-%d" % (n, i)).digest() * (50 + 37 * i) for i in range(12)}
    return COMMON | own


@dataclasses.dataclass
class Ledger:
    """What every actor did, shared by the threads (under ``lock``)."""

    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    committed: dict[tuple[str, int], int] = dataclasses.field(default_factory=dict)  # (name, version) → tree
    handed_out: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    deleted: set[tuple[str, int]] = dataclasses.field(default_factory=set)
    failures: list[str] = dataclasses.field(default_factory=list)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    wrong: list[str] = dataclasses.field(default_factory=list)

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def pick(self, rng: random.Random) -> tuple[str, int, int] | None:
        with self.lock:
            live = [(k, t) for k, t in self.committed.items() if k not in self.deleted]
        if not live:
            return None
        (name, version), tree = rng.choice(live)
        return name, version, tree


def soak_actor(stop: threading.Event, errors: list[BaseException], body: Callable[[], None]) -> threading.Thread:
    def loop() -> None:
        try:
            while not stop.is_set():
                body()
        except BaseException as exc:  # noqa: BLE001 - reported by the test, which fails on it
            errors.append(exc)
            stop.set()

    return threading.Thread(target=loop, daemon=True)


def test_creators_deleters_readers_and_gc_at_once_keep_every_invariant(
        cli: Cli, tmp_path: Path, seaweed_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASTORE_BATCH_FILES", "6")  # several batches per creation, gc between them
    monkeypatch.setenv("DATASTORE_GC_GRACE", str(GRACE))
    settings = Settings.from_env()
    store = open_store()
    ledger = Ledger()
    stop = threading.Event()
    errors: list[BaseException] = []
    serial = iter(range(1, 1_000_000))
    serial_lock = threading.Lock()

    def creator(rng: random.Random) -> Callable[[], None]:
        def create() -> None:
            with serial_lock:
                n = next(serial)
            name = rng.choice(NAMES)
            src = make_tree(tmp_path / f"src{n}", tree_for(n))
            proc = cli.run("create", str(src), "--name", name, "--json")
            shutil.rmtree(src)
            if proc.returncode != 0:
                with ledger.lock:
                    ledger.failures.append(proc.stderr)
                return
            version = json.loads(proc.stdout)["version"]
            with ledger.lock:
                ledger.handed_out.append((name, version))
                ledger.committed[(name, version)] = n
            ledger.count("created")
        return create

    def deleter(rng: random.Random) -> Callable[[], None]:
        def delete() -> None:
            time.sleep(rng.uniform(0.5, 2.0))
            picked = ledger.pick(rng)
            if picked is None:
                return
            name, version, _ = picked
            try:
                delete_version(name, version, store=store)
            except DatastoreError as exc:  # a reader holds it (VersionInUse): refused, nothing lost
                ledger.count(type(exc).__name__)
                return
            with ledger.lock:
                ledger.deleted.add((name, version))
            ledger.count("deleted")
        return delete

    def reader_by(kind: str, rng: random.Random) -> Callable[[], None]:
        def read() -> None:
            picked = ledger.pick(rng)
            if picked is None:
                time.sleep(0.2)
                return
            name, version, n = picked
            expected = tree_for(n)
            try:
                if kind == "download":
                    dest = tmp_path / f"dl-{threading.get_ident()}-{name}-{version}"
                    download(name, version, dest, settings=settings)
                    seen = tree_of(dest)
                    for p in sorted(dest.rglob("*"), reverse=True):  # the copy is read-only
                        p.chmod(0o755 if p.is_dir() else 0o644)
                    shutil.rmtree(dest)
                elif kind == "fsspec":
                    fs = fsspec.filesystem("datastore")
                    paths = rng.sample(sorted(expected), 5)
                    seen = {p: fs.cat_file(f"{name}@{version}/{p}") for p in paths}
                    time.sleep(0.01)  # leave the cores to the creators
                    expected = {p: expected[p] for p in paths}
                elif kind == "forked":
                    paths = rng.sample(sorted(expected), 5)
                    seen = forked_read(name, version, paths)
                    expected = {p: expected[p] for p in paths}
                elif kind == "mount":
                    seen = mounted_tree(name, version, tmp_path / f"mnt-{name}-{version}-{time.monotonic_ns()}",
                                        may_be_deleted=True)
                else:
                    raise AssertionError(f"unknown reader kind {kind!r}")
            except (DatastoreError, FileNotFoundError) as exc:  # deleted meanwhile: an error, never wrong bytes
                ledger.count(f"read refused: {kind} {type(exc).__name__}")
                return
            if seen != expected:
                with ledger.lock:
                    ledger.wrong.append(f"{kind} {name}@{version}: {sorted(set(seen) ^ set(expected))[:3]}")
            ledger.count(f"read {kind}")
        return read

    def collector() -> None:
        time.sleep(2)
        gc(settings=settings)
        ledger.count("gc")

    rngs = random.Random(1203)
    actors = [soak_actor(stop, errors, creator(random.Random(rngs.random()))) for _ in range(3)]
    actors += [soak_actor(stop, errors, deleter(random.Random(rngs.random())))]
    kinds = ("download", "fsspec", "forked", *(("mount",) if os.path.exists("/dev/fuse") else ()))
    actors += [soak_actor(stop, errors, reader_by(k, random.Random(rngs.random()))) for k in kinds]
    actors += [soak_actor(stop, errors, collector)]
    for a in actors:
        a.start()
    stop.wait(SECONDS)
    # A slow machine may not have finished one read of each kind yet (a mount is a process that
    # starts, and each pick may be deleted under it): go on, all actors at once, a while longer.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(ledger.counts.get(f"read {k}", 0) for k in kinds) \
            and not errors:
        time.sleep(0.5)
    stop.set()
    for a in actors:
        a.join(300)
    print(f"soak {SECONDS:.0f} s: {ledger.counts}, {len(ledger.failures)} failed creates")
    assert not errors, errors
    assert not ledger.wrong, ledger.wrong  # no reader ever saw wrong bytes
    for failure in ledger.failures:  # a creation may lose a race (a reclaimed object): one clear line, nothing visible
        lines = [ln for ln in failure.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), failure
    assert ledger.counts.get("created", 0) >= 6, ledger.counts
    assert ledger.counts.get("deleted", 0) >= 1 and ledger.counts.get("gc", 0) >= 3, ledger.counts
    for kind in kinds:
        assert ledger.counts.get(f"read {kind}", 0) >= 1, (kind, ledger.counts)

    # Numbers: handed out once each, and what the store holds is exactly what was handed out.
    assert len(set(ledger.handed_out)) == len(ledger.handed_out), ledger.handed_out
    scanned = versions.scan_versions(store)
    for name in NAMES:
        mine = {v for n, v in ledger.handed_out if n == name}
        got = scanned.get(name, {"versions": set(), "deleted": set()})
        assert got["versions"] | got["deleted"] == mine, (name, got, mine)
        assert got["deleted"] == {v for n, v in ledger.deleted if n == name}, name
    # A number is never reused: a create after all this gets the next one.
    after = cli.run("create", str(make_tree(tmp_path / "after", tree_for(0))), "--name", NAMES[0], "--json")
    assert after.returncode == 0, after.stderr
    highest = max([v for n, v in ledger.handed_out if n == NAMES[0]], default=0)
    assert json.loads(after.stdout)["version"] == highest + 1
    ledger.committed[(NAMES[0], highest + 1)] = 0

    # Every live version verifies and holds what its creation was given.
    for (name, version), n in ledger.committed.items():
        if (name, version) in ledger.deleted:
            continue
        checked = verify(name, version, store=store).report
        assert checked.ok and checked.files == len(tree_for(n)), (name, version, checked.problems)
        r = versions.resolve(store, name, version)
        assert {e.path for e in reader.entries(store, r)} == set(tree_for(n)), (name, version)

    # A final gc (no grace) leaves exactly the referenced bytes, and a second finds nothing.
    final = dataclasses.replace(settings, gc_grace=0)
    gc(settings=final)
    referenced = {e.object for r in versions.list_records(store) for e in reader.entries(store, r) if e.object}
    assert {o.key for o in store.list("data/")} == referenced
    again = gc(settings=final).report
    assert (again.objects, again.bytes, again.incomplete) == (0, 0, [])
