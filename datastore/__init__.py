"""Datastores on Prefect: named, versioned, immutable datasets.

The core domain lives here (naming, settings, manifest, store, versions); Prefect flows and
tasks that orchestrate it live in the top-level ``flows`` and ``tasks`` packages.
"""

from __future__ import annotations

import datastore.orchestration  # noqa: F401 - installs the Prefect adapters (blocks, flow runs); imports no Prefect
from datastore.errors import DatastoreError
from datastore.settings import Settings

__all__ = ["DatastoreError", "Settings", "__version__", "use_datastore"]
__version__ = "0.1.0"


def __getattr__(attr: str):  # noqa: ANN202 - lazy: keep 'import datastore' free of Prefect and boto3
    if attr == "use_datastore":
        from datastore.reading.use import use_datastore

        return use_datastore
    raise AttributeError(attr)
