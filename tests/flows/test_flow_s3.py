"""The S3 creation flows (copy and ``--no-copy``) end to end, against SeaweedFS and moto servers."""

from __future__ import annotations

import hashlib
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from datastore.errors import ReferenceBroken, SourceChanged
from datastore.model.manifest import BLOCK_BYTES, Skipped
from datastore.reading import reader
from datastore.reading.verify import verify
from datastore.store import open_store, versions
from datastore.testing.servers import S3Server
from datastore_flows.s3_copy import create_from_s3
from datastore_flows.s3_reference import reference_s3
from tests.conftest import use_s3_env

pytestmark = pytest.mark.usefixtures("prefect_api")

MiB = 1024 * 1024

# Keys that trip up naive tools: spaces, unicode, '+', a 0-byte object, deep nesting.
AWKWARD = {
    "with space/a file.txt": b"spaces",
    "unicodé/naïve-日本.txt": b"unicode",
    "plus+sign/c++.txt": b"plus",
    "empty.bin": b"",
    "deep/er/and/deeper/x.json": b'{"x": 1}',
    "a-c": b"dash sorts before slash",
    "a/b": b"inside a",
}


def source_bucket(server: S3Server, objects: dict[str, bytes], versioned: bool = False,
                  threads: int = 16) -> str:
    """A fresh bucket on ``server`` holding ``objects`` (uploaded by ``threads`` threads)."""
    bucket = f"src-{uuid.uuid4().hex[:10]}"
    c = server.client()
    c.create_bucket(Bucket=bucket)
    if versioned:
        c.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda kv: c.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), objects.items()))
    return bucket


def many(n: int, prefix: str = "data/") -> dict[str, bytes]:
    return {f"{prefix}p{i // 250:02d}/obj-{i:05d}.bin": hashlib.sha256(str(i).encode()).digest() * (1 + i % 5)
            for i in range(n)}


def read_all(record: dict) -> dict[str, bytes]:
    store = open_store()
    rec = versions.read_record(store, record["name"], record["version"])
    rd = reader.Reader(store, rec)
    return {e.path: rd.read(e) for e in reader.entries(store, rec)}


def manifest_items(record: dict) -> list:
    store = open_store()
    rec = versions.read_record(store, record["name"], record["version"])
    return list(reader.manifest_items(store, rec.manifest))


@pytest.fixture(params=["seaweed", "moto"])
def server(request: pytest.FixtureRequest) -> S3Server:
    """Each S3 server in turn, with the store in a fresh bucket on the same server."""
    request.getfixturevalue(f"{request.param}_store")
    return request.getfixturevalue(request.param)


def test_copy_paginates_and_keeps_awkward_keys(server: S3Server) -> None:
    objects = many(1_200) | {f"data/{k}": v for k, v in AWKWARD.items()} | {
        "data/": b"",  # folder marker of the prefix itself
        "data/folder/": b"",  # folder marker inside
        "data/odd/": b"holds bytes",  # a key ending in '/' with bytes: skipped with a reason
        "outside/x": b"not under the prefix",
    }
    bucket = source_bucket(server, objects)
    record = create_from_s3(f"s3://{bucket}/data/")
    assert record["name"] == "data" and record["kind"] == "s3-copy" and record["version"] == 1
    expected = {k.removeprefix("data/"): v for k, v in objects.items()
                if k.startswith("data/") and not k.endswith("/")}
    assert record["files"] == len(expected) == 1_207
    assert record["bytes"] == sum(map(len, expected.values()))
    assert read_all(record) == expected
    items = manifest_items(record)
    assert [i.path for i in items] == sorted(i.path for i in items)  # path order even though SeaweedFS lists otherwise
    # SeaweedFS turns a key ending in '/' into a folder (its bytes are dropped); moto keeps them.
    odd = server.client().head_object(Bucket=bucket, Key="data/odd/")["ContentLength"]
    assert [(i.path, i.reason) for i in items if isinstance(i, Skipped)] == (
        [("odd/", "key ends in '/' but holds 11 bytes; a file cannot have that name")] if odd else [])
    entry = next(i for i in items if not isinstance(i, Skipped) and i.path == "plus+sign/c++.txt")
    assert entry.source["key"] == "data/plus+sign/c++.txt"
    assert entry.source["etag"] == hashlib.md5(b"plus").hexdigest()
    assert entry.sha256 == hashlib.sha256(b"plus").hexdigest()
    # small objects are packed: far fewer store objects than files
    assert len(list(open_store().list("data/"))) <= 5


