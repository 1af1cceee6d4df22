"""``use_datastore``: read a version from a flow (or any program) while holding a lease on it.

::

    from datastore import use_datastore

    @flow
    def train():
        with use_datastore("imagenet", version=3) as path:   # mounted read-only, read on demand
            ...                                              # 'datastore delete' is refused meanwhile

By default the version is mounted (:mod:`datastore.reading.mount`): ready in about a second
whatever its size, every byte checked as it is read. ``copy=True`` writes a verified local copy
first instead (:mod:`datastore.reading.download`), for machines without FUSE or for jobs that
read everything many times.

Inside a Prefect flow run the lease names the run (``delete`` reports it, and a crashed run's
lease stops blocking); elsewhere it names the host and process. Either way a heartbeat keeps it
alive, so a killed process stops blocking after ``DATASTORE_LEASE_TTL`` seconds.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from datastore.settings import Settings
from datastore.store import leases, open_store, versions


@contextlib.contextmanager
def use_datastore(name: str, version: int | None = None, *, dir: str | Path | None = None,  # noqa: A002
                  copy: bool = False) -> Iterator[Path]:
    """Hold a lease on ``name`` (newest live version unless ``version``) and yield its files.

    Args:
        name: Datastore name.
        version: Version number; the newest live one when omitted.
        dir: Where to mount or copy it (must be empty or absent); a temporary folder, removed
            afterwards, when omitted.
        copy: Write a verified copy instead of mounting.

    Raises:
        DatastoreNotFound: no such (live) version.
        FuseUnavailable: this machine cannot mount (pass ``copy=True``).
    """
    from datastore.reading.download import download, remove_tree
    from datastore.reading.mount import check_available, mounted

    settings = Settings.from_env()
    if not copy:
        check_available(name)
    store = open_store(settings.store, settings)
    record = versions.resolve_live(store, name, version)
    with contextlib.ExitStack() as stack:
        stack.enter_context(leases.acquire(store, record.name, record.version, ttl=settings.lease_ttl))
        if dir is not None:
            target = Path(dir)
        else:
            tmp = Path(tempfile.mkdtemp(prefix=f"datastore-{record.name}-{record.version}-"))
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)
            target = tmp / record.name
            if copy:  # read-only folders need their write bit back to be removed
                stack.callback(remove_tree, target)
        if copy:
            download(store, record, target)
            yield target
            return
        with mounted(record.name, record.version, target, settings=settings) as info:
            yield Path(info.dir)
