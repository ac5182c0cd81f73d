"""The corpus and QA synthesis: unpartitioned assets over all live documents."""

import statistics
from collections import Counter

import dagster as dg

from ..accounting import failure_lines, kinds_in_words
from ..corpus.build import build_corpus, token_counter
from ..corpus.store import inputs_fingerprint, load_enriched, read_chunks, write_corpus
from ..llm import OFFLINE_NOTE, EndpointUnreachable
from ..llm.tasks import CHUNK_SYNTHESIS
from ..storage import sha256_bytes
from ..synthesis.run import synthesize_corpus, write_synthesis
from .partitions import documents_partitions
from .resources import ArtifactStoreResource, LLMResource, SynthesisSettings

CORPUS_CODE_VERSION = "corpus-v1"
QA_CODE_VERSION = f"qa-{CHUNK_SYNTHESIS.prompt_version}-curate-v1"


@dg.asset(
    deps=["enriched_document"], group_name="synthesis", code_version=CORPUS_CODE_VERSION,
    description="The live documents' enriched text cut into chunks of at most doc_max_length tokens of the base "
                "model's tokenizer (corpus/chunks.jsonl, corpus/manifest.json). Its data version is the "
                "manifest's hash, so everything downstream goes stale exactly when the corpus changes.",
)
def corpus(context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource,
           synthesis: SynthesisSettings) -> dg.MaterializeResult:
    store = artifacts.store()
    keys = context.instance.get_dynamic_partitions(documents_partitions.name)
    documents, missing = load_enriched(store, keys)
    if not documents:
        raise dg.Failure(f"none of the {len(keys)} document partitions has an enriched document yet: "
                         "run ingestion first (the ingest_documents job, or `clara run`)")
    for key in missing:
        context.log.warning(f"document {key} has no enriched text yet (not ingested, or it failed): left out")
    built = build_corpus(documents, token_counter(synthesis.base_model), tokenizer=synthesis.base_model,
                         config=synthesis.chunking())
    if not built.chunks:
        raise dg.Failure(f"the {len(documents)} enriched documents gave no chunks (is every text empty?): nothing "
                         "was published, the last good corpus stays", allow_retries=False)
    write_corpus(store, built, inputs_fingerprint(store, keys))  # chunks and manifest published together
    tokens = [c.tokens for c in built.chunks]
    rows = "\n".join(f"| `{c.chunk_id}` | {c.source} | {c.lang} | {c.tokens} | {c.text[:80].replace('|', '/')} |"
                     for c in built.chunks[:10])
    return dg.MaterializeResult(
        data_version=dg.DataVersion(built.data_version),
        metadata={
            "documents": len(documents), "documents_missing": len(missing), "chunks": len(built.chunks),
            "duplicate_chunks": built.duplicate_chunks,
            "tokens_mean": round(statistics.mean(tokens), 1) if tokens else 0, "tokens_max": max(tokens, default=0),
            "languages": dict(Counter(c.lang for c in built.chunks)),
            "tokenizer": synthesis.base_model, "doc_max_length": synthesis.doc_max_length,
            "preview": dg.MetadataValue.md("| chunk | source | lang | tokens | text |\n|---|---|---|---|---|\n" + rows),
            "path": dg.MetadataValue.path(str(store.corpus_dir)),
        },
    )


@dg.asset(
    deps=["corpus"], group_name="synthesis", pool="llm_api", code_version=QA_CODE_VERSION, kinds={"openai"},
    description="Per chunk, QA pairs (fact / reasoning / cross-lingual) and a paraphrase from the LLM (or the "
                "offline stand-in); pairs whose answer the chunk does not support, that are not self-contained "
                "or that repeat a question are dropped and counted (synthesis/qa.jsonl, paraphrases.jsonl). "
                "Responses are cached by chunk text, model and prompt version: only new chunks cost anything.",
)
def qa_synthesis(context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource, llm: LLMResource,
                 synthesis: SynthesisSettings) -> dg.MaterializeResult:
    store = artifacts.store()
    chunks = read_chunks(store)
    try:
        outcome = synthesize_corpus(chunks, config=llm.config(), cache_path=store.llm_cache_path,
                                    pairs_per_chunk=synthesis.qa_pairs_per_chunk, retry_failed=synthesis.retry_failed)
    except EndpointUnreachable as exc:  # one message for the step; no chunk was marked as failed
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    batch = outcome.batch
    for failure in list(batch.failures.values())[:20]:
        context.log.warning(f"chunk {failure.key} not synthesized ({failure.kind}): {failure.message}")
    # Checked before anything is published: a failed or empty result never replaces the last good synthesis
    # (the answers that did validate are in the LLM cache, so the next run does not pay for them again).
    if batch.failure_fraction > synthesis.max_failed_chunk_share:
        first = failure_lines((f.as_dict() for f in batch.failures.values()), _chunk_label(chunks), limit=1)[0]
        raise dg.Failure(description=f"{len(batch.failures)} of {batch.total} chunks failed synthesis "
                                     f"(more than {synthesis.max_failed_chunk_share:.0%}): "
                                     f"{kinds_in_words(batch.failures_by_kind())}; first: {first}; "
                                     "nothing was published, the last good synthesis stays")
    if not outcome.pairs or not outcome.paraphrases:
        raise dg.Failure(description=f"synthesis kept {len(outcome.pairs)} QA pairs and {len(outcome.paraphrases)} "
                                     f"paraphrases from {len(chunks)} chunks (dropped: {kinds_in_words(outcome.curation.dropped)}); "
                                     "nothing was published, the last good synthesis stays", allow_retries=False)
    data = write_synthesis(store, outcome)  # qa.jsonl, paraphrases.jsonl and report.json published together
    usage = batch.usage.as_dict()
    sample = "\n".join(f"- *{p.qa_type}* {p.question} -> {p.answer}" for p in outcome.pairs[:8])
    return dg.MaterializeResult(
        data_version=dg.DataVersion(sha256_bytes(data)),
        metadata={
            "chunks": len(chunks), "chunks_failed": len(batch.failures), "qa_pairs": len(outcome.pairs),
            "chunks_parked": batch.parked,  # failed in an earlier run and not asked again (retry_failed asks)
            "chunks_failed_by_kind": batch.failures_by_kind(),
            "first_failures": dg.MetadataValue.md("\n".join(f"- {line}" for line in failure_lines(
                (f.as_dict() for f in batch.failures.values()), _chunk_label(chunks))) or "none"),
            "paraphrases": len(outcome.paraphrases), "by_type": dict(outcome.curation.by_type),
            "dropped": dict(outcome.curation.dropped),
            "http_requests": usage["http_requests"], "cache_hits": usage["cache_hits"],
            "prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
            "cost_usd": usage.get("cost_usd"),
            "provider": batch.provider.get("provider", "offline"),
            "note": OFFLINE_NOTE if llm.offline else "pairs from the configured endpoint",
            "sample": dg.MetadataValue.md(sample or "no pairs"),
        },
    )


def _chunk_label(chunks):
    """`eg200_front_panel.jpg, chunk 1 (77382a52)` for a chunk id: which document, and where in it."""
    where = {c.chunk_id: f"{c.source}, chunk {c.index + 1}" for c in chunks}
    return lambda chunk_id: f"{where.get(chunk_id, 'chunk')} ({chunk_id[:8]})"
