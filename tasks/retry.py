"""Retry policy shared by every task: retry transient failures only."""

from __future__ import annotations

from datastore.errors import is_transient


def transient_only(task, task_run, state) -> bool:  # noqa: ANN001 - Prefect's callback signature
    """Prefect ``retry_condition_fn``: retry when the failure may go away (network, 5xx).

    A terminal error (bad input, permission denied, quota) fails at once with its message
    instead of being retried into the same answer.
    """
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:  # noqa: BLE001 - an unreadable state is retried, to be safe
            return True
    return is_transient(exc) if isinstance(exc, BaseException) else True


RETRIES = 3
RETRY_DELAYS = [1, 4, 10]
