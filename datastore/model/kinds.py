"""Which creation path a SOURCE argument takes, and which options go with it."""

from __future__ import annotations

import enum
import re

from datastore.errors import InvalidSource


class Kind(str, enum.Enum):
    """A version's creation path, as its record stores it (``kind``)."""

    LOCAL = "local"
    S3_COPY = "s3-copy"
    S3_REFERENCE = "s3-reference"
    HTTP_ARCHIVE = "http-archive"

    def __str__(self) -> str:  # in f-strings and records: the stored value, not "Kind.LOCAL"
        return self.value


KIND_OF = {"local": Kind.LOCAL, "http": Kind.HTTP_ARCHIVE}  # s3 depends on --no-copy


def source_kind(source: str) -> str:
    """``local``, ``s3`` or ``http`` for a SOURCE argument.

    Raises:
        InvalidSource: an unknown URL scheme.
    """
    lower = source.lower()
    if lower.startswith("s3:"):  # malformed forms (s3:/x) too, so they get the S3 URL message
        return "s3"
    if lower.startswith(("http://", "https://")):
        return "http"
    if "://" in source:
        scheme = source.split("://", 1)[0]
        raise InvalidSource(source, f"unsupported scheme {scheme!r}",
                            "use a local path, s3://bucket/prefix/ or an http(s):// URL of an archive")
    return "local"


def check_options(source: str, no_copy: bool, credentials: str | None) -> str:
    """The source kind, after refusing options that do not apply to it.

    Raises:
        InvalidSource: an unknown scheme, or ``--no-copy`` / ``--credentials`` for a non-S3 source.
    """
    kind = source_kind(source)
    if kind != "s3" and (no_copy or credentials):
        raise InvalidSource(source, "--no-copy and --credentials apply to s3:// sources only",
                            "drop the option for a local path or an http(s):// URL")
    return kind


def record_kind(kind: str, no_copy: bool) -> Kind:
    """The version record's :class:`Kind` for a SOURCE argument's kind (``local``, ``s3``, ``http``)."""
    if kind == "s3":
        return Kind.S3_REFERENCE if no_copy else Kind.S3_COPY
    return KIND_OF[kind]


def safe_source(source: str) -> str:
    """``source`` as status records may show it before it is validated (no secrets in URLs).

    Never raises: this runs in bookkeeping and display code, where a malformed URL must not
    replace the real error (the creation reports that itself).
    """
    try:
        if source.lower().startswith(("http://", "https://")):
            from datastore.model.urls import recorded_url

            return recorded_url(source)
        scheme, sep, rest = source.partition("://")
        if sep and "@" in rest.split("/", 1)[0]:  # keys pasted into an s3:// URL: never recorded
            return f"{scheme}://{rest.split('@', 1)[1]}"
        return source
    except Exception:  # noqa: BLE001 - see above
        return source.split("://", 1)[0] + "://<unparseable URL>" if "://" in source else "<unparseable source>"


_URL = re.compile(r"(?:https?|s3)://[^\s'\"<>]+", re.IGNORECASE)


def mask_urls(text: str) -> str:
    """``text`` with every URL in it passed through :func:`safe_source` (signed query values masked)."""
    return _URL.sub(lambda m: safe_source(m.group(0)), text)
