"""Use cases as Python calls (create, delete, download, verify, gc, status), shared by the CLI, flows and users."""
