"""Credentials for S3 *sources*: Prefect ``AwsCredentials`` blocks (prefect-aws), by name.

Only the block *name* ever leaves this module (into version records, flow parameters, logs);
the keys stay inside the boto3 client built here. Without a block the default AWS credential
chain is used (environment, profile, instance role), the same one the store uses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

from datastore.backends import s3
from datastore.errors import CredentialsNotFound, SourceAccessDenied


@functools.lru_cache(maxsize=32)
def _block_overrides(block: str) -> tuple[tuple[str, str], ...]:
    """boto3 client arguments from the block ``block`` (cached per process; never logged)."""
    try:
        from prefect_aws import AwsCredentials
    except ImportError as exc:  # pragma: no cover - prefect-aws is a pinned dependency
        raise CredentialsNotFound(block, "prefect-aws is not installed") from exc
    try:
        creds = AwsCredentials.load(block, _sync=True)  # type: ignore[call-arg]
    except ValueError as exc:
        raise CredentialsNotFound(block) from exc
    except Exception as exc:  # noqa: BLE001 - an unreachable API or a block of another type
        # The message of a failed load never contains the secret (it is not loaded yet), but
        # keep only the exception type to be safe.
        raise CredentialsNotFound(block, f"loading it failed: {type(exc).__name__}") from exc
    # get_boto3_session resolves profiles and assumed roles too; freeze what it found.
    try:
        session = creds.get_boto3_session()
        frozen = session.get_credentials()
    except Exception as exc:  # noqa: BLE001 - a missing profile, a failed assume-role …: name the block, not the secret
        raise CredentialsNotFound(block, f"its credentials cannot be resolved: {type(exc).__name__}") from exc
    out: dict[str, str] = {}
    if frozen is not None:
        f = frozen.get_frozen_credentials()
        out["aws_access_key_id"] = f.access_key
        out["aws_secret_access_key"] = f.secret_key
        if f.token:
            out["aws_session_token"] = f.token
    if session.region_name:
        out["region_name"] = session.region_name
    endpoint = creds.aws_client_parameters.endpoint_url if creds.aws_client_parameters else None
    if endpoint:
        out["endpoint_url"] = str(endpoint)
    return tuple(sorted(out.items()))


def client_for(block: str | None):
    """A boto3 S3 client for a source: the block's keys, or the default chain when ``None``.

    Raises:
        CredentialsNotFound: the block does not exist or cannot be loaded.
    """
    if block is None:
        return s3.client()
    return s3.client(**dict(_block_overrides(block)))


def registered_blocks() -> Iterator[str]:
    """Names of the ``AwsCredentials`` blocks registered with the Prefect API (none if unreachable)."""
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            docs = client.read_block_documents_by_type("aws-credentials")
    except Exception:  # noqa: BLE001 - no API or no such block type: simply no candidates
        return iter(())
    return iter(sorted(d.name for d in docs if d.name and not d.is_anonymous))


def choose(probe: Callable[[str | None], None], explicit: str | None) -> str | None:
    """Pick the credentials a source is read with, by trying them.

    ``explicit`` (``--credentials``) must work. Otherwise the default chain is tried first, then
    every registered block in name order; the first that passes ``probe`` wins.

    Args:
        probe: Raises :class:`SourceAccessDenied` when the credentials cannot read the source.
        explicit: A block name the user insisted on.

    Returns:
        The block name, or ``None`` for the default chain.
    """
    if explicit is not None:
        try:
            probe(explicit)
        except SourceAccessDenied as exc:
            raise SourceAccessDenied(exc.location, f"{exc.reason}, with the credentials of block {explicit!r}",
                                     "give that block's keys s3:ListBucket and s3:GetObject on it, "
                                     "or name another block") from None
        return explicit
    try:
        probe(None)
        return None
    except SourceAccessDenied as denied:
        tried = []
        for name in registered_blocks():
            tried.append(name)
            try:
                probe(name)
                return name
            except Exception:  # noqa: BLE001 - any candidate that cannot read the prefix is passed over
                continue
        if tried:
            raise SourceAccessDenied(denied.location, f"{denied.reason}; registered AwsCredentials blocks "
                                     f"{', '.join(tried)} could not read it either") from None
        raise
