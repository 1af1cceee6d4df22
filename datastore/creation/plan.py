"""Planning: cut the sorted stream of source files into batches, reusing unchanged files.

The walk of the source and the previous version's manifest are both in path order, so a merge
join decides for each file whether it is unchanged (same path, size and stamp — mtime for local
files, ETag for S3 objects) and can point at the bytes already stored, or is new and must be
transferred. Batches are consecutive ranges of that order, so the final manifest is just the
concatenation of the batch manifests. Plans go to the store as small gzip JSONL objects and
tasks pass only their keys around.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from datastore.model.manifest import Entry, Skipped
from datastore.settings import Settings
from datastore.store import Store, layout


@dataclass(frozen=True, slots=True)
class Candidate:
    """A source file the plan must account for."""

    path: str
    size: int
    stamp: int | str | None  # mtime_ns (local) or ETag (S3): what "unchanged" is judged by
    detail: dict | None = None  # source-specific fields a transfer task needs

    def to_json(self) -> dict:
        """Plan line payload."""
        d: dict = {"path": self.path, "size": self.size, "stamp": self.stamp}
        if self.detail:
            d["detail"] = self.detail
        return d


@dataclass
class PlanSummary:
    """What the scan found, and the keys of the batch plans."""

    plan_keys: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    skipped: int = 0
    new_files: int = 0
    new_bytes: int = 0


def _merge(
    items: Iterable[Candidate | Skipped],
    previous: Iterable[Entry],
    unchanged: Callable[[Candidate, Entry], bool],
) -> Iterator[dict]:
    prev = iter(previous)
    cur = next(prev, None)
    for item in items:
        if isinstance(item, Skipped):
            yield {"skipped": item.path, "reason": item.reason}
            continue
        while cur is not None and cur.path < item.path:
            cur = next(prev, None)
        if cur is not None and cur.path == item.path and unchanged(item, cur):
            yield {"reuse": cur.to_json()}
        else:
            yield {"new": item.to_json()}


def batches(
    items: Iterable[Candidate | Skipped],
    previous: Iterable[Entry],
    unchanged: Callable[[Candidate, Entry], bool],
    settings: Settings,
) -> Iterator[list[dict]]:
    """Group plan lines into batches bounded by new files, new bytes and total lines."""
    batch: list[dict] = []
    files = nbytes = 0
    for line in _merge(items, previous, unchanged):
        batch.append(line)
        if "new" in line:
            files += 1
            nbytes += line["new"]["size"]
        if files >= settings.batch_files or nbytes >= settings.batch_bytes or len(batch) >= settings.reuse_lines:
            yield batch
            batch, files, nbytes = [], 0, 0
    if batch:
        yield batch


def encode(batch: list[dict]) -> tuple[bytes, str]:
    """Compressed plan bytes and the plan hash (over the uncompressed lines)."""
    raw = b"".join(json.dumps(line, sort_keys=True, separators=(",", ":")).encode() + b"\n" for line in batch)
    return gzip.compress(raw, compresslevel=1, mtime=0), hashlib.sha256(raw).hexdigest()[:32]


def write_plans(store: Store, staging: str, plan_batches: Iterable[list[dict]],
                on_batch: Callable[[int, int], None] | None = None,
                empty: Callable[[int], BaseException] | None = None) -> PlanSummary:
    """Store each batch plan and return the summary with their keys, in order.

    If the scan fails part-way (an unreadable file, say), or finds no file at all, the plans
    already stored are removed, so a refused source leaves nothing behind.

    Args:
        empty: Builds the error for a scan that found no file, from the number of skipped
            entries (every source refuses an empty scan here, so none can leave plans behind).
    """
    summary = PlanSummary()
    try:
        _write_all(store, staging, plan_batches, on_batch, summary)
        if summary.files == 0 and empty is not None:
            raise empty(summary.skipped)
    except BaseException:
        for key in summary.plan_keys:
            store.delete(key)
        raise
    return summary


def _write_all(store: Store, staging: str, plan_batches: Iterable[list[dict]],
               on_batch: Callable[[int, int], None] | None, summary: PlanSummary) -> None:
    for seq, batch in enumerate(plan_batches):
        data, h = encode(batch)
        key = layout.plan_key(staging, seq, h)
        store.put_bytes(key, data)
        summary.plan_keys.append(key)
        bf = bb = 0
        for line in batch:
            if "skipped" in line:
                summary.skipped += 1
                continue
            body = line.get("new") or line["reuse"]
            bf += 1
            bb += body["size"]
            if "new" in line:
                summary.new_files += 1
                summary.new_bytes += body["size"]
        summary.files += bf
        summary.bytes += bb
        if on_batch:
            on_batch(bf, bb)


def read_plan(store: Store, key: str) -> list[dict]:
    """Load one batch plan (bounded by the batch limits)."""
    return [json.loads(line) for line in gzip.decompress(store.get_bytes(key)).splitlines() if line]


def already_done(store: Store, batch_key: str, plan: list[dict]) -> bool:
    """Whether an earlier, interrupted run finished this batch (its manifest exists).

    If so, the batch's files are reported as done so progress still adds up.
    """
    if not store.exists(batch_key):
        return False
    from datastore.model import progress

    for line in plan:
        body = line.get("new") or line.get("reuse")
        if body:
            progress.advance(1, body["size"])
    return True


def plan_hash_of(key: str) -> str:
    """The plan hash embedded in a plan key."""
    return key.rsplit("/", 1)[-1].split("-", 1)[1].removesuffix(".jsonl.gz")
