"""Measure the mount's :class:`~datastore.reading.index.ManifestIndex` on a realistic manifest.

Run (from the repository root)::

    .venv/bin/python -m bench.index_build                    # 1,000,000 files
    .venv/bin/python -m bench.index_build --files 10000
    .venv/bin/python -m bench.index_build --profile          # also a cProfile of the build

The manifest is generated once per size under ``--work`` (default ``/tmp/index-bench``) and
reused: files of 1-64 KiB, ~40-character paths ``sNN/class_NNNN/sample_NNNNNNNN.jpeg`` in nested
folders of ``--per-dir`` files (default 1000), one extra folder ``wide/`` of 10,000 files, a
sha256 each, packs of 1000 neighbouring files (object key and offset), an mtime each.

Measured: the build (wall time, peak RSS growth sampled every 5 ms, and the time spent only
decompressing and decoding the manifest, to split parsing from SQLite), the index file size, the
open of a built index (in this process and in a fresh one), lookups (hits, folders, misses),
``entry``, ``following`` and ``children`` of a 1000-file and a 10,000-file folder, and lookups
from 8 threads at once.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import hashlib
import json
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import psutil

from datastore.model.manifest import Entry, ManifestWriter, read_entries
from datastore.store import index as tree
from datastore.reading.index import ManifestIndex
from datastore.store.local import LocalStore
from datastore.store.versions import VersionRecord

MANIFEST = "manifests/bench.jsonl.gz"
WIDE = 10_000


def paths(files: int, per_dir: int) -> list[tuple[str, int]]:
    """(path, seed) in manifest order; ``files`` in all, ``WIDE`` of them in ``wide/``."""
    wide = min(WIDE, files // 10)
    out = [(f"s{i // (per_dir * 100):02d}/class_{i // per_dir % 100:04d}/sample_{i:08d}.jpeg", i)
           for i in range(files - wide)]
    out += [(f"wide/item_{i:06d}.jpeg", files + i) for i in range(wide)]
    out.sort()
    return out


def generate(store: LocalStore, files: int, per_dir: int) -> VersionRecord:
    """Write the manifest into ``store`` (unless there) and return its version record."""
    meta = store.root / "bench-record.json"
    if meta.exists():
        return VersionRecord.from_json(json.loads(meta.read_text()))
    target = store.root / MANIFEST
    target.parent.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(0)
    offset, pack = 0, ""
    t = time.perf_counter()
    with ManifestWriter(target) as w:
        for n, (path, seed) in enumerate(paths(files, per_dir)):
            if n % 1000 == 0:
                pack, offset = f"data/p-{hashlib.sha256(b'pack%d' % n).hexdigest()}", 0
            size = rnd.randint(1024, 64 * 1024)
            w.add(Entry(path, size, hashlib.sha256(b"%d" % seed).hexdigest(), pack, offset,
                        1_700_000_000_000_000_000 + seed * 1_000_003))
            offset += size
    summary = w.summary
    print(f"generated {files:,} entries in {time.perf_counter() - t:.1f} s, "
          f"{target.stat().st_size / 1e6:.1f} MB gzip")
    record = VersionRecord("bench", 1, "succeeded", "local", "/bench", summary.files, summary.bytes, summary.digest,
                           "2024-01-01T00:00:00Z", None, manifest=MANIFEST, create_id="bench")
    meta.write_text(json.dumps(record.to_json()))
    return record


class PeakRss:
    """Samples this process's RSS every 5 ms; ``growth`` is the peak minus the RSS at start."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.start = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.start


def timed(fn: Callable[[int], object], n: int) -> tuple[float, float]:
    """Mean and p99 in microseconds of ``n`` calls of ``fn(i)``."""
    times = []
    for i in range(n):
        t = time.perf_counter_ns()
        fn(i)
        times.append(time.perf_counter_ns() - t)
    times.sort()
    return statistics.fmean(times) / 1000, times[int(len(times) * 0.99)] / 1000


class NoManifestStore(LocalStore):
    """The bench's store, whose manifest must not be read (a stored index is used instead)."""

    def open_read(self, key: str):  # noqa: ANN201
        if key == MANIFEST:
            raise AssertionError("the manifest was read")
        return super().open_read(key)


def parse_only(store: LocalStore, record: VersionRecord, loads: Callable[[bytes], object]) -> tuple[float, float]:
    """Wall and CPU seconds to decompress and decode every line of the manifest (no SQLite)."""
    t, cpu = time.perf_counter(), time.process_time()
    with store.open_read(record.manifest) as fh, tree._read_ahead(fh) as lines:
        for line in lines:
            loads(line)
    return round(time.perf_counter() - t, 2), round(time.process_time() - cpu, 2)


def entries_only(store: LocalStore, record: VersionRecord) -> tuple[float, float]:
    """Wall and CPU seconds to stream the manifest as :class:`Entry` objects (``read_entries``)."""
    t, cpu = time.perf_counter(), time.process_time()
    with store.open_read(record.manifest) as fh:
        for _ in read_entries(fh):
            pass
    return round(time.perf_counter() - t, 2), round(time.process_time() - cpu, 2)


OPEN_CHILD = """
import sys, time
t = time.perf_counter()
from datastore.reading.index import ManifestIndex
from datastore.store.local import LocalStore
from datastore.store.versions import VersionRecord
import json
t_import = time.perf_counter()
store = LocalStore(sys.argv[1])
record = VersionRecord.from_json(json.loads(open(sys.argv[2]).read()))
class NoManifest(LocalStore):
    def open_read(self, key):
        raise AssertionError("the manifest was read")
store = NoManifest(sys.argv[1])
t0 = time.perf_counter()
idx = ManifestIndex.open(store, record, sys.argv[3])
t1 = time.perf_counter()
idx.lookup(sys.argv[4])
t2 = time.perf_counter()
print(json.dumps({"import_s": t_import - t, "open_s": t1 - t0, "first_lookup_s": t2 - t1}))
"""


