"""The ``datastore`` command line (Typer + Rich).

Every :class:`DatastoreError` ends the command with one line on stderr and exit code 1; usage
errors exit 2 (Typer's convention). ``--json`` keeps stdout machine-readable.
"""

from __future__ import annotations

from datastore.orchestration import runtime

runtime.configure(quiet=True)

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Annotated, Optional  # noqa: E402

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

from datastore.errors import DatastoreError, OrchestrationError, one_line  # noqa: E402
from datastore.model import progress  # noqa: E402
from datastore.model.kinds import check_options, safe_source  # noqa: E402
from datastore.settings import Settings  # noqa: E402
from datastore.store import (
    open_store,  # noqa: E402
    versions,  # noqa: E402
)

app = typer.Typer(
    name="datastore",
    help="Named, versioned, immutable datasets created by Prefect flows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)


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
    except DatastoreError as exc:
        fail(exc)
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - the one boundary where unknown errors become a line
        if os.environ.get("DATASTORE_DEBUG"):
            raise
        text = one_line(exc)
        if "prefect" in type(exc).__module__ or "Prefect" in text or "API" in text:
            fail(OrchestrationError(text))
        fail(DatastoreError(f"unexpected {type(exc).__name__}: {text}",
                            "run again with DATASTORE_DEBUG=1 for the traceback and report it"))


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _run_with_progress(run: Callable[[], dict], show: bool) -> dict:
    """Run ``run`` while a Rich bar on stderr shows files, bytes and rate (terminals only)."""
    if not show:
        return run()
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn

    state = progress.Progress()
    done = threading.Event()
    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
                   TransferSpeedColumn(), TimeElapsedColumn(), console=err, transient=True)

    def render() -> None:
        task = bar.add_task("scanning", total=None)
        while not done.wait(0.1):
            bar.update(task, description=f"{state.phase} {state.files_done}/{state.files_total} files",
                       completed=state.bytes_done, total=state.bytes_total or None)

    with progress.installed(state), bar:
        t = threading.Thread(target=render, daemon=True)
        t.start()
        try:
            return run()
        finally:
            done.set()
            t.join()


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
) -> None:
    """Create the next version of a datastore from SOURCE."""

    def run() -> None:
        kind = check_options(source, no_copy, credentials)
        show = not as_json and sys.stderr.isatty()
        if timeout is not None and not wait:
            raise DatastoreError("--timeout limits --wait", "add --submit --wait, or drop --timeout")
        if wait and not submit_:
            raise DatastoreError("--wait follows a submitted run", "add --submit, or drop --wait (without --submit "
                                 "the create runs here and always waits)")
        if submit_:
            record = _create_submitted(source, kind, name, no_copy, credentials, wait, as_json, show, timeout)
            if record is None:
                return
        elif kind == "s3":
            record = _create_s3(source, name, no_copy, credentials, show)
        elif kind == "http":
            record = _create_http(source, name, show)
        else:
            record = _create_local(source, name, show)
        if as_json:
            print(json.dumps(record, indent=2))
        else:
            _print_created(record)

    guarded(run)


def _create_local(source: str, name: str | None, show: bool) -> dict:
    from datastore.creation.pipeline import prepare
    from datastore.creation.sources.local import resolve_source

    root = resolve_source(source)
    # Fail fast, before paying Prefect's start-up (seconds). The flow checks again (two small
    # LISTs) on purpose: deployments run it without this CLI, and the quota may change meanwhile.
    prepare(str(root), name, "local", Settings.from_env())
    from datastore_flows.local_folder import create_from_local

    return _run_with_progress(lambda: create_from_local(source=str(root), name=name), show)


def _create_s3(source: str, name: str | None, no_copy: bool, credentials: str | None, show: bool) -> dict:
    from datastore.creation.sources import s3 as s3_job

    settings = Settings.from_env()
    # Fail fast (URL, name, credentials, bucket, prefix, store, quota) before Prefect starts;
    # the block chosen here is handed to the flow so it does not search again.
    job = s3_job.prepare(source, name, no_copy, credentials, settings)
    params = {"source": job.source, "name": name, "credentials": job.source_detail["credentials"]}
    if no_copy:
        from datastore_flows.s3_reference import reference_s3

        return _run_with_progress(lambda: reference_s3(**params), show)
    from datastore_flows.s3_copy import create_from_s3

    return _run_with_progress(lambda: create_from_s3(**params), show)


def _create_http(source: str, name: str | None, show: bool) -> dict:
    from datastore.creation.sources import http as http_job

    # URL, name, store and quota before Prefect starts; addresses are checked at connect time.
    http_job.prepare(source, name, Settings.from_env())
    from datastore_flows.http_archive import create_from_http

    return _run_with_progress(lambda: create_from_http(source=source, name=name), show)


