"""BlockCache: exact round trips, LRU bound, damaged files are misses, single flight across threads
and processes (also when the fetcher is killed), fork safety, usage accounting and its repair."""

from __future__ import annotations

import errno
import fcntl
import os
import pickle
import signal
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from datastore.errors import UsageError
from datastore.reading import cache as cache_module
from datastore.reading.cache import HEADER_BYTES, BlockCache, CacheUsage

MiB = 1024 * 1024


def entry_file(cache: BlockCache, key: str) -> Path:
    """Where ``cache`` keeps ``key`` (private layout, used to damage and age entries)."""
    return Path(cache._path(cache_module._digest(key)))


def age(cache: BlockCache, key: str, seconds_ago: float) -> None:
    """Make ``key``'s entry look last used ``seconds_ago``."""
    t = time.time() - seconds_ago
    os.utime(entry_file(cache, key), (t, t))


def fork(body: Callable[[], int | None]) -> int:
    """Run ``body`` in a forked child; its exit status is 0 when it returns normally, 1 when it raises."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            code = body() or 0
        except BaseException:  # noqa: BLE001 - any failure in the child is its exit status
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def wait_child(pid: int, timeout: float) -> int | None:
    """The child's exit status, or None (and the child killed) when it takes longer than ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def wait_for(path: Path, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.005)


def test_put_get_roundtrip_and_usage(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path / "c", 64 * MiB)
    values = {
        "sha256:" + "ab" * 32: os.urandom(64 * 1024),
        "ref:bucket/some key/ünï@\"etag\"#3": b"x" * 1000,
        "empty": b"",
        "": b"the empty key works too",
    }
    for key, data in values.items():
        cache.put(key, data)
    for key, data in values.items():
        assert cache.get(key) == data
    assert cache.get("absent") is None
    assert cache.usage() == CacheUsage(bytes=sum(len(d) for d in values.values()) + HEADER_BYTES * len(values),
                                       entries=len(values), limit=64 * MiB)

    cache.put("empty", b"now seven")  # replacing an entry counts its new size, not a second entry
    assert cache.get("empty") == b"now seven"
    usage = cache.usage()
    assert usage.entries == len(values)
    assert usage.bytes == sum(len(d) for k, d in values.items() if k != "empty") + 9 + HEADER_BYTES * len(values)

    # Another object on the same directory (another process, in effect) sees the same entries.
    again = BlockCache(tmp_path / "c", 64 * MiB)
    assert again.get("empty") == b"now seven" and again.usage() == usage
    assert pickle.loads(pickle.dumps(cache)).get("empty") == b"now seven"


def test_max_bytes_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        BlockCache(tmp_path, 0)


def test_lru_eviction_keeps_usage_under_limit_and_evicts_least_recently_used(tmp_path: Path) -> None:
    size = 1000 + HEADER_BYTES
    cache = BlockCache(tmp_path, 5 * size)
    for i, key in enumerate("ABCD"):
        cache.put(key, key.encode() * 1000)
        age(cache, key, 1000 - 100 * i)  # A oldest, then B, C, D
    assert cache.get("A") == b"A" * 1000  # a hit makes A the most recently used

    cache.put("E", b"E" * 1000)  # exactly full: nothing evicted
    assert cache.usage() == CacheUsage(5 * size, 5, 5 * size)
    cache.put("F", b"F" * 1000)  # over: evict the oldest down to 90% (4644 bytes): B and C
    assert cache.get("B") is None and cache.get("C") is None
    assert [cache.get(k) for k in "ADEF"] == [k.encode() * 1000 for k in "ADEF"]
    assert cache.usage() == CacheUsage(4 * size, 4, 5 * size)
    assert sorted(p.name for p in (tmp_path / "data").glob("*/*/*")) == sorted(
        entry_file(cache, k).name for k in "ADEF")

    for i in range(40):  # a long run of puts never leaves the cache over its limit
        cache.put(f"k{i}", bytes([i]) * (300 + 37 * i))
        usage = cache.usage()
        assert usage.bytes <= 5 * size
        assert usage.bytes == sum(p.stat().st_size for p in (tmp_path / "data").glob("*/*/*"))
    assert cache.get("k39") == bytes([39]) * (300 + 37 * 39)


