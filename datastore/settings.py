"""Settings read from the environment, with the defaults a fresh machine needs.

Every setting is one field of :class:`Settings`; its environment variable is
``DATASTORE_<FIELD>`` (see :func:`env_var`). A plain frozen dataclass rather than
pydantic-settings: importing pydantic-settings costs ~0.4 s, more than a ``datastore list``
takes today, and the checks needed (whole numbers with a lower bound, booleans) are these few lines.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from datastore.errors import ConfigError

MiB = 1024 * 1024


# Each setting is declared once, below: its default, its bound and how its variable is read.
def _int(default: int, minimum: int) -> int:
    return field(default=default, metadata={"kind": "int", "minimum": minimum})


def _path(default: Callable[[], object]) -> str:
    return field(default_factory=lambda: str(default()), metadata={"kind": "path"})


def _flag(default: bool = False) -> bool:
    return field(default=default, metadata={"kind": "flag"})


def _choice(default: str, *choices: str) -> str:
    return field(default=default, metadata={"kind": "choice", "choices": (default, *choices)})


def _address(example: str) -> str:
    return field(default="", metadata={"kind": "address", "example": example})


# A Dask scheduler address: tcp://host:port (tls://, or host:port, as distributed.Client takes).
_DASK_ADDRESS = re.compile(r"((tcp|tls|ucx|ws|wss)://)?[^\s/:]+:\d{1,5}")


def default_store_path() -> Path:
    """The embedded default store: under the user's data directory (XDG), no server needed."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "datastore" / "store"


def default_cache_dir() -> Path:
    """The block cache shared by every mount and reader on this machine (XDG cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "datastore" / "cache"


def default_state_dir() -> Path:
    """Long-lived state of this machine's helpers: the local Prefect server, warm runners (XDG state)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "datastore"


def default_repo_dir() -> Path:
    """The checkout this package runs from: its ``prefect.yaml`` and ``flows/`` are what workers run."""
    return Path(__file__).resolve().parent.parent


