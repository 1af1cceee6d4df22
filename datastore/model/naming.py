"""Datastore names: derived from a source, or validated when given explicitly.

The rule (spec ``004``): lowercase ASCII with no spaces. Concretely a name is 1–64 characters of
``a-z``, ``0-9``, ``-``, ``_`` and ``.``, starting with a letter or digit. Derivation takes the
last path component of the source (the last "directory" for S3, the file for URLs, with archive
suffixes stripped), folds it to ASCII, lowercases it and drops spaces. A derived name longer than
64 characters is refused, not cut: the message suggests ``--name`` with the cut name.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

from datastore.errors import InvalidName

NAME_RULE = (
    "a name is 1-64 characters of lowercase letters a-z, digits, '-', '_' or '.', "
    "starting with a letter or digit (for example 'imagenet-2024')"
)
MAX_LEN = 64
_VALID = re.compile(rf"[a-z0-9][a-z0-9._-]{{0,{MAX_LEN - 1}}}")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip")


def validate_name(name: str) -> str:
    """Return ``name`` unchanged if it follows the rule.

    Raises:
        InvalidName: with the rule in the message.
    """
    if not _VALID.fullmatch(name):
        raise InvalidName(name, NAME_RULE)
    return name


def _last_component(source: str) -> str:
    if "://" in source:
        parts = urlsplit(source)
        path = parts.path
        if parts.scheme in ("http", "https"):
            last = path.rstrip("/").rsplit("/", 1)[-1]
            lower = last.lower()
            for suffix in _ARCHIVE_SUFFIXES:
                if lower.endswith(suffix) and len(last) > len(suffix):
                    return last[: -len(suffix)]
            return last
        # s3://bucket/prefix/ -> last "directory"; s3://bucket -> bucket
        last = path.strip("/").rsplit("/", 1)[-1]
        return last or parts.netloc
    stripped = source.rstrip("/\\") or source
    return re.split(r"[/\\]", stripped)[-1]


def derive_name(source: str) -> str:
    """Derive a datastore name from a source path or URL.

    Examples: ``s3://ryft-public-sample-data/esRedditJson/`` gives ``esredditjson``;
    ``https://host/subfolder/trainingSet.tar.gz`` gives ``trainingset``.

    Raises:
        InvalidName: when nothing usable is left, or the derived name would be longer than
            :data:`MAX_LEN` characters (a silent cut could merge two sources into one name);
            the message asks for ``--name``, in the second case with the cut name to copy.
    """
    raw = _last_component(source)
    ascii_ = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"\s+", "", ascii_).lower()
    # Characters outside the alphabet become '-', runs collapse, and the ends are trimmed so
    # that "My Data (v2)" still gives a usable name rather than an error.
    name = re.sub(r"[^a-z0-9._-]+", "-", name).strip("-._")
    if len(name) > MAX_LEN:
        cut = name[:MAX_LEN].rstrip("-._")
        raise InvalidName(raw, message=f"the name derived from {source!r} would be {len(name)} characters, "
                                       f"longer than the limit of {MAX_LEN}",
                          rule=f"pass --name {cut}")
    if not _VALID.fullmatch(name):
        raise InvalidName(raw, f"pass --name ({NAME_RULE})",
                          message=f"cannot derive a datastore name from {source!r} "
                                  f"(no ASCII letter or digit is left of {raw!r})")
    return name
