"""``datastore create s3://…`` as a user runs it: subprocesses, a real Prefect server, real S3 servers."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from datastore.testing.servers import ACCESS_KEY, SECRET_KEY, S3Server, seaweedfs
from tests.cli.test_cli import assert_nothing_stored, assert_one_line_error
from tests.conftest import Cli, store_objects, use_s3_env
from tests.flows.test_flow_s3 import source_bucket


def test_create_copy_and_no_copy_then_show_and_verify(cli: Cli, seaweed_store: str, seaweed: S3Server) -> None:
    bucket = source_bucket(seaweed, {"Reddit Json/esRedditJson/part-0.json": b"{}", "Reddit Json/esRedditJson/p 1.json": b"[]"})
    url = f"s3://{bucket}/Reddit Json/esRedditJson/"
    created = cli.run("create", url, "--json")
    assert created.returncode == 0, created.stderr
    rec = json.loads(created.stdout)
    assert (rec["name"], rec["kind"], rec["source"], rec["files"]) == ("esredditjson", "s3-copy", url, 2)
    assert rec["source_detail"] == {"bucket": bucket, "prefix": "Reddit Json/esRedditJson/", "credentials": None,
                                    "versioned": False, "no_copy": False}
    shown = cli.run("show", "esredditjson")
    assert shown.returncode == 0
    for fragment in (url, f"bucket\t{bucket}", "copied into the store", "default AWS chain", "pinned by\tETag"):
        assert fragment in shown.stdout, shown.stdout

    ref = cli.run("create", url, "--no-copy", "--name", "reddit-ref", "--json")
    assert ref.returncode == 0, ref.stderr
    assert json.loads(ref.stdout)["kind"] == "s3-reference"
    assert "referenced in place (--no-copy)" in cli.run("show", "reddit-ref").stdout
    ok = cli.run("verify", "reddit-ref")
    assert ok.returncode == 0 and "all 2 files verified" in ok.stdout

    seaweed.client().delete_object(Bucket=bucket, Key="Reddit Json/esRedditJson/p 1.json")
    bad = cli.run("verify", "reddit-ref")
    assert bad.returncode == 1
    assert bad.stdout.startswith("missing   p 1.json: s3://") and "no longer exists" in bad.stdout
    assert bad.stderr.strip() == ("error: 1 of 2 files of reddit-ref version 1 failed verification: restore the objects "
                                  "listed above, or create a new version from the current source")
    # the copy does not depend on the source any more
    assert cli.run("verify", "esredditjson").returncode == 0


@pytest.mark.parametrize(("source", "fragments"), [
    ("s3:/x", ["invalid source 's3:/x': malformed S3 URL", "write it as s3://bucket/prefix/"]),
    ("s3://", ["invalid source 's3://': the S3 URL names no bucket", "write it as s3://bucket/prefix/"]),
    ("S3://bad bucket/x", ["'bad bucket' is not a valid bucket name"]),
    ("s3://no-such-bucket-4242/data/", ["source 's3://no-such-bucket-4242/data/' does not exist",
                                        "check the bucket name"]),
])
def test_bad_s3_urls(cli: Cli, local_store: str, seaweed: S3Server, monkeypatch: pytest.MonkeyPatch,
                     source: str, fragments: list[str]) -> None:
    use_s3_env(seaweed, monkeypatch)
    assert_one_line_error(cli.run("create", source), *fragments)
    assert_nothing_stored(local_store)


def test_empty_prefix(cli: Cli, seaweed_store: str, seaweed: S3Server) -> None:
    bucket = source_bucket(seaweed, {"data/x": b"x", "data/marker/": b""})
    assert_one_line_error(cli.run("create", f"s3://{bucket}/Data/"), f"source 's3://{bucket}/Data/' contains no files",
                          "check the prefix (S3 keys are case-sensitive)")
    assert_one_line_error(cli.run("create", f"s3://{bucket}/data/marker/", "--no-copy"), "contains no files")
    assert_nothing_stored(seaweed_store)


def test_wrong_keys_are_denied_without_echoing_them(cli: Cli, local_store: str, seaweed: S3Server) -> None:
    bucket = source_bucket(seaweed, {"data/x": b"x"})
    env = seaweed.env() | {"AWS_SECRET_ACCESS_KEY": "not-the-secret-8472"}
    proc = cli.run("create", f"s3://{bucket}/data/", **env)
    assert_one_line_error(proc, f"access to source 's3://{bucket}/data/' was denied", "--credentials BLOCK")
    assert "not-the-secret-8472" not in proc.stderr
    assert_nothing_stored(local_store)


def test_unknown_credentials_block(cli: Cli, local_store: str, seaweed: S3Server) -> None:
    bucket = source_bucket(seaweed, {"data/x": b"x"})
    proc = cli.run("create", f"s3://{bucket}/data/", "--credentials", "no-such-block", **seaweed.env())
    assert_one_line_error(proc, "AwsCredentials block 'no-such-block' cannot be loaded (no such block)", "prefect block ls")
    assert_nothing_stored(local_store)


def test_no_copy_and_credentials_refused_for_local_paths(cli: Cli, tmp_path: Path, local_store: str) -> None:
    (tmp_path / "f").write_bytes(b"x")
    assert_one_line_error(cli.run("create", str(tmp_path), "--no-copy"), "--no-copy and --credentials apply to s3:// sources only")


# --- a private bucket, readable only with a block's keys ---------------------------------------------

OWNER_KEY = "owner-key-id"
OWNER_SECRET = "OWNER-SECRET-do-not-leak-5f1c9a"  # noqa: S105 - a test secret we grep for
STORE_KEY, STORE_SECRET = "store-key-id", "store-secret-0a7e33"


@pytest.fixture(scope="module")
def private_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS where the default keys may use only the store bucket; the owner's keys read everything."""
    identities = [
        {"name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
         "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
        {"name": "owner", "credentials": [{"accessKey": OWNER_KEY, "secretKey": OWNER_SECRET}],
         "actions": ["Read:private", "List:private"]},
        {"name": "store", "credentials": [{"accessKey": STORE_KEY, "secretKey": STORE_SECRET}],
         "actions": ["Admin:storebkt", "Read:storebkt", "Write:storebkt", "List:storebkt"]},
    ]
    with seaweedfs(tmp_path_factory.mktemp("private-seaweed"), identities=identities) as server:
        admin = server.client()
        admin.create_bucket(Bucket="storebkt")
        admin.create_bucket(Bucket="private")
        for i in range(30):
            admin.put_object(Bucket="private", Key=f"data/f{i:02d}.txt", Body=f"private {i}".encode())
        yield server


def save_block(env: dict[str, str], name: str, endpoint: str, key: str = OWNER_KEY, secret: str = OWNER_SECRET) -> None:
    """Register an AwsCredentials block in the CLI's Prefect database (keys via the environment)."""
    code = ("import os; from prefect_aws import AwsCredentials; "
            "AwsCredentials(aws_access_key_id=os.environ['BLOCK_KEY'], aws_secret_access_key=os.environ['BLOCK_SECRET'], "
            "aws_client_parameters={'endpoint_url': os.environ['BLOCK_ENDPOINT']}).save(os.environ['BLOCK_NAME'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=env | {"BLOCK_KEY": key, "BLOCK_SECRET": secret, "BLOCK_ENDPOINT": endpoint,
                                     "BLOCK_NAME": name})
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_private_bucket_needs_a_block_and_leaks_no_secret(tmp_path: Path, private_s3: S3Server, own_state: dict[str, str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "home").mkdir()
    # Out of the box, with a local Prefect server of its own: everything the runs wrote is in its database.
    cli = Cli(tmp_path / "home")
    env = {"AWS_ENDPOINT_URL": private_s3.endpoint, "AWS_ACCESS_KEY_ID": STORE_KEY,
           "AWS_SECRET_ACCESS_KEY": STORE_SECRET, "AWS_DEFAULT_REGION": "us-east-1",
           "DATASTORE_STORE": f"s3://storebkt/{uuid.uuid4().hex[:8]}", **own_state}
    outputs: list[str] = []

    def run(*args: str) -> subprocess.CompletedProcess:
        proc = cli.run(*args, **env)
        outputs.extend([proc.stdout, proc.stderr])
        return proc

    assert run("server", "start").returncode == 0  # what the user's first create did, some time ago
    # The default keys may not read it, and no block is registered yet.
    denied = run("create", "s3://private/data/")
    assert_one_line_error(denied, "access to source 's3://private/data/' was denied (AccessDenied)", "--credentials BLOCK")

    # The blocks go to the local server, where the creates look for them.
    local = json.loads(run("server", "status", "--json").stdout)["local_server"]
    block_env = cli.env(**env, PREFECT_API_URL=local["api_url"])
    save_block(block_env, "owner-keys", private_s3.endpoint)
    # A block whose keys cannot read the bucket: refused by name when asked for, passed over when searching.
    save_block(block_env, "a-store-only-block", private_s3.endpoint, STORE_KEY, STORE_SECRET)
    wrong = run("create", "s3://private/data/", "--credentials", "a-store-only-block")
    assert_one_line_error(wrong, "was denied (AccessDenied, with the credentials of block 'a-store-only-block')",
                          "name another block")
    explicit = run("create", "s3://private/data/", "--credentials", "owner-keys", "--json")
    assert explicit.returncode == 0, explicit.stderr
    rec = json.loads(explicit.stdout)
    assert rec["files"] == 30 and rec["source_detail"]["credentials"] == "owner-keys"

    # Without --credentials the registered block that can read the prefix is found and recorded.
    found = run("create", "s3://private/data/", "--no-copy", "--name", "private-ref", "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["source_detail"]["credentials"] == "owner-keys"
    shown = run("show", "private-ref")
    assert "AwsCredentials block 'owner-keys'" in shown.stdout
    verified = run("verify", "private-ref")  # later reads use the recorded block
    assert verified.returncode == 0, verified.stderr

    # Grep everything the test produced: CLI output, every object in the store (manifests
    # decompressed), and the Prefect database (flow run parameters, logs, artifacts, events).
    haystacks: list[bytes] = [o.encode() for o in outputs]
    haystacks += store_objects(env, monkeypatch).values()
    db_files = [p for p in Path(own_state["DATASTORE_STATE_DIR"]).rglob("*") if p.is_file()]
    assert any(p.name.startswith("prefect.db") for p in db_files)
    haystacks += [p.read_bytes() for p in db_files]
    assert len(haystacks) > 10
    for blob in haystacks:
        assert OWNER_SECRET.encode() not in blob
        assert STORE_SECRET.encode() not in blob
