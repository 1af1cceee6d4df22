"""Fail points: named places where a test can freeze a creation to kill it there (``kill -9``).

``DATASTORE_FAILPOINT=<name>`` makes :func:`hit` write ``DATASTORE_FAILPOINT_FILE`` (so the test
knows the process got there) and then block forever; ``<name>#<n>`` does so at the n-th hit of
``name`` in the process (``#0``: never, only counting the hits into the file), which is how the
kill matrix stops a creation before a seeded random store write. Unset, :func:`hit` is one
dictionary lookup. With ``DATASTORE_FAILPOINT_RELEASE=<file>`` the process goes on once that
file exists (a test changes the world while it waits: permissions, the disk). This is how the
crash-safety tests stop a create exactly after a finished batch, just before the commit or
before any write, instead of guessing with timers. With ``DATASTORE_FAILPOINT_ONCE=1`` it freezes
only while the marker file does not exist yet: a run resumed after the kill, in a new process
with the same environment, goes through.
"""

from __future__ import annotations

import itertools
import os
import threading
import time

_counts: dict[str, itertools.count] = {}
_lock = threading.Lock()


def hit(name: str) -> None:
    """Freeze here if the fail point ``name`` (or its n-th hit) is armed."""
    armed = os.environ.get("DATASTORE_FAILPOINT")
    if armed is None:
        return
    if armed != name:
        base, sep, nth = armed.partition("#")
        if not sep or base != name:
            return
        with _lock:
            seen = next(_counts.setdefault(name, itertools.count(1)))
        if nth == "0":
            _mark(str(seen))
            return
        if str(seen) != nth:
            return
    if os.environ.get("DATASTORE_FAILPOINT_ONCE") and os.path.exists(os.environ.get("DATASTORE_FAILPOINT_FILE", "")):
        return
    _mark(str(os.getpid()))
    release = os.environ.get("DATASTORE_FAILPOINT_RELEASE")
    while not (release and os.path.exists(release)):  # until the test kills (or releases) the process
        time.sleep(0.05 if release else 3600)


def _mark(text: str) -> None:
    marker = os.environ.get("DATASTORE_FAILPOINT_FILE")
    if marker:
        with open(marker, "w") as fh:
            fh.write(text)
