"""What a run publishes: the Parquet dataset, on a local disk or an S3 object store."""
