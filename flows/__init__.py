"""Prefect flows: one per creation path, plus the periodic re-upload (thin: the work is in datastore.creation)."""


from datastore.orchestration import runtime

# Prefect reads its settings when first imported; this package's modules import it, so the
# defaults go in first, here, once (a worker that loads a flow by path has Prefect loaded and
# its settings made already, and needs none of them).
runtime.configure()