def test_an_entry_near_the_limit_is_kept_by_its_own_put(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path, 10_000)
    cache.put("small", b"s" * 1000)
    big = b"b" * (9_500 - HEADER_BYTES)  # fits, but is over the 90% eviction target alone
    cache.put("big", big)
    assert cache.get("big") == big and cache.get("small") is None
    assert cache.usage() == CacheUsage(9_500, 1, 10_000)


def test_get_or_fetch_evicts_too(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path, 10 * (1000 + HEADER_BYTES))
    for i in range(25):
        assert cache.get_or_fetch(f"k{i}", lambda i=i: bytes([i]) * 1000) == bytes([i]) * 1000
        assert cache.usage().bytes <= 10 * (1000 + HEADER_BYTES)
    assert cache.get("k24") == bytes([24]) * 1000 and cache.get("k0") is None


def test_hit_touches_are_throttled(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path, MiB)
    cache.put("k", b"data")
    age(cache, "k", 1)  # used a second ago: a hit does not write
    before = entry_file(cache, "k").stat().st_mtime_ns
    assert cache.get("k") == b"data"
    assert entry_file(cache, "k").stat().st_mtime_ns == before
    age(cache, "k", cache_module.TOUCH_SECONDS + 5)  # used long ago: a hit refreshes it
    assert cache.get("k") == b"data"
    assert entry_file(cache, "k").stat().st_mtime_ns > time.time_ns() - 5 * 10**9


def test_ranges_of_a_large_entry_read_only_their_pages(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path, 64 * MiB)
    page = cache_module.PAGE_BYTES
    data = os.urandom(8 * MiB + 123)
    cache.put("big", data)
    assert entry_file(cache, "big").stat().st_size == cache_module.entry_bytes(len(data)) == cache.usage().bytes
    for offset, length in [(0, 4096), (page - 10, 20), (3 * page, page), (len(data) - 5, 100), (len(data), 10),
                           (0, len(data)), (5, 0)]:
        assert cache.get_range("big", offset, length) == data[offset:offset + length], (offset, length)
    assert cache.get("big") == data
    assert cache.get_range("absent", 0, 10) is None
    small = b"small entry"
    cache.put("small", small)
    assert cache.get_range("small", 2, 3) == small[2:5]

    # A damaged page: a range over it is a miss (and the file goes); one over other pages was
    # served from pages that check out, which is why each page has its own crc.
    path = entry_file(cache, "big")
    raw = bytearray(path.read_bytes())
    raw[len(raw) - len(data) + 5 * page + 7] ^= 0x01
    path.write_bytes(bytes(raw))
    assert cache.get_range("big", 0, 4096) == data[:4096]
    assert cache.get_range("big", 5 * page, 10) is None
    assert not path.exists() and cache.get_range("big", 0, 4096) is None


@pytest.mark.parametrize("damage", ["flip payload byte", "flip header byte", "truncate", "append", "empty",
                                    "other key's file"])
def test_damaged_entry_is_a_miss_and_removed(tmp_path: Path, damage: str) -> None:
    cache = BlockCache(tmp_path, MiB)
    data = os.urandom(10_000)
    cache.put("k", data)
    cache.put("other", b"other bytes")
    path = entry_file(cache, "k")
    raw = bytearray(path.read_bytes())
    if damage == "flip payload byte":
        raw[HEADER_BYTES + 5000] ^= 0x01
    elif damage == "flip header byte":
        raw[9] ^= 0x80  # inside the length
    elif damage == "truncate":
        del raw[-1]
    elif damage == "append":
        raw += b"\0"
    elif damage == "empty":
        raw = bytearray()
    else:
        raw = bytearray(entry_file(cache, "other").read_bytes())
    path.write_bytes(bytes(raw))

    assert cache.get("k") is None
    assert not path.exists()
    assert cache.usage().entries == 1
    assert cache.get("other") == b"other bytes"
    assert cache.get_or_fetch("k", lambda: data) == data  # fetched again, cached again
    assert cache.get("k") == data


def test_oversized_entry_is_returned_but_not_cached(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path, 4096)
    cache.put("small", b"s" * 100)
    big = b"b" * 4096  # plus the header, more than the whole cache
    cache.put("big", big)
    assert cache.get("big") is None
    calls = []
    assert cache.get_or_fetch("big", lambda: calls.append(1) or big) == big
    assert cache.get_or_fetch("big", lambda: calls.append(1) or big) == big
    assert len(calls) == 2
    assert cache.get("small") == b"s" * 100  # nothing was evicted to make room
    assert cache.usage() == CacheUsage(100 + HEADER_BYTES, 1, 4096)


