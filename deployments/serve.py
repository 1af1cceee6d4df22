"""Serve the creation flows from this process (no work pool or worker needed).

Usage: ``.venv/bin/python -m datastore_deployments.serve`` with ``PREFECT_API_URL`` pointing at a server.
The Prefect UI can then start one-off creations ("Run" on a deployment, with parameters). For a
work pool and worker instead, use ``prefect deploy --all`` with ``prefect.yaml``; the deployment
names are the same either way, so ``datastore create --submit`` finds them.
"""

from __future__ import annotations

from prefect import serve

from datastore_deployments.names import CREATION
from datastore_flows.http_archive import create_from_http
from datastore_flows.local_folder import create_from_local
from datastore_flows.s3_copy import create_from_s3
from datastore_flows.s3_reference import reference_s3

FLOWS = {"local": create_from_local, "s3-copy": create_from_s3, "s3-reference": reference_s3,
         "http-archive": create_from_http}


def main() -> None:
    """Serve one deployment per creation flow until interrupted."""
    serve(*(FLOWS[kind].to_deployment(name=CREATION[kind][1], tags=["datastore", kind]) for kind in FLOWS))


if __name__ == "__main__":
    main()
