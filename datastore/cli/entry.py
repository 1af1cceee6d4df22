"""The ``datastore`` console script: the few decisions made before the CLI itself is imported.

1. With no Prefect server configured, a ``create`` uses the local server (started on first
   use, see :mod:`datastore.orchestration.local_server`); ``delete`` and ``status`` use it when it
   is up. ``create --submit`` and ``schedule`` still need a configured server with a worker.
2. Commands that talk to Prefect run in a warm runner when one is up (:mod:`datastore.cli.warm`).

Everything here imports in ~0.1 s; the CLI (Typer, Rich) and Prefect are imported only by what
runs the command.
"""

from __future__ import annotations

import os
import sys

from datastore.errors import DatastoreError
from datastore.orchestration import local_server, runtime
from datastore.settings import Settings


def _use_local_server(argv: list[str], settings: Settings) -> None:
    """Point this process at the local Prefect server when the command needs one and none is configured."""
    command = argv[0] if argv else ""
    starts = command == "create" and "--submit" not in argv
    if not settings.local_server or not (starts or command in ("delete", "status")):
        return
    if local_server.configured_api_url() is not None:
        return
    if starts:
        server = local_server.ensure(settings, on_start=lambda text: print(f"note: {text}", file=sys.stderr))
    else:
        server = local_server.running(settings)
        if server is None:
            return
    os.environ["PREFECT_API_URL"] = server.api_url
    os.environ.setdefault("PREFECT_UI_URL", server.url)


def main() -> None:
    """``datastore ARGS``: prepare the Prefect setup, run in a warm runner if one is up, else here."""
    argv = sys.argv[1:]
    runtime.configure(quiet=True)
    from datastore.cli import warm

    if warm.wanted(argv):
        try:
            settings = Settings.from_env()
        except DatastoreError:
            settings = None  # the command reports the bad setting itself, in its usual form
        if settings is not None:
            try:
                _use_local_server(argv, settings)
            except DatastoreError as exc:
                print(f"error: {exc.line()}", file=sys.stderr)
                sys.exit(1)
            code = warm.delegate(argv, settings)
            if code is not None:
                sys.exit(code)
    from datastore.cli.app import main as run_here

    run_here()
