"""The bad-input matrix (issue 14): every input a user can get wrong, one row each, in one table.

Each row runs the console script once and asserts: one line on stderr starting with ``error: ``
that names the problem and the fix (the exact line, or its key fragments), the exit code (1 for
a project error, 2 for a usage error Click finds), nothing on stdout, and nothing committed
(the store's versions are what they were before the command).

A row's ``setup`` builds what it needs (a folder, a bucket, an archive on the HTTP server) and
returns placeholders for its ``args``, ``env`` and ``expect`` (``{tmp}``, ``{src}``, ``{url}``
…). Rows name the store they run against: a fresh local one, a module-wide local one holding a
live and a deleted version (made once, by real creates), or a bucket on SeaweedFS.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from datastore.store import open_store, versions
from datastore.testing.cli import can_drop_privileges
from datastore.testing.http_server import serve
from datastore.testing.servers import S3Server
from tests.archives import build, symlink_escape
from tests.conftest import Cli, make_tree
from tests.flows.test_flow_http import TREE

NAME_RULE = ("a name is 1-64 characters of lowercase letters a-z, digits, '-', '_' or '.', starting with a letter "
             "or digit (for example 'imagenet-2024')")
NO_VERSION = ("is not a version number (versions are numbered 1, 2, 3 …): "
              "'datastore list' shows the versions that exist")
SUBMIT_HINT = ("check the path (the worker reads it where you submit from); if only the worker's machine has it, "
               "add --worker-path")


@dataclass
class Ctx:
    """What a row's setup gets: the test's folder and, when the row asks, the servers."""

    tmp: Path
    seaweed: S3Server | None = None
    http: object | None = None  # datastore.testing.http_server's server

    def bucket(self, objects: dict[str, bytes]) -> str:
        assert self.seaweed is not None, "the row needs s3=True"
        name = f"src-{uuid.uuid4().hex[:10]}"
        client = self.seaweed.client()
        client.create_bucket(Bucket=name)
        for key, data in objects.items():
            client.put_object(Bucket=name, Key=key, Body=data)
        return name


Setup = Callable[[Ctx], dict[str, str]]


@dataclass(frozen=True)
class Row:
    """One bad input.

    Attributes:
        id: The test id.
        args: The command line after ``datastore`` (``{placeholders}`` filled from ``setup``).
        expect: The exact stderr line, or a tuple of fragments it must all contain.
        code: The exit code.
        env: Extra environment of the command (placeholders allowed).
        setup: Builds what the row needs; returns the placeholders.
        store: ``local`` (fresh), ``shared`` (holds ``ds`` 1 deleted and 2 live) or ``seaweed``.
        restricted: Drop root's permission bypass (for the permission rows).
        s3: The row needs the SeaweedFS server (its endpoint and keys are in the environment).
        http: The row needs the HTTP server of :data:`SERVED` (loopback allowed).
    """

    id: str
    args: tuple[str, ...]
    expect: str | tuple[str, ...]
    code: int = 1
    env: dict[str, str] = field(default_factory=dict)
    setup: Setup | None = None
    store: str = "local"
    restricted: bool = False
    s3: bool = False
    http: bool = False


# --- setups -----------------------------------------------------------------------------------


def folder(ctx: Ctx) -> dict[str, str]:
    """A small readable source folder ``{src}``."""
    return {"src": str(make_tree(ctx.tmp / "src", {"a.txt": b"a", "sub/b.txt": b"b"}))}


def empty_folder(ctx: Ctx) -> dict[str, str]:
    (ctx.tmp / "empty").mkdir()
    return {"src": str(ctx.tmp / "empty")}


def underivable_folder(ctx: Ctx) -> dict[str, str]:
    """A folder whose name has nothing left once folded to ASCII."""
    return {"src": str(make_tree(ctx.tmp / "日本", {"a.txt": b"a"}))}


def long_folder(ctx: Ctx) -> dict[str, str]:
    return {"src": str(make_tree(ctx.tmp / ("x" * 70), {"a.txt": b"a"}))}


def unreadable_file(ctx: Ctx) -> dict[str, str]:
    src = make_tree(ctx.tmp / "src", {"ok.txt": b"fine", "secret.txt": b"no"})
    (src / "secret.txt").chmod(0o000)
    return {"src": str(src)}


def unreadable_subfolder(ctx: Ctx) -> dict[str, str]:
    src = make_tree(ctx.tmp / "src", {"ok.txt": b"fine", "sub/f.txt": b"hidden"})
    (src / "sub").chmod(0o000)
    return {"src": str(src)}


def unreadable_source(ctx: Ctx) -> dict[str, str]:
    src = make_tree(ctx.tmp / "src", {"f.txt": b"hidden"})
    src.chmod(0o000)
    return {"src": str(src)}


def locked_store(ctx: Ctx) -> dict[str, str]:
    """A source, and ``{store}`` under a folder this user may not write to."""
    locked = ctx.tmp / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    return folder(ctx) | {"store": str(locked / "store")}


def full_folder(ctx: Ctx) -> dict[str, str]:
    """A non-empty folder as a download target."""
    return {"dir": str(make_tree(ctx.tmp / "full", {"x": b"x"}))}


def s3_source(ctx: Ctx) -> dict[str, str]:
    """A bucket ``{bucket}`` with objects under ``data/`` (and a folder marker)."""
    return {"bucket": ctx.bucket({"data/x.txt": b"x", "data/marker/": b""})}


def http_url(ctx: Ctx) -> dict[str, str]:
    """``{url}``: the HTTP server's base URL (paths are in :data:`SERVED`)."""
    return {"url": ctx.http.url("").rstrip("/")}  # type: ignore[union-attr]


