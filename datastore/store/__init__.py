"""The store: one interface over a local directory and an S3 bucket prefix (see :mod:`datastore.store.base`)."""

from __future__ import annotations

from datastore.errors import ConfigError
from datastore.settings import Settings
from datastore.store.base import DATA_PREFIX, BlobWriter, ObjectInfo, Store
from datastore.store.local import LocalStore
from datastore.store.s3 import S3Store

__all__ = ["DATA_PREFIX", "BlobWriter", "LocalStore", "ObjectInfo", "S3Store", "Store", "open_store"]


def open_store(url: str | None = None, settings: Settings | None = None) -> Store:
    """Open the store named by ``url`` (default: ``DATASTORE_STORE`` or the embedded store)."""
    settings = settings or Settings.from_env()
    url = url or settings.store
    if url.startswith("s3://") or url.startswith("S3://"):
        return S3Store("s3://" + url[5:], settings)
    if "://" in url:
        raise ConfigError("DATASTORE_STORE", url, f"has an unknown scheme {url.split('://', 1)[0]!r}",
                          "set DATASTORE_STORE to a local path or s3://bucket/prefix")
    return LocalStore(url)
