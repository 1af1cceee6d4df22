"""Fail points: named places where a test can freeze a creation to kill it there (``kill -9``).

``DATASTORE_FAILPOINT=<name>`` makes :func:`hit` write ``DATASTORE_FAILPOINT_FILE`` (so the test
knows the process got there) and then block forever. Unset, :func:`hit` is one dictionary lookup.
This is how the crash-safety tests stop a create exactly after a finished batch or just before
the commit, instead of guessing with timers.
"""

from __future__ import annotations

import os
import time


def hit(name: str) -> None:
    """Freeze here if the fail point ``name`` is armed."""
    if os.environ.get("DATASTORE_FAILPOINT") != name:
        return
    marker = os.environ.get("DATASTORE_FAILPOINT_FILE")
    if marker:
        with open(marker, "w") as fh:
            fh.write(str(os.getpid()))
    while True:  # until the test kills the process
        time.sleep(3600)
