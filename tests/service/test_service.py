"""The service layer as Python callers use it: what the CLI does, without the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from datastore.errors import VersionInUse
from datastore.orchestration import events
from datastore.reading.verify import verify
from datastore.service import delete as deletion
from datastore.store import leases, open_store, versions
from datastore_flows.local_folder import create_from_local
from tests.conftest import make_tree


@pytest.mark.usefixtures("prefect_api")
def test_service_delete_emits_the_deleted_event_and_reclaims(tmp_path: Path, local_store: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASTORE_LARGE_FILE_BYTES", "1024")  # only-v1.bin becomes an object of its own
    shared = os.urandom(2048)
    # Two source folders: the second creation's staging folder does not protect the first's objects.
    first = make_tree(tmp_path / "first", {"shared.bin": shared, "only-v1.bin": os.urandom(8192)})
    second = make_tree(tmp_path / "second", {"shared.bin": shared, "only-v2.bin": os.urandom(4096)})
    create_from_local(str(first), name="svc")
    create_from_local(str(second), name="svc")
    store = open_store()
    sent: list[tuple[str, str, dict, bool]] = []
    real_emit = events.emit

    def spy(event: str, name: str, payload: dict) -> bool:
        handed = real_emit(event, name, payload)
        sent.append((event, name, payload, handed))
        return handed

    monkeypatch.setattr(events, "emit", spy)

    gone = deletion.delete_version("svc", 1)
    assert gone.numbers == [1] and gone.records[0].deleted_at
    assert gone.objects >= 1 and gone.bytes >= 8192  # what only version 1 used
    assert sent == [(events.DELETED, "svc", {"name": "svc", "version": 1, "digest": gone.records[0].digest,
                                             "deleted_at": gone.records[0].deleted_at, "store": store.url}, True)]
    assert verify(store, versions.read_record(store, "svc", 2)).ok  # the shared file stays
    # The name's artifact history marks version 1 deleted (the UI's Artifacts page for the key).
    assert [(a.description, "svc version 1 — deleted" in a.data, gone.records[0].deleted_at in a.data)
            for a in artifacts_of("datastore-svc") if "deleted" in (a.description or "")] == [
        ("datastore svc version 1 (deleted)", True, True)]

    with leases.acquire(store, "svc", 2, ttl=30), pytest.raises(VersionInUse):
        deletion.delete_all("svc")
    assert len(sent) == 1  # a refused delete announces nothing

    assert deletion.live_versions("svc") == [2]
    rest = deletion.delete_all("svc")
    assert rest.numbers == [2] and rest.bytes >= 4096
    assert [(e, p["version"], handed) for e, _, p, handed in sent[1:]] == [(events.DELETED, 2, True)]
    assert sorted(a.description for a in artifacts_of("datastore-svc")) == [
        "datastore svc version 1", "datastore svc version 1 (deleted)",
        "datastore svc version 2", "datastore svc version 2 (deleted)"]
    assert versions.live_numbers(store, "svc") == []


def artifacts_of(key: str) -> list:
    """Every artifact under ``key`` (the key's history, not only its latest)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def test_import_datastore_installs_the_adapters_without_importing_prefect_or_boto3() -> None:
    code = ("import sys, datastore; from datastore.backends import credentials, runs; "
            "assert credentials._provider is not None and runs._lookup is not None; "
            "print(sorted(m for m in ('prefect', 'prefect_aws', 'boto3') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_orchestration_failures_are_recognised_by_type_not_by_message() -> None:
    import httpx
    from prefect.exceptions import ObjectNotFound

    from datastore.orchestration.failures import is_orchestration_failure

    assert is_orchestration_failure(ObjectNotFound(None))
    assert is_orchestration_failure(httpx.ConnectError("refused"))
    try:
        try:
            raise httpx.ConnectError("refused")
        except httpx.ConnectError as exc:
            raise RuntimeError("Failed to reach API at http://127.0.0.1:1/api") from exc
    except RuntimeError as wrapped:
        assert is_orchestration_failure(wrapped)  # Prefect's wrapper, by its cause
    assert not is_orchestration_failure(ValueError("the Prefect API said no"))  # words are not a type
    assert not is_orchestration_failure(KeyError("API"))
