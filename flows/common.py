"""What every creation flow shares (run name, settings, monitoring): see :mod:`datastore.orchestration.monitor`."""

from __future__ import annotations

from datastore.orchestration.monitor import Monitor, display_name, monitored, run_name, settings_for

__all__ = ["Monitor", "display_name", "monitored", "run_name", "settings_for"]
