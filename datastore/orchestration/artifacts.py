"""The Prefect artifacts of a datastore: one key per name (``datastore-<name>``), one entry per event.

The key's history in the UI (Artifacts → ``datastore-<name>``) is the datastore's story: an
entry when a version is committed (its details: source, files, size, digest …) and an entry
when one is deleted, each described as ``datastore NAME version N`` (``… (deleted)``) so that
the history reads by version, not by artifact id.

Like events, an artifact never fails the operation it records: the version is committed (or
deleted) whether or not the artifact got out.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import TYPE_CHECKING

from datastore.orchestration.imports import importing

if TYPE_CHECKING:
    from datastore.store.versions import VersionRecord

log = logging.getLogger(__name__)


def key(name: str) -> str:
    """``datastore-<name>``, in the alphabet Prefect allows for artifact keys (a-z, 0-9, '-')."""
    return "datastore-" + re.sub(r"[^a-z0-9-]", "-", name)


def _table(rows: list[tuple[str, object]]) -> str:
    body = "\n".join(f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows)
    return f"| | |\n|---|---|\n{body}\n"


def _create(name: str, markdown: str, description: str) -> None:
    with importing:
        from prefect.artifacts import create_markdown_artifact

    # A CLI delete runs outside any flow run: Prefect 3.8 stores such an artifact (run-less) but
    # warns that it may stop doing so; the warning would break the command's one-line output.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Artifact creation outside of a flow or task run", FutureWarning)
        create_markdown_artifact(key=key(name), markdown=markdown, description=description)


def committed(r: VersionRecord) -> None:
    """The committed version's details (what ``datastore show`` prints).

    Raises:
        Exception: whatever Prefect raises; the caller decides (the version stands either way).
    """
    d = r.source_detail or {}
    rows: list[tuple[str, object]] = [
        ("name", r.name), ("version", r.version), ("source", r.source), ("kind", r.kind),
        ("files", f"{r.files:,}"), ("bytes", f"{r.bytes:,}"), ("uploaded bytes", f"{r.bytes_uploaded:,}"),
        ("digest", f"`{r.digest}`"), ("skipped items", r.skipped), ("duration", f"{r.duration_s} s"),
        ("throughput", f"{r.bytes / max(r.duration_s or 0, 1e-3) / 2**20:.1f} MiB/s")]
    rows += [(k.replace("_", " "), v) for k, v in d.items() if v not in (None, "") and k not in ("url",)]
    _create(r.name, f"### {r.name} version {r.version}\n\n{_table(rows)}",
            f"datastore {r.name} version {r.version}")


def deleted(records: list[VersionRecord]) -> None:
    """One "deleted" entry per deleted version, under the name's key, when a Prefect server is configured.

    Best-effort and logged. Callers record it last (after the events and the reclaim): it is
    what the UI shows, and a slow Prefect API must not hold up what automations and the store need.
    """
    from datastore.orchestration.events import api_configured

    if not api_configured():
        return
    for r in records:
        rows: list[tuple[str, object]] = [
            ("name", r.name), ("version", r.version), ("status", "deleted"), ("deleted at", r.deleted_at),
            ("created at", r.created_at), ("source", r.source), ("files", f"{r.files:,}"),
            ("digest", f"`{r.digest}`")]
        text = (f"### {r.name} version {r.version} — deleted\n\nDeleted at {r.deleted_at}. Its number is never "
                f"reused; every other version of {r.name} is unchanged.\n\n{_table(rows)}")
        try:
            _create(r.name, text, f"datastore {r.name} version {r.version} (deleted)")
        except Exception as exc:  # noqa: BLE001 - see the module docstring
            log.warning("could not record the deletion of %s version %d as an artifact: %s", r.name, r.version, exc)
