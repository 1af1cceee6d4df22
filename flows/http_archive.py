"""Flow: create a datastore version from an HTTP(S) ``.zip`` / ``.tar.gz`` / ``.tgz`` / ``.tar`` URL.

download (1 task: streamed, retried, resumed with Range/If-Range) → extract (1 task: format by
magic bytes, every member checked) → the local pipeline on the extracted folder (scan, transfer
batches, commit). The datastore holds the archive's contents, not the archive. An archive
byte-identical to the one the previous version came from reuses that version's manifest.
"""

from __future__ import annotations

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import SecretStr

from datastore.creation.sources import http
from datastore.errors import is_transient
from datastore.model.kinds import Kind
from datastore_deployments import secret_urls
from datastore_flows.common import monitored, reported, run_name, settings_for, worker_refusals
from datastore_flows.pipeline import run_batched
from datastore_tasks.commit import commit_version
from datastore_tasks.http_archive import download_archive, extract_archive
from datastore_tasks.local import scan_local, transfer_local


# Batches in flight are bounded by settings.workers in run_batched, read when the run starts.
@flow(name="datastore-create-http-archive", flow_run_name=run_name, task_runner=ThreadPoolTaskRunner())
@reported
def create_from_http(source: str, name: str | None = None, store: str | None = None,
                     if_changed: bool = False, url: SecretStr | None = None, url_block: str | None = None) -> dict:
    """Create the next version of a datastore from the contents of an archive at ``source``.

    Args:
        source: ``http://`` or ``https://`` URL of a ``.zip``, ``.tar.gz``, ``.tgz`` or ``.tar``.
        name: Datastore name; derived from the file name without archive suffixes when omitted.
        store: Store location; ``DATASTORE_STORE`` or the embedded default when omitted.
        if_changed: Commit only if the contents differ from the newest version (periodic runs).
        url: The real URL when ``source`` shows it with secret query values masked (a presigned
            URL): Prefect stores this parameter masked, so the signature never reaches its database.
        url_block: Instead of ``url``, for a run on a worker (``--submit``, ``schedule``): the
            Prefect Secret block holding the real URL (see :mod:`datastore_deployments.secret_urls`).

    Returns:
        The committed version record; ``source_detail`` has the URL, ETag, Last-Modified and the
        archive's sha256.
    """
    settings = settings_for(store)
    if url is not None:
        source = url.get_secret_value()
    elif url_block is not None:
        source = secret_urls.load(url_block, source)
    with monitored(Kind.HTTP_ARCHIVE, source, name, settings) as mon, worker_refusals():
        job = mon.started(http.prepare(source, name, settings))
        try:
            mon.phase("downloading")
            info = download_archive(job, settings, source, progress=mon.progress)
            job = http.with_archive(job, info)
            same = http.previous_same_archive(job, info.archive_sha256, settings)
            if same is not None:
                mon.phase("committing")
                record = commit_version(job, [same], 0, settings, if_changed)
            else:
                mon.phase("extracting", reset=True)
                root = extract_archive(job, info, settings)
                record = run_batched(mon, job, settings, scan=scan_local, transfer=transfer_local,
                                     if_changed=if_changed, spread=False, root=root)
        except Exception as exc:
            # A refused source (empty, unsafe, not an archive) leaves nothing behind; a transient
            # failure keeps the partial download so that running the create again resumes it.
            if not is_transient(exc):
                http.cleanup(job, settings)
            http.release(job)
            raise
        http.cleanup(job, settings)
        if url_block is not None and url_block.startswith(secret_urls.ONE_OFF):
            secret_urls.drop(url_block)  # used: a one-off signed URL does not outlive its run
        return record
