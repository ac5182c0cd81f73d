import dagster as dg

# One partition per document version: `<slug>-<sha256[:12]>` (see clara_pipeline.ingest.sources).
documents_partitions = dg.DynamicPartitionsDefinition(name="documents")
