"""The HTTP-archive flow end to end: a real local HTTP server serving archives built here."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from datastore.errors import UnsafeArchive
from datastore.model.manifest import BLOCK_BYTES, Entry
from datastore.reading import reader
from datastore.store import open_store, versions
from datastore.testing.http_server import serve
from datastore_flows.http_archive import create_from_http
from tests.archives import build

pytestmark = pytest.mark.usefixtures("prefect_api")

TREE = {
    "trainingSet/README.txt": b"read me\n",
    "trainingSet/empty.txt": b"",
    "trainingSet/images/nested/deeper/x.bin": os.urandom(5000),
    "trainingSet/naïve 日本/ü.csv": b"a,b\n1,2\n",
    "trainingSet/labels.json": b'{"cat": 1}',
}


@pytest.fixture(autouse=True)
def _allow_loopback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATASTORE_HTTP_ALLOW_PRIVATE", "1")  # the test server is on 127.0.0.1
    monkeypatch.setenv("DATASTORE_WORK_DIR", str(tmp_path / "work"))


def scratch_left(work: Path) -> list[Path]:
    """What a create left in its scratch folder, apart from the (empty) lock files it keeps."""
    return [p for p in work.iterdir() if p.suffix != ".lock"] if work.exists() else []


def entries_of(record: dict) -> dict[str, Entry]:
    store = open_store()
    rec = versions.read_record(store, record["name"], record["version"])
    return {e.path: e for e in reader.entries(store, rec)}


def block_slices(data: bytes) -> tuple[str, ...]:
    """The sha256 of each BLOCK_BYTES slice: what the manifest's ``blocks`` must hold."""
    return tuple(hashlib.sha256(data[i:i + BLOCK_BYTES]).hexdigest() for i in range(0, len(data), BLOCK_BYTES))


def read_back(record: dict) -> dict[str, bytes]:
    store = open_store()
    rec = versions.read_record(store, record["name"], record["version"])
    rd = reader.Reader(store, rec)
    return {e.path: rd.read(e) for e in reader.entries(store, rec)}


@pytest.mark.parametrize(("fmt", "suffix"), [("zip", ".zip"), ("tar.gz", ".tar.gz"), ("tar.gz", ".tgz"), ("tar", ".tar")])
def test_archive_contents_become_the_datastore(any_store: str, tmp_path: Path, fmt: str, suffix: str) -> None:
    archive = build(fmt, TREE)
    with serve({f"/subfolder/trainingSet{suffix}": archive}) as server:
        record = create_from_http(server.url(f"/subfolder/trainingSet{suffix}") + "?token=s3cr3t-tok3n&v=2#frag")
    assert (record["name"], record["kind"]) == ("trainingset", "http-archive")
    assert record["files"] == len(TREE) and record["bytes"] == sum(map(len, TREE.values()))
    got = entries_of(record)
    assert {p: (e.size, e.sha256) for p, e in got.items()} == {
        p: (len(d), hashlib.sha256(d).hexdigest()) for p, d in TREE.items()}
    assert read_back(record) == TREE
    detail = record["source_detail"]
    assert detail["format"] == fmt and detail["archive_sha256"] == hashlib.sha256(archive).hexdigest()
    assert detail["archive_bytes"] == len(archive) and detail["etag"] and detail["last_modified"]
    assert record["source"].endswith(f"trainingSet{suffix}?token=***&v=2")  # secret masked, fragment dropped
    assert "s3cr3t-tok3n" not in json.dumps(record)
    assert scratch_left(tmp_path / "work") == []  # scratch removed


def test_large_member_streams_and_an_unchanged_url_reuses_everything(local_store: str) -> None:
    big = os.urandom(200 * 1024 * 1024 + 5)  # a 200 MB member (random: every block hash differs)
    packed = os.urandom(10 * 1024 * 1024)  # packed (under large_file_bytes), still two blocks
    tree = {"big/model.bin": big, "packed.bin": packed, "small.txt": b"s"}
    with serve({"/model.tar": build("tar", tree)}) as server:
        first = create_from_http(server.url("/model.tar"))
        again = create_from_http(server.url("/model.tar"))
    got = entries_of(first)
    assert got["big/model.bin"].sha256 == hashlib.sha256(big).hexdigest()
    assert first["bytes"] == len(big) + len(packed) + 1
    assert got["big/model.bin"].blocks == block_slices(big) and len(got["big/model.bin"].blocks) == 26
    assert got["packed.bin"].blocks == block_slices(packed) and got["small.txt"].blocks is None
    assert again["version"] == 2 and again["bytes_uploaded"] == 0 and again["digest"] == first["digest"]
    assert entries_of(again) == got  # the previous manifest, block hashes and all


