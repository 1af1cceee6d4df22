"""Ways to serve or deploy the creation flows (see prefect.yaml for the declarative ones)."""


from datastore.orchestration import runtime

# Prefect reads its settings when first imported; this package's modules import it, so the
# defaults go in first, here, once (a worker that loads a flow by path has Prefect loaded and
# its settings made already, and needs none of them).
runtime.configure()
