"""What every creation flow shares: run name, settings, and the monitoring around the work.

Lives in :mod:`datastore.orchestration` (the only part of ``datastore`` that talks to Prefect);
the flows reach it through :mod:`datastore_flows.common`.

:func:`monitored` wraps the body of each creation flow. While the creation runs it keeps a
status record in the store (``datastore status`` / ``list``) and a Prefect progress artifact up
to date; it tags the flow run ``datastore:<name>`` and the source kind; on failure it records
the one-line reason and emits ``datastore.create.failed``; when the store refuses that record
(a full disk), it is kept on this machine instead (see :mod:`datastore.inflight`). None of this
may fail the creation: the bookkeeping is best-effort and logged when it cannot be done.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import threading
import typing
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from prefect import get_run_logger
from prefect.runtime import flow_run

from datastore.creation.pipeline import CreateJob
from datastore.errors import DatastoreError, ResumeLimit, one_line
from datastore.model import progress
from datastore.model.kinds import mask_urls, safe_source
from datastore.model.naming import derive_name
from datastore.orchestration import events as notify
from datastore.settings import Settings
from datastore.store import Store, inflight, open_store


def display_name(params: dict) -> str:
    """The datastore name a creation is about, from its ``name`` or ``source`` parameter."""
    name = params.get("name")
    if not name:
        try:
            name = derive_name(str(params.get("source", "")))
        except Exception:  # noqa: BLE001 - a bad name fails the run itself, with its message
            name = "unnamed"
    return str(name)


def run_name() -> str:
    """``create-<name>`` for the Prefect UI, from the ``name`` or ``source`` parameter."""
    return f"create-{display_name(flow_run.parameters)}"


def settings_for(store: str | None) -> Settings:
    """Settings from the environment, with the flow's ``store`` parameter taking precedence."""
    settings = Settings.from_env()
    return settings.replace(store=store) if store else settings


def _parent_run_id() -> str | None:
    """The periodic run this creation is a subflow of (an API lookup: never allowed to fail the run)."""
    try:
        return flow_run.parent_flow_run_id
    except Exception:  # noqa: BLE001
        return None


