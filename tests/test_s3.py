from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from datastore import s3
from datastore.errors import (
    AlreadyExists,
    ObjectNotFound,
    StoreAccessDenied,
    StoreNotFound,
    StoreUnavailable,
    TransientError,
)


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
