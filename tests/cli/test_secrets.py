"""No secret reaches anything a creation leaves behind, whatever the path (issue 14).

Every path runs with S3 keys and a session token in the environment (the store is on moto,
which accepts any token; SeaweedFS refuses unknown session tokens); the HTTP paths add a
presigned-looking query string and user-info in the URL. The CLI runs as out of the box: no
server configured, so the local Prefect server (one for this module, started by the first
case's create) holds the flow runs (parameters, logs, artifacts, events); each case counts the
runs created since it started. Then every haystack is grepped for every secret: CLI
stdout/stderr (``--json`` included), every store object (manifests decompressed), every file
under the test's folders and the local server's (its log, the SQLite WAL with the newest
writes), and the database read back through SQLite, table by table.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from datastore.testing.http_server import Server, serve
from datastore.testing.servers import S3Server
from tests.archives import tar_gz
from tests.conftest import Cli, make_tree, stop_helpers, store_objects

SECRET_KEY = "AWSSECRET-do-not-leak-7c41e2"  # noqa: S105 - test secrets we grep for
SESSION_TOKEN = "SESSIONTOKEN-do-not-leak-93ab0f"  # noqa: S105
SIGNATURE = "SECRETSIG-do-not-leak-0d5e8a"
SIGNED_CREDENTIAL = "SIGNEDCRED-do-not-leak-61f2c4"
SIGNED_TOKEN = "SIGNEDTOKEN-do-not-leak-b83d17"
PASSWORD = "SECRETPW-do-not-leak-4a90be"  # noqa: S105
SECRETS = (SECRET_KEY, SESSION_TOKEN, SIGNATURE, SIGNED_CREDENTIAL, SIGNED_TOKEN, PASSWORD)

SIGNED_QUERY = (f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={SIGNED_CREDENTIAL}%2F20260101%2Fus-east-1%2Fs3"
                f"%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
                f"&X-Amz-Security-Token={SIGNED_TOKEN}&X-Amz-Signature={SIGNATURE}")
SHOWN_QUERY = ("?X-Amz-Algorithm=***&X-Amz-Credential=***&X-Amz-Date=***&X-Amz-Expires=***"
               "&X-Amz-SignedHeaders=***&X-Amz-Security-Token=***&X-Amz-Signature=***")


FILES = {"data/a.txt": b"alpha\n", "data/sub/b.csv": b"x,y\n1,2\n"}


@dataclass
class Create:
    """One ``create`` of a case: its source, whether it succeeds, and the source it must show."""

    source: str
    ok: bool
    shown: str
    name: str = "secret-ds"
    args: tuple[str, ...] = ()
    fragments: tuple[str, ...] = ()  # in the error line of a failing create
    recorded: bool = False  # a failing create got as far as a flow run (a status record)


@dataclass
class World:
    tmp: Path
    http: Server
    moto: S3Server
    bucket: str
    creates: list[Create] = field(default_factory=list)


def _local(w: World) -> None:
    src = make_tree(w.tmp / "src", FILES)
    w.creates = [Create(str(src), True, str(src))]


def _s3(no_copy: bool) -> Callable[[World], None]:
    def build(w: World) -> None:
        client = w.moto.client()
        for key, data in FILES.items():
            client.put_object(Bucket=w.bucket, Key=f"src/{key}", Body=data)
        args = ("--no-copy",) if no_copy else ()
        good, empty = f"s3://{w.bucket}/src/data/", f"s3://{w.bucket}/src/none/"
        w.creates = [Create(good, True, good, args=args),
                     Create(empty, False, empty, name="secret-empty", args=args, fragments=("contains no files",))]
    return build


def _http_signed(w: World) -> None:
    good, gone = w.http.url("/signed/data.tar.gz"), w.http.url("/signed/gone.tar.gz")
    w.creates = [Create(good + SIGNED_QUERY, True, good + SHOWN_QUERY),
                 Create(gone + SIGNED_QUERY, False, gone + SHOWN_QUERY, name="secret-gone",
                        fragments=("HTTP 404 Not Found", gone + SHOWN_QUERY), recorded=True)]


def _http_userinfo(w: World) -> None:
    # Credentials in the URL are refused by design (unauthenticated URLs only): never fetched, never shown.
    url = w.http.url("/a.tar.gz")
    with_pw = url.replace("://", f"://user:{PASSWORD}@")
    both = w.http.url("/signed/data.tar.gz").replace("://", f"://{PASSWORD}@")
    w.creates = [Create(with_pw, False, url, fragments=("credentials in the URL are not supported", url)),
                 Create(both + SIGNED_QUERY, False, w.http.url("/signed/data.tar.gz") + SHOWN_QUERY,
                        name="secret-both", fragments=("credentials in the URL are not supported",))]


CASES: dict[str, Callable[[World], None]] = {
    "local": _local, "s3-copy": _s3(False), "s3-reference": _s3(True),
    "http-signed": _http_signed, "http-userinfo": _http_userinfo,
}


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The state folder of this module's local Prefect server (and warm runner), stopped after it."""
    folder = tmp_path_factory.mktemp("secrets-state")
    yield folder
    stop_helpers(folder)


@pytest.fixture(scope="module")
def http() -> Iterator[Server]:
    with serve({"/signed/data.tar.gz": tar_gz(FILES), "/a.tar.gz": tar_gz(FILES)}) as server:
        yield server


