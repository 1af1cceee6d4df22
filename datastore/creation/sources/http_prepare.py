"""Preparing a creation from an HTTP(S) archive URL: check the URL, the name, the store, the quota."""

from __future__ import annotations

from datastore.creation import pipeline as creation
from datastore.creation.pipeline import CreateJob
from datastore.model.naming import derive_name, validate_name
from datastore.settings import Settings

KIND = "http-archive"
_SECRET_PARAMS = ("sig", "token", "key", "secret", "pass", "auth", "credential", "session", "x-amz-", "code")


def recorded_url(url: str) -> str:
    """The URL as records, logs and messages show it: no user-info, and the values of query
    parameters that look like secrets (presigned signatures, SAS tokens, API keys) masked.

    The real URL is still what gets downloaded.
    """
    from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

    from datastore.backends.http import redact

    parts = urlsplit(redact(url))
    if not parts.query:
        return parts.geturl()
    pairs = [(k, "***" if any(m in k.lower() for m in _SECRET_PARAMS) else v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    query = "&".join(f"{quote(k, safe='')}={v if v == '***' else quote(v, safe='')}" for k, v in pairs)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def prepare(url: str, name: str | None, settings: Settings) -> CreateJob:
    """Validate an HTTP creation before anything is downloaded.

    The URL is checked for scheme and credentials here; its addresses are checked again on
    every connection and redirect by :mod:`datastore.http_fetch` (DNS can change meanwhile).

    Raises:
        UrlRefused, InvalidName, StoreError, QuotaExceeded.
    """
    from urllib.parse import urlsplit

    from datastore.backends.http import check_url, resolve_checked

    check_url(url)
    clean = recorded_url(url)
    parts = urlsplit(url)
    # Fail fast on a forbidden address (metadata, private); the download checks every hop again.
    resolve_checked(parts.hostname or "", parts.port or (443 if parts.scheme.lower() == "https" else 80),
                    settings.http_allow_private, url=clean)
    name = validate_name(name) if name is not None else derive_name(clean)
    return creation.prepare(clean, name, KIND, settings, {"url": clean})
