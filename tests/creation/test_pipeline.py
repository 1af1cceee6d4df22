"""The creation pipeline end to end on a local folder and store (no orchestrator): block hashes."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import time
from pathlib import Path

import pytest

from datastore.creation import pipeline
from datastore.creation.sources import local as local_source
from datastore.model.manifest import BLOCK_BYTES, Entry
from datastore.reading.reader import Reader
from datastore.settings import Settings
from datastore.store import open_store, versions
from tests.conftest import make_tree

MiB = 1024 * 1024


def slices(data: bytes) -> tuple[str, ...]:
    """What ``blocks`` must hold: the sha256 of each BLOCK_BYTES slice."""
    return tuple(hashlib.sha256(data[i:i + BLOCK_BYTES]).hexdigest() for i in range(0, len(data), BLOCK_BYTES))


def create(src: Path, name: str, settings: Settings) -> versions.VersionRecord:
    """prepare → scan → transfer every batch → commit, as the local flow does."""
    job = pipeline.prepare(str(src), name, "local", settings)
    plan = local_source.scan(job, settings)
    done = [local_source.transfer_batch(job, key, settings) for key in plan.plan_keys]
    record = pipeline.commit(open_store(job.store, settings), job, [k for k, _ in done], sum(u for _, u in done),
                             settings, None)
    assert isinstance(record, versions.VersionRecord)
    return record


def entries(record: versions.VersionRecord) -> dict[str, Entry]:
    return {e.path: e for e in Reader(open_store(), record).entries()}


def settle(root: Path) -> None:
    """Old mtimes, so the next create trusts them and reuses the files (the racy-git rule)."""
    old = time.time() - 3600
    for p in root.rglob("*"):
        os.utime(p, (old, old))


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, bytes]:
    rnd = random.Random(7)
    return {
        "packed.bin": rnd.randbytes(20 * MiB),  # under large_file_bytes (32 MiB): packed, 3 blocks
        "exact.bin": rnd.randbytes(2 * BLOCK_BYTES),  # packed, exactly 2 full blocks
        "one-block.bin": rnd.randbytes(BLOCK_BYTES),  # packed, one block: no block hashes
        "own/large.bin": rnd.randbytes(40 * MiB + 3),  # its own object, streamed: 6 blocks
        "small.txt": b"small",
    }


def test_files_larger_than_a_block_record_their_block_hashes(tmp_path: Path, local_store: str,
                                                            tree: dict[str, bytes]) -> None:
    settings = Settings.from_env()
    assert settings.large_file_bytes == 32 * MiB  # what makes packed.bin packed and large.bin its own object
    src = make_tree(tmp_path / "src", tree)
    got = entries(create(src, "blocks", settings))
    assert got["packed.bin"].object == got["exact.bin"].object and got["packed.bin"].object.startswith("data/p-")
    assert got["own/large.bin"].offset == 0 and got["own/large.bin"].object != got["packed.bin"].object
    for path in ("packed.bin", "exact.bin", "own/large.bin"):
        assert got[path].blocks == slices(tree[path]), path
    assert len(got["own/large.bin"].blocks) == 6 and len(got["exact.bin"].blocks) == 2
    assert got["one-block.bin"].blocks is None and got["small.txt"].blocks is None
    rd = Reader(open_store(), versions.read_record(open_store(), "blocks", 1))
    for path in ("packed.bin", "own/large.bin"):
        e = got[path]
        assert b"".join(rd.read_block(e, i) for i in range(e.block_count)) == tree[path]


def test_reuse_carries_block_hashes_and_an_old_entry_stays_without(tmp_path: Path, local_store: str,
                                                                   tree: dict[str, bytes]) -> None:
    settings = Settings.from_env()
    src = make_tree(tmp_path / "src", tree)
    settle(src)
    first = create(src, "reuse", settings)
    second = create(src, "reuse", settings)
    assert second.bytes_uploaded == 0 and second.digest == first.digest
    assert entries(second) == entries(first)  # every entry reused as it was, blocks included
    assert entries(second)["own/large.bin"].blocks == slices(tree["own/large.bin"])

    # A version stored before block hashes existed: the same manifest without "blocks".
    store = open_store()
    lines = [json.loads(line) for line in gzip.decompress(store.get_bytes(second.manifest)).splitlines()]
    assert any("blocks" in d for d in lines)
    old = b"".join(json.dumps({k: v for k, v in d.items() if k != "blocks"}).encode() + b"\n" for d in lines)
    Path(local_store, *second.manifest.split("/")).write_bytes(gzip.compress(old))
    third = create(src, "reuse", settings)
    assert third.bytes_uploaded == 0 and third.digest == first.digest  # blocks are not part of the digest
    assert all(e.blocks is None for e in entries(third).values())  # reused as they were: no hashes made up

    # A changed file gets its block hashes again; the unchanged ones stay as they were.
    changed = random.Random(8).randbytes(9 * MiB)
    (src / "packed.bin").write_bytes(changed)
    old = time.time() - 7200  # settled, and another mtime than before
    os.utime(src / "packed.bin", (old, old))
    fourth = entries(create(src, "reuse", settings))
    assert fourth["packed.bin"].blocks == slices(changed) and fourth["own/large.bin"].blocks is None


def test_a_resumed_run_whose_lost_execution_committed_returns_that_version(tmp_path: Path, local_store: str) -> None:
    """Killed after its commit, a run taken up again (same flow run) must not commit a second version."""
    settings = Settings.from_env()
    src = make_tree(tmp_path / "src", {"a.txt": b"a", "d/b.bin": os.urandom(3000)})

    def commit(flow_run_id: str, resumed: bool) -> versions.VersionRecord:
        job = pipeline.prepare(str(src), "resumed", "local", settings)
        plan = local_source.scan(job, settings)
        done = [local_source.transfer_batch(job, key, settings) for key in plan.plan_keys]
        record = pipeline.commit(open_store(job.store, settings), job, [k for k, _ in done],
                                 sum(u for _, u in done), settings, flow_run_id, resumed=resumed)
        assert isinstance(record, versions.VersionRecord)
        return record

    first = commit("run-1", resumed=False)
    again = commit("run-1", resumed=True)  # the same flow run, resumed after the commit
    assert (again.version, again.create_id, again.digest) == (1, first.create_id, first.digest)
    assert versions.live_numbers(open_store(), "resumed") == [1]
    assert commit("run-2", resumed=True).version == 2  # another run's creation is a new version
    assert commit("run-1", resumed=False).version == 3  # a first execution does not look (nothing to find)


def test_a_large_version_stores_its_tree_index_and_a_failed_build_only_leaves_it_out(
        tmp_path: Path, local_store: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import sqlite3

    from datastore.store import index as tree_index

    src = make_tree(tmp_path / "src", {f"d{i % 3}/f{i}.txt": os.urandom(100) for i in range(12)})
    small = create(src, "few", Settings(store=local_store, index_files=13))  # under the threshold: none
    assert (small.manifest_index, small.manifest_index_sha256) == ("", "")
    big = create(src, "many", Settings(store=local_store, index_files=12))
    stored = open_store().get_bytes(big.manifest_index)
    assert hashlib.sha256(stored).hexdigest() == big.manifest_index_sha256
    assert big.manifest_index == f"manifests/{big.create_id}.index-{big.manifest_index_sha256}.sqlite"

    def broken(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(tree_index, "build", broken)
    settle(src)
    again = create(src, "many", Settings(store=local_store, index_files=12))  # committed all the same
    assert (again.version, again.manifest_index, again.manifest_index_sha256) == (2, "", "")
    assert "many: the tree index was not built (database or disk is full); mounts will build it from the manifest" \
        in caplog.text
