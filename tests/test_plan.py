from __future__ import annotations

from datastore.creation.plan import Candidate, batches, encode, plan_hash_of
from datastore.model.manifest import Entry, Skipped
from datastore.settings import Settings


def _unchanged(c: Candidate, e: Entry) -> bool:
    return c.size == e.size and c.stamp == e.mtime_ns


def _prev(path: str, size: int = 10, mtime: int = 1) -> Entry:
    return Entry(path, size, "h" * 64, "data/p", 0, mtime)


def test_merge_join_reuses_only_unchanged_files() -> None:
    items = [Candidate("a", 10, 1), Candidate("b", 10, 2), Skipped("c", "fifo"), Candidate("d", 11, 1), Candidate("e", 10, 1)]
    prev = [_prev("a"), _prev("b"), _prev("bb"), _prev("d"), _prev("z")]
    (batch,) = batches(items, prev, _unchanged, Settings())
    kinds = [next(iter(line)) for line in batch]
    assert kinds == ["reuse", "new", "skipped", "new", "new"]
    assert batch[0]["reuse"]["object"] == "data/p"


def test_batches_are_bounded_by_new_files_and_bytes() -> None:
    settings = Settings(batch_files=3, batch_bytes=100)
    items = [Candidate(f"f{i:02d}", 10, 0) for i in range(7)] + [Candidate("g", 500, 0), Candidate("h", 1, 0)]
    sizes = [len(b) for b in batches(items, [], _unchanged, settings)]
    assert sizes == [3, 3, 2, 1]  # the 500-byte file closes its batch by bytes


def test_unchanged_files_do_not_count_against_the_new_file_limit() -> None:
    settings = Settings(batch_files=2)
    items = [Candidate(f"f{i}", 10, 1) for i in range(5)]
    prev = [_prev(f"f{i}") for i in range(5)]
    assert [len(b) for b in batches(items, prev, _unchanged, settings)] == [5]


def test_plan_hash_is_stable_and_content_sensitive() -> None:
    a = [{"new": {"path": "x", "size": 1, "stamp": 5}}]
    b = [{"new": {"path": "x", "size": 1, "stamp": 6}}]
    assert encode(a) == encode(a)
    assert encode(a)[1] != encode(b)[1]
    assert plan_hash_of(f"staging/n/s/plans/00000003-{encode(a)[1]}.jsonl.gz") == encode(a)[1]
