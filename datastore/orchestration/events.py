"""Prefect events about datastores, so users can hang automations on them (e.g. start training).

Every event's resource is ``datastore.<name>`` (with ``prefect.resource.name`` = the name), and
its payload carries the version (``None`` for a failed creation). Inside a flow run Prefect adds
the run, flow and deployment as related resources by itself.

Emitting never fails the operation that emits: the version is committed (or deleted) whether or
not the event got out; a failure to emit is logged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from datastore.orchestration.imports import importing

if TYPE_CHECKING:
    from datastore.store.versions import VersionRecord

COMMITTED = "datastore.version.committed"
DELETED = "datastore.version.deleted"
FAILED = "datastore.create.failed"

log = logging.getLogger(__name__)


def resource(name: str) -> dict[str, str]:
    """The Prefect resource of a datastore name."""
    return {"prefect.resource.id": f"datastore.{name}", "prefect.resource.name": name,
            "datastore.name": name}


def emit(event: str, name: str, payload: dict) -> bool:
    """Emit ``event`` about datastore ``name``; True when it was handed to Prefect.

    Args:
        event: One of :data:`COMMITTED`, :data:`DELETED`, :data:`FAILED`.
        name: The datastore name.
        payload: JSON-serializable details; must include ``version``.
    """
    try:
        with importing:
            from prefect.events import emit_event

        return emit_event(event=event, resource=resource(name), payload=payload) is not None
    except Exception as exc:  # noqa: BLE001 - see the module docstring
        log.warning("could not emit %s for %s: %s", event, name, exc)
        return False


def api_configured() -> bool:
    """Whether a Prefect server is configured (outside flow runs events go only there).

    Without one, emitting would first start a temporary local server just to store the event,
    which nobody could act on; commands outside flow runs skip it then.
    """
    if os.environ.get("PREFECT_API_URL"):
        return True
    try:
        with importing:
            from prefect.settings import PREFECT_API_URL

        return bool(PREFECT_API_URL.value())
    except Exception:  # noqa: BLE001
        return False


def flush() -> None:
    """Wait until emitted events are sent (a short-lived command exits right after)."""
    try:
        with importing:
            from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=10)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not flush events: %s", exc)


def versions_deleted(store_url: str, gone: Iterable[VersionRecord]) -> None:
    """``datastore.version.deleted`` per version, when a Prefect server is configured (see :func:`api_configured`)."""
    if not api_configured():
        return
    for r in gone:
        emit(DELETED, r.name, {"name": r.name, "version": r.version, "digest": r.digest,
                               "deleted_at": r.deleted_at, "store": store_url})
    flush()
