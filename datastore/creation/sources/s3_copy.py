"""The S3-copy creation path: list the prefix into batch plans, then copy one batch.

Small objects (under ``large_file_bytes``) are fetched in parallel (``fetch_workers`` per batch,
each GET pinned by VersionId or ``If-Match``) and packed like local files, so 10,000 objects
become a handful of store objects and every file gets a sha256. Large objects are copied
server-side (``CopyObject``; ``UploadPartCopy`` parts above ``copy_multipart_bytes``) when the
store is on S3 and the source is read with the store's own credentials; otherwise (a local store,
or a source read with a block's keys the store cannot use) they stream through this process.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from datastore.backends.s3_source import S3Source, source_of
from datastore.creation.packer import BatchBuilder
from datastore.creation.pipeline import CreateJob, previous_entries
from datastore.creation.plan import Candidate, PlanSummary, already_done, batches, plan_hash_of, read_plan, write_plans
from datastore.errors import EmptySource, SourceChanged
from datastore.model import progress
from datastore.model.manifest import Entry, Skipped
from datastore.settings import Settings
from datastore.store import S3Store, Store, layout, open_store


def _candidates(src: S3Source, versioned: bool, settings: Settings) -> Iterator[Candidate | Skipped]:
    for item in src.files(versioned, settings.list_run):
        if isinstance(item, Skipped):
            yield item
        else:
            rel, obj = item
            yield Candidate(rel, obj.size, obj.etag, obj.pin())


def unchanged(c: Candidate, e: Entry) -> bool:
    """Same key (path), size and ETag as the previous version's entry: reuse its stored bytes."""
    return bool(e.source) and e.object is not None and c.size == e.size and e.source.get("etag") == c.stamp


def scan(job: CreateJob, settings: Settings) -> PlanSummary:
    """List the prefix (paginated, sorted with bounded memory), merge with the previous version, store plans.

    Raises:
        EmptySource: no object under the prefix can be a file.
    """
    store = open_store(job.store, settings)
    src = source_of(job.source_detail)
    prev = previous_entries(store, job)
    plans = batches(_candidates(src, job.source_detail.get("versioned", False), settings), prev, unchanged, settings)
    hint = "check the prefix (S3 keys are case-sensitive) or upload files to it"
    return write_plans(store, job.staging, plans, on_batch=progress.add_total,
                       empty=lambda skipped: EmptySource(job.source, skipped, hint))


def copy_key(bucket: str, pin: dict) -> str:
    """Store key of a server-side copy: derived from the pinned source, so a retry reuses it."""
    ident = "\0".join([bucket, pin["key"], pin["etag"], pin.get("version_id") or ""])
    return f"data/c-{hashlib.sha256(ident.encode()).hexdigest()}"


def _fetch(src: S3Source, new: dict) -> bytes:
    data = src.get(new["detail"])
    if len(data) != new["size"]:
        raise SourceChanged(new["detail"]["key"], f"listed with {new['size']} bytes, read {len(data)}")
    return data


def _prefetched(plan: list[dict], src: S3Source, settings: Settings) -> Iterator[tuple[dict, bytes | None]]:
    """Plan lines in order, each small new object's bytes fetched ahead in parallel.

    At most ``2 * fetch_workers`` objects and ``2 * pack_bytes`` bytes are in flight or waiting.
    """
    window: deque[tuple[dict, Future | None]] = deque()
    max_bytes = 2 * settings.pack_bytes
    held = 0
    pool = ThreadPoolExecutor(max_workers=settings.fetch_workers, thread_name_prefix="fetch")
    try:
        for line in plan:
            new = line.get("new")
            small = new is not None and new["size"] < settings.large_file_bytes
            if small:
                held += new["size"]
            window.append((line, pool.submit(_fetch, src, new) if small else None))
            while window and (len(window) > 2 * settings.fetch_workers or held > max_bytes):
                ln, fut = window.popleft()
                if fut is not None:
                    held -= ln["new"]["size"]
                yield ln, fut.result() if fut else None
        while window:
            ln, fut = window.popleft()
            yield ln, fut.result() if fut else None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _stream_large(store: Store, src: S3Source, new: dict, settings: Settings) -> tuple[str, str, int]:
    """GET the pinned object and stream it into a store object, hashing on the way."""
    writer = store.blob_writer(new["size"])
    h = hashlib.sha256()
    read = 0
    try:
        with src.open(new["detail"]) as body:
            while chunk := body.read(settings.part_bytes):
                h.update(chunk)
                writer.write(chunk)
                read += len(chunk)
        if read != new["size"]:
            raise SourceChanged(new["detail"]["key"], f"listed with {new['size']} bytes, read {read}")
        sha = h.hexdigest()
        return sha, writer.commit(sha), writer.written
    except BaseException:
        writer.abort()
        raise


def transfer_batch(job: CreateJob, plan_key: str, settings: Settings) -> tuple[str, int]:
    """Copy the new objects of one batch plan and write its batch manifest.

    Returns:
        The batch manifest key and the data bytes written to the store by this call.

    Raises:
        SourceChanged: an object changed or vanished after the listing (named by its key).
    """
    store = open_store(job.store, settings)
    bkey = layout.batch_key(job.staging, plan_hash_of(plan_key))
    plan = read_plan(store, plan_key)
    if already_done(store, bkey, plan):
        return bkey, 0
    src = source_of(job.source_detail)
    # Server-side copy needs the store's client to be allowed to read the source: same credentials.
    server_side = isinstance(store, S3Store) and src.block is None
    builder = BatchBuilder(store, settings)
    for line, data in _prefetched(plan, src, settings):
        if "reuse" in line:
            builder.reuse(line["reuse"])
        elif "skipped" in line:
            builder.skip(line["skipped"], line["reason"])
        elif data is not None:
            builder.small(line["new"]["path"], data, source=line["new"]["detail"])
        else:
            new = line["new"]
            pin = new["detail"]
            if server_side:
                assert isinstance(store, S3Store)
                key = copy_key(src.bucket, pin)
                etag, copied = store.copy_in(src.copy_source(pin), pin["etag"], new["size"], key)
                builder.blob(new["path"], new["size"], None, key, copied, source=pin, etag=etag)
            else:
                sha, key, written = _stream_large(store, src, new, settings)
                builder.blob(new["path"], new["size"], sha, key, written, source=pin)
    return bkey, builder.finish(bkey)
