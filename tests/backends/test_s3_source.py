"""S3 sources: URL parsing, the key rule, sorted listing, and choosing credentials."""

from __future__ import annotations

import pytest

from datastore.backends import credentials, s3
from datastore.backends.s3_source import S3Location, S3Object, S3Source, parse_url, path_ordered, path_rule
from datastore.errors import InvalidSource, SourceAccessDenied
from datastore.model.manifest import Skipped
from datastore.testing.faulty_s3 import Fault, faulty_s3
from datastore.testing.servers import S3Server
from tests.conftest import use_s3_env
from tests.flows.test_flow_s3 import source_bucket


@pytest.mark.parametrize(("url", "bucket", "prefix"), [
    ("s3://ryft-public-sample-data/esRedditJson/", "ryft-public-sample-data", "esRedditJson/"),
    ("S3://bucket/a/b", "bucket", "a/b/"),
    ("s3://bucket", "bucket", ""),
    ("s3://bucket/", "bucket", ""),
    ("s3://bucket//x", "bucket", "x/"),
])
def test_parse_url(url: str, bucket: str, prefix: str) -> None:
    assert parse_url(url) == S3Location(bucket, prefix)
    assert parse_url(url).url == f"s3://{bucket}/{prefix}"


@pytest.mark.parametrize(("url", "reason"), [
    ("s3:/x", "malformed S3 URL"), ("s3://", "names no bucket"), ("s3:///x", "names no bucket"),
    ("s3://a/x", "'a' is not a valid bucket name"),
    ("s3://AKIAKEY:secret@bucket/x", r"invalid source 's3://…@bucket/x': credentials do not belong in the URL"),
])
def test_parse_url_refuses(url: str, reason: str) -> None:
    with pytest.raises(InvalidSource, match=reason) as info:
        parse_url(url)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(("rel", "size", "why"), [
    ("a/b.txt", 3, None), ("empty", 0, None), ("folder/", 0, ""), ("", 0, ""),
    ("folder/", 5, "key ends in '/' but holds 5 bytes; a file cannot have that name"),
    ("a//b", 1, "key has an empty, '.' or '..' path segment; it cannot be a file path"),
    ("../x", 1, "key has an empty, '.' or '..' path segment; it cannot be a file path"),
    ("./x", 1, "key has an empty, '.' or '..' path segment; it cannot be a file path"),
])
def test_path_rule(rel: str, size: int, why: str | None) -> None:
    assert path_rule(rel, size) == why


def test_files_come_in_path_order_even_when_spilled(seaweed: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    # SeaweedFS lists directory by directory ("a/b" before "a-c"); manifests need code-point order.
    use_s3_env(seaweed, monkeypatch)
    keys = ["p/a/b", "p/a-c", "p/a0", "p/a/b/c", "p/sp ace+é.txt", "p/z", "p/A", "p/dir/", "p/x//y"]
    bucket = source_bucket(seaweed, {k: b"x" for k in keys})
    src = S3Source(parse_url(f"s3://{bucket}/p/"))
    for run in (2, 1000):
        items = list(src.files(versioned=False, run_size=run))
        paths = [i.path if isinstance(i, Skipped) else i[0] for i in items]
        assert paths == sorted(paths)
        assert "dir/" not in paths  # folder marker dropped


def _listed(keys: list[str], prefix: str = "p/") -> list[tuple[str, S3Object]]:
    return [(k, S3Object(prefix + k, 1, f"etag-{k}")) for k in keys]


def _shown(items: list) -> list:
    return [(i.path, i.reason) if isinstance(i, Skipped) else i[0] for i in items]


@pytest.mark.parametrize("run_size", [1, 2, 3, 200_000])  # spilled runs (markers go to disk too) and in memory
def test_a_key_that_is_also_a_folder_is_skipped_even_when_not_adjacent(run_size: int) -> None:
    # "a" and "a/b" are not neighbours in path order: "a-x" sorts between ('-' < '/').
    items = list(path_ordered(_listed(["b", "a/c/d", "a-x", "a", "a/b"]), run_size))
    assert _shown(items) == [
        ("a", "a file and a folder cannot share the path 'a'; the key 'p/a' is skipped because keys below 'p/a/' exist"),
        "a-x", "a/b", "a/c/d", "b",
    ]
    assert items[1][1] == S3Object("p/a-x", 1, "etag-a-x")  # kept objects come back whole


@pytest.mark.parametrize("run_size", [1, 200_000])
def test_folder_conflicts_at_every_depth_and_what_does_not_conflict(run_size: int) -> None:
    keys = ["x", "x/y", "x/y/z", "x.txt", "x.txt/", "m", "m!", "m!/n", "q//r", "q"]
    items = [*_listed(keys[:4]), Skipped("x.txt/", "key ends in '/' but holds 3 bytes; a file cannot have that name"),
             *_listed(["m", "m!", "m!/n"]),
             Skipped("q//r", "key has an empty, '.' or '..' path segment; it cannot be a file path"), *_listed(["q"])]
    got = _shown(list(path_ordered(items, run_size)))
    assert got == [
        "m",  # "m!/n" makes "m!" a folder, not "m"
        ("m!", "a file and a folder cannot share the path 'm!'; the key 'p/m!' is skipped because keys below 'p/m!/' exist"),
        "m!/n",
        "q",  # a skipped key ("q//r") is no file, so "q" is no folder
        ("q//r", "key has an empty, '.' or '..' path segment; it cannot be a file path"),
        ("x", "a file and a folder cannot share the path 'x'; the key 'p/x' is skipped because keys below 'p/x/' exist"),
        "x.txt",
        ("x.txt/", "key ends in '/' but holds 3 bytes; a file cannot have that name"),
        ("x/y", "a file and a folder cannot share the path 'x/y'; the key 'p/x/y' is skipped because keys below "
                "'p/x/y/' exist"),
        "x/y/z",
    ]


def test_choose_prefers_explicit_then_default_then_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    allowed = {"good"}
    tried: list[str | None] = []

    def probe(block: str | None) -> None:
        tried.append(block)
        if block not in allowed:
            raise SourceAccessDenied("s3://b/", "AccessDenied")

    monkeypatch.setattr(credentials, "registered_blocks", lambda: iter(["bad", "good", "later"]))
    assert credentials.choose(probe, None) == "good"
    assert tried == [None, "bad", "good"]
    with pytest.raises(SourceAccessDenied, match="with the credentials of block 'bad'"):
        credentials.choose(probe, "bad")
    allowed.add(None)
    assert credentials.choose(probe, None) is None
    allowed.clear()
    with pytest.raises(SourceAccessDenied, match="registered AwsCredentials blocks bad, good, later could not read it"):
        credentials.choose(probe, None)


def test_a_pinned_get_whose_answer_breaks_off_is_retried_whole(seaweed: S3Server,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # The fast client retries a broken connection once, then boto3 takes over, whose retries end
    # when the answer starts: three resets in a row must still give the bytes, not a failed read.
    data = bytes(range(256)) * 40
    bucket = source_bucket(seaweed, {"p/a.bin": data})
    with faulty_s3(seaweed, seed=3) as proxy:
        use_s3_env(proxy.server(), monkeypatch)
        s3.reset_clients()
        src = S3Source(parse_url(f"s3://{bucket}/p/"))
        ((_, obj),) = list(src.files(versioned=False))
        reset = Fault("reset", 1.0, method="GET", path=r"/p/a\.bin", limit=3)
        proxy.faults.append(reset)
        assert src.get(obj.pin()) == data
        assert reset.injected == 3
    s3.reset_clients()
