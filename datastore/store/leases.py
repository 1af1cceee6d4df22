"""Leases: who is reading a version right now, so that ``delete`` can refuse to pull it away.

A lease is a small object ``names/<name>/leases/<version>/<id>.json`` describing its holder:

* a **flow run** (``use_datastore`` inside a Prefect flow): it names the run and renews
  ``expires_at`` from a heartbeat thread. It stops blocking when the run is in a terminal state
  according to the orchestrator (finished, failed, crashed, cancelled; asked through
  :mod:`datastore.backends.runs`) or when the heartbeat expired (a killed process renews
  nothing); such stale leases are removed when found.
* any other **process** (``use_datastore`` outside a flow): host and pid, heartbeat as above.
* a **mount** (``datastore mount``): host, directory and the pid of the mount process, with a
  heartbeat like the others; on its own host it stops blocking at once when that process is
  gone (a killed mount), elsewhere when the heartbeat expired. (A lease without expiry, written
  by older releases for downloaded copies, stops blocking once its folder no longer exists.)

``delete`` checks for live leases before it writes the tombstone; a reader re-checks the
tombstone after writing its lease, so a reader and a delete that race cannot both win.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

from datastore.backends import runs
from datastore.errors import DatastoreNotFound, ObjectNotFound, VersionInUse
from datastore.store import Store, inflight, layout


@dataclass
class Lease:
    """One held lease; :meth:`release` (or leaving the ``with`` block) gives it up."""

    store: Store
    name: str
    version: int
    ttl: int | None
    body: dict = field(default_factory=dict)
    key: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _write(self) -> None:
        if self.ttl is not None:
            self.body["expires_at"] = time.time() + self.ttl
        self.store.put_bytes(self.key, json.dumps(self.body, sort_keys=True).encode())

    def _beat(self) -> None:
        assert self.ttl is not None
        while not self._stop.wait(self.ttl / 3):
            try:
                self._write()
            except Exception:  # noqa: BLE001 - a missed beat is retried; the TTL leaves room for two
                continue

    def release(self) -> None:
        """Stop the heartbeat and remove the lease (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.store.delete(self.key)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(store: Store, name: str, version: int, *, ttl: int | None, mount_path: str | None = None) -> Lease:
    """Take a lease on a live version (flow run, process or mount) and start its heartbeat.

    Raises:
        DatastoreNotFound: the version does not exist or was deleted (then the lease is withdrawn).
    """
    run = runs.current()
    body: dict = {"host": socket.gethostname(), "pid": os.getpid(), "acquired_at": time.time(),
                  "process": inflight.process_identity(os.getpid())}
    if mount_path is not None:
        body.update(kind="mount", path=mount_path)
    elif run is not None:
        body.update(kind="flow-run", flow_run_id=run.id, flow_run_name=run.name)
    else:
        body.update(kind="process")
    lease = Lease(store, name, version, ttl, body, f"{layout.lease_prefix(name, version)}{uuid.uuid4().hex}.json")
    lease._write()
    # Re-check after writing: a delete that raced us has either seen this lease or written its
    # tombstone, which we see here.
    if store.exists(layout.tombstone_key(name, version)) or not store.exists(layout.record_key(name, version)):
        store.delete(lease.key)
        raise DatastoreNotFound(name, version)
    if ttl is not None:
        lease._thread = threading.Thread(target=lease._beat, name=f"lease-{name}-{version}", daemon=True)
        lease._thread.start()
    return lease


def describe(body: dict) -> str:
    """The holder, as a delete error names it."""
    if body.get("kind") == "flow-run":
        return f"flow run {body.get('flow_run_name')!r} ({body.get('flow_run_id')})"
    if body.get("kind") == "mount":
        return f"the mount at {body.get('host')}:{body.get('path')}"
    return f"process {body.get('pid')} on {body.get('host')}"


def _stale(body: dict, now: float) -> bool:
    expires = body.get("expires_at")
    if expires is not None and expires < now:
        return True
    if body.get("kind") == "flow-run" and runs.finished(str(body.get("flow_run_id"))):
        return True
    if body.get("kind") == "mount" and body.get("host") == socket.gethostname():
        if expires is None:
            return not os.path.exists(str(body.get("path")))
        return not inflight.same_process(int(body.get("pid") or 0), body.get("process"))
    return False


_RANK = {"flow-run": 0, "process": 1, "mount": 2}


def live_holders(store: Store, name: str, version: int) -> list[str]:
    """Holders of live leases on a version; stale leases found on the way are removed."""
    now = time.time()
    bodies = []
    for obj in store.list(layout.lease_prefix(name, version)):
        try:
            body = json.loads(store.get_bytes(obj.key))
        except ObjectNotFound:
            continue  # released meanwhile
        if _stale(body, now):
            store.delete(obj.key)
        else:
            bodies.append(body)
    # The most telling holder first: a flow run (a use_datastore in a flow also leases its
    # mount, and "flow run 'train'" says more than the temporary mount folder it reads).
    bodies.sort(key=lambda b: (_RANK.get(b.get("kind"), 3), b.get("acquired_at", 0)))
    return [describe(b) for b in bodies]


def check_free(store: Store, name: str, version: int) -> None:
    """Raise :class:`VersionInUse` naming the first live holder, if any."""
    holders = live_holders(store, name, version)
    if holders:
        extra = f" and {len(holders) - 1} more" if len(holders) > 1 else ""
        raise VersionInUse(name, version, holders[0] + extra)
