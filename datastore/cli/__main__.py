"""``python -m datastore.cli``: the same as the ``datastore`` command (the same entry point)."""

from datastore.cli.entry import main

main()
