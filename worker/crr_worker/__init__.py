"""S3 Cross-Region Replication worker: populator -> Kafka -> processors -> status ledger."""

__version__ = "0.1.0"
