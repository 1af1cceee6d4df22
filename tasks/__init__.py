"""Prefect tasks: thin, retryable wrappers around the steps in the ``datastore`` package."""
