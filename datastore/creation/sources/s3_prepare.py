"""Preparing a creation from S3: parse, choose credentials, check the prefix, then the common checks."""

from __future__ import annotations

from datastore.backends import credentials
from datastore.backends.s3_source import S3Source, parse_url
from datastore.creation import pipeline as creation
from datastore.creation.pipeline import CreateJob
from datastore.errors import EmptySource
from datastore.model.naming import derive_name, validate_name
from datastore.settings import Settings

KIND_COPY = "s3-copy"
KIND_REFERENCE = "s3-reference"


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
    chosen = credentials.choose(lambda b: S3Source(loc, b).probe() and None, block)
    src = S3Source(loc, chosen)
    if not src.probe() and not (loc.prefix and src.head(loc.prefix[:-1]) is not None):
        raise EmptySource(loc.url, hint="check the prefix (S3 keys are case-sensitive) or upload files to it")
    detail = {
        "bucket": loc.bucket,
        "prefix": loc.prefix,
        "credentials": chosen,
        "versioned": src.versioned(),
        "no_copy": no_copy,
    }
    return creation.prepare(loc.url, name, KIND_REFERENCE if no_copy else KIND_COPY, settings, detail)
