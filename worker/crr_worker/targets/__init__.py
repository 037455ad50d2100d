"""Where replicas are written; one module per target type."""
