"""The local-folder creation path: scan into batch plans, then transfer one batch.

The Prefect tasks in ``tasks/local.py`` are thin wrappers around these two functions so that the
logic can be tested (and benchmarked) without an orchestrator in the way.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from datastore.creation.packer import BatchBuilder
from datastore.creation.pipeline import CreateJob, previous_entries
from datastore.creation.plan import Candidate, PlanSummary, already_done, batches, plan_hash_of, read_plan, write_plans
from datastore.creation.sources.local import (
    READ_ATTEMPTS,
    LocalFile,
    file_path,
    open_checked,
    read_small,
    stable_mtime,
    unchanged_since,
    walk,
)
from datastore.errors import EmptySource, SourceChanged
from datastore.model import progress
from datastore.model.manifest import Entry
from datastore.settings import Settings
from datastore.store import Store, layout, open_store


def _candidates(root: Path):
    for item in walk(root):
        if isinstance(item, LocalFile):
            yield Candidate(item.path, item.size, item.mtime_ns)
        else:
            yield item


def _unchanged(c: Candidate, e: Entry) -> bool:
    return e.mtime_ns is not None and c.size == e.size and c.stamp == e.mtime_ns


def scan(job: CreateJob, settings: Settings, root: str | None = None) -> PlanSummary:
    """Walk the source, merge with the previous version, and store the batch plans.

    ``root`` is the folder to walk when it is not ``job.source`` itself (an extracted archive).

    Raises:
        EmptySource: nothing to store.
        SourceUnreadable: a file or directory cannot be read.
    """
    store = open_store(job.store, settings)
    folder = Path(root or job.source)
    prev = previous_entries(store, job)
    return write_plans(store, job.staging, batches(_candidates(folder), prev, _unchanged, settings),
                       on_batch=progress.add_total, empty=lambda skipped: EmptySource(job.source, skipped))


def _large(store: Store, settings: Settings, full: str, rel: str) -> tuple[int, str, str, int, int | None]:
    """Stream one large file into its own object, hashing on the way; retry if it changes."""
    for _ in range(READ_ATTEMPTS):
        fd, before = open_checked(full, rel)
        writer = store.blob_writer(before.st_size)
        h = hashlib.sha256()
        read = 0
        try:
            while True:
                chunk = os.read(fd, settings.part_bytes)
                if not chunk:
                    break
                h.update(chunk)
                writer.write(chunk)
                read += len(chunk)
            if not unchanged_since(fd, before, read):
                writer.abort()
                continue
            sha = h.hexdigest()
            key = writer.commit(sha)
            return read, sha, key, writer.written, stable_mtime(before)
        except BaseException:
            writer.abort()
            raise
        finally:
            os.close(fd)
    raise SourceChanged(rel, f"size or mtime differed across {READ_ATTEMPTS} reads")


def transfer_batch(job: CreateJob, plan_key: str, settings: Settings, root: str | None = None) -> tuple[str, int]:
    """Transfer the new files of one batch plan and write its batch manifest (``root`` as in :func:`scan`).

    A batch whose manifest already exists (an earlier, interrupted run of the same create got
    this far) is not transferred again.

    Returns:
        The batch manifest key and the data bytes uploaded by this call.
    """
    store = open_store(job.store, settings)
    bkey = layout.batch_key(job.staging, plan_hash_of(plan_key))
    plan = read_plan(store, plan_key)
    if already_done(store, bkey, plan):
        return bkey, 0
    folder = Path(root or job.source)
    builder = BatchBuilder(store, settings)
    for line in plan:
        if "reuse" in line:
            builder.reuse(line["reuse"])
        elif "skipped" in line:
            builder.skip(line["skipped"], line["reason"])
        else:
            new = line["new"]
            rel = new["path"]
            full = file_path(folder, rel)
            if new["size"] >= settings.large_file_bytes:
                size, sha, key, written, mtime = _large(store, settings, full, rel)
                builder.blob(rel, size, sha, key, written, mtime)
            else:
                data, st = read_small(full, rel)
                builder.small(rel, data, stable_mtime(st))
    return bkey, builder.finish(bkey)

