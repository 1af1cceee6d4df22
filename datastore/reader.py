"""Reading a committed version back: its entries, and each file's bytes, checked.

The lifecycle issue builds ``mount``, ``verify`` and the fsspec protocol on these functions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from datastore.errors import DatastoreError
from datastore.manifest import Entry, Item, read_items
from datastore.store import Store
from datastore.versions import VersionRecord


class ChecksumMismatch(DatastoreError, ValueError):
    """Stored bytes do not match the manifest."""

    def __init__(self, path: str, expected: str, actual: str) -> None:
        self.path = path
        super().__init__(f"file {path!r} does not match its manifest (sha256 {actual[:12]}… != {expected[:12]}…)",
                         "the store was damaged or changed outside datastore; run 'datastore verify'")


def manifest_items(store: Store, key: str) -> Iterator[Item]:
    """Stream the items of a stored manifest (a version's or a batch's) straight from the store."""
    with store.open_read(key) as fh:
        yield from read_items(fh)


def entries(store: Store, record: VersionRecord) -> Iterator[Entry]:
    """Stream the file entries of a version."""
    for item in manifest_items(store, record.manifest):
        if isinstance(item, Entry):
            yield item


def read_file(store: Store, entry: Entry) -> bytes:
    """The bytes of one file, verified against its sha256.

    Raises:
        ChecksumMismatch: the stored bytes differ from the manifest.
    """
    data = store.get_range(entry.object, entry.offset, entry.size)
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry.sha256 or len(data) != entry.size:
        raise ChecksumMismatch(entry.path, entry.sha256, actual)
    return data
