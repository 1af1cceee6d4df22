"""The ``datastore`` command: parses arguments, calls :mod:`datastore.service`, prints. No logic of its own.
"""
