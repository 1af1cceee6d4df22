"""``datastore create https://…`` as a user runs it: bad URLs and bad archives, one line each, nothing stored."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from datastore.testing.http_server import serve
from tests.archives import build, symlink_escape
from tests.cli.test_cli import assert_nothing_stored, assert_one_line_error
from tests.conftest import Cli
from tests.flows.test_flow_http import TREE, scratch_left


def _truncated() -> bytes:
    data = build("tar.gz", TREE)
    return data[: len(data) // 2]


def _empty_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w"):
        pass
    return buf.getvalue()


SERVED = {
    "/good.tar.gz": build("tar.gz", TREE),
    "/page.zip": b"<!DOCTYPE html><html><body>Sign in</body></html>",
    "/cut.tar.gz": _truncated(),
    "/empty.zip": _empty_zip(),
    "/mismatch.zip": build("tar.gz", TREE),
    "/slip.zip": build("zip", {"../../evil.sh": b"#!/bin/sh"}),
    "/escape.tar.gz": symlink_escape(),
    "/clash.zip": build("zip", {"a": b"a file", "a/b": b"below the file"}),
}


@pytest.fixture(scope="module")
def server():  # noqa: ANN201
    with serve(SERVED) as s:
        s.configure("/to-metadata.zip", redirect="http://169.254.169.254/latest/meta-data/")
        yield s


def test_create_from_url_json_and_show(cli: Cli, local_store: str, server, tmp_path: Path) -> None:  # noqa: ANN001
    proc = cli.run("create", server.url("/good.tar.gz"), "--json", DATASTORE_HTTP_ALLOW_PRIVATE="1",
                   DATASTORE_WORK_DIR=str(tmp_path / "work"))
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert (rec["name"], rec["kind"], rec["files"]) == ("good", "http-archive", len(TREE))
    shown = cli.run("show", "good", COLUMNS="250")
    assert server.url("/good.tar.gz") in shown.stdout
    assert f"sha256 {rec['source_detail']['archive_sha256']}" in shown.stdout
    assert rec["source_detail"]["etag"] in shown.stdout and rec["digest"] in shown.stdout


@pytest.mark.parametrize(("path", "fragments"), [
    ("/missing.zip", ["downloading", "failed: HTTP 404 Not Found"]),
    ("/page.zip", ["is not a usable archive: the server sent an HTML page, not an archive"]),
    ("/cut.tar.gz", ["is not a usable archive: truncated or corrupt archive"]),
    ("/empty.zip", ["contains no files"]),
    ("/mismatch.zip", ["the URL says '.zip' but the bytes are a tar.gz archive", "fix the URL or the file on the server"]),
    ("/slip.zip", ["archive member '../../evil.sh' refused: the name contains a '..' segment", "nothing was stored"]),
    ("/escape.tar.gz", ["archive member 'link' refused: link points outside the archive"]),
    ("/clash.zip", ["archive member 'a/b' refused: a file and a folder cannot share the path 'a' "
                    "(an earlier member is the file 'a'): the archive was refused as a whole and nothing was stored"]),
    ("/to-metadata.zip", ["169.254.169.254 is a link-local/cloud metadata address"]),
])
def test_bad_archives_and_urls(cli: Cli, local_store: str, server, tmp_path: Path, path: str,  # noqa: ANN001
                               fragments: list[str]) -> None:
    work = tmp_path / "work"
    proc = cli.run("create", server.url(path), "--name", "x", DATASTORE_HTTP_ALLOW_PRIVATE="1", DATASTORE_WORK_DIR=str(work))
    assert_one_line_error(proc, *fragments)
    assert_nothing_stored(local_store)
    assert scratch_left(work) == []  # nothing to resume from a refusal


@pytest.mark.parametrize(("url", "fragments"), [
    ("http://169.254.169.254/latest/meta-data/", ["refusing to fetch", "169.254.169.254 is a link-local/cloud metadata address"]),
    ("http://[::ffff:169.254.169.254]/x.zip", ["refusing to fetch", "embeds 169.254.169.254"]),
    ("file:///etc/passwd", ["unsupported scheme 'file'"]),
    ("ftp://example.com/x.zip", ["unsupported scheme 'ftp'"]),
    ("http://user:hunter2@127.0.0.1:9/x.zip", ["credentials in the URL are not supported"]),
])
def test_refused_urls(cli: Cli, local_store: str, url: str, fragments: list[str]) -> None:
    proc = cli.run("create", url, "--name", "x", DATASTORE_HTTP_ALLOW_PRIVATE="1")
    assert_one_line_error(proc, *fragments)
    assert "hunter2" not in proc.stderr
    assert_nothing_stored(local_store)


def test_loopback_needs_the_setting(cli: Cli, local_store: str, server) -> None:  # noqa: ANN001
    proc = cli.run("create", server.url("/good.tar.gz"))
    assert_one_line_error(proc, "is a private/loopback address; set DATASTORE_HTTP_ALLOW_PRIVATE=1 to allow it",
                          "allow private ones on trusted networks only")
    assert proc.stderr.count("DATASTORE_HTTP_ALLOW_PRIVATE") == 1, proc.stderr  # the fix, named once
    assert_nothing_stored(local_store)


def test_concurrent_creates_of_one_url_share_nothing_half_written(cli: Cli, local_store: str, tmp_path: Path) -> None:
    import os

    tree = TREE | {"noise.bin": os.urandom(4 * 1024 * 1024)}
    with serve({"/same.tar.gz": build("tar.gz", tree)}) as srv:
        env = {"DATASTORE_HTTP_ALLOW_PRIVATE": "1", "DATASTORE_WORK_DIR": str(tmp_path / "work")}
        procs = [cli.start("create", srv.url("/same.tar.gz"), "--json", **env) for _ in range(2)]
        outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    recs = [json.loads(o[0]) for o in outs]
    assert sorted(r["version"] for r in recs) == [1, 2]
    assert len({r["digest"] for r in recs}) == 1 and all(r["files"] == len(tree) for r in recs)
    assert scratch_left(tmp_path / "work") == []