def main(argv: list[str] | None = None) -> int:
    """Generate (once), build, measure, print."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=1_000_000)
    p.add_argument("--per-dir", type=int, default=1000)
    p.add_argument("--work", type=Path, default=Path("/tmp/index-bench"))
    p.add_argument("--profile", action="store_true", help="print a cProfile of the build")
    p.add_argument("--keep", action="store_true", help="keep the built index (default: built fresh each run)")
    args = p.parse_args(argv)
    store = LocalStore(args.work / f"store-{args.files}-{args.per_dir}")
    record = generate(store, args.files, args.per_dir)
    cache = args.work / f"cache-{args.files}-{args.per_dir}"
    if not args.keep:
        shutil.rmtree(cache, ignore_errors=True)
    results: dict[str, object] = {"files": record.files}

    results["decompress_only_wall_cpu_s"] = parse_only(store, record, lambda line: None)
    results["decompress_orjson_wall_cpu_s"] = parse_only(store, record, tree.loads_json)
    results["decompress_json_wall_cpu_s"] = parse_only(store, record, json.loads)
    results["read_entries_wall_cpu_s"] = entries_only(store, record)
    prof = cProfile.Profile() if args.profile else None
    with PeakRss() as rss:
        t, cpu = time.perf_counter(), time.process_time()
        if prof:
            prof.enable()
        idx = ManifestIndex.open(store, record, cache)
        if prof:
            prof.disable()
        build_s = time.perf_counter() - t
    results["build_s"] = round(build_s, 2)
    results["build_cpu_s"] = round(time.process_time() - cpu, 2)
    results["build_files_per_s"] = round(record.files / build_s)
    results["build_rss_growth_mb"] = round(rss.growth / 1e6, 1)
    results["index_mb"] = round(idx.path.stat().st_size / 1e6, 1)
    results["index_bytes_per_file"] = round(idx.path.stat().st_size / record.files)
    results["manifest_gz_mb"] = round((store.root / MANIFEST).stat().st_size / 1e6, 1)
    assert (idx.files, idx.bytes) == (record.files, record.bytes), (idx.files, record.files)

    opens = []
    for _ in range(20):
        t = time.perf_counter()
        ManifestIndex.open(store, record, cache).lookup("")
        opens.append(time.perf_counter() - t)
    results["open_built_ms_in_process"] = round(statistics.median(opens) * 1000, 2)
    all_paths = paths(args.files, args.per_dir)
    some = [p for p, _ in random.Random(1).sample(all_paths, min(100_000, len(all_paths)))]
    child = subprocess.run([sys.executable, "-c", OPEN_CHILD, str(store.root), str(store.root / "bench-record.json"),
                            str(cache), some[0]], capture_output=True, text=True, check=True)
    results["open_built_fresh_process"] = json.loads(child.stdout)

    # What a large version's first mount does instead of building: download the index its commit
    # stored (here a copy in the store, as the commit writes it), check its sha256, rename it.
    stored = dataclasses.replace(record, manifest_index="manifests/bench.index.sqlite",
                                 manifest_index_sha256=hashlib.sha256(idx.path.read_bytes()).hexdigest())
    store.put_file(stored.manifest_index, idx.path)
    fresh = args.work / f"cache-stored-{args.files}-{args.per_dir}"
    shutil.rmtree(fresh, ignore_errors=True)
    t = time.perf_counter()
    got = ManifestIndex.open(NoManifestStore(store.root), stored, fresh)
    got.lookup(some[0])
    results["open_from_stored_index_s"] = round(time.perf_counter() - t, 2)
    shutil.rmtree(fresh, ignore_errors=True)

    idx = ManifestIndex.open(store, record, cache)
    results["lookup_file_us_mean_p99"] = timed(lambda i: idx.lookup(some[i]), len(some))
    folders = sorted({p.rpartition("/")[0] for p in some})
    results["lookup_dir_us_mean_p99"] = timed(lambda i: idx.lookup(folders[i % len(folders)]), 10_000)
    results["lookup_miss_us_mean_p99"] = timed(lambda i: idx.lookup(f"{some[i]}.missing"), 10_000)
    results["entry_us_mean_p99"] = timed(lambda i: idx.entry(some[i]), 10_000)
    results["following_64_us_mean_p99"] = timed(lambda i: idx.following(i * 7 % max(1, record.files - 64), 64), 2_000)
    one = idx.lookup(some[0])
    assert one is not None and idx.entry(some[0]) == idx.following(one.seq, 1)[0]
    dir_1000 = some[0].rpartition("/")[0]
    t = time.perf_counter()
    n_1000 = sum(1 for _ in idx.children(dir_1000))
    results[f"children_{n_1000}_ms"] = round((time.perf_counter() - t) * 1000, 2)
    if idx.lookup("wide"):
        for label in ("first", "again"):
            t = time.perf_counter()
            n_wide = sum(1 for _ in idx.children("wide"))
            results[f"children_{n_wide}_ms_{label}"] = round((time.perf_counter() - t) * 1000, 2)
    t = time.perf_counter()
    results["children_root"] = [name for name, _ in idx.children("")][:5]

    done = [0] * 8

    def worker(k: int) -> None:
        mine = ManifestIndex.open(store, record, cache) if k % 2 else idx  # shared and separate objects
        for i in range(k, len(some), 8):
            assert mine.lookup(some[i]) is not None
            done[k] += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t
    results["lookups_8_threads_per_s"] = round(sum(done) / elapsed)

    print(json.dumps(results, indent=1))
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
