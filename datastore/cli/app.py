"""The ``datastore`` command line (Typer + Rich).

Every :class:`DatastoreError` ends the command with one line on stderr and exit code 1; usage
errors exit 2 (Typer's convention). ``--json`` keeps stdout machine-readable.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from datastore.cli import output
from datastore.cli.output import Column
from datastore.errors import DatastoreError, DatastoreNotFound, OrchestrationError, UsageError, one_line
from datastore.model import progress
from datastore.model.progress import human_bytes
from datastore.orchestration import runtime
from datastore.settings import Settings

if TYPE_CHECKING:  # a type only: importing the store here would load boto3 for every command
    from datastore.store.versions import VersionRecord

# Prefect reads its settings when first imported; nothing above imports it (the commands import
# it lazily, through the service), so the CLI's defaults still come first.
runtime.configure(quiet=True)

app = typer.Typer(
    name="datastore",
    help="Named, versioned, immutable datasets created by Prefect flows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# soft_wrap: a line longer than the terminal (a digest, a path) is never broken into two in a
# pipe or a file; tables are still drawn to the width.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def reset_consoles() -> None:
    """New consoles for a warm runner's child: width, colour and terminal are read from its client's environment."""
    global out, err  # noqa: PLW0603 - the module's two consoles, used by every command
    out = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)


def fail(exc: DatastoreError) -> None:
    """Print the one-line error and exit 1."""
    err.print(f"error: {exc.line()}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def guarded(fn: Callable[[], None]) -> None:
    """Run ``fn`` translating project errors into the one-line form.

    Anything else that escapes is a bug or an orchestration failure; it still gets one line
    (the traceback is printed only with ``DATASTORE_DEBUG=1``).
    """
    try:
        fn()
        sys.stdout.flush()  # inside, so a reader that went away is seen here, not by Typer (which exits 1)
    except BrokenPipeError:
        output.quiet_broken_pipe()
    except DatastoreError as exc:
        fail(exc)
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - the one boundary where unknown errors become a line
        if os.environ.get("DATASTORE_DEBUG"):
            raise
        from datastore.orchestration.failures import is_orchestration_failure

        text = one_line(exc)
        if is_orchestration_failure(exc):
            fail(OrchestrationError(text))
        fail(DatastoreError(f"unexpected {type(exc).__name__}: {text}",
                            "run again with DATASTORE_DEBUG=1 for the traceback and report it"))


class BadValue(typer.BadParameter):
    """A value an option cannot take, with the fix to show after it (see :func:`main`)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


# Typer (0.29) vendors Click; its public BadParameter reaches the classes main() translates.
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def version_number(value: str) -> int:
    """``--version N``: a whole number from 1 (versions are numbered from 1 and never reused).

    Raises:
        BadValue: anything else (``0``, ``-1``, ``abc``), with the fix.
    """
    text = str(value).strip()
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise BadValue(f"{text!r} is not a version number (versions are numbered 1, 2, 3 …)",
                   "'datastore list' shows the versions that exist")


def usage_line(exc: Exception) -> str:
    """A Click usage error (unknown option, missing argument, bad value) as the one line users see."""
    text = " ".join(exc.format_message().split()).rstrip(".")
    text = text[:1].lower() + text[1:]
    hint = getattr(exc, "hint", None)
    if hint is None and "unexpected extra argument" in text:
        hint = "quote a path or name that has spaces, e.g. datastore create \"my folder\""
    if hint is None:
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "datastore"
        hint = f"see '{command} --help'"
    return f"{text}: {hint}"


def cli_started() -> float:
    """When this command started (``time.time()``), as the console script recorded it; else now."""
    from datastore.cli.entry import STARTED_ENV

    try:
        return float(os.environ[STARTED_ENV])
    except (KeyError, ValueError):
        return time.time()


