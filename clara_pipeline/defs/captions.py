"""Per-document captioning and enrichment: `image_captions`, `enriched_document` and its check."""

import json
from collections.abc import Iterator

import dagster as dg

from ..accounting import failure_lines, kinds_in_words
from ..corpus.build import EnrichedDocument
from ..corpus.enrich import enrich_text, raw_reference_problems
from ..corpus.figures import caption_figures, captions_artifact
from ..ingest.service import load_extracted
from ..llm import OFFLINE_NOTE, EndpointUnreachable
from ..llm.tasks import CAPTION
from ..storage import sha256_bytes, write_json_atomic
from .partitions import documents_partitions
from .resources import ArtifactStoreResource, LLMResource, SynthesisSettings

CAPTIONS_CODE_VERSION = f"captions-{CAPTION.prompt_version}"
ENRICH_CODE_VERSION = "enrich-v2"  # v2: a figure without a caption leaves a placeholder


@dg.asset(
    partitions_def=documents_partitions, deps=["document_images"], group_name="captions", pool="llm_api",
    code_version=CAPTIONS_CODE_VERSION, kinds={"openai"},
    description="A caption for each figure from the vision LLM (or the offline stand-in): title, transcribed "
                "text, structure, meaning, in the document's language (documents/{key}/captions.json). "
                "Cached by image content, model and prompt version; failed figures are retried on the next run.",
)
def image_captions(context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource, llm: LLMResource,
                   synthesis: SynthesisSettings) -> dg.MaterializeResult:
    store = artifacts.store()
    key = context.partition_key
    entries = json.loads(store.document_images_path(key).read_text(encoding="utf-8"))["images"]
    try:
        result = caption_figures(entries, store.root, config=llm.config(), cache_path=store.llm_cache_path,
                                 retry_failed=synthesis.retry_failed)
    except EndpointUnreachable as exc:  # one message for the step; no figure was marked as failed
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    artifact = captions_artifact(result, entries)
    for failure in artifact["failures"]:
        context.log.warning(f"figure {failure['key']} not captioned ({failure['kind']}): {failure['message']}")
    if entries and result.failure_fraction > synthesis.max_failed_caption_share:
        raise dg.Failure(
            description=f"{len(result.failures)} of {len(entries)} figures could not be captioned "
                        f"(more than {synthesis.max_failed_caption_share:.0%}): "
                        f"{kinds_in_words(result.failures_by_kind())}; first: "
                        + failure_lines(artifact["failures"], _figure_label(entries), limit=1)[0],
            metadata={"failures": dg.MetadataValue.json(artifact["failures"][:20])})
    # Published only now, past the share check: the last good captions stay otherwise (and the captions that did
    # validate are in the LLM cache, so the next run does not pay for them again).
    data = write_json_atomic(store.captions_path(key), artifact)
    usage = result.usage.as_dict()
    preview = "\n\n".join(f"**{image_id}**: {c['text'][:300]}" for image_id, c in list(artifact["captions"].items())[:5])
    return dg.MaterializeResult(
        data_version=dg.DataVersion(sha256_bytes(data)),
        metadata={
            "figures": len(entries), "captioned": len(result.outputs), "failed": len(result.failures),
            "parked": result.parked,  # failed in an earlier run and not asked again (retry_failed asks)
            "first_failures": dg.MetadataValue.md("\n".join(
                f"- {line}" for line in failure_lines(artifact["failures"], _figure_label(entries))) or "none"),
            "provider": result.provider.get("provider", "offline" if llm.offline else "openai-compatible"),
            "model": result.provider.get("vlm_model", "offline stand-in"),
            "http_requests": usage["http_requests"], "cache_hits": usage["cache_hits"],
            "prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
            "cost_usd": usage.get("cost_usd"),
            "note": OFFLINE_NOTE if llm.offline else "captions from the configured endpoint",
            "preview": dg.MetadataValue.md(preview or "no figures"),
            "path": dg.MetadataValue.path(str(store.captions_path(key))),
        },
    )


def _figure_label(entries: list[dict]):
    """`figure 2 (page 3)` for an image id: how a user finds the figure in the document."""
    place = {e["id"]: (n, e.get("page")) for n, e in enumerate(entries, 1)}

    def label(image_id: str) -> str:
        if image_id not in place:
            return image_id
        number, page = place[image_id]
        return f"figure {number}" + (f" (page {page})" if page else "")

    return label


@dg.asset(
    partitions_def=documents_partitions, deps=["extracted_document", "image_captions"], group_name="captions",
    code_version=ENRICH_CODE_VERSION,
    description="The text training sees: each figure marker replaced by its caption, or by the placeholder "
                "'[Figure (caption unavailable)]' when it has none (documents/{key}/enriched.json).",
)
def enriched_document(context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    store = artifacts.store()
    key = context.partition_key
    document, _ = load_extracted(store, key)
    captions = json.loads(store.captions_path(key).read_text(encoding="utf-8"))["captions"]
    result = enrich_text(document.text, {i: c["text"] for i, c in captions.items()},
                         {i.id: i.alt_text for i in document.images})
    enriched = EnrichedDocument(key=key, source=document.source, source_sha256=document.source_sha256,
                                lang=document.lang, title=document.title, text=result.text,
                                captioned=result.captioned, uncaptioned=result.uncaptioned)
    problems = raw_reference_problems(result.text)  # the blocking check, on the new text before it is published
    if problems:
        raise dg.Failure(description=f"check no_raw_figure_references of enriched_document[{key}] failed on the new "
                                     f"text: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1
                                                              else "") + "; nothing was published",
                         allow_retries=False)
    data = write_json_atomic(store.enriched_document_path(key), enriched.to_dict())
    return dg.MaterializeResult(
        data_version=dg.DataVersion(sha256_bytes(data)),
        metadata={"chars": len(result.text), "captioned_figures": result.captioned,
                  "uncaptioned_figures": len(result.uncaptioned),
                  "preview": dg.MetadataValue.md(f"```text\n{result.text[:800]}\n```"),
                  "path": dg.MetadataValue.path(str(store.enriched_document_path(key)))},
    )


@dg.asset_check(asset="enriched_document", name="no_raw_figure_references", blocking=True,
                partitions_def=documents_partitions,
                description="No [IMAGE_REF] marker, image id or image file path is left in the training text.")
def no_raw_figure_references(context: dg.AssetCheckExecutionContext,
                             artifacts: ArtifactStoreResource) -> dg.AssetCheckResult:
    path = artifacts.store().enriched_document_path(context.partition_key)
    text = json.loads(path.read_text(encoding="utf-8"))["text"]
    problems = raw_reference_problems(text)
    return dg.AssetCheckResult(passed=not problems, metadata={
        "raw_references": len(problems), "expected": 0,
        "details": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:20]) or "none")})
