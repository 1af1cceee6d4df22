"""Prefect ``AwsCredentials`` blocks (prefect-aws) as the source of named S3 credentials.

Installed into :mod:`datastore.backends.credentials` by ``import datastore.orchestration``;
Prefect itself is imported only when a block is first loaded or listed.
"""

from __future__ import annotations

from datastore.errors import CredentialsNotFound
from datastore.orchestration import local_server
from datastore.orchestration.imports import importing


class PrefectBlocks:
    """A :class:`datastore.backends.credentials.BlockProvider` over the Prefect API's blocks."""

    def client_arguments(self, block: str) -> dict[str, str]:
        """boto3 client arguments from the block ``block`` (never logged).

        Raises:
            CredentialsNotFound: the block does not exist, cannot be loaded, or its credentials
                cannot be resolved (the reason names the exception type, never the secret).
        """
        local_server.adopt()  # out of the box, the blocks are on the local server
        try:
            with importing:
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
        return out

    def names(self) -> list[str]:
        """Names of the ``AwsCredentials`` blocks registered with the Prefect API (none if unreachable)."""
        local_server.adopt()
        try:
            with importing:
                from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as client:
                docs = client.read_block_documents_by_type("aws-credentials")
        except Exception:  # noqa: BLE001 - no API or no such block type: simply no candidates
            return []
        return sorted(d.name for d in docs if d.name and not d.is_anonymous)
