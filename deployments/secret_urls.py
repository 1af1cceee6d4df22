"""A signed URL handed to a worker through a Prefect ``Secret`` block, never as a parameter.

Prefect keeps a flow run's parameters, and a deployment's, in plain text (database, API, UI).
A run in this process can pass a signed URL as a ``SecretStr`` parameter, which Prefect stores
masked; a run created for a worker cannot, since the worker would get the mask. So ``--submit``
and ``schedule`` store the real URL in a ``Secret`` block (Prefect encrypts block data at rest
and the UI shows it obfuscated) and pass the block's name; the flow loads it on the worker. The
``source`` parameter keeps the URL as records show it (signature masked).

A one-off block (``--submit``) is deleted by the run that used it once that run has committed
(a failed run keeps it, so that a retry from the UI can still fetch); a schedule's block lives
as long as the schedule and is replaced with it.
"""

from __future__ import annotations

import hashlib
import uuid

PREFIX = "datastore-url-"
ONE_OFF = f"{PREFIX}run-"


def schedule_block(name: str) -> str:
    """The block holding the signed URL of the schedule of datastore ``name`` (a block name
    allows only lowercase letters, digits and dashes, a datastore name also ``.`` and ``_``)."""
    return f"{PREFIX}schedule-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def stash(url: str, block: str | None = None) -> str:
    """Save ``url`` as a ``Secret`` block and return the block's name.

    Args:
        url: The real (signed) URL.
        block: The block name; a new one-off name when omitted (``--submit``).
    """
    from prefect.blocks.system import Secret

    block = block or f"{ONE_OFF}{uuid.uuid4().hex[:16]}"
    Secret(value=url).save(block, overwrite=True)
    return block


def load(block: str, shown: str) -> str:
    """The URL saved in ``block``; ``shown`` is the run's ``source`` (signature masked).

    Raises:
        InvalidSource: the block is gone (a one-off URL already used by a run that committed).
    """
    from prefect.blocks.system import Secret

    from datastore.errors import InvalidSource

    try:
        return str(Secret.load(block, _sync=True).get())  # type: ignore[call-arg]
    except ValueError:
        raise InvalidSource(shown, f"its signed URL (Prefect Secret block {block!r}) no longer exists",
                            "submit the create again with the URL") from None


def drop(block: str) -> None:
    """Delete ``block`` if it exists (a one-off URL after its run committed, a removed schedule's)."""
    from prefect.blocks.system import Secret

    try:
        Secret.delete(block)
    except ValueError:
        pass  # already gone
