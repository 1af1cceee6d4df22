"""Where things live inside a store (one place, so every module agrees).

::

    names/<name>/versions/<0000000001>.json   version record; written once, put-if-absent
    names/<name>/deleted/<0000000001>.json    tombstone of a deleted version (its record stays,
                                              so its number can never be allocated again)
    names/<name>/leases/<0000000001>/<id>.json a reader's lease on a version (blocks delete)
    manifests/<uuid>.jsonl.gz                 immutable manifest of one version
    manifests/<uuid>.toc.json                 where each part of that manifest starts (lookups)
    manifests/<uuid>.index-<sha256>.sqlite    the tree index of that manifest, for large versions
                                              (a mount downloads it instead of building it)
    data/p-<address>                          a pack of small files (address: sha256 over its
                                              members' sizes and sha256s, which fix its bytes)
    data/<sha256>                             one large file (local store)
    data/u-<uuid>                             one large file uploaded by multipart (S3)
    data/c-<id>                               one large file copied server-side from an S3 source
                                              (id: sha256 of bucket, key, ETag, VersionId)
    staging/<name>/<source-id>/plans/…        batch plans written by the scan task
    staging/<name>/<source-id>/batches/…      finished batch manifests (resume; gc'd later)
    runs/<run-id>.json                        a creation in flight or recently failed (status)
"""

from __future__ import annotations

import hashlib

NAMES = "names/"
RUNS = "runs/"
DATA = "data/"
MANIFESTS = "manifests/"
STAGING = "staging/"


def record_key(name: str, version: int) -> str:
    """Key of the version record of ``name`` version ``version``."""
    return f"{NAMES}{name}/versions/{version:010d}.json"


def tombstone_key(name: str, version: int) -> str:
    """Key of the deletion marker of a version."""
    return f"{NAMES}{name}/deleted/{version:010d}.json"


def lease_prefix(name: str, version: int) -> str:
    """Prefix of the leases held on one version."""
    return f"{NAMES}{name}/leases/{version:010d}/"


def run_key(run_id: str) -> str:
    """Key of the status record of one creation run (see :mod:`datastore.inflight`)."""
    return f"{RUNS}{run_id}.json"


def manifest_key(create_id: str) -> str:
    """Key of the manifest written by one creation."""
    return f"{MANIFESTS}{create_id}.jsonl.gz"


def manifest_toc_key(create_id: str) -> str:
    """Key of the table of contents of that manifest (where each of its parts starts)."""
    return f"{MANIFESTS}{create_id}.toc.json"


def manifest_index_key(create_id: str, sha256: str) -> str:
    """Key of the tree index of that manifest (:mod:`datastore.store.index`), stored by large versions' commits.

    Named by its content too: a commit run again (its first answer lost) that built different
    bytes writes another object, never replaces the one a committed record names.
    """
    return f"{MANIFESTS}{create_id}.index-{sha256}.sqlite"


def source_id(kind: str, source: str) -> str:
    """A short stable id of a source, so a re-run of the same create finds its staged work."""
    return hashlib.sha256(f"{kind}\0{source}".encode()).hexdigest()[:20]


def staging_prefix(name: str, kind: str, source: str) -> str:
    """Prefix of everything a creation of ``name`` from ``source`` stages before commit."""
    return f"{STAGING}{name}/{source_id(kind, source)}/"


def staging_folder(key: str) -> str:
    """The creation folder ``staging/<name>/<source-id>/`` a staging object belongs to."""
    return "/".join(key.split("/")[:3]) + "/"


def is_plan_key(key: str) -> bool:
    """Whether a staging object is a batch plan (the other staging objects are batch manifests)."""
    return "/plans/" in key


def pack_key(address: str) -> str:
    """Key of a pack of small files (``address``: see :func:`datastore.creation.packer.pack_address`)."""
    return f"{DATA}p-{address}"


def blob_key(sha256: str) -> str:
    """Key of a large file stored under its own sha256 (local store)."""
    return f"{DATA}{sha256}"


def upload_key(upload_id: str) -> str:
    """Key of a large file uploaded by multipart (S3 store): unique, since the sha256 is known only at the end."""
    return f"{DATA}u-{upload_id}"


def copy_key(bucket: str, pin: dict) -> str:
    """Key of a server-side copy of a pinned S3 object: derived from the pin, so a retry reuses it."""
    ident = "\0".join([bucket, pin["key"], pin["etag"], pin.get("version_id") or ""])
    return f"{DATA}c-{hashlib.sha256(ident.encode()).hexdigest()}"


def plan_key(staging: str, seq: int, plan_hash: str) -> str:
    """Key of one batch plan."""
    return f"{staging}plans/{seq:08d}-{plan_hash}.jsonl.gz"


def plan_hash_of(key: str) -> str:
    """The plan hash embedded in a plan key (inverse of :func:`plan_key`)."""
    return key.rsplit("/", 1)[-1].split("-", 1)[1].removesuffix(".jsonl.gz")


def batch_key(staging: str, plan_hash: str) -> str:
    """Key of the finished manifest of the batch whose plan hashes to ``plan_hash``."""
    return f"{staging}batches/{plan_hash}.jsonl.gz"


def pin_batch_key(staging: str, create_id: str, seq: int) -> str:
    """Key of the ``seq``-th batch manifest a ``--no-copy`` pin pass writes."""
    return batch_key(staging, f"pin-{create_id}-{seq:06d}")


def parse_version_key(key: str) -> tuple[str, str, int] | None:
    """Split ``names/<name>/<versions|deleted>/<n>.json`` into (name, kind, n)."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "names" or parts[2] not in ("versions", "deleted"):
        return None
    stem = parts[3].removesuffix(".json")
    if not stem.isdigit():
        return None
    return parts[1], parts[2], int(stem)
