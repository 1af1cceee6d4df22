from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from datastore.backends import s3
from datastore.errors import (
    AlreadyExists,
    ObjectNotFound,
    StoreAccessDenied,
    StoreNotFound,
    StoreUnavailable,
    TransientError,
)
from datastore.testing.servers import S3Server
from tests.conftest import use_s3_env


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "msg"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize(
    ("code", "status", "key", "expected"),
    [
        ("NoSuchBucket", 404, "k", StoreNotFound),
        ("404", 404, None, StoreNotFound),
        ("NoSuchKey", 404, "k", ObjectNotFound),
        ("InvalidAccessKeyId", 403, "k", StoreAccessDenied),
        ("SignatureDoesNotMatch", 403, "k", StoreAccessDenied),
        ("AccessDenied", 403, "k", StoreAccessDenied),
        ("PreconditionFailed", 412, "k", AlreadyExists),
        ("SlowDown", 503, "k", TransientError),
        ("InternalError", 500, "k", TransientError),
    ],
)
def test_client_errors_map_to_the_hierarchy(code: str, status: int, key: str | None, expected: type) -> None:
    exc = s3.translate(_client_error(code, status), "s3://b/p/", key)
    assert isinstance(exc, expected)


def test_transport_errors() -> None:
    assert isinstance(s3.translate(NoCredentialsError(), "s3://b/"), StoreAccessDenied)
    unavailable = s3.translate(EndpointConnectionError(endpoint_url="http://x"), "s3://b/")
    assert isinstance(unavailable, StoreUnavailable) and unavailable.transient


def test_translated_context_manager_chains_the_original() -> None:
    with pytest.raises(StoreNotFound) as info:
        with s3.translated("s3://b/"):
            raise _client_error("NoSuchBucket", 404)
    assert isinstance(info.value.__cause__, ClientError)


@pytest.mark.parametrize("server_name", ["seaweed", "moto"])
def test_fast_s3_matches_boto3_and_translates_errors(server_name: str, request: pytest.FixtureRequest,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    from datastore.errors import AlreadyExists, ObjectNotFound

    server = request.getfixturevalue(server_name)
    use_s3_env(server, monkeypatch)
    bucket = f"fg-{uuid.uuid4().hex[:10]}"
    c = server.client()
    c.create_bucket(Bucket=bucket)
    keys = {"plain": b"p" * 10, "sp ace/+plus/ü日本.txt": b"unicode", "empty": b"", "a~b(c)'d": b"odd"}
    etags = {k: c.put_object(Bucket=bucket, Key=k, Body=v)["ETag"].strip('"') for k, v in keys.items()}
    fast = s3.FastS3(s3.client())
    for k, v in keys.items():
        assert fast.get(bucket, k) == v
        assert fast.get(bucket, k, if_match=etags[k]) == v
    with pytest.raises(AlreadyExists), s3.translated(f"s3://{bucket}/", "plain"):
        fast.get(bucket, "plain", if_match="0" * 32)
    with pytest.raises(ObjectNotFound), s3.translated(f"s3://{bucket}/", "missing"):
        fast.get(bucket, "missing")
    listed = sorted(fast.list_v2(bucket, ""))
    assert listed == sorted((k, len(v), etags[k]) for k, v in keys.items())
    assert list(fast.list_v2(bucket, "sp ace/")) == [("sp ace/+plus/ü日本.txt", 7, etags["sp ace/+plus/ü日本.txt"])]
    with pytest.raises(ClientError):
        list(fast.list_v2("no-such-bucket-9876", ""))
    if server_name == "moto":  # versions
        c.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        v1 = c.put_object(Bucket=bucket, Key="v", Body=b"one")["VersionId"]
        c.put_object(Bucket=bucket, Key="v", Body=b"two")
        assert fast.get(bucket, "v", version_id=v1) == b"one"
        assert fast.get(bucket, "v") == b"two"


def test_fast_listing_that_fails_part_way_goes_on_with_boto3(moto: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    use_s3_env(moto, monkeypatch)
    bucket = f"lp-{uuid.uuid4().hex[:10]}"
    c = moto.client()
    c.create_bucket(Bucket=bucket)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: c.put_object(Bucket=bucket, Key=f"k{i:05d}", Body=b"x"), range(1500)))
    fast = s3.FastS3(s3.client())
    real = fast._send
    calls = {"n": 0}

    def flaky(path: str, headers: dict, operation: str):  # noqa: ANN202 - the second page fails for good
        calls["n"] += 1
        return None if calls["n"] == 2 else real(path, headers, operation)

    monkeypatch.setattr(fast, "_send", flaky)
    keys = [k for k, _, _ in fast.list_v2(bucket, "")]
    assert keys == [f"k{i:05d}" for i in range(1500)]