def _create_submitted(source: str, kind: str, name: str | None, no_copy: bool, credentials: str | None,
                      wait: bool, as_json: bool, show: bool, timeout: float | None) -> dict | None:
    """Hand the creation to a worker; with ``wait`` follow it and return the committed record."""
    from datastore.model.kinds import record_kind
    from datastore.model.naming import derive_name, validate_name
    from datastore_deployments.submit import submit
    from datastore_deployments.submit import wait as follow

    settings = Settings.from_env()
    store = open_store(settings.store, settings)
    # Only what can be checked without the worker's view: syntax and the name. Access to the
    # source is the worker's (its credentials, its filesystem), so the worker checks it.
    if kind == "s3":
        from datastore.backends.s3_source import parse_url

        parse_url(source)
    elif kind == "http":
        from datastore.backends.http import check_url

        check_url(source)
    else:
        source = os.path.abspath(os.path.expanduser(source))
    final = validate_name(name) if name is not None else derive_name(source)
    params: dict = {"source": source, "name": final, "store": store.url}
    if kind == "s3":
        params["credentials"] = credentials
    sub = submit(record_kind(kind, no_copy), final, params)
    if not wait:
        if as_json:
            print(json.dumps({"status": "submitted", "name": final, "flow_run_id": sub.flow_run_id,
                              "flow_run_name": sub.flow_run_name, "deployment": sub.deployment, "ui_url": sub.ui_url},
                             indent=2))
        else:
            out.print(f"submitted {sub.flow_run_name} to {sub.deployment}: flow run {sub.flow_run_id}", highlight=False)
            out.print(f"follow it at {sub.ui_url} or with 'datastore status'", highlight=False)
        return None
    if not as_json:
        err.print(f"submitted {sub.flow_run_name} (flow run {sub.flow_run_id}); waiting. UI: {sub.ui_url}",
                  highlight=False)
    last = [""]

    def report(rec) -> None:  # noqa: ANN001
        text = rec.progress_text()
        if show and text != last[0]:
            err.print(f"  {text}", highlight=False)
            last[0] = text

    return follow(store, sub, final, on_progress=report, stale_after=settings.lease_ttl, timeout=timeout,
                  on_notice=lambda text: err.print(f"note: {text}", highlight=False))


def _print_created(r: dict) -> None:
    out.print(
        f"[bold green]created[/] {r['name']} version {r['version']}: {r['files']} files, {human_bytes(r['bytes'])} "
        f"({human_bytes(r['bytes_uploaded'])} uploaded) in {r['duration_s']}s"
    )
    if r.get("skipped"):
        out.print(f"[yellow]skipped {r['skipped']} items[/] (see 'datastore show {r['name']}')")
    out.print(f"digest {r['digest']}")


@app.command("list")
def list_(
    name: Annotated[Optional[str], typer.Argument(help="Only this datastore.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array of version records.")] = False,
) -> None:
    """List datastores and their versions."""

    def run() -> None:
        from datastore.orchestration import status as creations

        settings = Settings.from_env()
        store = open_store(settings.store, settings)
        records = versions.list_records(store, name)
        # Creations in flight and recently failed, from the store only (no Prefect round trip).
        pending = creations.from_store(store, settings, name)
        if as_json:
            print(json.dumps([r.to_json() for r in records] + [p.to_json() for p in pending], indent=2))
            return
        if not records and not pending:
            out.print("no datastores yet: create one with 'datastore create PATH'")
            return
        table = Table()
        for col in ("name", "version", "status", "files", "size", "created (UTC)"):
            table.add_column(col, no_wrap=True)
        table.add_column("source", overflow="fold")
        rows = [(r.name, str(r.version), r.status, str(r.files), human_bytes(r.bytes), r.created_at, f"{r.kind}: {r.source}")
                for r in records]
        rows += [(p.name, "-", p.status, str(p.files), human_bytes(p.bytes), p.since, f"{p.kind}: {p.source}")
                 for p in pending]
        for row in sorted(rows, key=lambda x: (x[0], x[1] == "-", x[5])):
            table.add_row(*row[:5], row[5][:16].replace("T", " "), row[6])
        out.print(table)
        if pending:
            out.print("see 'datastore status' for progress and reasons", style="dim")

    guarded(run)


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="Datastore name.")],
    version: Annotated[Optional[int], typer.Option("--version", help="Version (default: newest live).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the version record as JSON.")] = False,
) -> None:
    """Show the details of one version, including its original source."""

    def run() -> None:
        store = open_store()
        r = versions.resolve(store, name, version)
        if as_json:
            print(json.dumps(r.to_json(), indent=2))
            return
        table = Table(show_header=False, box=None)
        table.add_column(no_wrap=True)
        table.add_column(overflow="fold")  # digests and URLs wrap instead of being cut with "…"
        rows = [
            ("name", r.name), ("version", str(r.version)), ("status", "deleted" if r.deleted_at else r.status),
            ("source", r.source), ("kind", r.kind), *_source_rows(r), ("files", str(r.files)), ("size", f"{human_bytes(r.bytes)} ({r.bytes} bytes)"),
            ("uploaded", f"{human_bytes(r.bytes_uploaded)} ({r.bytes_uploaded} bytes)"), ("digest", r.digest),
            ("created", r.created_at), ("duration", f"{r.duration_s}s"), ("flow run", r.flow_run_id or "-"),
            ("skipped", str(r.skipped)), ("store", store.url),
        ]
        if r.deleted_at:
            rows.append(("deleted", r.deleted_at))
        for k, v in rows:
            table.add_row(f"[bold]{k}[/]", v)
        out.print(table)
        if r.skipped and r.manifest and not r.deleted_at:  # gc may have reclaimed a deleted version's manifest
            _print_skipped(store, r.manifest)

    guarded(run)


