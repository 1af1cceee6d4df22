"""``python -m datastore.cli``: the same as the ``datastore`` command."""

from datastore.cli.app import main

main()
