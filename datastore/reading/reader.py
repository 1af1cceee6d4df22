"""Reading a committed version back: its entries, and each file's bytes, checked.

The lifecycle issue builds ``mount``, ``verify`` and the fsspec protocol on these functions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from datastore.errors import DatastoreError, ReferenceBroken
from datastore.model.manifest import Entry, Item, read_items
from datastore.store import Store
from datastore.store.versions import VersionRecord


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


class Reader:
    """Reads the files of one version: from the store, or, for ``--no-copy`` versions, from the
    pinned source objects (exactly the pinned VersionId or ETag, never whatever is there now).

    ``mount``, ``verify`` and the fsspec protocol are built on this one read path.
    """

    def __init__(self, store: Store, record: VersionRecord) -> None:
        self.store = store
        self.record = record
        self._source = None

    @property
    def source(self):  # noqa: ANN201 - S3Source, imported lazily (boto3/Prefect blocks only when needed)
        """The S3 source of a no-copy version, opened with the recorded credentials block."""
        if self._source is None:
            from datastore.backends.s3_source import source_of

            self._source = source_of(self.record.source_detail)
        return self._source

    def read(self, entry: Entry) -> bytes:
        """The bytes of one file, checked against the manifest.

        Raises:
            ChecksumMismatch: stored bytes differ from the manifest.
            ReferenceBroken: a pinned source object was deleted or changed.
        """
        if entry.referenced:
            data = self._read_reference(entry)
        else:
            data = self.store.get_range(entry.object, entry.offset, entry.size)
        if entry.sha256 is not None:
            actual = hashlib.sha256(data).hexdigest()
            if actual != entry.sha256 or len(data) != entry.size:
                raise ChecksumMismatch(entry.path, entry.sha256, actual)
        elif len(data) != entry.size:
            raise ChecksumMismatch(entry.path, f"{entry.size} bytes", f"{len(data)} bytes")
        return data

    def _read_reference(self, entry: Entry) -> bytes:
        from datastore.errors import SourceChanged

        pin = entry.source or {}
        try:
            return self.source.get(pin)
        except SourceChanged as exc:
            raise self.broken(entry, exc.detail) from None

    def pinned_location(self, entry: Entry) -> str:
        """``s3://bucket/key (version V)`` or ``(ETag E)``: the object a no-copy entry pins."""
        pin = entry.source or {}
        where = f"s3://{self.record.source_detail.get('bucket')}/{pin.get('key')}"
        if pin.get("version_id"):
            return f"{where} (version {pin['version_id']})"
        return f"{where} (ETag {pin.get('etag')})"

    def broken(self, entry: Entry, why: str) -> ReferenceBroken:
        """The error for a pinned object that is gone or different."""
        where = self.pinned_location(entry)
        reason = {"it was deleted after the listing": "was deleted",
                  "its ETag no longer matches the listing": "was overwritten with different bytes"}.get(why, why)
        return ReferenceBroken(entry.path, self.record.name, self.record.version, where, reason)


def read_file(store: Store, record: VersionRecord, entry: Entry) -> bytes:
    """The bytes of one file of ``record`` (see :meth:`Reader.read`)."""
    return Reader(store, record).read(entry)
