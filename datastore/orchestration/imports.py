"""One lock for importing Prefect on first use.

Prefect is imported when first needed (a CLI command that never talks to it should not pay ~1 s
for it). Library users call in from several threads at once (a delete emitting an event while a
download asks which flow run holds its lease), and two threads running Prefect's first import
together trip Python's import deadlock detection inside Prefect's own lazy imports (Prefect then
prints "Failed to initialize plugins"). Every lazy import of Prefect in this package holds
:data:`importing`, so the first import runs in one thread while the others wait for it.
"""

from __future__ import annotations

import threading

#: Held around every lazy ``from prefect… import …`` in :mod:`datastore.orchestration`.
importing = threading.RLock()
