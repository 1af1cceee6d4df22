"""Prefect defaults for a machine that may have no internet.

Imported before Prefect by every entry point (CLI, flows). Each setting is only a default: a
user's own environment or profile still wins.
"""

from __future__ import annotations

import os

DEFAULTS = {
    # The server's telemetry would try to phone home and print an error when offline.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
    # The first run on a fresh machine migrates the ephemeral database; on a busy 2-core box that
    # can pass Prefect's 20 s default and fail a create that would have worked.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def configure(quiet: bool = False) -> None:
    """Apply :data:`DEFAULTS` to ``os.environ`` where the user has not set them.

    Args:
        quiet: For the CLI: keep Prefect's console handler silent, because the CLI reports
            progress and errors itself (one line per error). Logs still reach the Prefect API/UI.
    """
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    if quiet:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
