"""What every creation flow shares (run name, settings, monitoring, where it runs): see
:mod:`datastore.orchestration.monitor`."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

from prefect.runtime import deployment, flow_run

from datastore.creation.sources.http import refused_on_worker
from datastore.errors import UrlRefused
from datastore.orchestration.monitor import Monitor, display_name, monitored, reported, run_name, settings_for

__all__ = ["Monitor", "display_name", "monitored", "reported", "run_name", "settings_for", "worker_host", "worker_refusals"]


def worker_host() -> str | None:
    """This host when a worker runs the flow (deployment, --submit, schedule), else None.

    Only for error messages: a worker's filesystem and environment may not be the user's.
    Looked up lazily (an API call) and never allowed to fail the creation.
    """
    try:
        on_worker = deployment.id or flow_run.parent_deployment_id
    except Exception:  # noqa: BLE001 - only a hint in an error message
        return None
    return socket.gethostname() if on_worker else None


@contextlib.contextmanager
def worker_refusals() -> Iterator[None]:
    """On a worker, say that a refused private address is allowed by the *worker's* environment.

    The user who set ``DATASTORE_HTTP_ALLOW_PRIVATE=1`` where they submitted would otherwise be
    told to set the variable they already set.
    """
    try:
        yield
    except UrlRefused as exc:
        host = worker_host()
        if host is None:
            raise
        raise refused_on_worker(exc, host) from None
