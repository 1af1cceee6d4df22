"""Side-by-side benchmarks of ``datastore create`` against plain copy tools (run ``python -m bench``)."""