def default_work_dir() -> Path:
    """Scratch space for downloads and extracted archives (XDG cache; safe to delete when idle)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "datastore" / "work"


@dataclass(frozen=True)
class Settings:
    """Everything tunable, in one value object.

    Attributes:
        store: Store location, a local path or ``s3://bucket/prefix``.
        max_versions: Quota of live versions across all names.
        batch_files: At most this many files a transfer batch (the unit a re-run resumes from).
        batch_bytes: At most this many new bytes a transfer batch.
        pack_bytes: Small files are packed into objects of about this size.
        large_file_bytes: Files this big or bigger are stored as objects of their own.
        part_bytes: Multipart part size for large objects on S3.
        workers: Concurrent transfer task runs (Prefect thread pool size; on Dask, the threads
            of the local cluster's workers together).
        task_runner: Where the transfer task runs of a creation run: ``threads`` (the flow's own
            process) or ``dask`` (a ``distributed.LocalCluster`` of worker processes started for
            the run, through ``prefect-dask``). The scan and the commit stay in the flow.
        dask_address: A running Dask scheduler (``tcp://host:port``): transfer task runs go to
            its workers (implies ``task_runner=dask``); the store must be one every worker
            reaches (``s3://`` across machines).
        dask_workers: Worker processes of the local cluster (``task_runner=dask`` without an
            address); 0 means one per CPU core.
        transfer_tasks: At most this many transfer task runs per creation; above, a task run
            transfers several consecutive batches (a million files: 1,000 batches, 256 runs).
        part_workers: Concurrent multipart parts per large object.
        reuse_lines: A batch may carry at most this many reused (unchanged) entries.
        fetch_workers: Concurrent GETs of small S3 source objects per transfer batch.
        copy_multipart_bytes: S3 objects bigger than this are copied server-side in parts
            (``UploadPartCopy``); S3's single ``CopyObject`` limit is 5 GiB.
        copy_part_bytes: Part size of a multipart server-side copy.
        list_run: Listed keys sorted in memory at a time (more spill to disk, then merge).
        max_extracted_bytes: An archive may expand to at most this many bytes (HTTP sources).
        max_extract_ratio: ... and to at most this many times its own size (zip/gzip bombs).
        max_archive_members: ... and hold at most this many entries (files, folders, links).
        http_allow_private: Allow HTTP sources on loopback and private addresses (tests, LANs);
            link-local and cloud metadata addresses are refused regardless.
        mount_dir: Base folder of ``datastore mount`` (``<mount_dir>/<name>``).
        cache_dir: The on-disk cache of verified blocks and manifest indexes, shared by every
            mount and ``datastore://`` reader of this machine.
        cache_bytes: Upper bound of the block cache; least recently used blocks are evicted.
        index_files: A commit of at least this many files also stores the tree index a mount
            needs (``manifests/<id>.index-<sha256>.sqlite``), so the first mount on a machine downloads
            it instead of building it from the manifest (0: never).
        read_timeout: Seconds a mount waits for the store before answering ``EIO`` (never a hang).
        gc_grace: Seconds an unreferenced object must be old before ``gc`` reclaims it.
        lease_ttl: Seconds a reader's lease lives without a heartbeat (renewed every third of it).
        status_interval: Seconds between a running creation's status/progress updates (store
            record and Prefect progress artifact).
        failed_retention: Seconds a failed creation stays in ``status`` / ``list`` (gc removes
            older ones).
        work_dir: Local scratch space of HTTP creations (download, extracted tree); a failed
            create leaves its download there so the next run resumes it.
        state_dir: The local Prefect server's database and log, the warm runners' pid files.
        local_server: With no Prefect server configured, start a local one on first use and keep
            it (off: Prefect's ephemeral mode, a temporary server inside every command).
        server_start_timeout: Seconds the first command waits for the local server to start.
        repo_dir: The checkout whose ``prefect.yaml`` ``datastore server start`` deploys and whose
            flows its worker runs (also read by ``prefect.yaml``'s pull step).
        warm: Run Prefect commands in a warm runner (a process that has Prefect imported
            already; started in the background on first use) instead of importing it each time.
        warm_idle: Seconds a warm runner waits for a command before it exits.
        max_resumes: How many times one flow run may be taken up again after its worker or
            process was lost (``deployments/automations.yaml`` reschedules it); past that it
            fails with the reason, so a run that kills its machine every time does not loop.
    """

    store: str = _path(default_store_path)
    max_versions: int = _int(50, minimum=0)
    batch_files: int = _int(1000, minimum=1)
    batch_bytes: int = _int(128 * MiB, minimum=1)
    pack_bytes: int = _int(32 * MiB, minimum=1)
    large_file_bytes: int = _int(32 * MiB, minimum=1)
    part_bytes: int = _int(8 * MiB, minimum=5 * MiB)
    workers: int = _int(4, minimum=1)
    task_runner: str = _choice("threads", "dask")
    dask_address: str = _address("tcp://127.0.0.1:8786")
    dask_workers: int = _int(0, minimum=0)
    transfer_tasks: int = _int(256, minimum=1)
    part_workers: int = _int(8, minimum=1)
    reuse_lines: int = _int(100_000, minimum=1)
    fetch_workers: int = _int(16, minimum=1)
    copy_multipart_bytes: int = _int(5 * 1024 * MiB, minimum=5 * MiB)
    copy_part_bytes: int = _int(512 * MiB, minimum=5 * MiB)
    list_run: int = _int(200_000, minimum=1)
    max_extracted_bytes: int = _int(256 * 1024 * MiB, minimum=1)
    max_extract_ratio: int = _int(1000, minimum=1)
    max_archive_members: int = _int(10_000_000, minimum=1)
    http_allow_private: bool = _flag()
    work_dir: str = _path(default_work_dir)
    lease_ttl: int = _int(120, minimum=3)
    gc_grace: int = _int(3600, minimum=0)
    mount_dir: str = _path(lambda: "/datastores")
    cache_dir: str = _path(default_cache_dir)
    cache_bytes: int = _int(10 * 1024 * MiB, minimum=64 * MiB)
    index_files: int = _int(100_000, minimum=0)
    read_timeout: int = _int(30, minimum=1)
    status_interval: int = _int(2, minimum=1)
    failed_retention: int = _int(7 * 24 * 3600, minimum=0)
    state_dir: str = _path(default_state_dir)
    local_server: bool = _flag(default=True)
    server_start_timeout: int = _int(180, minimum=1)
    repo_dir: str = _path(default_repo_dir)
    warm: bool = _flag(default=True)
    warm_idle: int = _int(600, minimum=1)
    max_resumes: int = _int(3, minimum=0)

    def __post_init__(self) -> None:
        for f in fields(self):  # the same bound whether a value comes from the environment or a caller
            minimum = f.metadata.get("minimum")
            value = getattr(self, f.name)
            if minimum is not None and (not isinstance(value, int) or value < minimum):
                raise ConfigError(f.name, value, f"must be an integer >= {minimum}", f"pass {f.name} >= {minimum}")
            problem = _bad_text(f, value)
            if problem:
                raise ConfigError(f.name, value, problem[0], f"pass {f.name}={problem[1]}")

    @property
    def on_dask(self) -> bool:
        """Whether transfer task runs go to Dask (an address given, or ``task_runner=dask``)."""
        return bool(self.dask_address) or self.task_runner == "dask"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``DATASTORE_<FIELD>`` environment variables (empty means the default).

        Called when a command or a flow run starts, never at import, so a bad variable fails
        the run that reads it with its name and bound, not every import of a flow module.

        Raises:
            ConfigError: a variable is not a whole number, is below its bound, or is not a boolean.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            var = env_var(f.name)
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            values[f.name] = _parse(f, var, raw)
        return cls(**values)

    def replace(self, **changes: object) -> Settings:
        """A copy with ``changes`` applied (checked like any other value)."""
        return dataclasses.replace(self, **changes)


def env_var(field_name: str) -> str:
    """The environment variable of a setting: ``DATASTORE_`` + its name in capitals."""
    return f"DATASTORE_{field_name.upper()}"


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _parse(f: dataclasses.Field, var: str, raw: str) -> object:
    kind = f.metadata["kind"]
    if kind == "path":
        return raw
    if kind in ("choice", "address"):
        value = raw.strip()
        problem = _bad_text(f, value)
        if problem:
            raise ConfigError(var, raw, problem[0], f"set {var} to {problem[1]}")
        return value
    if kind == "flag":
        low = raw.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise ConfigError(var, raw, "is not a boolean", f"set {var} to 1 or 0")
    minimum = f.metadata["minimum"]
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(var, raw, "is not a whole number", f"set {var} to an integer >= {minimum}") from None
    if value < minimum:
        raise ConfigError(var, raw, "is too small", f"set {var} to an integer >= {minimum}")
    return value


def _bad_text(f: dataclasses.Field, value: object) -> tuple[str, str] | None:
    """(problem, what to set instead) when a choice or an address field holds a value it cannot."""
    kind = f.metadata["kind"]
    if kind == "choice" and value not in f.metadata["choices"]:
        return "is not one of " + ", ".join(f.metadata["choices"]), " or ".join(f.metadata["choices"])
    if kind == "address" and value and not _DASK_ADDRESS.fullmatch(str(value)):
        return "is not a Dask scheduler address", f"one like {f.metadata['example']} (or leave it empty)"
    return None
