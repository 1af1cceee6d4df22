"""prefect.yaml, deployments/serve.py and the CLI agree on deployment names and entrypoints."""

from __future__ import annotations

import importlib

import yaml

from datastore_deployments.names import CREATION, PERIODIC_ENTRYPOINT, PERIODIC_FLOW, REPO


def _flow_of(entrypoint: str):  # noqa: ANN202
    path, attr = entrypoint.split(":")
    return getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), attr)


def test_every_creation_kind_has_a_deployment_in_prefect_yaml_with_the_names_the_cli_uses() -> None:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    declared = {d["name"]: d for d in spec["deployments"]}
    for kind, (flow_name, deployment, entrypoint) in CREATION.items():
        assert declared[deployment]["entrypoint"] == entrypoint, kind
        assert _flow_of(entrypoint).name == flow_name  # submit looks up "<flow name>/<deployment>"
        assert kind in declared[deployment]["tags"] and "datastore" in declared[deployment]["tags"]
    periodic = [d for d in spec["deployments"] if d["entrypoint"] == PERIODIC_ENTRYPOINT]
    assert periodic and _flow_of(PERIODIC_ENTRYPOINT).name == PERIODIC_FLOW
    assert periodic[0]["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}


def test_serve_offers_the_same_deployments() -> None:
    from datastore_deployments import serve

    assert set(serve.FLOWS) == set(CREATION)
    for kind, fn in serve.FLOWS.items():
        assert fn.name == CREATION[kind][0]
