"""The results: ratios to each scenario's reference tool, the table with its legend, results.json."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import psutil

from bench.data import ARCHIVE_NAME, FILES_PER_DIR, REF_SIZE, MiB
from bench.harness import BIN, SAMPLE_S, Context, Row, s5cmd_binary
from bench.lazy import PARALLEL, PEAK_STEP, RANDOM_READS, step_label
from bench.lazy import PLAIN_BUCKET as LAZY_PLAIN
from bench.lazy import REFERENCE as LAZY_REF
from bench.lazy import STEPS as LAZY_STEPS
from bench.lazy import STORE_BUCKET as LAZY_STORE
from bench.lazy import TOOLS as LAZY_TOOLS
from bench.metrics import REQUEST_METRIC
from bench.scenarios import (
    ARCHIVE_REF,
    ARCHIVE_TARGET,
    COPY_SRC,
    MOUNT_NAME,
    MOUNT_PLAIN,
    MOUNT_REF,
    MOUNT_TARGET,
    NOCOPY_TARGET,
    REF_SRC,
    SCENARIOS,
)


def add_ratios(rows: list[Row]) -> None:
    """Fill ``ratio``: throughput over the reference tool's (or seconds over, for the fixed cost and
    lazy-mount), step by step where a scenario has steps."""
    for name, scenario in SCENARIOS.items():
        ref_tool = scenario.reference
        for step in dict.fromkeys(r.step for r in rows if r.scenario == name):
            metric = scenario.step_metrics.get(step, scenario.metric)
            ref = next((r for r in rows if r.scenario == name and r.step == step and r.tool == ref_tool
                        and r.error is None), None)
            if ref is None:
                continue
            base = getattr(ref, metric)
            for row in rows:
                value = getattr(row, metric)
                if row.scenario == name and row.step == step and row.error is None and value and base:
                    row.ratio = value / base
                    row.ratio_ref = ref_tool


def _command_version(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "n/a"


def _awscli_version(ctx: Context) -> str:
    if ctx.awscli:
        return _command_version([str(ctx.awscli), "--version"])
    return f"aws-cli n/a ({ctx.awscli_error})" if ctx.awscli_error else "aws-cli not used"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine_info(ctx: Context, load_at_start: tuple[float, float, float]) -> dict:
    """What the numbers were measured on (printed under the table, stored in results.json)."""
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": _cpu_model(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_at_start": [round(x, 2) for x in load_at_start],
        "python": platform.python_version(),
        "s5cmd": _command_version([str(s5cmd_binary()), "version"]),
        "aws": _awscli_version(ctx),
        "seaweedfs": _command_version([str(BIN / "weed"), "version"]),
        "prefect": metadata.version("prefect"),
        "rclone": _command_version(["rclone", "version"]),
        "s3fs": _command_version(["s3fs", "--version"]),
    }


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _rate(value: float | None) -> str:
    # Fewer decimals as the rate grows, so a 1-file run does not print as 0.
    if value is None:
        return "-"
    return _num(value, 0 if value >= 100 else 1 if value >= 10 else 2)


def _per_object(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if value >= 0.095 else f"{value:.2g}"


def render_table(rows: list[Row]) -> list[str]:
    """The table as fixed-width text lines; a failed row shows its reason instead of numbers."""
    header = ["scenario", "tool", "seconds", "files/s", "MiB/s", "RSS tree MiB", "RSS main MiB", "S3 req/obj",
              "ratio", "check"]
    right = {2, 3, 4, 5, 6, 7}
    cells: list[list[str] | tuple[str, str, str]] = []
    for r in rows:
        label = SCENARIOS[r.scenario].label + (f": {r.step}" if r.step else "")
        if r.error:
            cells.append((label, r.tool, r.error))
            continue
        ratio = "-" if r.ratio is None else f"{r.ratio:.{3 if r.ratio < 0.1 else 2}f}× {r.ratio_ref}"
        cells.append([label, r.tool, _num(r.seconds, 2), _rate(r.files_per_s), _rate(r.mib_per_s),
                      _num(r.peak_tree_mib, 0), _num(r.peak_main_mib, 0), _per_object(r.requests_per_object),
                      ratio, r.check])
    full = [c for c in cells if isinstance(c, list)]
    widths = [max([len(header[i])] + [len(c[i]) for c in full]) for i in range(len(header) - 1)]
    widths[0] = max([widths[0]] + [len(c[0]) for c in cells])
    widths[1] = max([widths[1]] + [len(c[1]) for c in cells])

    def line(values: list[str]) -> str:
        out = [v.rjust(widths[i]) if i in right else v.ljust(widths[i]) for i, v in enumerate(values[:-1])]
        return "  ".join(out + [values[-1]]).rstrip()

    lines = [line(header), line(["-" * w for w in widths] + ["-" * 5])]
    for c in cells:
        if isinstance(c, tuple):
            lines.append("  ".join([c[0].ljust(widths[0]), c[1].ljust(widths[1]), c[2]]))
        else:
            lines.append(line(c))
    return lines


def _lazy_cell(r: Row) -> str:
    """One lazy-mount cell: seconds (or MiB, for the memory row), a rate where it helps, the ratio."""
    if r.error:
        return "n/a" if r.error.startswith("n/a") else "FAILED"
    ratio = "" if r.ratio is None or r.tool == LAZY_REF else f"  {r.ratio:.{3 if r.ratio < 0.1 else 2}f}×"
    if r.step == PEAK_STEP:
        return f"{_num(r.peak_tree_mib, 0)} MiB{ratio}"
    rate = ""
    if r.step.startswith("4 KiB") and r.seconds:
        rate = f" ({_rate(r.files / r.seconds)} ops/s)"
    elif r.bytes and r.mib_per_s is not None:
        rate = f" ({_rate(r.mib_per_s)} MiB/s)"
    return f"{_num(r.seconds, 2)} s{rate}{ratio}"


def render_lazy(rows: list[Row], args: argparse.Namespace) -> list[str]:
    """The lazy-mount matrix (a line per step, a column per tool) and the reasons of failed cells."""
    tools = [t.label for t in LAZY_TOOLS if any(r.tool == t.label for r in rows)]
    steps = [s for s in LAZY_STEPS if any(r.step == s for r in rows)]
    cell = {(r.step, r.tool): r for r in rows}
    table = [["lazy mount (FUSE)", *tools]]
    for step in steps:
        table.append([step_label(step, args)] + [_lazy_cell(cell[step, t]) if (step, t) in cell else "-"
                                                 for t in tools])
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = ["  ".join(v.ljust(widths[0]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(line)).rstrip()
             for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    reasons = [f"  {step_label(r.step, args)}, {r.tool}: {r.error}" for r in rows if r.error]
    if reasons:
        lines += ["not measured:", *reasons]
    return lines


def print_lazy_legend(rows: list[Row], args: argparse.Namespace, machine: dict, metrics_error: str) -> None:
    """What the lazy-mount matrix measured, in a few lines."""
    dropped = not any("page cache not dropped" in r.check for r in rows if r.step)
    print(f"lazy mount: the same three trees mounted by every tool from the same SeaweedFS: {args.files:,} files × "
          f"{args.file_kb} KiB, {args.mount_files_big:,} files × {REF_SIZE} B ({FILES_PER_DIR} per directory) and one "
          f"file of {args.mount_large_mb} MiB, random bytes; datastore mounts versions stored (untimed) by datastore "
          f"create in s3://{LAZY_STORE}/store, the peers the same trees uploaded (untimed) by s5cmd as plain "
          f"objects to s3://{LAZY_PLAIN}/<tree>/")
    print("lazy mount, tools: datastore mount NAME --dir D (returns once mounted; its own process, found with "
          "datastore mounts --json); rclone mount :s3:<bucket>/<tree> D --read-only --use-server-modtime "
          "--vfs-cache-mode off (reads on demand, in-memory read-ahead) or full (also a sparse on-disk copy of "
          "what was read); s3fs <bucket>:/<tree> D -o ro,use_path_request_style (without and with use_cache=<dir>); "
          "the peers run in the foreground, so the pid sampled and stopped is the one the bench started")
    print("lazy mount, steps: 'mount' = from starting the command until the folder lists the tree's top level "
          "('first' with an empty cache folder, in which datastore builds its index; 'again' = a second mount "
          "with the same cache folder); find = find D | wc -l; tar = tar cf - . | wc -c in the mount (every "
          "file read; GNU tar reads nothing when writing to /dev/null itself); dd = dd bs=1M of the whole file; "
          f"4 KiB random = {RANDOM_READS:,} os.pread of 4 KiB at fixed-seed aligned offsets (one Python process); "
          f"{PARALLEL} readers = {PARALLEL} dd processes at once, each its own 1/{PARALLEL} of the file; "
          "each result checked against the source (entry count, tar bytes, dd bytes + sampled bytes, sha256)")
    cold = ("before every timed step the kernel page cache is dropped (sync; echo 3 > /proc/sys/vm/drop_caches) "
            "and SeaweedFS's files are read back in, so the server answers from memory and each tool's own "
            "pages and caches come from where it keeps them" if dropped
            else "the kernel page cache could NOT be dropped: 'second' reads may come from it")
    print(f"lazy mount, cold/second: 'cold' = a fresh mount with an empty cache folder of the tool's own; "
          f"'second' = the same data again in the same mount; {cold}")
    requests = f"S3 requests per step in results.json ({REQUEST_METRIC})" if not metrics_error else \
        f"S3 requests not counted ({metrics_error})"
    print("lazy mount, numbers: seconds (rate), and for each peer its time ÷ datastore's (>1 = datastore is "
          "faster); memory = peak RSS of the mount process and its children, sampled every "
          f"{SAMPLE_S * 1000:.0f} ms, over the whole run (the peer's ÷ datastore's: >1 = datastore is smaller); "
          f"{requests}; {machine.get('rclone', 'rclone n/a')}, {machine.get('s3fs', 's3fs n/a')}")


def print_report(rows: list[Row], args: argparse.Namespace, machine: dict, metrics_error: str = "",
                 archive_bytes: int = 0) -> None:
    """The table, its legend and the machine line, on stdout (``archive_bytes``: size of the
    http-archive source, when it was built)."""
    stepped = [r for r in rows if r.scenario == "lazy-mount"]  # a matrix of its own
    flat = [r for r in rows if r.scenario != "lazy-mount"]
    print()
    if flat:
        print("\n".join(render_table(flat)))
        print()
    if stepped:
        print("\n".join(render_lazy(stepped, args)))
        print()
    if flat:
        print(f"data: small = {args.files:,} files × {args.file_kb} KiB ({args.files * args.file_kb / 1024:.1f} MiB, "
              f"{FILES_PER_DIR} per directory); large = 1 file × {args.large_mb} MiB; random bytes")
    scenarios = {r.scenario for r in rows}
    if scenarios & {"s3-copy", "s3-nocopy"}:
        print(f"S3 sources: s3-copy = the small files uploaded (untimed) to s3://{'/'.join(COPY_SRC)}; s3-nocopy = "
              f"{args.ref_files:,} objects × {REF_SIZE} B in s3://{'/'.join(REF_SRC)}; both on the same SeaweedFS "
              "as the stores; files/s = objects/s")
    if "http-archive" in scenarios:
        content = args.archive_files * args.file_kb * 1024
        print(f"HTTP source: http-archive = {args.archive_files:,} files × {args.file_kb} KiB ({content / MiB:.1f} MiB, "
              f"{FILES_PER_DIR} per directory) in one {ARCHIVE_NAME} of {archive_bytes / MiB:.1f} MiB (gzip level 1), "
              "served from disk (page cache) by one stdlib HTTP server on 127.0.0.1 for all its rows; "
              "MiB/s = content MiB/s")
    if "mount" in scenarios:
        print(f"mount: the small files stored (untimed) as {MOUNT_NAME} by datastore create in a fresh bucket, and "
              f"uploaded (untimed) as plain objects to s3://{MOUNT_PLAIN}/ by s5cmd; each row reads them into a "
              "fresh local folder")
    if "million-local" in scenarios:
        print(f"1M files: {args.million_files:,} files × 1 KiB ({FILES_PER_DIR} per directory, random bytes) → a local "
              "store, cp -r beside it; the create's task runs counted by the Prefect server (goal <= 1,000) and its "
              "peak RSS (goal < 500 MB); then list --json, show NAME --json and one file's read through "
              "datastore:// (fsspec.open in a fresh Python, sha256 checked), each a fresh command (goal < 2 s)")
    if "lazy-mount" in scenarios:
        print_lazy_legend(rows, args, machine, metrics_error)
    if flat:
        print("ratio: throughput ÷ the reference tool's (S3: s5cmd, local: cp; S3 prefix copy: s5cmd cp S3→S3, "
              "a server-side CopyObject per object; --no-copy: s5cmd ls; HTTP archive: curl | tar xz + s5cmd cp; "
              "mount: s5cmd cp S3→local, a GET per object; >1 = faster); fixed cost: seconds ÷ the bare flow's "
              "(>1 = slower)")
    if scenarios & {"s3-copy", "s3-nocopy", "mount"}:
        if metrics_error:
            print(f"S3 req/obj: not measured ({metrics_error}); - in the table")
        else:
            print(f"S3 req/obj: S3 requests SeaweedFS served during the row ({REQUEST_METRIC}: all buckets, "
                  "types and status codes; HEAD counts as GET) ÷ objects; server-side counts, scraped before and "
                  "after each row, before verification; measured for the S3-source scenarios and mount only")
    if "s3-nocopy" in scenarios:
        print(f"target: datastore --no-copy ≥ {NOCOPY_TARGET:,} objects/s")
    if "http-archive" in scenarios:
        ds = next((r for r in rows if r.scenario == "http-archive" and r.tool == "datastore"), None)
        verdict = ("not measured" if ds is None or ds.ratio is None
                   else "met" if ds.ratio >= ARCHIVE_TARGET else "MISSED")
        print(f"target: datastore http-archive ≥ {ARCHIVE_TARGET:g}× {ARCHIVE_REF} ({verdict}); "
              "datastore writes the downloaded archive to its scratch folder, then extracts it there, then "
              "stores the tree; curl | tar xz extracts while downloading and s5cmd cp reads the tree back; "
              "curl | tar xz (no store) is a floor for information")
    if "mount" in scenarios:
        ds = next((r for r in rows if r.scenario == "mount" and r.tool == "datastore download"), None)
        verdict = ("not measured" if ds is None or ds.ratio is None
                   else "met" if ds.ratio >= MOUNT_TARGET else "MISSED")
        print(f"target: datastore download ≥ {MOUNT_TARGET:g}× {MOUNT_REF} files/s ({verdict}); download checks every "
              "sha256 and writes read-only files, s5cmd cp checks nothing")
    if flat:
        print(f"RSS: peak resident memory sampled every {SAMPLE_S * 1000:.0f} ms (main: kernel high-water mark; "
              "tree: the process and all its descendants, incl. Prefect's ephemeral server and the warm runner's "
              "child that ran the command; - = ended before the first sample); SeaweedFS, the Prefect servers and "
              "idle warm runners are not counted")
        print("note: datastore's local store fsyncs what it writes, cp does not; datastore rows report to a real "
              "Prefect server and find a warm runner up (started by an untimed create), unless the row says "
              "otherwise (fixed cost: 'not warm' = DATASTORE_WARM=0, 'no server' = the local server, 'ephemeral' = "
              "DATASTORE_LOCAL_SERVER=0)")
    print(f"machine: nproc {machine['nproc']} ({machine['cpu']}), {machine['ram_gib']} GiB RAM, "
          f"load {'/'.join(map(str, machine['load_at_start']))} at start; Python {machine['python']}; "
          f"s5cmd {machine['s5cmd']}; {machine['aws']}; SeaweedFS {machine['seaweedfs']}; "
          f"Prefect {machine['prefect']}")



def write_results(path: Path, rows: list[Row], args: argparse.Namespace, machine: dict, profile: dict | None,
                  archive_bytes: int) -> None:
    """Everything measured, as JSON (``archive_bytes``: size of the http-archive .tar.gz, when built)."""
    results = {"args": vars(args), "machine": machine, "rows": [r.to_json() for r in rows], "profile": profile}
    if archive_bytes:
        results["archive_bytes"] = archive_bytes  # size of the http-archive .tar.gz
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