def _elapsed(seconds: float) -> str:
    """0:00:07, like Rich's elapsed column, but from the command's start."""
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _run_with_progress(run: Callable[[], dict], state: progress.Progress, show: bool) -> dict:
    """Run ``run`` reporting to ``state``; on a terminal a Rich bar on stderr shows phase, files, bytes, rate.

    The bar's clock counts from the command's start (``state.started``), Prefect's start-up
    included, so what it shows at the end is the wall time the summary prints.
    """
    if not show:
        with progress.installed(state):
            return run()
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
    from rich.table import Column

    done = threading.Event()
    # One line whatever the width: a narrow terminal drops the rate, then the bar, and a cell
    # that still does not fit is cut with an ellipsis rather than wrapped onto a second line.
    width = err.width
    columns: list = [TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis"))]
    if width >= 70:
        columns.append(BarColumn(bar_width=40 if width >= 100 else max(10, width - 64)))
    columns.append(DownloadColumn(binary_units=True, table_column=Column(no_wrap=True)))
    if width >= 100:
        columns.append(TransferSpeedColumn(table_column=Column(no_wrap=True)))
    columns.append(TextColumn("[yellow]{task.fields[elapsed]}", table_column=Column(no_wrap=True)))
    bar = Progress(*columns, console=err, transient=True)

    def describe() -> str:
        if state.files_total == 0 and state.files_done == 0:
            return state.phase  # nothing counted yet: no "0/0 files"
        return f"{state.phase} {state.files_done:,}/{state.files_total:,} files"

    def render() -> None:
        task = bar.add_task(describe(), total=None, elapsed=_elapsed(time.time() - state.started))
        while True:
            finished = done.wait(0.1)
            bar.update(task, description=describe(), completed=state.bytes_done, total=state.bytes_total or None,
                       elapsed=_elapsed(time.time() - state.started))
            if finished:  # one last frame with the final counts, then stop: the user sees where it ended
                bar.refresh()
                return

    with progress.installed(state), bar:
        t = threading.Thread(target=render, daemon=True)
        t.start()
        try:
            return run()
        finally:
            done.set()
            t.join()


def interrupted_line(state: progress.Progress, gc_grace: int) -> str:
    """What a Ctrl-C during a create leaves: what is kept, and that running it again resumes.

    Once the commit has begun, this process cannot tell whether the version record was written
    before the interrupt, so the line says to look before running the command again (a re-run
    of a committed creation would make the next version).
    """
    kept = f"finished batches are kept for at least {gc_grace:,} s (DATASTORE_GC_GRACE)"
    if state.phase in ("committing", "done"):
        return (f"interrupted while {state.phase}: the version may or may not have been committed: 'datastore list' "
                f"shows it; if it is not there, run the same command again to resume ({kept})")
    if state.files_done:
        return (f"interrupted while {state.phase}: no version was committed; {state.files_done:,} of "
                f"{state.files_total:,} files were transferred and {kept}: run the same command again to resume")
    return f"interrupted while {state.phase}: no version was committed and no file was stored: run the same command again"


@app.command()
def create(
    source: Annotated[str, typer.Argument(help="Local path, s3://bucket/prefix/ or http(s):// archive URL.")],
    name: Annotated[Optional[str], typer.Option("--name", help="Datastore name (default: derived from SOURCE).")] = None,
    no_copy: Annotated[bool, typer.Option("--no-copy", help="Reference S3 objects in place.")] = False,
    credentials: Annotated[Optional[str], typer.Option("--credentials", help="Prefect AwsCredentials block.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the committed version record as JSON.")] = False,
    submit_: Annotated[bool, typer.Option("--submit", help="Run it as a flow run on the work pool (a worker) and return.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="With --submit: follow the run to its end.")] = False,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="With --wait: stop waiting after SECONDS.")] = None,
    worker_path: Annotated[bool, typer.Option("--worker-path", help="SOURCE is a path on the worker's machine: do not check it here.")] = False,
) -> None:
    """Create the next version of a datastore from SOURCE."""

    def run() -> None:
        from datastore.service import create as creation

        creation.check(source, no_copy, credentials)
        show = not as_json and sys.stderr.isatty()
        if timeout is not None and not wait:
            raise UsageError("--timeout limits --wait", "add --submit --wait, or drop --timeout")
        if worker_path and not submit_:
            raise UsageError("--worker-path is for a path only a worker's machine has",
                             "add --submit, or drop --worker-path (without --submit the create reads it here)")
        if wait and not submit_:
            raise UsageError("--wait follows a submitted run", "add --submit, or drop --wait (without --submit "
                                 "the create runs here and always waits)")
        if submit_:
            record = _create_submitted(source, name, no_copy, credentials, wait, as_json, show, timeout, worker_path)
            if record is None:
                return
        else:
            state = progress.Progress(started=cli_started())

            def interrupt(signum: int, frame: object) -> None:
                state.cancelled.set()  # the transfer threads stop at their next file (progress.Interrupted)
                raise KeyboardInterrupt

            previous = signal.signal(signal.SIGINT, interrupt)
            try:
                record = _run_with_progress(
                    lambda: creation.create(source, name, no_copy=no_copy, credentials=credentials), state, show)
            except KeyboardInterrupt:
                err.print(interrupted_line(state, Settings.from_env().gc_grace), markup=False, highlight=False)
                raise
            finally:
                signal.signal(signal.SIGINT, previous)
        if as_json:
            print(json.dumps(record, indent=2))
        elif submit_:
            _print_created(record, cli_started())
        else:
            _print_created(record, state.started, state.durations())

    guarded(run)


def _create_submitted(source: str, name: str | None, no_copy: bool, credentials: str | None,
                      wait: bool, as_json: bool, show: bool, timeout: float | None, worker_path: bool) -> dict | None:
    """Hand the creation to a worker; with ``wait`` follow it and return the committed record."""
    from datastore.service import create as creation

    sub = creation.submit(source, name, no_copy=no_copy, credentials=credentials, worker_path=worker_path)
    run = sub.run
    if not wait:
        if as_json:
            print(json.dumps({"status": "submitted", "name": sub.name, "flow_run_id": run.flow_run_id,
                              "flow_run_name": run.flow_run_name, "deployment": run.deployment, "ui_url": run.ui_url},
                             indent=2))
        else:
            out.print(f"submitted {run.flow_run_name} to {run.deployment}: flow run {run.flow_run_id}", highlight=False)
            out.print(f"follow it at {run.ui_url} or with 'datastore status'", highlight=False)
        return None
    if not as_json:
        err.print(f"submitted {run.flow_run_name} (flow run {run.flow_run_id}); waiting. UI: {run.ui_url}",
                  highlight=False)
    last = [""]

    def report(rec) -> None:  # noqa: ANN001
        text = rec.progress_text()
        if show and text != last[0]:
            err.print(f"  {text}", highlight=False)
            last[0] = text

    return creation.wait(sub, on_progress=report, timeout=timeout,
                         on_notice=lambda text: err.print(f"note: {text}", highlight=False))


def _print_created(r: dict, started: float, phases: list[tuple[str, float]] | None = None) -> None:
    """The summary: what was committed, in how much wall time (since the command started), and where it went."""
    shown = [(phase, s) for phase, s in phases or [] if s >= 0.05]  # "0.0s" phases are noise
    spent = f" ({', '.join(f'{phase} {s:.1f}s' for phase, s in shown)})" if shown else ""
    out.print(
        f"[bold green]created[/] {escape(r['name'])} version {r['version']}: {r['files']:,} files, "
        f"{human_bytes(r['bytes'])} ({human_bytes(r['bytes_uploaded'])} uploaded) in {time.time() - started:.1f}s{spent}",
        highlight=False)
    if r.get("skipped"):
        out.print(f"[yellow]skipped {r['skipped']} items[/] (see 'datastore show {r['name']}')")
    out.print(f"digest {r['digest']}")


@app.command("list")
def list_(
    name: Annotated[Optional[str], typer.Argument(help="Only this datastore.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array of version records.")] = False,
) -> None:
    """List datastores and their versions.

    Piped, one tab-separated line per version: name, version, status, files, size, created, source.
    """

    def run() -> None:
        from datastore.service.status import listing

        # Creations in flight and recently failed come from the store only (no Prefect round trip).
        found = listing(name)
        records, pending = found.records, found.pending
        if as_json:
            print(json.dumps([r.to_json() for r in records] + [p.to_json() for p in pending], indent=2))
            return
        if not records and not pending:
            if name is not None:
                raise DatastoreNotFound(name)
            output.hint(out, err, "no datastores yet: create one with 'datastore create PATH'")
            return
        rows = [(r.name, str(r.version), "deleted" if r.deleted_at else r.status, str(r.files), human_bytes(r.bytes),
                 r.created_at[:16].replace("T", " "), f"{r.kind}: {r.source}") for r in records]
        rows += [(p.name, "-", p.status, str(p.files), human_bytes(p.bytes), p.since[:16].replace("T", " "),
                  f"{p.kind}: {p.source}") for p in pending]
        rows.sort(key=lambda x: (x[0], x[1] == "-", int(x[1]) if x[1].isdigit() else 0, x[5]))
        output.rows(out, LIST_COLUMNS, rows)
        if pending:
            output.hint(out, err, "see 'datastore status' for progress and reasons")

    guarded(run)


#: ``list``: on a narrow terminal the creation time goes first, then the file count; the name never.
LIST_COLUMNS = (Column("name", 100), Column("version", 90), Column("status", 80), Column("files", 40),
                Column("size", 70), Column("created (UTC)", 30), Column("source", 60, fold=True))


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="Datastore name (NAME or NAME@VERSION).")],
    version: Annotated[Optional[int], typer.Option("--version", parser=version_number,
                                                              help="Version (default: newest live).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the version record as JSON.")] = False,
) -> None:
    """Show the details of one version, including its original source (piped: KEY<TAB>VALUE lines)."""

    def run() -> None:
        from datastore.service.status import show as lookup

        shown = lookup(*split_ref(name, version))
        r, store = shown.record, shown.store
        if as_json:
            print(json.dumps(r.to_json(), indent=2))
            return
        rows = [
            ("name", r.name), ("version", str(r.version)), ("status", "deleted" if r.deleted_at else r.status),
            ("source", r.source), ("kind", r.kind), *_source_rows(r), ("files", str(r.files)), ("size", f"{human_bytes(r.bytes)} ({r.bytes} bytes)"),
            ("uploaded", f"{human_bytes(r.bytes_uploaded)} ({r.bytes_uploaded} bytes)"), ("digest", r.digest),
            ("created", r.created_at), ("duration", f"{r.duration_s}s"), ("flow run", r.flow_run_id or "-"),
            ("skipped", str(r.skipped)), ("store", store.url),
        ]
        if r.deleted_at:
            rows.append(("deleted", r.deleted_at))
        output.pairs(out, rows)
        _print_skipped(shown.skipped())

    guarded(run)