class Monitor:
    """The running creation's status record, progress artifact and heartbeat (see the module)."""

    def __init__(self, kind: str, source: str, name: str, settings: Settings) -> None:
        self.settings = settings
        self.log = get_run_logger()
        run_id = str(flow_run.id or uuid.uuid4().hex)
        self.record = inflight.RunRecord(run_id=run_id, name=name, kind=kind, source=safe_source(source),
                                         flow_run_id=flow_run.id, flow_run_name=flow_run.name,
                                         parent_flow_run_id=_parent_run_id())
        self.progress = progress.current() or progress.Progress()
        self.progress.set_phase("preparing")  # Prefect runs the flow: checking the source and the quota
        self.store: Store | None = None
        self.artifact_id = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards `record`
        self._io = threading.Lock()  # serializes writes of the record and artifact
        self._thread: threading.Thread | None = None

    def started(self, job: CreateJob) -> CreateJob:
        """The creation is validated: record its final name and credential-free source."""
        with self._lock:
            self.record.name, self.record.source = job.name, job.source
        self._tag(job)
        self.save()
        return job

    def phase(self, name: str, reset: bool = False) -> None:
        """Name the step now running (the heartbeat writes it within ``status_interval``)."""
        self.progress.set_phase(name, reset)

    def _snapshot(self) -> inflight.RunRecord:
        """A copy of the record with the current progress (taken under the lock, written outside it)."""
        p = self.progress
        with self._lock:
            r = self.record
            r.phase, r.files_done, r.files_total = p.phase, p.files_done, p.files_total
            r.bytes_done, r.bytes_total = p.bytes_done, p.bytes_total
            return inflight.RunRecord.from_json(r.to_json())

    def save(self, final: bool = False) -> None:
        """Write the status record and the progress artifact now (best-effort).

        Writes are serialized, but progress counters and ``phase`` never wait for them: a slow
        store or API delays the record, not the creation.

        Args:
            final: The record is the outcome (a failure): if the store refuses it, keep it on
                this machine rather than let the store say ``processing`` (see :meth:`_keep_locally`).
        """
        snap = self._snapshot()
        with self._io:
            try:
                if self.store is None:
                    self.store = open_store(self.settings.store, self.settings)
                inflight.write(self.store, snap)
            except Exception as exc:  # noqa: BLE001 - status is informational; the creation goes on
                if final:
                    self._keep_locally(snap, exc)
                else:
                    self.log.debug("status record not written: %s", exc)
            self._update_artifact(snap)

    def _update_artifact(self, snap: inflight.RunRecord) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        text = f"{snap.name}: {snap.progress_text()}"
        try:
            if self.artifact_id is None:
                self.artifact_id = create_progress_artifact(snap.percent(), description=text)
            else:
                update_progress_artifact(self.artifact_id, snap.percent(), description=text)
        except Exception as exc:  # noqa: BLE001
            self.log.debug("progress artifact not updated: %s", exc)

    def _tag(self, job: CreateJob) -> None:
        """Tags ``datastore``, ``datastore:<name>`` and the kind, whoever started the run."""
        if not flow_run.id:
            return
        tags = sorted(set(flow_run.tags or []) | {"datastore", f"datastore:{job.name}", job.kind})
        try:
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as client:
                client.update_flow_run(flow_run.id, tags=tags)
        except Exception as exc:  # noqa: BLE001
            self.log.debug("flow run not tagged: %s", exc)

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.status_interval):
            self.save()

    def start(self) -> None:
        """Write the first record and start the heartbeat (it carries the flow's Prefect context)."""
        self.save()
        ctx = contextvars.copy_context()
        self._thread = threading.Thread(target=ctx.run, args=(self._beat,), name="datastore-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the heartbeat."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def succeeded(self) -> None:
        """Committed (or unchanged): the version record now tells the story; drop the status record."""
        self.progress.set_phase("done")
        snap = self._snapshot()
        with self._io:
            try:
                from prefect.artifacts import update_progress_artifact

                if self.artifact_id is not None:
                    update_progress_artifact(self.artifact_id, 100.0, description=f"{snap.name}: done")
            except Exception as exc:  # noqa: BLE001
                self.log.debug("progress artifact not finished: %s", exc)
            if self.store is not None:
                try:
                    inflight.remove(self.store, snap.run_id)
                    # Earlier failures of the same source are superseded: the version now stands.
                    inflight.dismiss_failed(self.store, self.settings.lease_ttl, snap.name, source=snap.source,
                                            before=snap.started_at)
                except Exception as exc:  # noqa: BLE001
                    self.log.warning("status record %s not removed: %s", snap.run_id, exc)

    def _keep_locally(self, snap: inflight.RunRecord, write_exc: Exception) -> None:
        """The store refused the failed record (a full disk refuses even that): keep it on this machine.

        Otherwise the store would go on saying ``processing`` until the heartbeat expires;
        readers here show the local copy, readers elsewhere judge the silent record.
        """
        if self.store is None:
            return  # the store never opened, so it holds no record of this run to correct
        try:
            where = inflight.write_local(self.store, snap)
        except OSError as local_exc:
            self.log.warning("failed status record of %s not written to the store (%s) nor kept locally (%s)",
                             snap.run_id, one_line(write_exc), one_line(local_exc))
            return
        self.log.warning("failed status record of %s not written to the store (%s); kept at %s",
                         snap.run_id, one_line(write_exc), where)

    def failed(self, exc: BaseException) -> None:
        """Record the reason (``status`` shows it) and emit ``datastore.create.failed``."""
        import time

        with self._lock:
            r = self.record
            # Errors quote URLs with their query; a signed one must not reach records or events.
            r.status, r.reason, r.finished_at = "failed", mask_urls(one_line(exc)), time.time()
        self.save(final=True)
        notify.emit(notify.FAILED, r.name, {"name": r.name, "version": None, "kind": r.kind, "source": r.source,
                                             "reason": r.reason, "phase": r.phase, "flow_run_id": r.flow_run_id})


@contextlib.contextmanager
def monitored(kind: str, source: str, name: str | None, settings: Settings) -> Iterator[Monitor]:
    """Run a creation flow's body under a :class:`Monitor` (see the module docstring)."""
    mon = Monitor(kind, source, display_name({"name": name, "source": source}), settings)
    own = progress.current() is None
    if own:
        progress.install(mon.progress)
    mon.start()
    try:
        # run_count counts the times this flow run entered Running: > 1 after a lost worker's
        # run was rescheduled (deployments/automations.yaml) or the flow retried.
        if (flow_run.run_count or 1) > settings.max_resumes + 1:
            raise ResumeLimit(mon.record.name, flow_run.run_count)
        yield mon
    except BaseException as exc:
        mon.stop()
        mon.failed(exc)
        raise
    else:
        mon.stop()
        mon.succeeded()
    finally:
        if own:
            progress.install(None)


def outcome(record: dict) -> str:
    """The line that ends a creation run's log and is its state message in the UI."""
    size = progress.human_bytes(int(record.get("bytes") or 0))
    where = safe_source(str(record.get("source") or ""))
    if record.get("status") == "unchanged":
        return (f"{record.get('name')} unchanged: the newest version is still {record.get('version')} "
                f"({record.get('files')} files, {size} from {where}); nothing committed")
    return f"committed {record.get('name')} version {record.get('version')}: {record.get('files')} files, {size} from {where}"


def reported(fn: Callable[..., dict]) -> Callable[..., Any]:
    """Make a creation flow end in a state whose message is what a user needs from the UI.

    A finished run is ``Completed`` with "committed NAME version N: …" (also its last log line);
    a refused or failed one (any :class:`~datastore.errors.DatastoreError`) is ``Failed`` with the
    one-line reason and the fix, logged once as an error without a traceback (the reason is the
    story; a traceback is noise to the user). The data is the same either way: the record, or the
    exception, which calling the flow in-process raises as before. Anything else (a bug) still
    raises, so Prefect records its traceback.
    """

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - the flow's own parameters
        from prefect.states import Completed, Failed

        log = get_run_logger()
        try:
            record = fn(*args, **kwargs)
        except DatastoreError as exc:
            line = mask_urls(exc.line())
            log.error(line)
            return Failed(message=line, data=exc)
        text = outcome(record)
        log.info(text)
        return Completed(message=text, data=record)

    # Prefect builds the parameter model from the signature and resolves string annotations in
    # the wrapper's module, where the flow's types (SecretStr, ...) are not: hand it them resolved.
    run.__signature__ = inspect.signature(fn, eval_str=True)
    run.__annotations__ = typing.get_type_hints(fn)
    return run
