"""Deleting versions: a tombstone per version, refused while a reader holds a lease.

The record stays (so the number is never handed out again, see :mod:`datastore.versions`); the
tombstone is written put-if-absent, so two deletes of one version cannot both report success.
Data is never removed here: other versions may share it, and ``gc`` reclaims what no live
version references any more.
"""

from __future__ import annotations

import json
import uuid

from datastore.errors import AlreadyDeleted
from datastore.store import Store, layout, leases, versions
from datastore.store.versions import VersionRecord


def delete_version(store: Store, name: str, version: int) -> VersionRecord:
    """Delete exactly ``name`` version ``version``.

    Raises:
        DatastoreNotFound: no such name or version.
        AlreadyDeleted: it was deleted before.
        VersionInUse: a live lease holds it; the message names the holder.
    """
    rec = versions.read_record(store, name, version)
    if rec.deleted_at:
        raise AlreadyDeleted(name, version, rec.deleted_at)
    leases.check_free(store, name, version)
    rec.deleted_at = versions.now_iso()
    # The delete's own id makes the tombstone recognisable: a put whose answer was lost and whose
    # retry met the tombstone is this delete, not a concurrent one (see Store.put_new).
    body = json.dumps({"deleted_at": rec.deleted_at, "delete_id": uuid.uuid4().hex}).encode()
    if not store.put_new(layout.tombstone_key(name, version), body):
        raise AlreadyDeleted(name, version, versions.read_record(store, name, version).deleted_at)
    return rec


def delete_all(store: Store, name: str) -> list[VersionRecord]:
    """Delete every live version of ``name`` (each checked for leases first, none deleted if one is held).

    Raises:
        DatastoreNotFound: the name has no live version.
        VersionInUse: a version is held; nothing was deleted.
    """
    live = versions.live_numbers(store, name)
    if not live:
        from datastore.errors import DatastoreNotFound

        raise DatastoreNotFound(name)
    for v in live:
        leases.check_free(store, name, v)
    return [delete_version(store, name, v) for v in live]