def _db_text(db: Path) -> list[str]:
    """Every text/blob cell of every table of the Prefect database (WAL included), and the row counts."""
    out: list[str] = []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - names from sqlite_master
                out += [c.decode("utf-8", "replace") if isinstance(c, bytes) else c for c in row
                        if isinstance(c, (str, bytes))]
    finally:
        con.close()
    return out


def _db_now(db: Path) -> str:
    """The newest creation time in the database (rows created after it are this case's), or ''."""
    if not db.exists():
        return ""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        newest = max((con.execute(f"SELECT max(created) FROM {t}").fetchone()[0] or "")  # noqa: S608 - fixed names
                     for t in ("flow_run", "log", "artifact"))
        return newest + "~" if newest else ""  # "~" sorts after every digit: rows of that instant are older
    finally:
        con.close()


def _count(db: Path, sql: str) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


@pytest.mark.parametrize("case", list(CASES))
def test_creation_leaks_no_secret(case: str, tmp_path: Path, moto: S3Server, http: Server, state: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    cli = Cli(home)  # no server configured: the local one
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    moto.client().create_bucket(Bucket=bucket)
    env = {"AWS_ENDPOINT_URL": moto.endpoint, "AWS_ACCESS_KEY_ID": "AKIDSECRETSTEST", "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_SESSION_TOKEN": SESSION_TOKEN, "AWS_DEFAULT_REGION": "us-east-1",
           "DATASTORE_STORE": f"s3://{bucket}/store", "DATASTORE_HTTP_ALLOW_PRIVATE": "1",
           "DATASTORE_WORK_DIR": str(tmp_path / "work"), "COLUMNS": "400", "DATASTORE_STATE_DIR": str(state)}
    world = World(tmp_path, http, moto, bucket)
    CASES[case](world)
    started = _db_now(state / "prefect-server" / "home" / "prefect.db")
    outputs: list[str] = []

    def run(*args: str) -> subprocess.CompletedProcess:
        proc = cli.run(*args, **env)
        outputs.extend([proc.stdout, proc.stderr])
        return proc

    before = len(http.requests)
    for c in world.creates:
        proc = run("create", c.source, "--name", c.name, *c.args, "--json")
        if c.ok:
            assert proc.returncode == 0, proc.stderr
            rec = json.loads(proc.stdout)
            assert rec["source"] == c.shown and rec["status"] == "succeeded"
            assert rec["files"] == 2
        else:
            assert proc.returncode == 1 and proc.stdout == "", (proc.stdout, proc.stderr)
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
            for fragment in c.fragments:
                assert fragment in lines[0], lines[0]
    served = http.requests[before:]
    if case == "http-signed":  # the real, signed URL is what was fetched
        assert any(m == "GET" and SIGNATURE in p and SIGNED_TOKEN in p for m, p, _ in served)
    if case == "http-userinfo":  # refused before any request; nothing was sent as Authorization
        assert served == []
    assert not any("Authorization" in h for _, _, h in served)

    # What the user sees of the source: credential-free, in every view.
    good = [c for c in world.creates if c.ok]
    listed = run("list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    for c in world.creates:
        if c.ok or c.recorded:
            assert rows[c.name]["source"] == c.shown, rows[c.name]
    run("list")
    for c in good:
        shown = run("show", c.name, "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["source"] == c.shown
        assert c.shown in run("show", c.name).stdout
        assert run("verify", c.name).returncode == 0
    status = run("status", "--json")
    assert status.returncode == 0, status.stderr
    failed = {r["name"]: r for r in json.loads(status.stdout)}
    for c in world.creates:
        if c.recorded:  # a source refused before the flow run leaves no status record
            assert failed[c.name]["source"] == c.shown, failed[c.name]
    run("status")

    # The haystacks: CLI output, every store object, every file the test's processes wrote.
    haystacks: dict[str, bytes] = {f"output {i}": o.encode() for i, o in enumerate(outputs)}
    haystacks |= {f"store {key}": data for key, data in store_objects(env, monkeypatch).items()}
    assert any(k.startswith("store manifests/") for k in haystacks) == bool(good)
    files = [p for p in [*tmp_path.rglob("*"), *state.rglob("*")] if p.is_file()]
    haystacks |= {f"file {p}": p.read_bytes() for p in files}
    db = state / "prefect-server" / "home" / "prefect.db"
    runs = [c for c in world.creates if c.ok or c.recorded]
    if runs:  # the flow runs' parameters, logs, artifacts and events are in the haystack
        time.sleep(3)  # the server persists events every ~2 s: this case's are in the database now
        haystacks["database cells"] = "\n".join(_db_text(db)).encode()
        mine = f"created >= '{started}'"  # this case's rows (timestamps sort as text)
        assert _count(db, f"SELECT count(*) FROM flow_run WHERE {mine}") == len(runs)
        assert _count(db, f"SELECT count(*) FROM log WHERE {mine}") > 0
        assert _count(db, f"SELECT count(*) FROM artifact WHERE {mine}") > 0
    else:  # Prefect runs only for a creation that passed the checks
        assert not db.exists() or _count(db, f"SELECT count(*) FROM flow_run WHERE created >= '{started}'") == 0
    for where, blob in haystacks.items():
        for secret in SECRETS:
            assert secret.encode() not in blob, f"{secret} leaked into {where}"
