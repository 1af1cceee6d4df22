"""Credentials for S3 *sources*: ``AwsCredentials`` blocks by name, or the default AWS chain.

Only the block *name* ever leaves this module (into version records, flow parameters, logs);
the keys stay inside the boto3 client built here. Without a block the default AWS credential
chain is used (environment, profile, instance role), the same one the store uses.

Blocks are Prefect's (prefect-aws), and only :mod:`datastore.orchestration` talks to Prefect: it
installs a :class:`BlockProvider` here (see :func:`install`) that loads a block's client
arguments and lists the registered names. This module keeps what is not Prefect's: choosing
credentials by probing and building clients from keys.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Protocol

from datastore.errors import CredentialsNotFound, SourceAccessDenied


class BlockProvider(Protocol):
    """Where named credentials come from (installed by :mod:`datastore.orchestration.credentials`)."""

    def client_arguments(self, block: str) -> dict[str, str]:
        """boto3 client arguments (keys, region, endpoint) of ``block``.

        Raises:
            CredentialsNotFound: no such block, or it cannot be loaded or resolved.
        """
        ...

    def names(self) -> list[str]:
        """Names of the registered blocks, sorted (empty when the registry cannot be asked)."""
        ...


_provider: BlockProvider | None = None


def install(provider: BlockProvider | None) -> None:
    """Make ``provider`` the source of named credentials (``None`` uninstalls it)."""
    global _provider
    _provider = provider
    _block_overrides.cache_clear()


@functools.lru_cache(maxsize=32)
def _block_overrides(block: str) -> tuple[tuple[str, str], ...]:
    """boto3 client arguments from the block ``block`` (cached per process; never logged)."""
    if _provider is None:
        raise CredentialsNotFound(block, "no credentials provider is installed (import datastore.orchestration)")
    return tuple(sorted(_provider.client_arguments(block).items()))


def client_for(block: str | None):
    """A boto3 S3 client for a source: the block's keys, or the default chain when ``None``.

    Raises:
        CredentialsNotFound: the block does not exist or cannot be loaded.
    """
    from datastore.backends import s3  # boto3 is imported by the first client, not by 'import datastore'

    if block is None:
        return s3.client()
    return s3.client(**dict(_block_overrides(block)))


def registered_blocks() -> Iterator[str]:
    """Names of the registered ``AwsCredentials`` blocks, sorted (none without a provider or registry)."""
    return iter(_provider.names() if _provider is not None else ())


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
