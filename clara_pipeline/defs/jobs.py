import dagster as dg

# Everything that runs per document, in one process per run (no step subprocess spawn per asset).
ingest_job = dg.define_asset_job(
    "ingest_documents",
    selection=dg.AssetSelection.assets("extracted_document", "document_images", "image_captions", "enriched_document"),
    executor_def=dg.in_process_executor,
    description="Extract one document version (partition), store and caption its figures, and enrich its text.",
    # Run monitoring fails a run past this (a document with hundreds of figures on a slow endpoint takes tens of
    # minutes): a hung or orphaned ingestion must not hold a slot of the run queue for ever.
    tags={"dagster/max_runtime": str(3 * 3600)},
)

# Everything over the whole corpus: chunking, QA synthesis and the three training datasets.
synthesis_job = dg.define_asset_job(
    "synthesize_datasets",
    selection=dg.AssetSelection.groups("synthesis", "datasets"),
    executor_def=dg.in_process_executor,
    description="Chunk the live documents, synthesize QA pairs (cached: only new chunks call the LLM) and "
                "write the three training datasets.",
)
