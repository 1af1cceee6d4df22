"""``use_datastore``: read a version from a flow (or any program) while holding a lease on it.

::

    from datastore import use_datastore

    @flow
    def train():
        with use_datastore("imagenet", version=3) as path:   # a read-only tree, checksums verified
            ...                                              # 'datastore delete' is refused meanwhile

Inside a Prefect flow run the lease names the run (``delete`` reports it, and a crashed run's
lease stops blocking); elsewhere it names the host and process. Either way a heartbeat keeps it
alive, so a killed process stops blocking after ``DATASTORE_LEASE_TTL`` seconds.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from datastore.settings import Settings
from datastore.store import leases, open_store, versions


@contextlib.contextmanager
def use_datastore(name: str, version: int | None = None, *, dir: str | Path | None = None) -> Iterator[Path]:  # noqa: A002
    """Hold a lease on ``name`` (newest live version unless ``version``) and yield a mounted copy.

    Args:
        name: Datastore name.
        version: Version number; the newest live one when omitted.
        dir: Where to mount (must be empty or absent); a temporary folder, removed afterwards,
            when omitted.

    Raises:
        DatastoreNotFound: no such (live) version.
    """
    from datastore.reading.download import mount, remove_tree

    settings = Settings.from_env()
    store = open_store(settings.store, settings)
    record = versions.resolve(store, name, version)
    with leases.acquire(store, record.name, record.version, ttl=settings.lease_ttl):
        if dir is not None:
            target = Path(dir)
            mount(store, record, target)
            yield target
            return
        with tempfile.TemporaryDirectory(prefix=f"datastore-{record.name}-{record.version}-") as tmp:
            target = Path(tmp) / record.name
            mount(store, record, target)
            try:
                yield target
            finally:
                remove_tree(target)  # read-only folders need their write bit back to be removed
