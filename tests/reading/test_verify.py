"""verify re-reads every stored byte against the manifest and names each bad file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from datastore.reading import reader
from datastore.reading.verify import verify
from datastore.store import open_store, versions
from datastore_flows.local_folder import create_from_local
from tests.conftest import make_tree

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_flipped_byte_and_missing_object_are_reported_per_file(tmp_path: Path, local_store: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASTORE_LARGE_FILE_BYTES", str(1024 * 1024))
    tree = {f"small/{i}.txt": os.urandom(500) for i in range(40)} | {"big.bin": os.urandom(9 * 1024 * 1024 + 7)}
    create_from_local(str(make_tree(tmp_path / "src", tree)), name="v")
    store = open_store()
    rec = versions.read_record(store, "v", 1)
    assert verify(store, rec).ok and verify(store, rec).files == 41
    entries = {e.path: e for e in reader.entries(store, rec)}
    victim = entries["small/7.txt"]
    pack = Path(local_store) / victim.object
    data = bytearray(pack.read_bytes())
    data[victim.offset + 3] ^= 0xFF  # same size, one flipped bit pattern: only a re-read can see it
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    report = verify(store, rec)
    assert [(p.path, p.problem) for p in report.problems] == [("small/7.txt", "changed")]
    big = Path(local_store) / entries["big.bin"].object
    big.unlink()
    report = verify(store, rec)
    assert sorted((p.path, p.problem) for p in report.problems) == [("big.bin", "missing"), ("small/7.txt", "changed")]


def test_a_wrong_block_hash_in_the_manifest_is_reported(tmp_path: Path, local_store: str) -> None:
    import dataclasses

    from datastore.model.manifest import ManifestWriter, read_items

    create_from_local(str(make_tree(tmp_path / "src", {"big.bin": os.urandom(20 * 1024 * 1024)})), name="v")
    store = open_store()
    rec = versions.read_record(store, "v", 1)
    assert verify(store, rec).ok
    manifest = Path(local_store) / rec.manifest
    items = list(read_items(manifest))
    assert len(items[0].blocks) == 3
    items[0] = dataclasses.replace(items[0], blocks=(items[0].blocks[0], "0" * 64, items[0].blocks[2]))
    manifest.chmod(0o644)
    with ManifestWriter(manifest) as w:  # the digest leaves blocks out: still the same version
        w.extend(items)
    report = verify(store, rec)
    assert [(p.path, p.problem, p.detail) for p in report.problems] == [
        ("big.bin", "changed", "the manifest's hash of block 1 does not match the file's bytes")]
