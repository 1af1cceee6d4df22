"""Which exceptions are Prefect failing (API unreachable, ephemeral server did not start, …).

Recognised by type, never by the words of a message: an exception of Prefect's own types
(``prefect.exceptions``, ``prefect_aws``), an ``httpx`` transport or status error (Prefect's
client speaks httpx; the project's own HTTP code uses requests), or one raised from inside
Prefect's code (its client and ephemeral server raise bare ``RuntimeError``). The exception's
explicit causes count too: Prefect wraps an httpx error in ``RuntimeError("Failed to reach API …")``.
"""

from __future__ import annotations

import sys
from types import TracebackType

_PREFECT_PACKAGES = ("prefect", "prefect_aws")


def _types() -> tuple[type[BaseException], ...]:
    """Prefect's and httpx's exception types, of the modules already loaded (none loaded: none raised)."""
    found: list[type[BaseException]] = []
    exceptions = sys.modules.get("prefect.exceptions")
    if exceptions is not None:
        found += [exceptions.PrefectException, exceptions.PrefectHTTPStatusError]
    httpx = sys.modules.get("httpx")
    if httpx is not None:
        found += [httpx.HTTPError, httpx.InvalidURL]
    return tuple(found)


def _raised_in_prefect(tb: TracebackType | None) -> bool:
    """Whether the innermost frame of ``tb`` is Prefect's code."""
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    module = str(last.tb_frame.f_globals.get("__name__", "")) if last is not None else ""
    return module.split(".")[0] in _PREFECT_PACKAGES


def is_orchestration_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or one of its causes) is Prefect failing rather than the project's code."""
    types = _types()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if (isinstance(current, types) or type(current).__module__.split(".")[0] in _PREFECT_PACKAGES
                or _raised_in_prefect(current.__traceback__)):
            return True
        current = current.__cause__  # an explicit 'raise … from': the context of a bug is no excuse
    return False
