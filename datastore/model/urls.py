"""URLs as they may be shown and recorded: never a password, never a signature.

Pure string work, used by records, logs and error messages of every layer.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit


def redact(url: str) -> str:
    """The URL as it may be shown: without ``user:password@`` and without the fragment.

    The query is kept because it may select the file; the fragment is never sent to a server.
    Never raises, so it is safe to use while building an error message about a broken URL.

    Args:
        url: Any string the user passed as a URL.

    Returns:
        The URL with user-info and fragment removed.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    except ValueError:
        # urlsplit rejects some malformed netlocs ("http://[::1/"); strip anything up to an '@'
        # in the authority by hand so a password still never leaks.
        return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@", r"\1", url).split("#", 1)[0]


_SECRET_PARAMS = ("sig", "token", "key", "secret", "pass", "auth", "credential", "session", "x-amz-", "code")


def recorded_url(url: str) -> str:
    """The URL as records, logs and messages show it: no user-info, and the values of query
    parameters that look like secrets (presigned signatures, SAS tokens, API keys) masked.

    The real URL is still what gets downloaded. Never raises, like :func:`redact` (a URL that
    cannot be parsed is shown without its query).
    """
    try:
        parts = urlsplit(redact(url))
    except ValueError:
        return redact(url).split("?", 1)[0]
    if not parts.query:
        return parts.geturl()
    pairs = [(k, "***" if any(m in k.lower() for m in _SECRET_PARAMS) else v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    query = "&".join(f"{quote(k, safe='')}={v if v == '***' else quote(v, safe='')}" for k, v in pairs)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
