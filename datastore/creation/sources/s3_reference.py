"""The S3-reference (``--no-copy``) creation path: pin every object of the prefix, copy nothing.

One listing (``ListObjectVersions`` in a versioned bucket, so each file is pinned by VersionId;
``ListObjectsV2`` otherwise, pinned by ETag) streams into batch manifests of referenced entries.
The cost is the listing: about one request per 1,000 objects.
"""

from __future__ import annotations

import io

from datastore.backends.s3_source import source_of
from datastore.creation.pipeline import CreateJob
from datastore.errors import EmptySource
from datastore.model import progress
from datastore.model.manifest import Entry, ManifestWriter, Skipped
from datastore.settings import Settings
from datastore.store import layout, open_store


def pin(job: CreateJob, settings: Settings) -> list[str]:
    """List the prefix and store batch manifests that pin each object; return their keys.

    Raises:
        EmptySource: no object under the prefix can be a file.
    """
    store = open_store(job.store, settings)
    src = source_of(job.source_detail)
    keys: list[str] = []
    files = 0
    skipped = 0
    writer: ManifestWriter | None = None
    buf = io.BytesIO()
    lines = 0

    def flush() -> None:
        nonlocal writer, buf, lines
        if writer is None:
            return
        writer.close()
        key = layout.batch_key(job.staging, f"pin-{job.create_id}-{len(keys):06d}")
        store.put_bytes(key, buf.getvalue())
        keys.append(key)
        writer, buf, lines = None, io.BytesIO(), 0

    try:
        for item in src.files(job.source_detail.get("versioned", False), settings.list_run):
            if writer is None:
                writer = ManifestWriter(buf)
            if isinstance(item, Skipped):
                writer.add(item)
                skipped += 1
            else:
                rel, obj = item
                writer.add(Entry(rel, obj.size, None, None, source=obj.pin()))
                files += 1
                progress.add_total(1, obj.size)
                progress.advance(1, obj.size)
            lines += 1
            if lines >= settings.reuse_lines:
                flush()
        flush()
        if files == 0:
            raise EmptySource(job.source, skipped, "check the prefix (S3 keys are case-sensitive) or upload files to it")
    except BaseException:
        for key in keys:
            store.delete(key)
        raise
    return keys
