"""Serve the creation flows from this process, so the Prefect UI can start one-off creations.

Usage: ``.venv/bin/python -m deployments.serve`` with ``PREFECT_API_URL`` pointing at a server.
"""

from __future__ import annotations

from datastore import runtime

runtime.configure()

from prefect import serve  # noqa: E402

from flows.local_folder import create_from_local  # noqa: E402


def main() -> None:
    """Serve one deployment per creation flow until interrupted."""
    serve(create_from_local.to_deployment(name="local", tags=["datastore", "local"]))


if __name__ == "__main__":
    main()