def test_single_flight_across_threads(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path, 64 * MiB)
    calls = []
    start = threading.Barrier(8)
    results: list[bytes] = []

    def fetch() -> bytes:
        calls.append(threading.get_ident())
        time.sleep(0.2)  # long enough that every thread arrives while it runs
        return b"payload" * 1000

    def worker() -> None:
        start.wait()
        results.append(cache.get_or_fetch("key", fetch))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(calls) == 1
    assert results == [b"payload" * 1000] * 8
    assert cache.get_or_fetch("key", lambda: pytest.fail("a hit must not fetch")) == b"payload" * 1000


def test_failed_fetch_propagates_and_one_waiter_retries(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path, 64 * MiB)
    calls = []
    start = threading.Barrier(6)
    outcomes: list[object] = []

    def fetch() -> bytes:
        calls.append(1)
        time.sleep(0.1)
        if len(calls) == 1:
            raise RuntimeError("source down")
        return b"good"

    def worker() -> None:
        start.wait()
        try:
            outcomes.append(cache.get_or_fetch("key", fetch))
        except RuntimeError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(calls) == 2  # the failed fetch, then one retry by a waiter
    assert sum(isinstance(o, RuntimeError) for o in outcomes) == 1
    assert outcomes.count(b"good") == 5


def test_single_flight_across_processes(tmp_path: Path) -> None:
    root, log, go = tmp_path / "cache", tmp_path / "fetches", tmp_path / "go"
    BlockCache(root, 64 * MiB)
    expected = os.urandom(256 * 1024)

    def child() -> int:
        cache = BlockCache(root, 64 * MiB)

        def fetch() -> bytes:
            with open(log, "a") as f:
                f.write(f"{os.getpid()}\n")
            time.sleep(0.3)
            return expected

        wait_for(go)
        return 0 if cache.get_or_fetch("block", fetch) == expected else 3

    pids = [fork(child) for _ in range(4)]
    go.touch()
    assert [wait_child(pid, 8) for pid in pids] == [0, 0, 0, 0]
    assert len(log.read_text().splitlines()) == 1


def test_killed_fetcher_does_not_block_others(tmp_path: Path) -> None:
    root, started = tmp_path / "cache", tmp_path / "started"
    cache = BlockCache(root, 64 * MiB)

    def stuck_fetcher() -> int:
        def fetch() -> bytes:
            started.touch()
            time.sleep(30)
            return b"never"

        BlockCache(root, 64 * MiB).get_or_fetch("block", fetch)
        return 0

    pid = fork(stuck_fetcher)
    try:
        wait_for(started)
        result: list[bytes] = []
        waiter = threading.Thread(target=lambda: result.append(cache.get_or_fetch("block", lambda: b"mine")))
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive(), "the waiter must wait for the other process's fetch"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    waiter.join(5)
    assert result == [b"mine"]
    assert cache.get("block") == b"mine"


def test_a_waiter_skips_a_damaged_entry_and_keeps_waiting(tmp_path: Path) -> None:
    root, started = tmp_path / "cache", tmp_path / "started"
    cache = BlockCache(root, 64 * MiB)

    def fetcher() -> int:
        def fetch() -> bytes:
            started.touch()
            time.sleep(0.3)  # the waiter is polling by now
            entry_file(cache, "block").write_bytes(b"junk where the entry goes")  # e.g. a bad disk
            time.sleep(0.2)
            return b"good"

        BlockCache(root, 64 * MiB).get_or_fetch("block", fetch)
        return 0

    entry_file(cache, "block").parent.mkdir(parents=True)
    pid = fork(fetcher)
    wait_for(started)
    assert cache.get_or_fetch("block", lambda: pytest.fail("the other process is still fetching")) == b"good"
    assert wait_child(pid, 5) == 0


