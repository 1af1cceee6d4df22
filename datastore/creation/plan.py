"""Planning: cut the sorted stream of source files into batches, reusing unchanged files.

The walk of the source and the previous version's manifest are both in path order, so a merge
join decides for each file whether it is unchanged (same path, size and stamp — mtime for local
files, ETag for S3 objects) and can point at the bytes already stored, or is new and must be
transferred. Batches are consecutive ranges of that order, so the final manifest is just the
concatenation of the batch manifests. Plans go to the store as small gzip JSONL objects (the
typed lines of :mod:`datastore.model.plan`) and tasks pass only their keys around.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from datastore.model.manifest import Entry, Skipped
from datastore.model.plan import Candidate, New, PlanItem, Reused, counted, decode, encode
from datastore.model.progress import NO_PROGRESS, Reporter, human_bytes
from datastore.settings import Settings
from datastore.store import Store, layout

__all__ = ["Candidate", "PlanSummary", "TransferGroup", "already_done", "batches", "encode", "groups", "plan_hash_of",
           "read_plan", "write_plans"]

plan_hash_of = layout.plan_hash_of


@dataclass
class PlanSummary:
    """What the scan found, and the keys of the batch plans."""

    plan_keys: list[str] = field(default_factory=list)
    #: New files and new bytes of each plan (what its transfer moves), in ``plan_keys`` order.
    plan_new: list[tuple[int, int]] = field(default_factory=list)
    #: Files and bytes each plan's transfer reports as done (new and reused), in ``plan_keys`` order.
    plan_counted: list[tuple[int, int]] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    skipped: int = 0
    new_files: int = 0
    new_bytes: int = 0


def _merge(
    items: Iterable[Candidate | Skipped],
    previous: Iterable[Entry],
    unchanged: Callable[[Candidate, Entry], bool],
) -> Iterator[PlanItem]:
    prev = iter(previous)
    cur = next(prev, None)
    for item in items:
        if isinstance(item, Skipped):
            yield item
            continue
        while cur is not None and cur.path < item.path:
            cur = next(prev, None)
        if cur is not None and cur.path == item.path and unchanged(item, cur):
            yield Reused(cur)
        else:
            yield New(item)


def batches(
    items: Iterable[Candidate | Skipped],
    previous: Iterable[Entry],
    unchanged: Callable[[Candidate, Entry], bool],
    settings: Settings,
) -> Iterator[list[PlanItem]]:
    """Group plan items into batches bounded by new files, new bytes and total lines."""
    batch: list[PlanItem] = []
    files = nbytes = 0
    for item in _merge(items, previous, unchanged):
        batch.append(item)
        if isinstance(item, New):
            files += 1
            nbytes += item.size
        if files >= settings.batch_files or nbytes >= settings.batch_bytes or len(batch) >= settings.reuse_lines:
            yield batch
            batch, files, nbytes = [], 0, 0
    if batch:
        yield batch


def write_plans(store: Store, staging: str, plan_batches: Iterable[list[PlanItem]],
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


def _write_all(store: Store, staging: str, plan_batches: Iterable[list[PlanItem]],
               on_batch: Callable[[int, int], None] | None, summary: PlanSummary) -> None:
    for seq, batch in enumerate(plan_batches):
        data, h = encode(batch)
        key = layout.plan_key(staging, seq, h)
        store.put_bytes(key, data)
        summary.plan_keys.append(key)
        bf = bb = nf = nb = 0
        for item in batch:
            match item:
                case Skipped():
                    summary.skipped += 1
                case New(candidate=c):
                    bf, bb = bf + 1, bb + c.size
                    nf, nb = nf + 1, nb + c.size
                case Reused(entry=e):
                    bf, bb = bf + 1, bb + e.size
        summary.plan_new.append((nf, nb))
        summary.plan_counted.append((bf, bb))
        summary.new_files += nf
        summary.new_bytes += nb
        summary.files += bf
        summary.bytes += bb
        if on_batch:
            on_batch(bf, bb)


@dataclass(frozen=True)
class TransferGroup:
    """Consecutive batch plans transferred by one task run.

    A creation of a million files has a thousand batch plans; one task run each would make the
    Prefect graph unreadable and pay a thousand rounds of task-run API calls. Plans stay the unit
    of resumption (each has its own batch manifest), a task run is just several of them in order.
    """

    plan_keys: tuple[str, ...]
    index: int  #: 1-based position among the creation's groups
    count: int  #: number of groups of the creation
    new_files: int
    new_bytes: int
    files: int = 0  #: files its batches report as done, new and reused (what a remote run's flow counts)
    nbytes: int = 0  #: ... and their bytes

    @property
    def label(self) -> str:
        """The task run's name in the Prefect UI: ``transfer 3/16 · 1,000 files · 97.0 MiB``."""
        files = "1 file" if self.new_files == 1 else f"{self.new_files:,} files"
        return f"transfer {self.index}/{self.count} · {files} · {human_bytes(self.new_bytes)}"


def groups(summary: PlanSummary, max_tasks: int) -> list[TransferGroup]:
    """Cut the plans into at most ``max_tasks`` runs of consecutive plans, as even as counts allow."""
    keys, new, counted = summary.plan_keys, summary.plan_new, summary.plan_counted
    count = min(len(keys), max(1, max_tasks))
    out: list[TransferGroup] = []
    start = 0
    for i in range(count):
        end = start + (len(keys) - start) // (count - i)
        part, done = new[start:end], counted[start:end]
        out.append(TransferGroup(tuple(keys[start:end]), i + 1, count, sum(f for f, _ in part),
                                 sum(b for _, b in part), sum(f for f, _ in done), sum(b for _, b in done)))
        start = end
    return out


def read_plan(store: Store, key: str) -> list[PlanItem]:
    """Load one batch plan (bounded by the batch limits)."""
    return decode(store.get_bytes(key))


def already_done(store: Store, batch_key: str, plan: list[PlanItem], progress: Reporter = NO_PROGRESS) -> bool:
    """Whether an earlier, interrupted run finished this batch (its manifest exists).

    If so, the batch's files are reported as done so progress still adds up.
    """
    if not store.exists(batch_key):
        return False
    for item in plan:
        if counted(item):
            progress.advance(1, item.size)
    return True
