"""What the two S3 creation paths share: preparing the job, opening the source, listing it.

Copy (:mod:`~datastore.creation.sources.s3_copy`) and reference (``--no-copy``,
:mod:`~datastore.creation.sources.s3_reference`) differ only in what they do with the listing.
"""

from __future__ import annotations

from collections.abc import Iterator

from datastore.backends import credentials
from datastore.backends.s3_source import Listed, S3Source, parse_url, source_of
from datastore.creation import pipeline as creation
from datastore.creation.pipeline import CreateJob
from datastore.errors import EmptySource
from datastore.model.details import S3Detail
from datastore.model.kinds import Kind
from datastore.model.naming import derive_name, validate_name
from datastore.settings import Settings

EMPTY_HINT = "check the prefix (S3 keys are case-sensitive) or upload files to it"


def prepare(url: str, name: str | None, no_copy: bool, block: str | None, settings: Settings) -> CreateJob:
    """Validate an S3 creation before any data moves.

    Order: the URL and the name (no network), then the source (credentials chosen by trying
    them, bucket exists, prefix not empty), then the store and the quota.

    Args:
        url: ``s3://bucket/prefix/``.
        name: Explicit ``--name`` or ``None`` to derive it.
        no_copy: Reference the objects in place instead of copying them.
        block: ``--credentials`` block name, or ``None`` (default chain, then registered blocks).
        settings: Settings.

    Raises:
        InvalidSource, InvalidName, SourceNotFound, SourceAccessDenied, CredentialsNotFound,
        EmptySource, StoreError, QuotaExceeded.
    """
    loc = parse_url(url)
    name = validate_name(name) if name is not None else derive_name(loc.url)
    found: dict[str | None, bool] = {}  # whether the prefix has objects, per credentials tried

    def probe(b: str | None) -> None:
        found[b] = S3Source(loc, b).probe()

    chosen = credentials.choose(probe, block)  # the LIST that chose them also answers "empty?"
    src = S3Source(loc, chosen)
    if not found[chosen] and not (loc.prefix and src.head(loc.prefix[:-1]) is not None):
        raise EmptySource(loc.url, hint=EMPTY_HINT)
    detail = S3Detail(bucket=loc.bucket, prefix=loc.prefix, credentials=chosen, versioned=src.versioned(),
                      no_copy=no_copy)
    return creation.prepare(loc.url, name, Kind.S3_REFERENCE if no_copy else Kind.S3_COPY, settings, detail)


def detail_of(job: CreateJob) -> S3Detail:
    """The job's S3 detail (a programming error for a job of another kind)."""
    if not isinstance(job.detail, S3Detail):
        raise TypeError(f"not an S3 creation: {job.kind}")
    return job.detail


def open_source(job: CreateJob) -> S3Source:
    """The prefix the job reads, with the credentials :func:`prepare` chose."""
    return source_of(detail_of(job))


def listed(src: S3Source, job: CreateJob, settings: Settings) -> Iterator[Listed]:
    """The prefix's files (by VersionId in a versioned bucket) and skipped keys, in path order."""
    return src.files(detail_of(job).versioned, settings.list_run)