def test_unchanged_prefix_copies_nothing_and_a_change_copies_only_it(server: S3Server) -> None:
    objects = many(300)
    bucket = source_bucket(server, objects)
    first = create_from_s3(f"s3://{bucket}/data", name="snap")
    assert first["bytes_uploaded"] > 0
    second = create_from_s3(f"s3://{bucket}/data", name="snap")
    assert second["version"] == 2 and second["bytes_uploaded"] == 0 and second["digest"] == first["digest"]
    server.client().put_object(Bucket=bucket, Key="data/p00/obj-00007.bin", Body=b"new bytes")
    third = create_from_s3(f"s3://{bucket}/data", name="snap")
    assert third["bytes_uploaded"] == len(b"new bytes") and third["digest"] != first["digest"]
    assert read_all(third)["p00/obj-00007.bin"] == b"new bytes"
    assert read_all(first)["p00/obj-00007.bin"] == objects["data/p00/obj-00007.bin"]


def test_large_objects_are_copied_server_side_in_parts(server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASTORE_LARGE_FILE_BYTES", str(MiB))
    monkeypatch.setenv("DATASTORE_COPY_MULTIPART_BYTES", str(5 * MiB))
    monkeypatch.setenv("DATASTORE_COPY_PART_BYTES", str(5 * MiB))
    big = bytes(range(256)) * (12 * MiB // 256) + b"tail"  # 3 parts of UploadPartCopy
    medium = b"m" * (2 * MiB)  # one CopyObject
    bucket = source_bucket(server, {"large/big.bin": big, "large/medium.bin": medium, "large/small.txt": b"s"})
    record = create_from_s3(f"s3://{bucket}/large/")
    assert record["files"] == 3 and record["bytes_uploaded"] == len(big) + len(medium) + 1
    assert read_all(record) == {"big.bin": big, "medium.bin": medium, "small.txt": b"s"}
    entries = {i.path: i for i in manifest_items(record)}
    assert entries["big.bin"].sha256 is None and entries["big.bin"].object.startswith("data/c-")
    assert entries["big.bin"].blocks is None  # 12 MiB, but its bytes never passed through here
    assert entries["big.bin"].etag  # the stored copy's ETag, checked by verify
    again = create_from_s3(f"s3://{bucket}/large/")
    assert again["bytes_uploaded"] == 0 and again["digest"] == record["digest"]
    assert verify(open_store(), versions.read_record(open_store(), "large", 2)).ok


@pytest.mark.parametrize("changed", ["data/p00/obj-00003.bin", "data/big.bin"])
def test_object_changed_between_listing_and_copy_is_named(seaweed_store: str, seaweed: S3Server, changed: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A small object (GET If-Match) or a large one (CopySourceIfMatch) overwritten after the listing."""
    from datastore.creation.sources import s3 as s3_job
    from datastore.creation.sources import s3_copy
    from datastore.settings import Settings

    bucket = source_bucket(seaweed, many(50) | {"data/big.bin": b"B" * (2 * MiB)})
    monkeypatch.setenv("DATASTORE_LARGE_FILE_BYTES", str(MiB))
    settings = Settings.from_env()
    job = s3_job.prepare(f"s3://{bucket}/data/", None, False, None, settings)
    plan = s3_copy.scan(job, settings)
    seaweed.client().put_object(Bucket=bucket, Key=changed, Body=b"changed after listing")
    with pytest.raises(SourceChanged, match=rf"source file '{changed}' changed while it was being read "
                                            r"\(its ETag no longer matches the listing\): run the same create again"):
        s3_copy.transfer_batch(job, plan.plan_keys[0], settings)
    assert versions.list_records(open_store(), None) == []
    # Running the create again takes the new bytes.
    record = create_from_s3(f"s3://{bucket}/data/")
    assert read_all(record)[changed.removeprefix("data/")] == b"changed after listing"


def test_copy_into_a_local_store_streams_through(local_store: str, seaweed: S3Server,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    use_s3_env(seaweed, monkeypatch, DATASTORE_LARGE_FILE_BYTES=str(MiB))
    objects = many(40) | {"data/big.bin": os.urandom(17 * MiB + 1)}  # 3 blocks of 8 MiB
    bucket = source_bucket(seaweed, objects)
    record = create_from_s3(f"s3://{bucket}/data/", name="local-copy")
    got = read_all(record)
    assert got == {k.removeprefix("data/"): v for k, v in objects.items()}
    big = next(i for i in manifest_items(record) if i.path == "big.bin")
    data = objects["data/big.bin"]
    assert big.sha256 == hashlib.sha256(data).hexdigest()  # streamed, so hashed
    assert big.blocks == tuple(hashlib.sha256(data[i:i + BLOCK_BYTES]).hexdigest()
                               for i in (0, BLOCK_BYTES, 2 * BLOCK_BYTES))


def test_single_object_and_whole_bucket_sources(server: S3Server) -> None:
    bucket = source_bucket(server, {"reports/q1.csv": b"a,b\n1,2\n", "readme.txt": b"hi"})
    single = create_from_s3(f"s3://{bucket}/reports/q1.csv")
    assert single["name"] == "q1.csv" and read_all(single) == {"q1.csv": b"a,b\n1,2\n"}
    whole = create_from_s3(f"s3://{bucket}")
    assert whole["name"] == bucket and read_all(whole) == {"reports/q1.csv": b"a,b\n1,2\n", "readme.txt": b"hi"}


def test_no_copy_pins_and_reads_exact_objects(server: S3Server) -> None:
    objects = many(1_100) | {f"data/{k}": v for k, v in AWKWARD.items()} | {"data/folder/": b""}
    bucket = source_bucket(server, objects)
    record = reference_s3(f"s3://{bucket}/data/", name="ref")
    assert record["kind"] == "s3-reference" and record["bytes_uploaded"] == 0
    assert record["files"] == 1_107
    assert list(open_store().list("data/")) == []  # nothing copied
    expected = {k.removeprefix("data/"): v for k, v in objects.items() if not k.endswith("/")}
    assert read_all(record) == expected
    again = reference_s3(f"s3://{bucket}/data/", name="ref")
    assert again["digest"] == record["digest"]


@pytest.mark.parametrize("no_copy", [False, True], ids=["copy", "no-copy"])
def test_a_key_that_is_also_a_folder_is_skipped_and_the_folder_kept(server: S3Server, no_copy: bool) -> None:
    import fsspec

    objects = {"d/a": b"file a", "d/a-x": b"between", "d/a/b": b"below a", "d/a/c/d": b"deeper", "d/b": b"b"}
    # One at a time: SeaweedFS (a file system underneath) holds "d/a" and "d/a/b" together when
    # they come one after the other, but loses one of them when they race.
    bucket = source_bucket(server, objects, threads=1)
    listed = {o["Key"]: o["Size"] for o in server.client().list_objects_v2(Bucket=bucket, Prefix="d/")["Contents"]}
    assert listed == {k: len(v) for k, v in objects.items()}
    create = reference_s3 if no_copy else create_from_s3
    record = create(f"s3://{bucket}/d/", name="clash")
    assert (record["files"], record["skipped"]) == (4, 1)
    items = manifest_items(record)
    assert [(i.path, i.reason) for i in items if isinstance(i, Skipped)] == [
        ("a", "a file and a folder cannot share the path 'a'; the key 'd/a' is skipped because keys below 'd/a/' "
              "exist")]
    assert read_all(record) == {"a-x": b"between", "a/b": b"below a", "a/c/d": b"deeper", "b": b"b"}
    fs = fsspec.filesystem("datastore", skip_instance_cache=True)
    assert fs.info("clash@1/a")["type"] == "directory"  # ls and info agree: "a" is a folder
    assert sorted(fs.ls("clash@1/a", detail=False)) == ["clash@1/a/b", "clash@1/a/c"]
    # the same decision on every run: an unchanged prefix gives the same digest
    assert create(f"s3://{bucket}/d/", name="clash")["digest"] == record["digest"]


def test_no_copy_unversioned_overwrite_and_delete_fail_loudly(server: S3Server) -> None:
    bucket = source_bucket(server, {"d/keep.txt": b"keep", "d/over.txt": b"original", "d/gone.txt": b"bye"})
    record = reference_s3(f"s3://{bucket}/d/", name="pinned")
    c = server.client()
    c.put_object(Bucket=bucket, Key="d/over.txt", Body=b"overwritten")
    c.delete_object(Bucket=bucket, Key="d/gone.txt")
    store = open_store()
    rec = versions.read_record(store, "pinned", record["version"])
    rd = reader.Reader(store, rec)
    entries = {e.path: e for e in reader.entries(store, rec)}
    assert rd.read(entries["keep.txt"]) == b"keep"
    with pytest.raises(ReferenceBroken, match=r"file 'over.txt' of pinned version 1 cannot be read: its pinned object "
                                              rf"s3://{bucket}/d/over.txt \(ETag \w+\) was overwritten with different bytes"):
        rd.read(entries["over.txt"])
    with pytest.raises(ReferenceBroken, match=r"file 'gone.txt' of pinned version 1 .* was deleted"):
        rd.read(entries["gone.txt"])
    report = verify(store, rec)
    assert report.files == 3
    assert sorted((p.path, p.problem) for p in report.problems) == [("gone.txt", "missing"), ("over.txt", "changed")]


def test_no_copy_versioned_bucket_still_reads_the_original(moto_store: str, moto: S3Server) -> None:
    bucket = source_bucket(moto, {"v/a.txt": b"first", "v/b.txt": b"second"}, versioned=True)
    record = reference_s3(f"s3://{bucket}/v/", name="versioned")
    c = moto.client()
    c.put_object(Bucket=bucket, Key="v/a.txt", Body=b"rewritten")
    c.delete_object(Bucket=bucket, Key="v/b.txt")  # a delete marker; the pinned version stays
    assert read_all(record) == {"a.txt": b"first", "b.txt": b"second"}
    store = open_store()
    rec = versions.read_record(store, "versioned", 1)
    assert rec.source_detail["versioned"] is True
    assert verify(store, rec).ok
    # deleting the pinned version itself is reported, and reading it fails by name
    pins = {e.path: e.source for e in reader.entries(store, rec)}
    c.delete_object(Bucket=bucket, Key="v/b.txt", VersionId=pins["b.txt"]["version_id"])
    report = verify(store, rec)
    assert [(p.path, p.problem) for p in report.problems] == [("b.txt", "missing")]
    with pytest.raises(ReferenceBroken, match=r"'b.txt' of versioned version 1 .*\(version .+\) was deleted"):
        read_all(record)


def test_no_copy_null_version_of_a_suspended_bucket_is_still_checked(moto_store: str, moto: S3Server) -> None:
    """Objects written while versioning is suspended all have VersionId "null", which an overwrite replaces."""
    bucket = source_bucket(moto, {})
    c = moto.client()
    c.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    c.put_object(Bucket=bucket, Key="s/a.txt", Body=b"AAAA")
    record = reference_s3(f"s3://{bucket}/s/", name="suspended")
    c.put_object(Bucket=bucket, Key="s/a.txt", Body=b"BBBB")  # same length, replaces the null version
    with pytest.raises(ReferenceBroken, match="'a.txt' of suspended version 1 .* was overwritten with different bytes"):
        read_all(record)
