"""Creating a version: validate, then run the creation flow here or hand it to a worker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from datastore.model.kinds import Kind, check_options, record_kind
from datastore.orchestration import launch
from datastore.settings import Settings
from datastore.store import Store, inflight, open_store

if TYPE_CHECKING:
    from datastore_deployments.submit import Submitted


def check(source: str, no_copy: bool = False, credentials: str | None = None) -> str:
    """The source kind (``local``, ``s3``, ``http``), after refusing options that do not apply to it.

    Raises:
        InvalidSource: an unknown scheme, or ``no_copy`` / ``credentials`` for a non-S3 source.
    """
    return check_options(source, no_copy, credentials)


def create(source: str, name: str | None = None, *, no_copy: bool = False, credentials: str | None = None,
           settings: Settings | None = None) -> dict:
    """Create the next version of a datastore from ``source`` in this process (a Prefect flow run).

    Everything that can be checked before Prefect starts (seconds) is checked first: source,
    name, credentials, store and quota. The flow checks again on purpose: deployments run it
    without this call, and the quota may change meanwhile.

    Args:
        source: A local path, ``s3://bucket/prefix/`` or an ``http(s)://`` archive URL.
        name: The datastore name (default: derived from ``source``).
        no_copy: Reference S3 objects in place instead of copying them.
        credentials: An ``AwsCredentials`` block for an S3 source (default: the AWS chain, then
            registered blocks that can read it).
        settings: Default: from the environment.

    Returns:
        The committed version record (as JSON), or the newest one with ``status: "unchanged"``.

    Raises:
        DatastoreError: the one-line reason (invalid source or name, access denied, quota, …).
    """
    kind = check(source, no_copy, credentials)
    settings = settings or Settings.from_env()
    if kind == "s3":
        from datastore.creation.sources import s3

        # The block chosen here is handed to the flow so it does not search again.
        job = s3.prepare(source, name, no_copy, credentials, settings)
        return launch.run_creation(record_kind(kind, no_copy), source=job.source, name=name,
                                   credentials=job.source_detail["credentials"])
    if kind == "http":
        from datastore.creation.sources import http

        # Addresses are checked at connect time.
        http.prepare(source, name, settings)
        return launch.run_creation(record_kind(kind, no_copy), source=source, name=name)
    from datastore.creation.pipeline import prepare
    from datastore.creation.sources.local import resolve_source

    root = resolve_source(source)
    prepare(str(root), name, Kind.LOCAL, settings)
    return launch.run_creation(record_kind(kind, no_copy), source=str(root), name=name)


@dataclass(frozen=True)
class Submission:
    """A creation handed to the work pool (see :func:`submit`)."""

    name: str  #: the datastore name
    run: Submitted
    store: Store  #: where the worker writes (its status record, then the version)
    stale_after: float  #: heartbeat age after which the run's status record counts as dead


def submit(source: str, name: str | None = None, *, no_copy: bool = False, credentials: str | None = None,
           worker_path: bool = False, settings: Settings | None = None) -> Submission:
    """Hand the creation to a worker (a flow run of the creation deployment) and return at once.

    Checked here: syntax, the name, and that a local path exists on this machine (unless
    ``worker_path``: a path only the worker's machine has). Access to an S3 or HTTP source is the
    worker's (its credentials, its network), so the worker checks it.

    Raises:
        NoPrefectServer: no server configured.
        DeploymentMissing: the deployment is not on the server.
    """
    from datastore.model.naming import derive_name, validate_name

    kind = check(source, no_copy, credentials)
    settings = settings or Settings.from_env()
    store = open_store(settings.store, settings)
    if kind == "s3":
        from datastore.backends.s3_source import parse_url

        parse_url(source)
    elif kind == "http":
        from datastore.backends.http import check_url

        check_url(source)
    else:
        from datastore.creation.sources.local import check_submitted

        source = check_submitted(source, worker_path)
    final = validate_name(name) if name is not None else derive_name(source)
    params: dict = {"source": source, "name": final, "store": store.url}
    if kind == "s3":
        params["credentials"] = credentials
    run = launch.submit(record_kind(kind, no_copy), final, params)
    return Submission(final, run, store, settings.lease_ttl)


def wait(submission: Submission, *, timeout: float | None = None,
         on_progress: Callable[[inflight.RunRecord], None] | None = None,
         on_notice: Callable[[str], None] | None = None) -> dict:
    """Follow a submitted creation to its end and return the committed version record.

    Args:
        submission: What :func:`submit` returned.
        timeout: Stop waiting after this many seconds (the run goes on).
        on_progress: Called with the run's status record whenever it is read.
        on_notice: Called once with a hint when the run stays queued (no worker?).

    Raises:
        CreationFailed: the run failed, crashed, was cancelled or lost its heartbeat.
        WaitTimedOut: ``timeout`` passed.
        OrchestrationError: the Prefect API kept failing.
    """
    return launch.wait(submission.store, submission.run, submission.name, stale_after=submission.stale_after,
                       timeout=timeout, on_progress=on_progress, on_notice=on_notice)
