"""Every operation through a faulty S3: at ~10 % faults everything succeeds and verifies; at 100 %
it fails with one line and leaves nothing visible.

The store (and the S3 sources) sit behind :mod:`datastore.testing.faulty_s3`, a real proxy in
front of SeaweedFS that answers 503 SlowDown before forwarding, 500 after forwarding (the request
took effect), resets connections half-way through an answer, and adds latency, each at its
rate, from a seeded generator.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from datastore.reading.verify import verify
from datastore.service import delete as deletion
from datastore.service.download import download
from datastore.service.gc import gc
from datastore.store import open_store, versions
from datastore.testing.faulty_s3 import Fault, FaultyS3, faulty_s3
from datastore.testing.http_server import serve
from datastore.testing.servers import S3Server
from datastore_flows.http_archive import create_from_http
from datastore_flows.local_folder import create_from_local
from datastore_flows.s3_copy import create_from_s3
from datastore_flows.s3_reference import reference_s3
from tests.archives import tar_gz
from tests.conftest import Cli, make_tree, use_s3_env
from tests.readers import forked_read, mounted_tree, tree_of

pytestmark = pytest.mark.usefixtures("prefect_api")

MiB = 1024 * 1024

TREE = {f"d{i % 4}/f{i:03d}.bin": hashlib.sha256(str(i).encode()).digest() * (1 + i % 50) for i in range(120)} | {
    "big/model.bin": os.urandom(18 * MiB + 11),  # several blocks: ranged, block-checked reads
    "empty.txt": b"",
    "with space/é.txt": "é".encode(),
}


def ten_percent() -> list[Fault]:
    """About one request in ten gets a fault, of every kind."""
    return [Fault("503-before", 0.035), Fault("500-after", 0.03), Fault("reset", 0.035),
            Fault("latency", 0.05, delay=0.02)]


@pytest.fixture
def proxy(seaweed: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultyS3]:
    """The fault proxy in front of SeaweedFS; the store is a fresh bucket through it."""
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    seaweed.client().create_bucket(Bucket=bucket)
    monkeypatch.setenv("DATASTORE_HTTP_ALLOW_PRIVATE", "1")  # the archive server is on loopback
    monkeypatch.setenv("DATASTORE_GC_GRACE", "0")
    with faulty_s3(seaweed, seed=14) as p:
        use_s3_env(p.server(), monkeypatch, DATASTORE_STORE=f"s3://{bucket}/store")
        yield p


def source_bucket(server: S3Server, files: dict[str, bytes]) -> str:
    bucket = f"src-{uuid.uuid4().hex[:10]}"
    c = server.client()
    c.create_bucket(Bucket=bucket)
    for key, data in files.items():
        c.put_object(Bucket=bucket, Key=f"data/{key}", Body=data)
    return bucket


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse (FUSE); CI machines have it")
def test_every_operation_survives_ten_percent_faults_and_every_version_verifies(
        proxy: FaultyS3, seaweed: S3Server, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", TREE)
    bucket = source_bucket(seaweed, TREE)
    archive = tar_gz(TREE)
    proxy.faults += ten_percent()
    with serve({"/data.tar.gz": archive}) as http:
        made = {
            "local": create_from_local(str(src), name="local"),
            "copy": create_from_s3(f"s3://{bucket}/data/", name="copy"),
            "ref": reference_s3(f"s3://{bucket}/data/", name="ref"),
            "http": create_from_http(http.url("/data.tar.gz"), name="http"),
        }
    store = open_store()
    assert {r.name: r.version for r in versions.list_records(store)} == {n: 1 for n in made}

    for name in made:
        report = verify(store, versions.read_record(store, name, 1))
        assert report.ok and report.files == len(TREE), report.to_json()
        got = download(name, 1, tmp_path / f"copy-{name}")
        assert tree_of(got.path) == TREE
        assert forked_read(name, 1, sorted(TREE)) == TREE
    assert mounted_tree("copy", 1, tmp_path / "mnt") == TREE

    # Delete two, collect, and what is left still reads back exactly.
    deletion.delete_version("local", 1)
    deletion.delete_all("http")
    gc()
    print("faults injected and survived:", {f.kind: f.injected for f in proxy.faults})
    for f in proxy.faults:
        assert f.injected > 0, f  # each kind really happened
    proxy.faults.clear()
    assert versions.live_numbers(store, "local") == [] and versions.live_numbers(store, "http") == []
    for name in ("copy", "ref"):
        assert verify(store, versions.read_record(store, name, 1)).ok
    again = gc()  # the faulty run's leftovers went in the first collection: none now
    assert (again.report.objects, again.report.bytes, again.report.incomplete) == (0, 0, [])


def test_at_one_hundred_percent_a_create_fails_with_one_line_and_leaves_nothing(
        proxy: FaultyS3, tmp_path: Path, cli_ephemeral: Cli) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": b"a", "b.txt": b"b"})
    proxy.faults.append(Fault("503-before", 1.0))
    done = cli_ephemeral.run("create", str(src), "--name", "never")
    assert done.returncode == 1, done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "SlowDown" in lines[0] or "503" in lines[0], lines[0]
    proxy.faults.clear()
    assert versions.scan_versions(open_store()) == {}
