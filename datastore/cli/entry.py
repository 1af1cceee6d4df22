"""The ``datastore`` console script: the few decisions made before the CLI itself is imported.

1. With no Prefect server configured, a ``create`` uses the local server (started on first
   use, see :mod:`datastore.orchestration.local_server`); the other commands that may talk to
   Prefect (``delete``, ``status``, ``verify``, ``download``, ``mount``, ``schedule``,
   ``create --submit``: events, runs, blocks, deployments) use it when it is up. Submitting and
   scheduling also need the deployments and a worker there.
2. Commands that talk to Prefect run in a warm runner when one is up (:mod:`datastore.cli.warm`).

Everything here imports in ~0.1 s; the CLI (Typer, Rich) and Prefect are imported only by what
runs the command.
"""

from __future__ import annotations

import os
import sys
import time

from datastore.errors import DatastoreError
from datastore.orchestration import local_server, runtime
from datastore.settings import Settings


STARTED_ENV = "DATASTORE_CLI_STARTED"  # internal: not a setting, set by every command

#: Commands that may talk to Prefect (events, flow runs, AwsCredentials blocks): they use the local
#: server when it is up; ``create`` starts it.
USES_PREFECT = frozenset({"create", "delete", "status", "verify", "download", "mount", "schedule"})


def _use_local_server(argv: list[str], settings: Settings) -> None:
    """Point this process at the local Prefect server when the command needs one and none is configured."""
    command = argv[0] if argv else ""
    if not settings.local_server or command not in USES_PREFECT or local_server.configured_api_url() is not None:
        return
    if command == "create" and "--submit" not in argv:
        local_server.point_at(local_server.ensure(settings, on_start=lambda text: print(f"note: {text}", file=sys.stderr)))
    else:
        local_server.adopt(settings)


def main() -> None:
    """``datastore ARGS``: prepare the Prefect setup, run in a warm runner if one is up, else here."""
    argv = sys.argv[1:]
    # The command's start, for its wall time (a warm runner's child gets it with the environment).
    os.environ[STARTED_ENV] = repr(time.time())
    runtime.configure(quiet=True)
    from datastore.cli import warm

    if warm.runs(argv, USES_PREFECT):
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
            code = warm.delegate(argv, settings) if warm.wanted(argv) else None
            if code is not None:
                sys.exit(code)
    from datastore.cli.app import main as run_here

    run_here()