def _source_rows(r: versions.VersionRecord) -> list[tuple[str, str]]:
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


def _print_skipped(store, manifest_key: str, limit: int = 20) -> None:  # noqa: ANN001
    from datastore.model.manifest import Skipped
    from datastore.reading.reader import manifest_items

    shown = 0
    for item in manifest_items(store, manifest_key):
        if isinstance(item, Skipped):
            if shown == limit:
                out.print("  …")
                break
            out.print(f"  skipped {item.path}: {item.reason}", markup=False)
            shown += 1


@app.command()
def delete(
    name: Annotated[str, typer.Option("--name", help="Datastore name.")],
    version: Annotated[Optional[int], typer.Option("--version", help="The version to delete.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Delete every version of NAME (asks first).")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask (for scripts).")] = False,
) -> None:
    """Delete one version (immediately; its number is never reused), or every version with --all."""

    def run() -> None:
        from datastore.store import deletion

        if (version is None) == (not all_):
            raise DatastoreError("give either --version N (one version) or --all (every version)",
                                 f"for example: datastore delete --name {name} --version 1")
        store = open_store()
        from datastore.store.gc import reclaim_version

        if version is not None:
            rec = deletion.delete_version(store, name, version)
            _deleted_events(store, [rec])
            freed = reclaim_version(store, rec)
            out.print(f"deleted {rec.name} version {rec.version} "
                      f"(reclaimed {freed.objects} objects only it used, {human_bytes(freed.bytes)})")
            return
        live = versions.live_numbers(store, name)
        if not live:
            from datastore.errors import DatastoreNotFound

            raise DatastoreNotFound(name)
        if not yes:
            if not sys.stdin.isatty():
                raise DatastoreError(f"refusing to delete all {len(live)} versions of {name!r} without confirmation",
                                     "pass --yes to confirm in a script")
            typer.confirm(f"delete all {len(live)} versions of {name!r} ({', '.join(map(str, live))})?", abort=True)
        gone = deletion.delete_all(store, name)
        _deleted_events(store, gone)
        freed = sum(reclaim_version(store, r).bytes for r in gone)
        out.print(f"deleted {name} versions {', '.join(str(r.version) for r in gone)} (reclaimed {human_bytes(freed)})")

    guarded(run)


def _deleted_events(store, gone: list[versions.VersionRecord]) -> None:  # noqa: ANN001
    """``datastore.version.deleted`` per version, when a Prefect server is configured (see notify.api_configured)."""
    from datastore.orchestration import events as notify

    if not notify.api_configured():
        return
    for r in gone:
        notify.emit(notify.DELETED, r.name, {"name": r.name, "version": r.version, "digest": r.digest,
                                             "deleted_at": r.deleted_at, "store": store.url})
    notify.flush()


@app.command()
def mount(
    name: Annotated[str, typer.Argument(help="Datastore name.")],
    version: Annotated[Optional[int], typer.Option("--version", help="Version (default: newest live).")] = None,
    dir_: Annotated[Optional[str], typer.Option("--dir", help="Target folder (default: DATASTORE_MOUNT_DIR/NAME).")] = None,
) -> None:
    """Materialize a read-only copy of a version (checksums verified); deletes are refused while it exists."""

    def run() -> None:
        from pathlib import Path

        from datastore.reading.download import mount as materialize
        from datastore.store import leases

        settings = Settings.from_env()
        store = open_store(settings.store, settings)
        r = versions.resolve(store, name, version)
        dest = Path(dir_) if dir_ else Path(settings.mount_dir) / r.name
        # A process lease while the files are written, then a mount lease that lasts as long as
        # the folder exists (it stops blocking deletes once the folder is removed).
        with leases.acquire(store, r.name, r.version, ttl=settings.lease_ttl):
            summary = materialize(store, r, dest)
            leases.acquire(store, r.name, r.version, ttl=None, mount_path=str(dest.absolute()))
        out.print(f"mounted {r.name} version {r.version} at {dest}: {summary.files} files, {human_bytes(summary.bytes)}")

    guarded(run)


@app.command()
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report what would be reclaimed.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Reclaim data no live version references (after DATASTORE_GC_GRACE seconds, default 1 hour)."""

    def run() -> None:
        from datastore.store import inflight
        from datastore.store.gc import collect

        settings = Settings.from_env()
        store = open_store(settings.store, settings)
        report = collect(store, settings.gc_grace, dry_run=dry_run)
        # Status records of failed creations are kept for DATASTORE_FAILED_RETENTION, then dropped.
        expired = inflight.expire(store, settings.lease_ttl, settings.failed_retention, dry_run=dry_run)
        if as_json:
            print(json.dumps(report.to_json() | {"expired_failed_runs": len(expired)}, indent=2))
            return
        verb = "would reclaim" if dry_run else "reclaimed"
        if dry_run:
            for key in report.reclaimed:
                out.print(f"  {key}", markup=False, highlight=False)
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
    name: Annotated[str, typer.Argument(help="Datastore name.")],
    version: Annotated[Optional[int], typer.Option("--version", help="Version (default: newest live).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check that every file of a version is still there as recorded (pinned S3 objects too)."""

    def run() -> None:
        from datastore.reading.verify import verify as check

        store = open_store()
        r = versions.resolve(store, name, version)
        report = check(store, r)
        if as_json:
            print(json.dumps(report.to_json(), indent=2))
        else:
            for p in report.problems:
                out.print(f"{p.problem:9} {p.path}: {p.detail}", markup=False, highlight=False, soft_wrap=True)
            if report.ok:
                out.print(f"[bold green]ok[/] {r.name} version {r.version}: all {report.files} files verified")
        if not report.ok:
            raise DatastoreError(
                f"{len(report.problems)} of {report.files} files of {r.name} version {r.version} failed verification",
                "restore the objects listed above, or create a new version from the current source")

    guarded(run)


@app.command()
def status(
    name: Annotated[Optional[str], typer.Argument(help="Only this datastore.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as a JSON array.")] = False,
) -> None:
    """Creations in progress (with progress) and recently failed (with the reason)."""

    def run() -> None:
        from datastore.orchestration import status as creations

        settings = Settings.from_env()
        rows, warning = creations.collect(open_store(settings.store, settings), settings, name)
        if warning:
            err.print(f"warning: {warning}", markup=False, highlight=False)
        if as_json:
            print(json.dumps([r.to_json() for r in rows], indent=2))
            return
        if not rows:
            days = settings.failed_retention / 86400
            out.print(f"no creation in progress, and none failed in the last {days:g} days")
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
) -> None:
    """Re-upload SOURCE into NAME periodically (a deployment with a schedule on the Prefect server)."""

    def run() -> None:
        from datastore_deployments import schedule as periodic

        if list_:
            items = periodic.list_all()
            if as_json:
                print(json.dumps([i.to_json() for i in items], indent=2))
            elif not items:
                out.print("no schedules: add one with 'datastore schedule SOURCE --name NAME --every 1d'")
            else:
                table = Table()
                for col in ("name", "schedule", "active"):
                    table.add_column(col, no_wrap=True)
                table.add_column("source", overflow="fold")
                for i in items:
                    table.add_row(i.name, i.schedule, "yes" if i.active else "no", i.source)
                out.print(table)
            return
        if name is None:
            raise DatastoreError("--name is required", "for example: datastore schedule s3://bucket/data/ --name data --every 1d")
        from datastore.model.naming import validate_name

        validate_name(name)
        if remove:
            periodic.remove(name)
            out.print(f"removed the schedule of {name} (its versions stay)")
            return
        if source is None:
            raise DatastoreError("SOURCE is required to schedule", f"for example: datastore schedule ./data --name {name} --every 1d")
        kind = check_options(source, no_copy, credentials)
        sched = periodic.build_schedule(cron, every, timezone)
        src = source if kind != "local" else os.path.abspath(os.path.expanduser(source))
        settings = Settings.from_env()
        dep_id = periodic.upsert(name, src, sched, no_copy=no_copy, credentials=credentials, always=always,
                                 store=open_store(settings.store, settings).url)
        shown = safe_source(src)
        if as_json:
            print(json.dumps({"name": name, "source": shown, "schedule": periodic.describe(sched),
                              "deployment_id": dep_id}, indent=2))
        else:
            out.print(f"scheduled {name}: {periodic.describe(sched)} from {shown} "
                      f"({'every run commits' if always else 'a version only when the source changed'})", highlight=False)

    guarded(run)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
