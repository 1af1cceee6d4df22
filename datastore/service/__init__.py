"""Use cases as Python calls, shared by the CLI, flows and users.

Each module is one use case with typed arguments and results; the CLI only parses arguments,
calls these and prints:

* :mod:`~datastore.service.create`: ``check``, ``create`` (here), ``submit`` / ``wait`` (a worker)
* :mod:`~datastore.service.delete`: ``delete_version``, ``delete_all`` (tombstone, event, reclaim)
* :mod:`~datastore.service.download`: ``download`` (a verified read-only copy)
* :mod:`~datastore.service.verify`: ``verify``
* :mod:`~datastore.service.gc`: ``gc``
* :mod:`~datastore.service.status`: ``listing``, ``show``, ``status``
* :mod:`~datastore.service.schedule`: ``schedule``, ``schedules``, ``unschedule``
"""
