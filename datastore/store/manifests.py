"""Stored manifests read back as a stream of items (a version's, or one batch's).

Streamed straight from the store object, so a million-entry manifest never sits in memory.
"""

from __future__ import annotations

from collections.abc import Iterator

from datastore.model.manifest import Entry, Item, read_entries, read_items
from datastore.store.base import Store
from datastore.store.versions import VersionRecord


def manifest_items(store: Store, key: str) -> Iterator[Item]:
    """Stream the items of a stored manifest (a version's or a batch's) straight from the store."""
    with store.open_read(key) as fh:
        yield from read_items(fh)


def entries(store: Store, record: VersionRecord) -> Iterator[Entry]:
    """Stream the file entries of a version."""
    with store.open_read(record.manifest) as fh:
        yield from read_entries(fh)
