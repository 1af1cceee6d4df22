from __future__ import annotations

from datastore.creation.plan import batches, encode, plan_hash_of
from datastore.model.manifest import Entry, Skipped
from datastore.model.plan import Candidate, New, Reused
from datastore.settings import Settings


def _unchanged(c: Candidate, e: Entry) -> bool:
    return c.size == e.size and c.stamp == e.mtime_ns


def _prev(path: str, size: int = 10, mtime: int = 1) -> Entry:
    return Entry(path, size, "h" * 64, "data/p", 0, mtime)


def test_merge_join_reuses_only_unchanged_files() -> None:
    items = [Candidate("a", 10, 1), Candidate("b", 10, 2), Skipped("c", "fifo"), Candidate("d", 11, 1), Candidate("e", 10, 1)]
    prev = [_prev("a"), _prev("b"), _prev("bb"), _prev("d"), _prev("z")]
    (batch,) = batches(items, prev, _unchanged, Settings())
    kinds = [next(iter(item.to_json())) for item in batch]
    assert kinds == ["reuse", "new", "skipped", "new", "new"]
    assert batch[0].to_json()["reuse"]["object"] == "data/p"
    assert isinstance(batch[0], Reused) and isinstance(batch[1], New) and batch[2] == Skipped("c", "fifo")


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
    a = [New(Candidate("x", 1, 5))]
    b = [New(Candidate("x", 1, 6))]
    assert encode(a) == encode(a)
    assert encode(a)[1] != encode(b)[1]
    assert plan_hash_of(f"staging/n/s/plans/00000003-{encode(a)[1]}.jsonl.gz") == encode(a)[1]


def test_typed_plan_lines_encode_exactly_as_the_dict_lines_did() -> None:
    """Plan hashes name staged batches: a resumed create must find what an older run staged."""
    import gzip
    import hashlib
    import json

    from datastore.model.plan import decode

    entry = Entry("a/b", 3, "h" * 64, "data/p-x", 7, 11, {"key": "k", "etag": "e"})
    items = [Reused(entry), New(Candidate("a/c", 5, "etag", {"key": "p/a/c", "etag": "etag"})),
             New(Candidate("a/d", 1, 9)), Skipped("a/e", "fifo")]
    old = [{"reuse": entry.to_json()}, {"new": {"path": "a/c", "size": 5, "stamp": "etag",
                                                "detail": {"key": "p/a/c", "etag": "etag"}}},
           {"new": {"path": "a/d", "size": 1, "stamp": 9}}, {"skipped": "a/e", "reason": "fifo"}]
    raw = b"".join(json.dumps(d, sort_keys=True, separators=(",", ":")).encode() + b"\n" for d in old)
    data, h = encode(items)
    assert gzip.decompress(data) == raw and h == hashlib.sha256(raw).hexdigest()[:32]
    assert decode(data) == items


def test_source_details_round_trip_the_stored_dicts() -> None:
    from datastore.model.details import HttpDetail, LocalDetail, S3Detail, detail_from_json
    from datastore.model.kinds import Kind

    s3 = {"bucket": "b", "prefix": "p/", "credentials": None, "versioned": True, "no_copy": False}
    assert detail_from_json("s3-copy", s3) == S3Detail("b", "p/", None, True, False)
    assert detail_from_json(Kind.S3_REFERENCE, s3 | {"no_copy": True}).to_json() == s3 | {"no_copy": True}
    assert detail_from_json("local", {}) == LocalDetail() and LocalDetail().to_json() == {}
    assert HttpDetail("https://h/a.zip").to_json() == {"url": "https://h/a.zip"}
    http = {"url": "https://h/a.zip", "format": "zip", "archive_sha256": "s" * 64, "archive_bytes": 9,
            "etag": None, "last_modified": "Tue"}
    assert detail_from_json("http-archive", http).to_json() == http


def test_a_reused_entry_keeps_its_block_hashes_through_the_plan_or_has_none() -> None:
    from datastore.model.plan import decode

    with_blocks = Entry("big", 20_000_000, "h" * 64, "data/b", 0, 11, blocks=("1" * 64, "2" * 64, "3" * 64))
    old = Entry("old", 20_000_000, "h" * 64, "data/o", 0, 11)  # from a version stored before block hashes
    (batch,) = batches([Candidate("big", 20_000_000, 11), Candidate("old", 20_000_000, 11)], [with_blocks, old],
                       _unchanged, Settings())
    back = decode(encode(batch)[0])
    assert back == [Reused(with_blocks), Reused(old)]
    assert back[0].entry.blocks == with_blocks.blocks and back[1].entry.blocks is None


def test_plans_are_cut_into_at_most_n_even_runs_of_consecutive_plans() -> None:
    from datastore.creation.plan import PlanSummary, groups

    summary = PlanSummary([f"p{i}" for i in range(10)], [(1000, 1024 * 1024)] * 10)
    got = groups(summary, 4)
    assert [g.plan_keys for g in got] == [("p0", "p1"), ("p2", "p3"), ("p4", "p5", "p6"), ("p7", "p8", "p9")]
    assert [g.label for g in got][2] == "transfer 3/4 · 3,000 files · 3.0 MiB"
    assert [g.plan_keys for g in groups(summary, 256)] == [(f"p{i}",) for i in range(10)]  # never an empty run
    assert groups(PlanSummary(), 4) == []
    assert groups(PlanSummary(["p"], [(1, 6)]), 4)[0].label == "transfer 1/1 · 1 file · 6 B"
    million = PlanSummary([f"p{i}" for i in range(1000)], [(1000, 1000 * 1024)] * 1000)
    assert len(groups(million, 256)) == 256 and sum(len(g.plan_keys) for g in groups(million, 256)) == 1000
