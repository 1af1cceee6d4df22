"""Benchmark ``datastore create`` against plain copy tools, side by side, in one run.

Run::

    make bench                                            # full size (defaults below)
    .venv/bin/python -m bench --files 300 --large-mb 16   # a quick smoke run
    .venv/bin/python -m bench --only small-s3 --profile   # one scenario, plus a cProfile of datastore
    .venv/bin/python -m bench --only s3-copy,s3-nocopy    # several scenarios (or repeat --only)

Every row is one subprocess on this machine. The servers are started for the run, on 127.0.0.1
only: a real SeaweedFS S3 server and a real ``prefect server start`` (see datastore/testing/).
Each run is verified afterwards (object or file count and bytes, or the datastore's version
record); a run that fails or does not verify prints ``FAILED`` and its stderr tail, never a number.

Scenarios (``--only`` takes these names; each compares tools doing the same job on the same data):

small-s3     N files (``--files``, default 10,000) of K KiB (``--file-kb``, default 10) of random
             bytes, 100 per directory → SeaweedFS. ``datastore create`` (store in a fresh bucket,
             flow runs tracked by the Prefect server) vs ``s5cmd cp`` vs ``aws s3 cp --recursive``
             (AWS CLI v1 in its own venv, .venv-awscli). Ratio: files/s relative to s5cmd.
large-s3     one file of M MiB (``--large-mb``, default 512) → SeaweedFS; the same three tools.
             Ratio: MiB/s relative to s5cmd.
many-s3      like small-s3 with ``--many-files`` files (default 100,000); s5cmd and datastore.
medium-s3    ``--medium-files`` files (default 100) of ``--medium-mb`` MiB (default 20) → SeaweedFS;
             s5cmd and datastore. Ratio: MiB/s relative to s5cmd.
small-local  the N small files → a fresh local directory: ``datastore create`` (local store,
             Prefect server as above) vs ``cp -r``. Ratio: files/s relative to cp.
large-local  the large file → a fresh local directory; the same two tools. Ratio: MiB/s vs cp.
fixed        the fixed cost of one command without a server: ``datastore create`` of a one-file
             folder in Prefect's ephemeral mode vs a bare one-task Prefect flow in the same mode.
             Each has its own PREFECT_HOME, warmed by one untimed run so that database migrations
             do not count. Ratio: seconds relative to the bare flow (>1 = slower).
s3-copy      an S3 source: the N small files, uploaded untimed to ``s3://bench-src/small/`` on the
             same SeaweedFS, copied to a fresh bucket. ``s5cmd cp 's3://bench-src/small/*'`` (a
             server-side CopyObject per object) vs ``datastore create s3://bench-src/small/`` (store
             in a fresh bucket; small objects are fetched and packed) vs the same with
             DATASTORE_LARGE_FILE_BYTES=1 (every object a server-side CopyObject). Ratio: objects/s
             relative to s5cmd.
s3-nocopy    M tiny objects (``--ref-files``, default 100,000, of 100 bytes; uploaded untimed) in
             ``s3://bench-src-ref/ref/``: ``datastore create --no-copy`` (store in a fresh bucket)
             vs ``s5cmd ls`` of the prefix, the listing a no-copy create cannot beat. Ratio:
             objects/s relative to s5cmd ls; target ≥ 5,000 objects/s.
http-archive an HTTP archive source: A small files (``--archive-files``, default 20,000) of K KiB
             (``--file-kb``) of random bytes, in one ``.tar.gz`` (gzip level 1, built untimed; ~200
             MB, random bytes do not compress) served from disk by a stdlib HTTP server on
             127.0.0.1, the same for every row. ``curl | tar xz`` into a fresh directory, then
             ``s5cmd cp`` of it to a fresh bucket (one ``bash -c`` with pipefail, timed as one row)
             vs ``datastore create http://…/….tar.gz`` (store in a fresh bucket, scratch space in
             the bench's work dir, DATASTORE_HTTP_ALLOW_PRIVATE=1) vs ``curl | tar xz`` alone, an
             informational floor that stores nothing. Ratio: MiB/s relative to curl | tar xz +
             s5cmd cp; target ≥ 1×.
dask-copy    ``--dask-files`` objects of 1 KiB (default 200,000) in an S3 prefix → a fresh store:
             ``s5cmd cp`` (server-side copies; the reference) vs ``datastore create`` with its
             transfers on threads, on a LocalCluster of 2 processes (DATASTORE_TASK_RUNNER=dask),
             and on 2 separate ``dask worker`` processes (DATASTORE_DASK_ADDRESS). Checks: task runs,
             peak RSS of each Dask worker process, and the per-task cost of a no-op Prefect task on
             that cluster vs on threads (see bench/scale.py).
many-workers 8 concurrent ``datastore create --submit --wait`` (2 names × 4 versions, ``--fleet-files``
             files of 10 KiB each, default 1,000) over 2 process workers: the Prefect server on
             SQLite (the reference) vs on PostgreSQL. Checks: versions 1–4 of each name, failed
             API calls in the clients' and workers' logs, errors in the server's log.
mount        reading back: the N small files, stored untimed with ``datastore create`` (store in a
             fresh bucket, Prefect server as above) and uploaded untimed with s5cmd as plain objects
             to another fresh bucket, each materialized into a fresh local directory. ``s5cmd cp
             's3://<plain bucket>/*' <dir>/`` (one GET per object) vs ``datastore download NAME --dir
             <dir>`` (what ``mount`` did before it became a FUSE mount: one ranged GET per run of
             neighbouring packed files, every sha256 checked, read-only result). Verified: file count
             and bytes; the download also path for path against the source tree and a sample byte
             for byte. Ratio: files/s relative to s5cmd cp;
             target ≥ 2×.

lazy-mount   reading in place, on demand: ``datastore mount`` (FUSE) vs ``rclone mount`` (vfs cache
             off and full) vs s3fs (without and with use_cache), each mounting the same data from the
             same SeaweedFS: datastore versions stored untimed by ``datastore create``, the peers the
             same trees uploaded untimed as plain objects by s5cmd. Three trees: the N small files,
             B tiny files (``--mount-files-big``, default 100,000 of 100 bytes; the README run uses
             1,000,000) and one file of L MiB (``--mount-large-mb``, default 1024). Steps: time until
             mounted (a first mount with an empty cache folder, then a second one), ``find | wc -l``,
             ``tar cf - . | wc -c`` of the small files (cold, then a second time), ``dd bs=1M`` of the
             large file (cold, second), 1,000 random 4 KiB ``os.pread`` (cold), 8 ``dd`` at once on
             disjoint eighths (cold), and the mount processes' peak RSS. Cold = a fresh mount with an
             empty cache of its own; before every step the page cache is dropped and SeaweedFS's files
             read back in. Ratio: the peer's seconds (or MiB) ÷ datastore's (>1 = datastore better).
             Needs root, /dev/fuse, fusermount3, rclone and s3fs (``--mount-tools`` picks the mounts;
             a missing peer is n/a). Printed as its own table: a line per step, a column per mount.

Measured per row: wall time (``time.perf_counter`` around the subprocess) and peak resident memory,
sampled every 20 ms: of the whole process tree (psutil, sum of RSS; Prefect's ephemeral mode starts
a server subprocess, which counts here) and of the main process alone (its kernel high-water mark).
The shared SeaweedFS and Prefect servers are not counted. s5cmd is timed as its Go binary, not the
Python wrapper in .venv/bin. For the S3-source scenarios and mount also S3 requests per object,
counted by SeaweedFS itself: its Prometheus counter ``SeaweedFS_s3_request_total`` (every bucket,
type and status code; HEAD counts as GET), scraped before and after the row, delta ÷ objects.
Results are printed as one table and written to ``bench/out/results.json``; ``--profile`` also
writes ``bench/out/small.prof``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from bench.data import REF_SIZE
from bench.harness import OUT, Context, Row, base_env, log, remove_tree, stop_helpers
from bench.lazy import TOOL_KEYS
from bench.report import add_ratios, machine_info, print_report, write_results
from bench.scenarios import SCENARIOS, prepare, profile_small


def _names_of(what: str, known: Iterable[str]) -> Callable[[str], list[str]]:
    """An argparse type: comma-separated names, each one of ``known``."""
    known = list(known)

    def parse(value: str) -> list[str]:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown) or value!r} "
                                             f"(choose from {', '.join(known)})")
        return names

    return parse


_scenario_names = _names_of("scenario", SCENARIOS)  # --only: one scenario or several
_tool_names = _names_of("mount tool", TOOL_KEYS)  # --mount-tools


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (sizes of the data sets, scenario selection, profiling)."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=10_000, metavar="N", help="small files (default 10000)")
    p.add_argument("--file-kb", type=int, default=10, metavar="K", help="KiB per small file (default 10)")
    p.add_argument("--large-mb", type=int, default=512, metavar="M", help="MiB of the large file (default 512)")
    p.add_argument("--many-files", type=int, default=100_000, metavar="N",
                   help="small files of many-s3 (default 100000, of --file-kb KiB)")
    p.add_argument("--million-files", type=int, default=1_000_000, metavar="N",
                   help="files of million-local, 1 KiB each (default 1000000)")
    p.add_argument("--dask-files", type=int, default=200_000, metavar="N",
                   help="objects (of 1 KiB) of dask-copy (default 200000)")
    p.add_argument("--fleet-files", type=int, default=1000, metavar="N",
                   help="files (of 10 KiB) of each of many-workers' 8 sources (default 1000)")
    p.add_argument("--medium-files", type=int, default=100, metavar="N", help="files of medium-s3 (default 100)")
    p.add_argument("--medium-mb", type=int, default=20, metavar="M", help="MiB per medium-s3 file (default 20)")
    p.add_argument("--ref-files", type=int, default=100_000, metavar="M",
                   help=f"objects of {REF_SIZE} bytes for s3-nocopy (default 100000)")
    p.add_argument("--archive-files", type=int, default=20_000, metavar="A",
                   help="small files (of --file-kb KiB) in the http-archive .tar.gz (default 20000)")
    p.add_argument("--mount-files-big", type=int, default=100_000, metavar="B",
                   help=f"lazy-mount: files of {REF_SIZE} bytes in its big version (default 100000; "
                        "the README run uses 1000000)")
    p.add_argument("--mount-large-mb", type=int, default=1024, metavar="L",
                   help="lazy-mount: MiB of its large file, a multiple of 8 (default 1024)")
    p.add_argument("--mount-tools", type=_tool_names, default=list(TOOL_KEYS), metavar="TOOL[,TOOL…]",
                   help=f"lazy-mount: the mounts to run (default all: {', '.join(TOOL_KEYS)})")
    p.add_argument("--only", action="extend", type=_scenario_names, metavar="SCENARIO[,SCENARIO…]",
                   help=f"run only these scenarios (comma-separated or repeated): {', '.join(SCENARIOS)}")
    p.add_argument("--profile", action="store_true",
                   help="also run datastore small files → SeaweedFS under cProfile (bench/out/small.prof)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before a run is killed (default 3600)")
    args = p.parse_args(argv)
    if (args.files < 1 or args.file_kb < 1 or args.large_mb < 1 or args.ref_files < 1 or args.archive_files < 1
            or args.mount_files_big < 1):
        p.error("--files, --file-kb, --large-mb, --ref-files, --archive-files and --mount-files-big must be at least 1")
    if args.mount_large_mb < 8 or args.mount_large_mb % 8:
        p.error("--mount-large-mb must be a multiple of 8 (its 8 parallel readers read whole MiB)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the selected scenarios, print the table, write results.json.

    Returns:
        0 when every row succeeded (n/a rows included), 1 otherwise.
    """
    args = parse_args(argv)
    selected = [s for s in SCENARIOS if not args.only or s in args.only]
    if args.profile and "small-s3" not in selected:
        selected.insert(0, "small-s3")  # the profile run needs its data and servers
    load_at_start = os.getloadavg()
    OUT.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bench-"))
    ctx = Context(args, root, base_env(root))
    rows: list[Row] = []
    machine: dict = {}
    profile: dict | None = None
    archive_bytes = 0
    try:
        with contextlib.ExitStack() as stack:
            archive_bytes = prepare(ctx, selected, stack)
            for scenario in selected:
                try:
                    rows += SCENARIOS[scenario].run(ctx)
                except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the others
                    rows.append(Row(scenario, "(set-up)", 0, 0, error=f"FAILED: {type(exc).__name__}: {exc}"))
            machine = machine_info(ctx, load_at_start)
            add_ratios(rows)
            print_report(rows, args, machine, ctx.metrics_error, archive_bytes)
            if args.profile:
                profile = profile_small(ctx)
    finally:
        log("cleaning up …")
        stop_helpers(root / "state")
        remove_tree(root)
    write_results(OUT / "results.json", rows, args, machine, profile, archive_bytes)
    print(f"\nresults: {OUT / 'results.json'}")
    return 0 if all(r.error is None or r.error.startswith("n/a") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
