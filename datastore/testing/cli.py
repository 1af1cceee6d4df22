"""Run the ``datastore`` console script in a subprocess, optionally without root's file powers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

DATASTORE = str(Path(sys.executable).parent / "datastore")
# Root bypasses file permissions through these two capabilities; dropping them from the
# bounding set makes mode bits count again, so "unreadable file" tests mean something as root.
_DROP = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def can_drop_privileges() -> bool:
    """Whether permission tests can run: not root, or root with setpriv (util-linux)."""
    return os.geteuid() != 0 or shutil.which("setpriv") is not None


def _cmd(args: tuple[str, ...], restricted: bool) -> list[str]:
    prefix = _DROP if restricted and os.geteuid() == 0 else []
    return [*prefix, DATASTORE, *args]


def run_cli(*args: str, env: dict[str, str], restricted: bool = False, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``datastore ARGS`` and capture its output (text)."""
    return subprocess.run(_cmd(args, restricted), env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def popen_cli(*args: str, env: dict[str, str], restricted: bool = False) -> subprocess.Popen:
    """Start ``datastore ARGS`` without waiting."""
    return subprocess.Popen(_cmd(args, restricted), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
