"""Flows: delete one version, verify one, collect garbage (what the UI's Run button can do besides create).

Deployed from ``prefect.yaml`` as ``datastore-delete/delete``, ``datastore-verify/verify`` and
``datastore-gc/gc`` (the last with a daily schedule, paused until turned on). Each does exactly
what the CLI command of the same name does, through the same service call, so a delete from the
UI is refused for the same reasons (a live mount's lease, a version already deleted) and leaves
the same tombstone and event.

A refused or failed run ends ``Failed`` with the one-line reason as its state message, which is
what the UI shows on the run's page and in the runs list; a finished one ends ``Completed`` with
a message saying what it did.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed, State

from datastore.errors import DatastoreError, UsageError
from datastore.model.progress import human_bytes


def _failed(exc: DatastoreError) -> State:
    get_run_logger().error(exc.line())
    return Failed(message=exc.line(), data=exc)


def _check_version(name: str, version: int | None, required: bool) -> None:
    if not name or not name.strip():
        raise UsageError("name is empty", "give the datastore's name (see 'datastore list')")
    if version is None and required:
        raise UsageError("version is missing", "give the version number to delete (see 'datastore list NAME')")
    if version is not None and version < 1:
        raise UsageError(f"version {version} is not a version number", "versions are numbered 1, 2, 3 …")


@flow(name="datastore-delete", flow_run_name="delete-{name}-v{version}")
def delete_version(name: str, version: int, store: str | None = None) -> State:
    """Delete exactly one version of a datastore (its number is never reused).

    Args:
        name: Datastore name.
        version: The version to delete (1, 2, 3 …).
        store: Store location; the worker's ``DATASTORE_STORE`` or the default when omitted.
    """
    from datastore.service import delete as deletion
    from datastore.store import open_store

    try:
        _check_version(name, version, required=True)
        gone = deletion.delete_version(name, version, store=open_store(store) if store else None)
    except DatastoreError as exc:
        return _failed(exc)
    text = (f"deleted {name} version {version} (reclaimed {gone.objects} objects only it used, "
            f"{human_bytes(gone.bytes)})")
    get_run_logger().info(text)
    return Completed(message=text, data={"name": name, "version": version, "objects": gone.objects, "bytes": gone.bytes})


@flow(name="datastore-verify", flow_run_name="verify-{name}")
def verify_version(name: str, version: int | None = None, store: str | None = None) -> State:
    """Check that every file of a version is still there as recorded.

    Args:
        name: Datastore name.
        version: The version (default: the newest live one).
        store: Store location; the worker's ``DATASTORE_STORE`` or the default when omitted.
    """
    from datastore.service.verify import verify
    from datastore.store import open_store

    log = get_run_logger()
    try:
        _check_version(name, version, required=False)
        checked = verify(name, version, store=open_store(store) if store else None)
        for p in checked.report.problems[:100]:
            log.error("%s %s: %s", p.problem, p.path, p.detail)
        checked.raise_for_problems()
    except DatastoreError as exc:
        return _failed(exc)
    r = checked.record
    text = f"ok {r.name} version {r.version}: all {checked.report.files} files verified"
    log.info(text)
    return Completed(message=text, data=checked.report.to_json())


@flow(name="datastore-gc", flow_run_name="gc")
def collect_garbage(dry_run: bool = False) -> State:
    """Reclaim data no live version references (after ``DATASTORE_GC_GRACE`` seconds).

    Args:
        dry_run: Only report what would be reclaimed.
    """
    from datastore.service.gc import gc

    try:
        done = gc(dry_run=dry_run)
    except DatastoreError as exc:
        return _failed(exc)
    report = done.report
    text = (f"{'would reclaim' if dry_run else 'reclaimed'} {report.objects} objects, {human_bytes(report.bytes)}; "
            f"kept {report.kept_objects} objects, {human_bytes(report.kept_bytes)}")
    get_run_logger().info(text)
    return Completed(message=text, data=done.to_json())
