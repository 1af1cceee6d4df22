"""Ways to serve or deploy the creation flows (see prefect.yaml for the declarative ones)."""
