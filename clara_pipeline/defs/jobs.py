import dagster as dg

# Everything that runs per document, in one process per run (no step subprocess spawn per asset).
ingest_job = dg.define_asset_job(
    "ingest_documents",
    selection=dg.AssetSelection.assets("extracted_document", "document_images"),
    executor_def=dg.in_process_executor,
    description="Extract one document version (partition) and store its figures.",
)
