"""Real servers for tests and benchmarks (SeaweedFS, moto, HTTP, a fault-injecting S3 proxy, Prefect); never imported by the core."""