def _source_rows(r: VersionRecord) -> list[tuple[str, str]]:
    """Where an S3 or HTTP version came from (bucket, prefix, mode, credentials; archive, validators)."""
    d = r.source_detail or {}
    if "url" in d:
        return [("archive", f"{d.get('format')}, {human_bytes(d.get('archive_bytes') or 0)}, sha256 {d.get('archive_sha256')}"),
                ("etag", d.get("etag") or "-"), ("last-modified", d.get("last_modified") or "-")]
    if "bucket" not in d:
        return []
    mode = ("referenced in place (--no-copy): reads fetch the pinned objects from the bucket"
            if d.get("no_copy") else "copied into the store")
    pinned = "VersionId (versioned bucket)" if d.get("versioned") else "ETag"
    return [("bucket", d["bucket"]), ("prefix", d.get("prefix") or "(whole bucket)"), ("mode", mode),
            ("pinned by", pinned),
            ("credentials", f"AwsCredentials block {d['credentials']!r}" if d.get("credentials") else "default AWS chain")]


def _print_skipped(skipped: Iterator[tuple[str, str]], limit: int = 20) -> None:
    for shown, (path, reason) in enumerate(skipped):
        if shown == limit:
            output.hint(out, err, "  … and more (the 'skipped' count above is the total)")
            break
        if out.is_terminal:
            out.print(f"  skipped {path}: {reason}", markup=False, highlight=False)
        else:
            print(f"skipped\t{output.cell(path)}\t{output.cell(reason)}")


