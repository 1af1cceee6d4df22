"""Prefect's defaults reach Prefect before it reads its settings, from every entry point."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _run(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DO_NOT_TRACK"))}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_the_cli_imports_no_prefect_so_its_defaults_come_first():
    proc = _run("import sys, datastore.cli.app\n"
                "assert 'prefect' not in sys.modules, 'the CLI imported Prefect before runtime.configure'\n")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("module", ["datastore_flows.local_folder", "datastore_flows.periodic",
                                    "datastore_deployments.serve"])
def test_a_flow_module_imported_first_gets_the_defaults(module):
    proc = _run(f"import {module}\n"
                "from prefect.settings import get_current_settings\n"
                "s = get_current_settings()\n"
                "assert s.server.analytics_enabled is False, s.server.analytics_enabled\n"
                "assert s.server.ephemeral.startup_timeout_seconds == 120, s.server.ephemeral.startup_timeout_seconds\n")
    assert proc.returncode == 0, proc.stderr[-2000:]