def test_works_in_a_forked_child(tmp_path: Path) -> None:
    """A fork while a thread holds a key's lock: the child neither deadlocks nor fetches twice."""
    cache = BlockCache(tmp_path, 64 * MiB)
    release, in_fetch = threading.Event(), threading.Event()

    def slow_fetch() -> bytes:
        in_fetch.set()
        release.wait(10)
        return b"from the parent"

    holder = threading.Thread(target=cache.get_or_fetch, args=("key", slow_fetch))
    holder.start()
    assert in_fetch.wait(5)

    def child() -> int:
        # The thread lock held by the parent's thread is not held in the child; the parent's
        # record lock is (another process now), so the child waits for the parent's entry.
        assert cache.get_or_fetch("key", lambda: b"from the child") == b"from the parent"
        cache.put("child", b"child data")
        assert cache.get("child") == b"child data"
        assert cache.usage().entries == 2
        return 0

    pid = fork(child)
    time.sleep(0.1)
    release.set()
    holder.join(5)
    assert wait_child(pid, 5) == 0
    assert cache.get("child") == b"child data"
    assert cache.get_or_fetch("new", lambda: b"parent still works") == b"parent still works"


def test_a_child_forked_during_a_counter_update_does_not_keep_the_lock(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path, MiB)
    holding, release = threading.Event(), threading.Event()

    def update() -> None:  # a put of another thread, caught at the fork inside its counter update
        with cache_module._flocked(tmp_path / "usage", fcntl.LOCK_EX):
            holding.set()
            release.wait(5)

    updater = threading.Thread(target=update)
    updater.start()
    assert holding.wait(5)
    pid = fork(lambda: time.sleep(3))  # a long-lived worker
    try:
        release.set()
        updater.join(5)
        done = threading.Event()
        reader = threading.Thread(target=lambda: (cache.usage(), done.set()))
        reader.start()
        assert done.wait(1), "the child's copy of the descriptor still holds the counter's lock"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    reader.join(5)


def test_reader_never_sees_a_partial_entry(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path, 64 * MiB)
    versions = [bytes([i]) * (i * 50_000 + 1) for i in range(1, 6)]
    cache.put("key", versions[0])
    stop = tmp_path / "stop"

    def writer() -> int:
        i = 0
        while not stop.exists():
            cache.put("key", versions[i % len(versions)])
            i += 1
        return 0

    pid = fork(writer)
    seen = set()
    start = time.monotonic()
    # At least 0.3 s of reads, and until they overlapped the writer (a busy machine starts it late).
    while time.monotonic() - start < 0.3 or (len(seen) < 3 and time.monotonic() - start < 5):
        data = cache.get("key")
        assert data in versions
        seen.add(len(data))
    stop.touch()
    assert wait_child(pid, 5) == 0
    assert len(seen) >= 3  # the reads did overlap the writes


def test_usage_counter_is_repaired(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path, 10_000)
    for i in range(3):
        cache.put(f"k{i}", b"x" * 1000)
    right = CacheUsage(3 * (1000 + HEADER_BYTES), 3, 10_000)
    counter = tmp_path / "usage"

    counter.unlink()  # lost: recounted
    assert cache.usage() == right
    counter.write_bytes(b"garbage")  # unreadable: recounted
    assert cache.usage() == right

    # Drift upward (a process killed between deleting and uncounting): the next put passes the
    # limit, rescans, finds room, and evicts nothing.
    raw = bytearray(counter.read_bytes())
    raw[8:16] = (50_000).to_bytes(8, "little")
    counter.write_bytes(bytes(raw))
    cache.put("k3", b"x" * 1000)
    assert cache.usage() == CacheUsage(4 * (1000 + HEADER_BYTES), 4, 10_000)
    assert all(cache.get(f"k{i}") for i in range(4))

    # Drift downward (killed between renaming and counting): the periodic rescan corrects it.
    raw = bytearray(counter.read_bytes())
    raw[8:16] = (0).to_bytes(8, "little")
    raw[24:32] = (time.time_ns() - int(cache_module.RESCAN_SECONDS * 2e9)).to_bytes(8, "little")
    counter.write_bytes(bytes(raw))
    cache.put("k4", b"x" * 1000)
    assert cache.usage() == CacheUsage(5 * (1000 + HEADER_BYTES), 5, 10_000)


