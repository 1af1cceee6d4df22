"""Pure records and rules, no I/O: names, kinds, manifest entries, plan items, source details,
progress counters, URL redaction, the stream-and-hash loop. Imports nothing of the project but
:mod:`datastore.errors`.
"""
