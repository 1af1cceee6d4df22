from __future__ import annotations

import errno
import hashlib
import os

import pytest

from datastore.errors import (
    AlreadyExists,
    ObjectNotFound,
    StoreAccessDenied,
    StoreFull,
    StoreNotFound,
    StoreNotWritable,
)
from datastore.settings import Settings
from datastore.store import LocalStore, S3Store, open_store
from tests.conftest import use_s3_env


def test_put_get_range_list_delete(any_store: str) -> None:
    store = open_store()
    store.put_bytes("a/b/c.txt", b"hello world")
    store.put_bytes("a/b-c", b"x")
    store.put_bytes("a/b/d", b"y")
    assert store.get_bytes("a/b/c.txt") == b"hello world"
    assert store.get_range("a/b/c.txt", 6, 5) == b"world"
    assert store.get_range("a/b/c.txt", 0, 0) == b""
    # no order is promised: SeaweedFS lists directory by directory, not in byte order
    assert sorted(o.key for o in store.list("a/")) == ["a/b-c", "a/b/c.txt", "a/b/d"]
    assert sorted(o.key for o in store.list("a/b/")) == ["a/b/c.txt", "a/b/d"]
    assert store.exists("a/b/d") and not store.exists("a/b/zz")
    store.delete("a/b/d")
    assert not store.exists("a/b/d")
    with pytest.raises(ObjectNotFound, match="a/b/d"):
        store.get_bytes("a/b/d")


def test_put_if_absent_is_exclusive(any_store: str) -> None:
    store = open_store()
    store.put_bytes("rec", b"first", if_absent=True)
    with pytest.raises(AlreadyExists):
        store.put_bytes("rec", b"second", if_absent=True)
    assert store.get_bytes("rec") == b"first"


def test_put_pack_is_idempotent_per_address(any_store: str) -> None:
    store = open_store()
    data = os.urandom(1000)
    address = hashlib.sha256(b"members").hexdigest()
    assert store.put_pack(data, address) == (f"data/p-{address}", True)
    assert store.put_pack(data, address) == (f"data/p-{address}", False)
    assert store.get_bytes(f"data/p-{address}") == data


@pytest.mark.parametrize("size", [0, 100, 6 * 1024 * 1024 * 2 + 17])
def test_blob_writer_streams_multipart(any_store: str, size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASTORE_PART_BYTES", str(5 * 1024 * 1024))
    store = open_store()
    data = os.urandom(size)
    w = store.blob_writer()
    for i in range(0, size, 1_000_000):
        w.write(data[i : i + 1_000_000])
    key = w.commit(hashlib.sha256(data).hexdigest())
    assert store.get_bytes(key) == data
    assert w.written == size


def test_blob_writer_abort_leaves_nothing(any_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASTORE_PART_BYTES", str(5 * 1024 * 1024))
    store = open_store()
    w = store.blob_writer()
    w.write(os.urandom(11 * 1024 * 1024))
    w.abort()
    assert [o.key for o in store.list("data/")] == []
    if isinstance(store, S3Store):
        uploads = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
        assert uploads == []


def test_local_store_not_writable(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreNotWritable, match="is not writable"):
        LocalStore(blocker / "store").check_writable()


@pytest.mark.parametrize(("code", "reason"), [(errno.ENOSPC, "no space left on device"),
                                              (errno.EDQUOT, "disk quota exceeded")])
def test_local_store_full_names_the_filesystem_to_free(tmp_path, code: int, reason: str) -> None:
    store = LocalStore(tmp_path / "not" / "yet" / "store")  # a store not created yet: its filesystem still counts
    err = store._write_error(OSError(code, os.strerror(code)))
    assert isinstance(err, StoreFull) and isinstance(err, OSError) and not isinstance(err, PermissionError)
    mount = tmp_path.resolve()
    while not os.path.ismount(mount):
        mount = mount.parent
    line = str(err)
    assert line.startswith(f"store {store.url!r} is full ({reason}): free space on {mount}")
    assert line.endswith(" and run the command again") and "permissions" not in line


def test_s3_missing_bucket(seaweed, monkeypatch: pytest.MonkeyPatch) -> None:
    use_s3_env(seaweed, monkeypatch)
    with pytest.raises(StoreNotFound, match="no such bucket"):
        S3Store("s3://no-such-bucket-here/x", Settings()).check_writable()


def test_s3_wrong_credentials(seaweed, monkeypatch: pytest.MonkeyPatch) -> None:
    seaweed.client().create_bucket(Bucket="creds-check")
    use_s3_env(seaweed, monkeypatch, AWS_SECRET_ACCESS_KEY="wrong-secret")
    with pytest.raises(StoreAccessDenied, match="credentials were rejected|denied") as info:
        S3Store("s3://creds-check/x", Settings()).check_writable()
    assert "wrong-secret" not in str(info.value)