@app.command("ls")
def ls_(
    ref: Annotated[str, typer.Argument(metavar="NAME[@VERSION]", help="Datastore (default version: newest live).")],
    path: Annotated[Optional[str], typer.Argument(help="A folder or file inside the version (default: its top level).")] = None,
    long: Annotated[bool, typer.Option("-l", "--long", help="Sizes and sha256 too.")] = False,
    recursive: Annotated[bool, typer.Option("-R", "--recursive", help="Every file below PATH, not only its own entries.")] = False,
    version: Annotated[Optional[int], typer.Option("--version", parser=version_number, help="Version (or NAME@VERSION).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array of {path, type, size, checksum}.")] = False,
) -> None:
    """List the files and folders of a version, from its manifest (nothing is downloaded).

    Paths are relative to the version's root; folders end with '/'. With -l each line is SIZE,
    SHA256, PATH (piped: bytes<TAB>sha256<TAB>path; '-' for folders).
    """

    def run() -> None:
        from datastore.service import browse

        _, rows = browse.ls(*split_ref(ref, version), path, recursive=recursive)
        if as_json:
            _json_array(({"path": r.path, "type": "folder"} if r.entry is None else
                         {"path": r.path, "type": "file", "size": r.entry.size, "checksum": r.entry.checksum})
                        for r in rows)
            return
        write, tty = sys.stdout.write, out.is_terminal
        for r in rows:
            if not long:
                write(f"{output.cell(r.path)}\n")
            elif r.entry is None:
                write(f"{'-':>10}  {'-':64}  {output.cell(r.path)}\n" if tty else f"-\t-\t{output.cell(r.path)}\n")
            else:
                e = r.entry
                write(f"{human_bytes(e.size):>10}  {e.checksum:64}  {output.cell(e.path)}\n" if tty else
                      f"{e.size}\t{e.checksum}\t{output.cell(e.path)}\n")

    guarded(run)


def _json_array(items: Iterator[dict]) -> None:
    """A JSON array written element by element (a million-row listing is never built in memory)."""
    write = sys.stdout.write
    sep = "[\n  "
    for item in items:
        write(sep + json.dumps(item, ensure_ascii=False))
        sep = ",\n  "
    write("[]\n" if sep.startswith("[") else "\n]\n")