# --- archives the HTTP server serves ---------------------------------------------------------------


SERVED = {
    "/good.tar.gz": build("tar.gz", TREE),
    "/page.zip": b"<!DOCTYPE html><html><body>Sign in</body></html>",
    "/notes.txt": b"just some text, not an archive\n" * 20,
    "/slip.zip": build("zip", {"../../evil.sh": b"#!/bin/sh"}),
    "/escape.tar.gz": symlink_escape(),
    "/four.tar.gz": build("tar.gz", {f"e{i}.txt": b"" for i in range(4)}),
}

# --- the table ------------------------------------------------------------------------------------

VERSIONED = (("show", "ds"), ("verify", "ds"), ("delete", "--name", "ds"), ("download", "ds", "--dir", "{tmp}/d"))

ROWS: list[Row] = [
    # sources: malformed, unsupported, missing, empty, unreadable
    Row("s3-no-bucket", ("create", "s3://"),
        "invalid source 's3://': the S3 URL names no bucket: write it as s3://bucket/prefix/ "
        "(for example s3://my-bucket/images/)"),
    Row("s3-empty-bucket", ("create", "s3:///x"),
        "invalid source 's3:///x': the S3 URL names no bucket: write it as s3://bucket/prefix/ "
        "(for example s3://my-bucket/images/)"),
    Row("s3-one-slash", ("create", "s3:/x"),
        ("invalid source 's3:/x': malformed S3 URL", "write it as s3://bucket/prefix/")),
    Row("s3-bad-bucket-name", ("create", "s3://bad bucket/x"), ("'bad bucket' is not a valid bucket name",)),
    Row("http-no-host", ("create", "http://"),
        "refusing to fetch 'http://': the URL has no host: pass a full URL such as https://example.org/data.zip"),
    Row("https-no-host", ("create", "https://"),
        "refusing to fetch 'https://': the URL has no host: pass a full URL such as https://example.org/data.zip"),
    Row("ftp-scheme", ("create", "ftp://host/x.zip"),
        "invalid source 'ftp://host/x.zip': unsupported scheme 'ftp': use a local path, s3://bucket/prefix/ or an "
        "http(s):// URL of an archive"),
    Row("file-scheme", ("create", "file:///etc/passwd"), ("unsupported scheme 'file'", "use a local path")),
    Row("missing-path", ("create", "{tmp}/nope"),
        "source '{tmp}/nope' does not exist: check the path (it is resolved from the current directory)"),
    Row("empty-folder", ("create", "{src}"),
        "source '{src}' contains no files: add files to it or choose another source", setup=empty_folder),
    Row("unreadable-file", ("create", "{src}"),
        "cannot read source file 'secret.txt' (permission denied): fix its permissions (chmod +r) or move it out of "
        "the source folder", setup=unreadable_file, restricted=True),
    Row("unreadable-subfolder", ("create", "{src}"),
        "cannot read source folder 'sub' (permission denied): fix its permissions (chmod +rx) or move it out of "
        "the source folder", setup=unreadable_subfolder, restricted=True),
    Row("unreadable-source-folder", ("create", "{src}"),
        "cannot read source folder '{src}' (permission denied): fix its permissions (chmod +rx) or choose another "
        "source", setup=unreadable_source, restricted=True),
    Row("submit-path-missing-here", ("create", "{tmp}/only-on-worker", "--submit"),
        f"source '{{tmp}}/only-on-worker' does not exist: {SUBMIT_HINT}"),
    Row("schedule-path-missing-here", ("schedule", "{tmp}/only-on-worker", "--name", "nightly", "--every", "1d"),
        f"source '{{tmp}}/only-on-worker' does not exist: {SUBMIT_HINT}"),
    Row("s3-bucket-missing", ("create", "s3://no-such-bucket-4242/data/"),
        ("source 's3://no-such-bucket-4242/data/' does not exist", "check the bucket name"), s3=True),
    Row("s3-empty-prefix", ("create", "s3://{bucket}/Data/"),
        ("source 's3://{bucket}/Data/' contains no files", "check the prefix (S3 keys are case-sensitive)"),
        setup=s3_source, s3=True),
    Row("s3-only-a-folder-marker", ("create", "s3://{bucket}/data/marker/", "--no-copy"),
        ("source 's3://{bucket}/data/marker/' contains no files",), setup=s3_source, s3=True),
    Row("http-404", ("create", "{url}/missing.zip"),
        ("downloading '{url}/missing.zip' failed: HTTP 404 Not Found", "check the URL"), setup=http_url, http=True),
    Row("http-html-page", ("create", "{url}/page.zip"),
        ("'{url}/page.zip' is not a usable archive: the server sent an HTML page, not an archive",
         "point at a .zip, .tar.gz, .tgz or .tar file"), setup=http_url, http=True),
    Row("http-text-file", ("create", "{url}/notes.txt"),
        ("'{url}/notes.txt' is not a usable archive", "point at a .zip, .tar.gz, .tgz or .tar file"),
        setup=http_url, http=True),
    Row("http-loopback-without-the-setting", ("create", "{url}/good.tar.gz"),
        ("is a private/loopback address; set DATASTORE_HTTP_ALLOW_PRIVATE=1 to allow it",), setup=http_url,
        http=True, env={"DATASTORE_HTTP_ALLOW_PRIVATE": "0"}),
    Row("http-credentials-in-url", ("create", "http://user:hunter2@127.0.0.1:9/x.zip"),
        ("credentials in the URL are not supported",)),
    Row("http-metadata-address", ("create", "http://169.254.169.254/latest/meta-data/"),
        ("refusing to fetch", "169.254.169.254 is a link-local/cloud metadata address")),
    # archives
    Row("archive-zip-slip", ("create", "{url}/slip.zip", "--name", "x"),
        "archive member '../../evil.sh' refused: the name contains a '..' segment: the archive was refused as a "
        "whole and nothing was stored; fix or rebuild the archive", setup=http_url, http=True),
    Row("archive-link-escape", ("create", "{url}/escape.tar.gz", "--name", "x"),
        ("archive member 'link' refused: link points outside the archive", "nothing was stored"),
        setup=http_url, http=True),
    Row("archive-too-many-members", ("create", "{url}/four.tar.gz", "--name", "x"),
        "archive member 'e3.txt' refused: the archive has more than DATASTORE_MAX_ARCHIVE_MEMBERS (3) entries: the "
        "archive was refused as a whole and nothing was stored; fix or rebuild the archive", setup=http_url, http=True,
        env={"DATASTORE_MAX_ARCHIVE_MEMBERS": "3"}),
    # names
    Row("name-empty", ("create", "{src}", "--name", ""), f"invalid datastore name '': {NAME_RULE}", setup=folder),
    Row("name-too-long", ("create", "{src}", "--name", "n" * 65), f"invalid datastore name '{'n' * 65}': {NAME_RULE}",
        setup=folder),
    Row("name-upper-case", ("create", "{src}", "--name", "Photos"), f"invalid datastore name 'Photos': {NAME_RULE}",
        setup=folder),
    Row("name-non-ascii", ("create", "{src}", "--name", "dätä"), f"invalid datastore name 'dätä': {NAME_RULE}",
        setup=folder),
    Row("name-space", ("create", "{src}", "--name", "my data"), f"invalid datastore name 'my data': {NAME_RULE}",
        setup=folder),
    Row("name-slash", ("create", "{src}", "--name", "a/b"), f"invalid datastore name 'a/b': {NAME_RULE}", setup=folder),
    Row("name-dot-dot", ("create", "{src}", "--name", ".."), f"invalid datastore name '..': {NAME_RULE}", setup=folder),
    Row("name-leading-dash", ("create", "{src}", "--name", "-rf"), f"invalid datastore name '-rf': {NAME_RULE}",
        setup=folder),
    Row("name-at-sign", ("create", "{src}", "--name", "ds@1"), f"invalid datastore name 'ds@1': {NAME_RULE}",
        setup=folder),
    Row("name-schedule-upper-case", ("schedule", "--name", "Nightly", "--remove"),
        f"invalid datastore name 'Nightly': {NAME_RULE}"),
    Row("name-cannot-be-derived", ("create", "{src}"),
        f"cannot derive a datastore name from '{{src}}' (no ASCII letter or digit is left of '日本'): "
        f"pass --name ({NAME_RULE})",
        setup=underivable_folder),
    Row("name-derived-too-long", ("create", "{src}"),
        f"the name derived from '{{src}}' would be 70 characters, longer than the limit of 64: "
        f"pass --name {'x' * 64}",
        setup=long_folder),
    # versions (the shared store: ds 1 is deleted, ds 2 is live)
    *[Row(f"{cmd[0]}-version-{label}", (*cmd, "--version", v), f"invalid value for '--version': '{v}' {NO_VERSION}",
          code=2, store="shared")
      for cmd in VERSIONED
      for label, v in (("zero", "0"), ("negative", "-1"), ("not-a-number", "two"))],
    *[Row(f"{cmd[0]}-version-never-created", (*cmd, "--version", "9"),
          "datastore 'ds' version 9 does not exist: run 'datastore list' to see what exists", store="shared")
      for cmd in VERSIONED],
    *[Row(f"{cmd[0]}-version-deleted", (*cmd, "--version", "1"),
          ("datastore 'ds' version 1 was deleted (at ",
           "its files are gone; 'datastore list ds' shows the live versions"),
          store="shared")
      for cmd in (("verify", "ds"), ("download", "ds", "--dir", "{tmp}/d"), ("mount", "ds", "--dir", "{tmp}/m"))],
    Row("delete-version-deleted", ("delete", "--name", "ds", "--version", "1"),
        ("datastore 'ds' version 1 was already deleted (at ",
         "nothing to do; 'datastore list' shows the live versions"),
        store="shared"),
    Row("show-name-never-created", ("show", "ghost"),
        "datastore 'ghost' does not exist: run 'datastore list' to see what exists", store="shared"),
    Row("show-ref-version-zero", ("show", "ds@0"), "'ds@0' is not NAME or NAME@VERSION: for example: ds@1",
        store="shared"),
    Row("download-ref-not-a-number", ("download", "ds@x", "--dir", "{tmp}/d"),
        "'ds@x' is not NAME or NAME@VERSION: for example: ds@1", store="shared"),
    Row("download-ref-and-version-disagree", ("download", "ds@2", "--version", "3", "--dir", "{tmp}/d"),
        "'ds@2' and --version 3 name different versions: give one of them", store="shared"),
    Row("download-into-a-full-folder", ("download", "ds", "--dir", "{dir}"),
        "directory {dir} is not empty: choose an empty or new directory with --dir, or remove its contents",
        setup=full_folder, store="shared"),
    # options and usage
    Row("delete-neither-version-nor-all", ("delete", "--name", "ds"),
        "give either --version N (one version) or --all (every version): for example: datastore delete ds "
        "--version 1", store="shared"),
    Row("delete-all-unconfirmed", ("delete", "--name", "ds", "--all"),
        "refusing to delete all 1 versions of 'ds' (2) without confirmation: pass --yes to confirm in a script",
        store="shared"),
    Row("no-copy-for-a-local-path", ("create", "{src}", "--no-copy"),
        ("--no-copy and --credentials apply to s3:// sources only",), setup=folder),
    Row("timeout-without-wait", ("create", "{src}", "--timeout", "5"),
        "--timeout limits --wait: add --submit --wait, or drop --timeout", setup=folder),
    Row("wait-without-submit", ("create", "{src}", "--wait"),
        "--wait follows a submitted run: add --submit, or drop --wait (without --submit the create runs here and "
        "always waits)", setup=folder),
    Row("worker-path-without-submit", ("create", "{src}", "--worker-path"),
        "--worker-path is for a path only a worker's machine has: add --submit, or drop --worker-path (without "
        "--submit the create reads it here)", setup=folder),
    Row("unknown-option", ("create", "{src}", "--colour"), "no such option: --colour: see 'datastore create --help'",
        code=2, setup=folder),
    Row("missing-source", ("create",), "missing argument 'source': see 'datastore create --help'", code=2),
    Row("download-missing-dir", ("download", "ds"), "missing option '--dir': see 'datastore download --help'", code=2,
        store="shared"),
    Row("unknown-command", ("frobnicate",), "no such command 'frobnicate': see 'datastore --help'", code=2),
    Row("bad-schedule-interval", ("schedule", "{src}", "--name", "nightly", "--every", "soon"),
        ("invalid --every 'soon'",), setup=folder),
    # settings
    Row("store-unknown-scheme", ("create", "{src}"),
        "DATASTORE_STORE='ftp://x' has an unknown scheme 'ftp': set DATASTORE_STORE to a local path or "
        "s3://bucket/prefix", setup=folder, env={"DATASTORE_STORE": "ftp://x"}),
    Row("store-s3-without-bucket", ("list",),
        "DATASTORE_STORE='s3://' names no bucket: set DATASTORE_STORE to s3://bucket/prefix (for example "
        "s3://my-bucket/datastore)", env={"DATASTORE_STORE": "s3://"}),
    Row("store-s3-empty-bucket", ("create", "{src}"),
        "DATASTORE_STORE='s3:///x' names no bucket: set DATASTORE_STORE to s3://bucket/prefix (for example "
        "s3://my-bucket/datastore)", setup=folder, env={"DATASTORE_STORE": "s3:///x"}),
    Row("store-not-writable", ("create", "{src}"),
        "store '{store}' is not writable (Permission denied): fix its permissions or set DATASTORE_STORE to a "
        "writable path or s3://bucket/prefix", setup=locked_store, env={"DATASTORE_STORE": "{store}"},
        restricted=True),
    Row("store-bucket-missing", ("create", "{src}"),
        ("store 's3://no-such-bucket-xyz/store/' does not exist", "create the bucket"), setup=folder, s3=True,
        env={"DATASTORE_STORE": "s3://no-such-bucket-xyz/store"}),
    Row("store-wrong-s3-secret", ("create", "{src}"),
        ("access to 's3://", "was denied", "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"), setup=folder,
        store="seaweed", env={"AWS_SECRET_ACCESS_KEY": "definitely-wrong"}),
    Row("workers-not-a-number", ("create", "{src}"),
        "DATASTORE_WORKERS='abc' is not a whole number: set DATASTORE_WORKERS to an integer >= 1", setup=folder,
        env={"DATASTORE_WORKERS": "abc"}),
    Row("batch-files-negative", ("create", "{src}"),
        "DATASTORE_BATCH_FILES='-1' is too small: set DATASTORE_BATCH_FILES to an integer >= 1", setup=folder,
        env={"DATASTORE_BATCH_FILES": "-1"}),
    Row("part-bytes-below-the-s3-minimum", ("create", "{src}"),
        "DATASTORE_PART_BYTES='1' is too small: set DATASTORE_PART_BYTES to an integer >= 5242880", setup=folder,
        env={"DATASTORE_PART_BYTES": "1"}),
    Row("max-versions-fraction", ("list",),
        "DATASTORE_MAX_VERSIONS='1.5' is not a whole number: set DATASTORE_MAX_VERSIONS to an integer >= 0",
        env={"DATASTORE_MAX_VERSIONS": "1.5"}),
    Row("allow-private-not-a-boolean", ("create", "{src}"),
        "DATASTORE_HTTP_ALLOW_PRIVATE='maybe' is not a boolean: set DATASTORE_HTTP_ALLOW_PRIVATE to 1 or 0",
        setup=folder, env={"DATASTORE_HTTP_ALLOW_PRIVATE": "maybe"}),
    # credentials
    Row("credentials-block-missing", ("create", "s3://{bucket}/data/", "--credentials", "no-such-block"),
        "AwsCredentials block 'no-such-block' cannot be loaded (no such block): create it (prefect-aws: "
        "AwsCredentials(...).save(NAME)) or pick one from 'prefect block ls'", setup=s3_source, s3=True),
    Row("credentials-for-a-local-path", ("create", "{src}", "--credentials", "owner-keys"),
        ("--no-copy and --credentials apply to s3:// sources only",), setup=folder),
    Row("source-wrong-s3-secret", ("create", "s3://{bucket}/data/"),
        ("access to source 's3://{bucket}/data/' was denied", "--credentials BLOCK"), setup=s3_source, s3=True,
        env={"AWS_SECRET_ACCESS_KEY": "not-the-secret-8472"}),
]

