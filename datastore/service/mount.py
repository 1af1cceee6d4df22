"""Mounting versions (``datastore mount`` / ``unmount`` / ``mounts``): see :mod:`datastore.reading.mount`."""

from __future__ import annotations

from datastore.reading.mount import MountInfo, mount, mounts, unmount
from datastore.reading.cache import BlockCache, CacheUsage
from datastore.settings import Settings
from pathlib import Path

__all__ = ["MountInfo", "cache_usage", "mount", "mounts", "unmount"]


def cache_usage(settings: Settings | None = None) -> CacheUsage:
    """How much of the machine's block cache (shared by all mounts) is in use."""
    settings = settings or Settings.from_env()
    return BlockCache(Path(settings.cache_dir) / "blocks", settings.cache_bytes).usage()
