"""What every creation flow shares: the run name and the settings it runs with."""

from __future__ import annotations

from dataclasses import replace

from prefect.runtime import flow_run

from datastore.naming import derive_name
from datastore.settings import Settings


def run_name() -> str:
    """``create-<name>`` for the Prefect UI, from the ``name`` or ``source`` parameter."""
    params = flow_run.parameters
    name = params.get("name")
    if not name:
        try:
            name = derive_name(str(params.get("source", "")))
        except Exception:  # noqa: BLE001 - a bad name fails the run itself, with its message
            name = "unnamed"
    return f"create-{name}"


def settings_for(store: str | None) -> Settings:
    """Settings from the environment, with the flow's ``store`` parameter taking precedence."""
    settings = Settings.from_env()
    return replace(settings, store=store) if store else settings
