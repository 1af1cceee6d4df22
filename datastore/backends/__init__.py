"""The outside world at one boundary: S3 (clients per process, errors translated into
:mod:`datastore.errors`, pinned source objects), safe HTTP downloads, credential and flow-run
ports (filled in by :mod:`datastore.orchestration`), and the external sort. Imports ``model`` only.
"""
