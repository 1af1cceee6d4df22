"""Names the deployments go by, shared by ``prefect.yaml``, :mod:`deployments.serve` and the CLI."""

from __future__ import annotations

import os
from pathlib import Path

#: Repository root: the working directory a worker runs the flows from.
REPO = Path(__file__).resolve().parent.parent

#: Record kind → (flow name, deployment name, entrypoint) of the one-off creation deployments.
CREATION = {
    "local": ("datastore-create-local", "local", "flows/local_folder.py:create_from_local"),
    "s3-copy": ("datastore-create-s3-copy", "s3-copy", "flows/s3_copy.py:create_from_s3"),
    "s3-reference": ("datastore-create-s3-reference", "s3-reference", "flows/s3_reference.py:reference_s3"),
    "http-archive": ("datastore-create-http-archive", "http-archive", "flows/http_archive.py:create_from_http"),
}
#: Maintenance deployments (``flows/admin.py``): their ``<flow>/<deployment>`` names.
DELETE = "datastore-delete/delete"
VERIFY = "datastore-verify/verify"
GC = "datastore-gc/gc"
PERIODIC_FLOW = "datastore-periodic"
PERIODIC_ENTRYPOINT = "flows/periodic.py:refresh_datastore"


def work_pool() -> str:
    """The process work pool the deployments run on (``DATASTORE_WORK_POOL``, default ``datastore-process``)."""
    return os.environ.get("DATASTORE_WORK_POOL") or "datastore-process"


def server_api(command: str) -> str:
    """The configured Prefect API URL, for a command that needs a server (and its worker).

    Raises:
        NoPrefectServer: none is configured (a worker needs a server to get runs from).
    """
    from prefect.settings import PREFECT_API_URL

    from datastore.errors import NoPrefectServer
    from datastore.orchestration.events import api_configured

    if not api_configured():
        raise NoPrefectServer(command)
    return str(PREFECT_API_URL.value())


def full_name(kind: str) -> str:
    """``<flow>/<deployment>`` of the creation deployment for a record kind."""
    flow, deployment, _ = CREATION[kind]
    return f"{flow}/{deployment}"
