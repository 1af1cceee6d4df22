"""The S3-reference (``--no-copy``) creation path: pin every object of the prefix, copy nothing.

One listing (``ListObjectVersions`` in a versioned bucket, so each file is pinned by VersionId;
``ListObjectsV2`` otherwise, pinned by ETag) streams into batch manifests of referenced entries.
The cost is the listing: about one request per 1,000 objects. There is nothing to transfer, so
this path writes batch manifests directly instead of plans; it shares the job, the source and
the listing with the copy path (:mod:`~datastore.creation.sources.s3`).
"""

from __future__ import annotations

import io

from datastore.creation.pipeline import CreateJob
from datastore.creation.sources import s3
from datastore.errors import EmptySource
from datastore.model.manifest import Entry, ManifestWriter, Skipped
from datastore.model.progress import NO_PROGRESS, Reporter
from datastore.settings import Settings
from datastore.store import layout, open_store


def pin(job: CreateJob, settings: Settings, progress: Reporter = NO_PROGRESS) -> list[str]:
    """List the prefix and store batch manifests that pin each object; return their keys.

    Raises:
        EmptySource: no object under the prefix can be a file (no manifest is left behind).
    """
    store = open_store(job.store, settings)
    src = s3.open_source(job)
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
        key = layout.pin_batch_key(job.staging, job.create_id, len(keys))
        store.put_bytes(key, buf.getvalue())
        keys.append(key)
        writer, buf, lines = None, io.BytesIO(), 0

    try:
        for item in s3.listed(src, job, settings):
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
            raise EmptySource(job.source, skipped, s3.EMPTY_HINT)
    except BaseException:
        for key in keys:
            store.delete(key)
        raise
    return keys
