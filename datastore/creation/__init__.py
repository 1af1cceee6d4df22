"""Making a version: one pipeline (prepare, scan into batch plans, transfer batches, commit)
and the packer; each source in :mod:`datastore.creation.sources` answers the pipeline's
``Source`` protocol. Imports ``store``, ``backends`` and ``model``; never ``reading``.
"""