def test_scan_removes_temporary_files_of_killed_writers(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path, MiB)
    cache.put("k", b"data")
    shard = entry_file(cache, "k").parent
    old, fresh = shard / ".dead.1.aa.tmp", shard / ".alive.2.bb.tmp"
    old.write_bytes(b"partial")
    fresh.write_bytes(b"in progress")
    t = time.time() - cache_module.STALE_TMP_SECONDS - 10
    os.utime(old, (t, t))
    (tmp_path / "usage").unlink()
    assert cache.usage() == CacheUsage(4 + HEADER_BYTES, 1, MiB)  # temporary files are not entries
    assert not old.exists() and fresh.exists()


# --- written behind the reader ------------------------------------------------------------------


@pytest.fixture
def held_writer(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """The writer thread waits for the returned event before publishing anything."""
    release = threading.Event()
    publish = BlockCache._publish

    def held(self: BlockCache, key: str, data: bytes, direct: object = None) -> object:
        if threading.current_thread().name == "cache-writer":
            assert release.wait(10), "the test never released the writer"
        return publish(self, key, data, direct)

    monkeypatch.setattr(BlockCache, "_publish", held)
    yield release
    release.set()


def test_a_fetch_written_behind_is_seen_at_once_and_fetched_once_per_machine(
        tmp_path: Path, held_writer: threading.Event) -> None:
    root, log = tmp_path / "cache", tmp_path / "fetches"
    cache = BlockCache(root, 64 * MiB)
    expected = os.urandom(3 * MiB)
    assert cache.get_or_fetch("block", lambda: expected, later=True) == expected
    assert not entry_file(cache, "block").exists()  # not written yet...
    assert cache.get("block") == expected  # ...yet this process has it
    assert cache.get_range("block", MiB, 10) == expected[MiB:MiB + 10]

    def child() -> int:
        def fetch() -> bytes:
            log.write_text("fetched again")
            return b"wrong"
        return 0 if BlockCache(root, 64 * MiB).get_or_fetch("block", fetch) == expected else 3

    pid = fork(child)  # waits on the fetch lock, which the writer holds until the entry is in place
    time.sleep(0.3)
    held_writer.set()
    assert wait_child(pid, 10) == 0
    assert not log.exists()
    assert cache.flush(5)
    assert entry_file(cache, "block").stat().st_size == cache_module.entry_bytes(len(expected))


def test_put_later_is_visible_at_once_and_written_inline_when_the_queue_is_full(
        tmp_path: Path, held_writer: threading.Event, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "WRITE_BEHIND_BYTES", 2 * MiB)
    cache = BlockCache(tmp_path / "cache", 64 * MiB)
    first, second = os.urandom(2 * MiB), os.urandom(MiB)
    cache.put_later("first", first)
    assert cache.get("first") == first and not entry_file(cache, "first").exists()
    cache.put_later("second", second)  # the queue holds 2 MiB already: written now, by this thread
    assert entry_file(cache, "second").exists()
    held_writer.set()
    assert cache.flush(5)
    fresh = fork(lambda: 0 if BlockCache(tmp_path / "cache", 64 * MiB).get("first") == first else 3)
    assert wait_child(fresh, 10) == 0
    assert cache.usage().entries == 2


@pytest.mark.parametrize("direct", [True, False])
def test_the_writer_bypasses_the_page_cache_where_it_can_and_writes_the_same_entry(
        tmp_path: Path, direct: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """O_DIRECT where the file system takes it; where it refuses (EINVAL), buffered writes for good."""
    if not direct:
        real_open = os.open

        def refusing(path: str, flags: int, *args: object) -> int:
            if flags & os.O_DIRECT:
                raise OSError(errno.EINVAL, "Invalid argument", path)
            return real_open(path, flags, *args)

        monkeypatch.setattr(os, "open", refusing)
    root = tmp_path / "cache"
    cache = BlockCache(root, 64 * MiB)
    payloads = {f"k{n}": os.urandom(size) for n, size in enumerate((MiB, 8 * MiB + 5, 3 * MiB - 1, 1000))}
    for key, data in payloads.items():
        cache.put_later(key, data)
    assert cache.flush(10)
    assert cache._local().writer._direct.supported is direct
    cache_module._registry.clear()  # a new process's view: nothing queued, only the files
    fresh = BlockCache(root, 64 * MiB)
    for key, data in payloads.items():
        assert entry_file(fresh, key).stat().st_size == cache_module.entry_bytes(len(data))
        assert fresh.get(key) == data
        assert fresh.get_range(key, len(data) - 7, 100) == data[-7:]