@app.command()
def du(
    ref: Annotated[str, typer.Argument(metavar="NAME[@VERSION]", help="Datastore (default version: newest live).")],
    path: Annotated[Optional[str], typer.Argument(help="A folder inside the version (default: all of it).")] = None,
    summarize: Annotated[bool, typer.Option("-s", "--summarize", help="Only the total.")] = False,
    version: Annotated[Optional[int], typer.Option("--version", parser=version_number, help="Version (or NAME@VERSION).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="{folders: [...], total: {...}} as JSON.")] = False,
) -> None:
    """Files and bytes of each folder in PATH, then of PATH in all, from the manifest.

    Piped, one line per folder and a last one for PATH: bytes<TAB>files<TAB>path.
    """

    def run() -> None:
        from datastore.reading.browse import Usage
        from datastore.service import browse

        record, folders, total = browse.du(*split_ref(ref, version), path, summarize=summarize)
        name = total.path or "."
        if as_json:
            print(json.dumps({"name": record.name, "version": record.version,
                              "folders": [{"path": f.path, "files": f.files, "bytes": f.bytes} for f in folders],
                              "total": {"path": name, "files": total.files, "bytes": total.bytes}}, indent=2))
            return
        for u in [*folders, Usage(name, total.files, total.bytes)]:
            if out.is_terminal:
                print(f"{human_bytes(u.bytes):>10}  {u.files:>9,} files  {output.cell(u.path)}")
            else:
                print(f"{u.bytes}\t{u.files}\t{output.cell(u.path)}")

    guarded(run)


@app.command()
def cat(
    ref: Annotated[str, typer.Argument(metavar="NAME[@VERSION]", help="Datastore (default version: newest live).")],
    path: Annotated[str, typer.Argument(help="The file inside the version.")],
    version: Annotated[Optional[int], typer.Option("--version", parser=version_number, help="Version (or NAME@VERSION).")] = None,
) -> None:
    """Write one file of a version to stdout, its bytes checked against the manifest."""

    def run() -> None:
        from datastore.service import browse

        _, pieces = browse.cat(*split_ref(ref, version), path)
        sink = sys.stdout.buffer
        for piece in pieces:
            sink.write(piece)
        sink.flush()

    guarded(run)


@app.command()
def diff(
    old: Annotated[str, typer.Argument(metavar="NAME@A", help="The version to compare from.")],
    new: Annotated[str, typer.Argument(metavar="NAME@B", help="The version to compare to (NAME alone: newest live).")],
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array of {change, path, old_size, new_size, …}.")] = False,
) -> None:
    """The files added, removed and changed from one version to another; exit 1 when they differ (like diff).

    On a terminal '+ PATH (SIZE)', '- PATH (SIZE)', '~ PATH (OLD → NEW)' and a summary;
    piped, one line per file: added|removed|changed<TAB>path<TAB>old bytes<TAB>new bytes.
    """
    code = [0]

    def run() -> None:
        from datastore.reading.browse import ChangeKind
        from datastore.service import browse

        a, b, changes = browse.diff(split_ref(old, None), split_ref(new, None))
        counts = dict.fromkeys(ChangeKind, 0)
        grown = 0

        def counted() -> Iterator:
            nonlocal grown
            for c in changes:
                counts[c.kind] += 1
                grown += (c.new.size if c.new else 0) - (c.old.size if c.old else 0)
                yield c

        if as_json:
            _json_array(c.to_json() for c in counted())
        else:
            marks = {ChangeKind.ADDED: ("+", "green"), ChangeKind.REMOVED: ("-", "red"), ChangeKind.CHANGED: ("~", "yellow")}
            for c in counted():
                if not out.is_terminal:
                    print(f"{c.kind.value}\t{output.cell(c.path)}\t{c.old.size if c.old else ''}\t"
                          f"{c.new.size if c.new else ''}")
                    continue
                mark, colour = marks[c.kind]
                sizes = (human_bytes((c.new or c.old).size) if c.kind is not ChangeKind.CHANGED
                         else f"{human_bytes(c.old.size)} → {human_bytes(c.new.size)}")
                out.print(f"[{colour}]{mark} {escape(c.path)}[/] ({sizes})", highlight=False)
            what = f"{a.name}@{a.version} → {b.name}@{b.version}"
            if any(counts.values()):
                sign = "+" if grown >= 0 else "-"
                output.hint(out, err, f"{counts[ChangeKind.ADDED]} added, {counts[ChangeKind.REMOVED]} removed, "
                                      f"{counts[ChangeKind.CHANGED]} changed ({sign}{human_bytes(abs(grown))}): {what}")
            else:
                output.hint(out, err, f"no differences: {what}")
        code[0] = 1 if any(counts.values()) else 0

    guarded(run)
    raise typer.Exit(code[0])


@app.command()
def delete(
    ref: Annotated[Optional[str], typer.Argument(metavar="NAME", help="Datastore name (NAME or NAME@VERSION).")] = None,
    name_opt: Annotated[Optional[str], typer.Option("--name", help="Same as NAME (kept for scripts).")] = None,
    version_: Annotated[Optional[int], typer.Option("--version", parser=version_number,
                                                              help="The version to delete.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Delete every version of NAME (asks first).")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask (for scripts).")] = False,
) -> None:
    """Delete one version (immediately; its number is never reused), or every version with --all.

    ``datastore delete NAME --version N``, ``datastore delete NAME@N`` and ``--name NAME`` all work.
    """

    def run() -> None:
        from datastore.service import delete as deletion

        if ref is not None and name_opt is not None and split_ref(ref, None)[0] != name_opt:
            raise UsageError(f"NAME {ref!r} and --name {name_opt!r} disagree", "give the name once")
        if ref is None and name_opt is None:
            raise UsageError("missing NAME", "for example: datastore delete NAME --version 1")
        if all_ and ref is not None and "@" in ref:
            raise UsageError(f"{ref!r} names one version and --all every version", "give one of them")
        name, version = split_ref(ref or name_opt or "", version_)
        if (version is None) == (not all_):
            raise UsageError("give either --version N (one version) or --all (every version)",
                             f"for example: datastore delete {name} --version 1")

        if version is not None:
            gone = deletion.delete_version(name, version)
            rec = gone.records[0]
            out.print(f"deleted {rec.name} version {rec.version} "
                      f"(reclaimed {gone.objects} objects only it used, {human_bytes(gone.bytes)})")
            return
        # --all also dismisses the name's failed creations: a name with only those is not "missing".
        failed = deletion.failed_creations(name)
        try:
            live = deletion.live_versions(name)
        except DatastoreNotFound:
            if not failed:
                raise
            live = []
        what = ", ".join(x for x in (
            f"all {len(live)} versions of {name!r} ({', '.join(map(str, live))})" if live else "",
            f"{len(failed)} failed creation{'s' if len(failed) != 1 else ''} of {name!r}" if failed else "") if x)
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(f"refusing to delete {what} without confirmation", "pass --yes to confirm in a script")
            typer.confirm(f"delete {what}?", abort=True)
        if live:
            gone = deletion.delete_all(name)
            out.print(f"deleted {name} versions {', '.join(map(str, gone.numbers))} (reclaimed {human_bytes(gone.bytes)})")
        if failed:
            dismissed = deletion.dismiss_failed(name)
            out.print(f"removed {len(dismissed)} failed creation{'s' if len(dismissed) != 1 else ''} of {name} "
                      "from 'list' and 'status' (their flow runs stay in Prefect)")

    guarded(run)


def split_ref(name: str, version: int | None) -> tuple[str, int | None]:
    """``NAME@V`` -> (NAME, V); ``NAME`` and ``--version`` pass through.

    Raises:
        UsageError: ``@`` with something other than a version number, or both forms disagreeing.
    """
    if "@" not in name:
        return name, version
    base, _, v = name.rpartition("@")
    if not v.isdigit() or int(v) < 1 or not base:
        raise UsageError(f"{name!r} is not NAME or NAME@VERSION", f"for example: {base or 'NAME'}@1")
    if version is not None and version != int(v):
        raise UsageError(f"{name!r} and --version {version} name different versions", "give one of them")
    return base, int(v)


@app.command()
def mount(
    name: Annotated[str, typer.Argument(help="Datastore name (NAME or NAME@VERSION).")],
    version: Annotated[Optional[int], typer.Option("--version", parser=version_number,
                                                              help="Version (default: newest live).")] = None,
    dir_: Annotated[Optional[str], typer.Option("--dir", help="Mount directory (default: DATASTORE_MOUNT_DIR/NAME).")] = None,
    foreground: Annotated[bool, typer.Option("--foreground", help="Serve from this process until unmounted.")] = False,
) -> None:
    """Mount a version as a read-only filesystem, read on demand (ready in about a second)."""

    def run() -> None:
        from datastore.service.mount import mount as start

        n, v = split_ref(name, version)
        if foreground:
            err.print(f"mounting {n} at {dir_ or '(default)'}; Ctrl-C or 'datastore unmount DIR' ends it",
                      markup=False, highlight=False, soft_wrap=True)
        info = start(n, v, dir_, foreground=foreground)
        if not foreground:
            out.print(f"mounted {info.name} version {info.version} at {info.dir}: {info.files} files, "
                      f"{human_bytes(info.bytes)} (pid {info.pid}; 'datastore unmount {info.dir}' ends it)",
                      markup=False, highlight=False, soft_wrap=True)

    guarded(run)


@app.command()
def unmount(
    dir_: Annotated[str, typer.Argument(metavar="DIR", help="The mount directory.")],
    lazy: Annotated[bool, typer.Option("--lazy", help="Detach now even if files are open.")] = False,
) -> None:
    """Unmount a datastore mount (its lease on the version is released)."""

    def run() -> None:
        from datastore.service.mount import unmount as stop

        info = stop(dir_, lazy=lazy)
        if info is None:
            out.print(f"detached a dead mount at {dir_}", markup=False, highlight=False, soft_wrap=True)
        else:
            out.print(f"unmounted {info.name} version {info.version} from {info.dir}", markup=False, highlight=False, soft_wrap=True)

    guarded(run)


@app.command("mounts")
def mounts_(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List this machine's datastore mounts (and the shared block cache's use)."""

    def run() -> None:
        from datastore.service.mount import cache_usage, mounts

        found = mounts()
        usage = cache_usage()
        if as_json:
            print(json.dumps([m.to_json() for m in found], indent=2))
            return
        if not found:
            output.hint(out, err, "no datastore mounts on this machine: mount one with 'datastore mount NAME'")
        else:
            output.rows(out, MOUNT_COLUMNS, [
                (m.name, str(m.version), m.dir, str(m.pid), str(m.files), human_bytes(m.bytes),
                 human_bytes(m.fetched_bytes), str(m.reads), str(m.errors)) for m in found])
        output.hint(out, err, f"block cache: {human_bytes(usage.bytes)} of {human_bytes(usage.limit)} "
                              f"({usage.entries} blocks)")

    guarded(run)


MOUNT_COLUMNS = (Column("name", 100), Column("version", 90), Column("dir", 85, fold=True), Column("pid", 80),
                 Column("files", 40), Column("size", 50), Column("fetched", 30), Column("reads", 20), Column("errors", 60))


@app.command()
def download(
    name: Annotated[str, typer.Argument(help="Datastore name (NAME or NAME@VERSION).")],
    dir_: Annotated[str, typer.Option("--dir", help="Target folder (empty or new).")],
    version: Annotated[Optional[int], typer.Option("--version", parser=version_number,
                                                              help="Version (default: newest live).")] = None,
) -> None:
    """Write a verified read-only copy of a version (independent of the store once written)."""

    def run() -> None:
        from datastore.service.download import download as copy

        n, v = split_ref(name, version)
        done = copy(n, v, dir_)
        out.print(f"downloaded {done.name} version {done.version} to {done.path}: {done.files} files, "
                  f"{human_bytes(done.bytes)}", markup=False, highlight=False, soft_wrap=True)

    guarded(run)


@app.command()
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report what would be reclaimed.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Reclaim data no live version references (after DATASTORE_GC_GRACE seconds, default 1 hour)."""

    def run() -> None:
        from datastore.service.gc import gc as collect

        settings = Settings.from_env()
        done = collect(dry_run=dry_run, settings=settings)
        report, expired = done.report, done.expired_failed_runs
        if as_json:
            print(json.dumps(done.to_json(), indent=2))
            return
        verb = "would reclaim" if dry_run else "reclaimed"
        if dry_run:
            for key in report.reclaimed:
                out.print(f"  {key}", markup=False, highlight=False, soft_wrap=True)
        out.print(f"{verb} {report.objects} objects, {human_bytes(report.bytes)}; kept {report.kept_objects} "
                  f"objects, {human_bytes(report.kept_bytes)}")
        if report.incomplete:
            out.print(f"{'would drop' if dry_run else 'dropped'} {len(report.incomplete)} unfinished writes of "
                      "creations that died (temporary files, multipart uploads)")
        if expired:
            out.print(f"{'would remove' if dry_run else 'removed'} {len(expired)} records of creations that failed "
                      f"more than {settings.failed_retention / 86400:g} days ago")

    guarded(run)


@app.command()
def verify(
    name: Annotated[str, typer.Argument(help="Datastore name (NAME or NAME@VERSION).")],
    version: Annotated[Optional[int], typer.Option("--version", parser=version_number,
                                                              help="Version (default: newest live).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check that every file of a version is still there as recorded (pinned S3 objects too)."""

    def run() -> None:
        from datastore.service.verify import verify as check

        checked = check(*split_ref(name, version))
        r, report = checked.record, checked.report
        if as_json:
            print(json.dumps(report.to_json(), indent=2))
        else:
            for p in report.problems:
                out.print(f"{p.problem:9} {p.path}: {p.detail}", markup=False, highlight=False, soft_wrap=True)
            if report.ok:
                out.print(f"[bold green]ok[/] {r.name} version {r.version}: all {report.files} files verified")
        checked.raise_for_problems()

    guarded(run)


@app.command()
def status(
    name: Annotated[Optional[str], typer.Argument(help="Only this datastore.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as a JSON array.")] = False,
) -> None:
    """Creations in progress (with progress) and recently failed (with the reason).

    Piped, one tab-separated line per creation: name, status, kind, since, flow run id, detail.
    """

    def run() -> None:
        from datastore.service.status import status as collect

        settings = Settings.from_env()
        found = collect(name, settings=settings)
        rows, warning = found.rows, found.warning
        if warning:
            err.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
        if as_json:
            print(json.dumps([r.to_json() for r in rows], indent=2))
            return
        if not rows:
            days = settings.failed_retention / 86400
            output.hint(out, err, f"no creation in progress, and none failed in the last {days:g} days")
            return
        if not out.is_terminal:
            output.rows(out, (), ((r.name, r.status, r.kind or "", r.since, r.flow_run_id or "", r.detail) for r in rows))
            return
        # One line per creation (not a table): reasons are long and must not be cut.
        for r in rows:
            style = "red" if r.status == "failed" else "yellow"
            out.print(f"[bold]{r.name}[/] [{style}]{r.status}[/] ({r.kind or '?'}, started {r.since[:19].replace('T', ' ')} "
                      f"UTC, flow run {r.flow_run_id or '-'}): {escape(r.detail)}", highlight=False, soft_wrap=True)

    guarded(run)


@app.command()
def schedule(
    source: Annotated[Optional[str], typer.Argument(help="Local path (as the worker sees it), s3:// or http(s):// URL.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Datastore name (required to schedule or remove).")] = None,
    cron: Annotated[Optional[str], typer.Option("--cron", help="Cron expression, e.g. '0 3 * * *'.")] = None,
    every: Annotated[Optional[str], typer.Option("--every", help="Interval, e.g. 30m, 6h, 1d.")] = None,
    timezone: Annotated[Optional[str], typer.Option("--timezone", help="IANA time zone of the schedule (default UTC).")] = None,
    no_copy: Annotated[bool, typer.Option("--no-copy", help="Reference S3 objects in place.")] = False,
    credentials: Annotated[Optional[str], typer.Option("--credentials", help="Prefect AwsCredentials block.")] = None,
    always: Annotated[bool, typer.Option("--always", help="Commit a version every run, even if nothing changed.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the scheduled datastores.")] = False,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the schedule of --name.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    worker_path: Annotated[bool, typer.Option("--worker-path", help="SOURCE is a path on the worker's machine: do not check it here.")] = False,
) -> None:
    """Re-upload SOURCE into NAME periodically (a deployment with a schedule on the Prefect server)."""

    def run() -> None:
        from datastore.service import schedule as periodic

        if list_:
            items = periodic.schedules()
            if as_json:
                print(json.dumps([i.to_json() for i in items], indent=2))
            elif not items:
                output.hint(out, err, "no schedules: add one with 'datastore schedule SOURCE --name NAME --every 1d'")
            else:
                output.rows(out, SCHEDULE_COLUMNS,
                            [(i.name, i.schedule, "yes" if i.active else "no", i.source) for i in items])
            return
        if name is None:
            raise UsageError("--name is required", "for example: datastore schedule s3://bucket/data/ --name data --every 1d")
        periodic.check_name(name)
        if remove:
            periodic.unschedule(name)
            out.print(f"removed the schedule of {name} (its versions stay)")
            return
        if source is None:
            raise UsageError("SOURCE is required to schedule", f"for example: datastore schedule ./data --name {name} --every 1d")
        done = periodic.schedule(source, name, cron=cron, every=every, timezone=timezone, no_copy=no_copy,
                                 credentials=credentials, always=always, worker_path=worker_path)
        if as_json:
            print(json.dumps(done.to_json(), indent=2))
        else:
            out.print(f"scheduled {name}: {done.schedule} from {done.source} "
                      f"({'every run commits' if always else 'a version only when the source changed'})", highlight=False)
        if not done.workers_online:
            err.print(f"note: no worker polls the work pool {done.pool!r} now, so the runs will wait in it: "
                      f"'datastore server start' starts one (or: prefect worker start --pool {done.pool})",
                      highlight=False, soft_wrap=True)

    guarded(run)


SCHEDULE_COLUMNS = (Column("name", 100), Column("schedule", 90), Column("active", 40), Column("source", 60, fold=True))

server_app = typer.Typer(help="The local Prefect server and the warm runners of this machine.", no_args_is_help=True)
app.add_typer(server_app, name="server")


@server_app.command("status")
def server_status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Which Prefect server commands use, whether the local one runs, and the warm runners."""

    def run() -> None:
        from datastore.cli import warm
        from datastore.orchestration import local_server, local_stack

        settings = Settings.from_env()
        configured = local_server.configured_api_url()
        local = local_server.running(settings)
        runners = warm.runners(settings)
        worker = local_stack.worker_running(settings)
        if as_json:
            print(json.dumps({"configured_api_url": configured, "local_server": None if local is None else
                              {"url": local.url, "api_url": local.api_url, "pid": local.pid},
                              "worker": None if worker is None else {"pid": worker.pid, "pool": worker.pool,
                                                                     "log": worker.log},
                              "local_server_enabled": settings.local_server, "warm_runners": runners,
                              "warm_enabled": settings.warm}, indent=2))
            return
        if configured:
            out.print(f"Prefect server: {configured} (configured; the local server is not used)", highlight=False)
        elif not settings.local_server:
            out.print("Prefect server: none (DATASTORE_LOCAL_SERVER=0: Prefect's ephemeral mode)", highlight=False)
        if local:
            out.print(f"local server: running at {local.url} (UI), pid {local.pid}, data in "
                      f"{local_server.folder(settings)}", highlight=False)
        else:
            out.print("local server: not running (the next 'datastore create' starts it)" if not configured
                      and settings.local_server else "local server: not running", highlight=False)
        out.print(f"worker: pid {worker.pid} on pool {worker.pool} (log {worker.log})" if worker else
                  "worker: none ('datastore server start' starts one, with the deployments)", highlight=False)
        out.print(f"warm runners: {', '.join(f'pid {p}' for p in runners) if runners else 'none'}"
                  f"{'' if settings.warm else ' (DATASTORE_WARM=0: off)'}", highlight=False)

    guarded(run)


@server_app.command("start")
def server_start() -> None:
    """Start the local Prefect stack: server, work pool, deployments and a worker, in the background.

    Prints the UI and API addresses; the last line, on stdout, is the one ``export`` for Prefect's
    own CLI and scripts (``eval "$(datastore server start)"`` sets it). Each part is started only
    if it is not running; the deployments of ``prefect.yaml`` are applied every time.
    """

    def run() -> None:
        from datastore.orchestration import local_server, local_stack

        settings = Settings.from_env()
        configured = local_server.configured_api_url()
        if configured:
            raise UsageError(f"a Prefect server is configured ({configured}), the local one would not be used",
                             "unset PREFECT_API_URL (and the profile's) to use the local server")
        stack = local_stack.start(settings, on_step=lambda text: err.print(f"note: {text}", highlight=False))
        w = stack.worker
        lines = [f"Prefect UI:   {stack.server.url}",
                 f"Prefect API:  {stack.server.api_url}",
                 f"server:       pid {stack.server.pid}, data in {local_server.folder(settings)}",
                 f"work pool:    {stack.pool}, worker pid {w.pid} "
                 f"({'started' if stack.started_worker else 'already running'}; log {w.log})",
                 f"deployments:  {len(stack.deployments)} ({', '.join(stack.deployments)})",
                 "'datastore server stop' ends them; for Prefect's own CLI and scripts:"]
        for line in lines:
            output.hint(out, err, line)
        print(f"export PREFECT_API_URL={stack.server.api_url}")

    guarded(run)


@server_app.command("stop")
def server_stop() -> None:
    """Stop what 'server start' started: the worker, the warm runners and the local Prefect server."""

    def run() -> None:
        from datastore.cli import warm
        from datastore.orchestration import local_stack

        settings = Settings.from_env()
        worker = local_stack.stop_worker(settings)
        runners, stopped = warm.stop_all(settings)
        if worker:
            out.print(f"stopped the worker (pid {worker.pid})", highlight=False)
        out.print(f"stopped the local server (pid {stopped.pid})" if stopped else "the local server was not running",
                  highlight=False)
        out.print(f"stopped {len(runners)} warm runner{'s' if len(runners) != 1 else ''}", highlight=False)

    guarded(run)


def main(argv: list[str] | None = None) -> None:
    """Run ``datastore ARGV`` (default: ``sys.argv``); usage errors (unknown option, bad value) become one ``error:`` line too, exit 2."""
    try:
        code = app(args=argv, prog_name="datastore", standalone_mode=False)
        sys.stdout.flush()  # here, so a reader that went away is seen by the handler below
    except BrokenPipeError:
        output.quiet_broken_pipe()
    except _UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help was printed: Typer's own exit code
            sys.exit(exc.exit_code)
        err.print(f"error: {usage_line(exc)}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except _ClickException as exc:
        err.print(f"error: {' '.join(exc.format_message().split())}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted", highlight=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)

if __name__ == "__main__":
    main()
