"""Everything that talks to Prefect: runtime defaults, events, flow runs, blocks, the flow Monitor.

This is the only part of ``datastore`` that imports ``prefect`` or ``prefect_aws`` (import-linter
keeps it so). Importing the package installs its adapters into the ports of the layers below
(:mod:`datastore.backends.credentials` for ``AwsCredentials`` blocks, :mod:`datastore.backends.runs`
for the flow run a lease names); ``import datastore`` does that, so every entry point has them.
Prefect itself is imported only when one of them is first used.
"""

from __future__ import annotations

from datastore.backends import credentials as _credentials
from datastore.backends import runs as _runs
from datastore.orchestration.credentials import PrefectBlocks
from datastore.orchestration.runs import PrefectRuns

_credentials.install(PrefectBlocks())
_runs.install(PrefectRuns())
