"""Reading a version back: the one :class:`~datastore.reading.reader.Reader` and what reads
through it (download, verify, the ``datastore://`` fsspec file system, ``use_datastore``).
Imports ``store``, ``backends`` and ``model``; never ``creation``.
"""