needs_setpriv = pytest.mark.skipif(not can_drop_privileges(), reason="root needs setpriv (util-linux) to drop its "
                                                                      "permission bypass")


def _param(row: Row):  # noqa: ANN202 - a pytest ParameterSet
    return pytest.param(row, id=row.id, marks=[needs_setpriv] if row.restricted else [])


@pytest.fixture(scope="module")
def http_server() -> Iterator[object]:
    with serve(SERVED) as server:
        yield server


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory, cli_home: Path, cli_prefect: str) -> str:
    """A local store where ``ds`` version 1 is deleted and version 2 is live (two real creates, one delete)."""
    root = tmp_path_factory.mktemp("shared")
    src = make_tree(root / "src", {"a.txt": b"a"})
    store = str(root / "store")
    cli = Cli(cli_home, cli_prefect)
    for args in (("create", str(src), "--name", "ds"), ("create", str(src), "--name", "ds"),
                 ("delete", "--name", "ds", "--version", "1")):
        proc = cli.run(*args, DATASTORE_STORE=store)
        assert proc.returncode == 0, proc.stderr
    return store


def test_no_two_rows_share_an_id() -> None:
    assert len({r.id for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", [_param(r) for r in ROWS])
def test_bad_input(row: Row, cli: Cli, tmp_path: Path, request: pytest.FixtureRequest,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = Ctx(tmp_path)
    if row.s3 or row.store == "seaweed":
        ctx.seaweed = request.getfixturevalue("seaweed")
        for k, v in ctx.seaweed.env().items():
            monkeypatch.setenv(k, v)
    if row.http:
        ctx.http = request.getfixturevalue("http_server")
        monkeypatch.setenv("DATASTORE_HTTP_ALLOW_PRIVATE", "1")
        monkeypatch.setenv("DATASTORE_WORK_DIR", str(tmp_path / "work"))
    store = {"local": lambda: request.getfixturevalue("local_store"),
             "shared": lambda: request.getfixturevalue("shared_store"),
             "seaweed": lambda: request.getfixturevalue("seaweed_store")}[row.store]()
    monkeypatch.setenv("DATASTORE_STORE", store)
    values = {"tmp": str(tmp_path)} | (row.setup(ctx) if row.setup else {})
    before = versions.scan_versions(open_store(store))

    proc = cli.run(*(a.format(**values) for a in row.args), restricted=row.restricted,
                   **{k: v.format(**values) for k, v in row.env.items()})

    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    if isinstance(row.expect, str):
        assert line == "error: " + row.expect.format(**values)
    else:
        for fragment in row.expect:
            assert fragment.format(**values) in line, line
    assert (proc.returncode, proc.stdout) == (row.code, ""), (proc.returncode, proc.stdout, proc.stderr)
    for secret in ("definitely-wrong", "not-the-secret-8472", "hunter2"):
        assert secret not in proc.stderr
    assert versions.scan_versions(open_store(store)) == before  # nothing committed (nor deleted)
    if "store" in values:
        assert not os.path.exists(values["store"])