def test_download_dropped_at_60_percent_resumes_with_range(local_store: str) -> None:
    tree = TREE | {"noise.bin": os.urandom(2 * 1024 * 1024)}
    archive = build("tar.gz", tree)
    with serve({"/data.tar.gz": archive}) as server:
        server.configure("/data.tar.gz", drop_at=0.6)
        record = create_from_http(server.url("/data.tar.gz"))
        ranges = [h.get("Range") for _, _, h in server.requests_for("/data.tar.gz")]
    assert any(r and r.startswith("bytes=") and r != "bytes=0-" for r in ranges), ranges
    assert record["source_detail"]["archive_sha256"] == hashlib.sha256(archive).hexdigest()
    assert read_back(record) == tree


def test_unsafe_archive_commits_nothing(local_store: str, tmp_path: Path) -> None:
    archive = build("zip", {"ok.txt": b"fine", "../evil.txt": b"escape"})
    with serve({"/bad.zip": archive}) as server, pytest.raises(
            UnsafeArchive, match=r"archive member '../evil.txt' refused: the name contains a '..' segment"):
        create_from_http(server.url("/bad.zip"))
    store = open_store()
    assert versions.scan_versions(store) == {}
    assert list(store.list("data/")) == [] and list(store.list("manifests/")) == []
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "work" / "evil.txt").exists()


def test_too_many_members_commits_nothing(local_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASTORE_MAX_ARCHIVE_MEMBERS", "3")
    archive = build("tar.gz", {f"e{i}.txt": b"" for i in range(4)})
    with serve({"/empties.tar.gz": archive}) as server, pytest.raises(
            UnsafeArchive, match=r"archive member 'e3.txt' refused: the archive has more than "
                                 r"DATASTORE_MAX_ARCHIVE_MEMBERS \(3\) entries"):
        create_from_http(server.url("/empties.tar.gz"))
    assert versions.scan_versions(open_store()) == {}


def test_a_rerun_after_a_later_failure_does_not_download_again(local_store: str) -> None:
    from datastore.creation.sources import http as http_archive
    from datastore.creation.sources import http as http_job
    from datastore.settings import Settings

    with serve({"/again.tar.gz": build("tar.gz", TREE)}) as server:
        settings = Settings.from_env()
        job = http_job.prepare(server.url("/again.tar.gz"), None, settings)
        first = http_archive.fetch(job, settings)
        http_archive.release(job)
        second = http_archive.fetch(job, settings)  # e.g. the transfer failed and the create runs again
        http_archive.cleanup(job, settings)
        gets = [m for m, _, _ in server.requests_for("/again.tar.gz") if m == "GET"]
    assert first == second and len(gets) == 1


@pytest.mark.parametrize("on_worker", [True, False])
def test_a_private_address_refused_on_a_worker_names_the_workers_setting(
        local_store: str, monkeypatch: pytest.MonkeyPatch, on_worker: bool) -> None:
    """Defect (issue 14, checked against 737561e): with the variable set where the user submitted,
    the worker told them to set it, without saying that it is the worker's environment that counts."""
    import socket

    from datastore.errors import UrlRefused

    monkeypatch.delenv("DATASTORE_HTTP_ALLOW_PRIVATE")  # the worker's environment lacks it
    if on_worker:  # what a deployment's flow run sees (prefect.runtime's documented override)
        monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__ID", "00000000-0000-0000-0000-000000000001")
    with serve({"/a.zip": build("zip", {"a.txt": b"a"})}) as server:
        with pytest.raises(UrlRefused) as caught:
            create_from_http(server.url("/a.zip"), name="private")
    message = caught.value.line()
    if on_worker:
        assert (f"is a private/loopback address; set DATASTORE_HTTP_ALLOW_PRIVATE=1 on the worker on "
                f"{socket.gethostname()} to allow it: the worker's environment decides") in message, message
    else:
        assert "is a private/loopback address; set DATASTORE_HTTP_ALLOW_PRIVATE=1 to allow it: " in message, message
    assert versions.scan_versions(open_store(local_store)) == {}
