"""Per-document ingestion: `extracted_document` and `document_images`, and their checks."""


from collections import Counter
from collections.abc import Iterator

import dagster as dg

from ..ingest import EXTRACTOR_VERSION, MARKER_RE, ExtractionError
from ..ingest.service import (
    IngestOutcome,
    image_manifest,
    images_data_version,
    ingest_file,
    load_extracted,
    text_chars,
    unresolved_markers,
)
from ..storage import write_json_atomic
from .partitions import documents_partitions
from .resources import ArtifactStoreResource, ExtractionSettings, RawDataFolder

CODE_VERSION = f"extract-v{EXTRACTOR_VERSION}"
MIN_TEXT_CHARS = 20


@dg.multi_asset(
    name="ingest_document",
    specs=[
        dg.AssetSpec(
            "extracted_document", group_name="ingest", code_version=CODE_VERSION, kinds={"python"},
            description="The document's text as Markdown with an [IMAGE_REF: id] marker at each figure, "
                        "page boundaries and extraction warnings (documents/{key}/extracted.json).",
        ),
        dg.AssetSpec(
            "document_images", group_name="ingest", code_version=CODE_VERSION, deps=["extracted_document"],
            description="The document's figures in the content-addressed image store, with the text "
                        "around each one for captioning (documents/{key}/images.json).",
        ),
    ],
    partitions_def=documents_partitions,
)
def ingest_document(
    context: dg.AssetExecutionContext,
    raw_data: RawDataFolder,
    artifacts: ArtifactStoreResource,
    extraction: ExtractionSettings,
) -> Iterator[dg.MaterializeResult]:
    """Extracts one raw file; a second run on the same content returns the stored result."""
    key = context.partition_key
    path, sha256 = raw_data.locate(key)
    store = artifacts.store()
    try:
        outcome = ingest_file(path, root=raw_data.root, key=key, sha256=sha256, store=store, config=extraction.config(),
                              policy=raw_data.policy())
    except ExtractionError as exc:
        raise dg.Failure(description=str(exc), metadata={"file": exc.path, "cause": exc.reason},
                         allow_retries=False) from None
    for warning in outcome.document.warnings:
        context.log.warning(f"{outcome.document.source}: {warning.message}")
    yield dg.MaterializeResult(asset_key="extracted_document", data_version=dg.DataVersion(outcome.data_version),
                               metadata=_document_metadata(outcome))

    problems = unresolved_markers(outcome.document, store)  # the blocking check, before images.json is published
    if problems:
        raise dg.Failure(description=f"check markers_resolve of document_images[{key}] failed: {problems[0]}"
                                     + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                                     + "; images.json was not published", allow_retries=False)
    manifest = image_manifest(outcome.document, store)
    manifest_path = store.document_images_path(key)
    write_json_atomic(manifest_path, {"partition": key, "source": outcome.document.source, "images": manifest})
    yield dg.MaterializeResult(asset_key="document_images",
                               data_version=dg.DataVersion(images_data_version(outcome.document)),
                               metadata=_images_metadata(manifest, manifest_path))


def _document_metadata(outcome: IngestOutcome) -> dict:
    doc = outcome.document
    preview = doc.text[:600] + ("..." if len(doc.text) > 600 else "")
    warnings = "\n".join(f"- `{w.code}`: {w.message}" for w in doc.warnings) or "none"
    return {
        "source": doc.source,
        "format": doc.format,
        "title": doc.title,
        "language": doc.lang,
        "pages": dg.MetadataValue.int(doc.page_count),
        "chars": dg.MetadataValue.int(len(doc.text)),
        "text_chars": dg.MetadataValue.int(text_chars(doc)),
        "images": dg.MetadataValue.int(len(doc.images)),
        "warnings": dg.MetadataValue.int(len(doc.warnings)),
        "warning_details": dg.MetadataValue.md(warnings),
        "preview": dg.MetadataValue.md(f"```text\n{preview}\n```"),
        "path": dg.MetadataValue.path(str(outcome.path)),
        "source_sha256": doc.source_sha256,
        "cached": outcome.cached,
        "seconds": dg.MetadataValue.float(round(outcome.seconds, 3)),
    }


def _images_metadata(manifest: list[dict], path) -> dict:
    formats = Counter(entry["format"] for entry in manifest)
    rows = "\n".join(
        f"| `{e['id']}` | {e['page'] or ''} | {e['width']}x{e['height']} | {e['format']} | {e['bytes']:,} | "
        f"{(e['alt_text'] or e['context_after'] or '')[:50].replace('|', '/')} |" for e in manifest[:20])
    table = "| id | page | size | format | bytes | context |\n|---|---|---|---|---|---|\n" + rows if manifest else "no images"
    return {
        "images": dg.MetadataValue.int(len(manifest)),
        "total_bytes": dg.MetadataValue.int(sum(e["bytes"] for e in manifest)),
        "formats": dict(formats),
        "preview": dg.MetadataValue.md(table),
        "path": dg.MetadataValue.path(str(path)),
    }


def _load_or_fail(artifacts: ArtifactStoreResource, key: str):
    stored = load_extracted(artifacts.store(), key)
    if stored is None:
        raise dg.Failure(f"no extracted document for partition {key}: materialize extracted_document first")
    return stored[0]


@dg.asset_check(asset="document_images", name="markers_resolve", blocking=True, partitions_def=documents_partitions,
                description="Every [IMAGE_REF] marker has an image record and a stored file with the right "
                            "sha256, and every recorded image is placed by a marker.")
def markers_resolve(context: dg.AssetCheckExecutionContext, artifacts: ArtifactStoreResource) -> dg.AssetCheckResult:
    document = _load_or_fail(artifacts, context.partition_key)
    problems = unresolved_markers(document, artifacts.store())
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"markers": len(set(MARKER_RE.findall(document.text))),
                  "images": len(document.images), "problems": len(problems),
                  "details": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:50]) or "none")},
    )


@dg.asset_check(asset="extracted_document", name="text_not_empty", partitions_def=documents_partitions,
                description=f"The document has at least {MIN_TEXT_CHARS} characters of text (standalone images "
                            "excepted: their text comes from the caption). A scanned PDF without a text layer fails.")
def text_not_empty(context: dg.AssetCheckExecutionContext, artifacts: ArtifactStoreResource) -> dg.AssetCheckResult:
    document = _load_or_fail(artifacts, context.partition_key)
    chars = text_chars(document)
    expected = 0 if document.format == "image" else MIN_TEXT_CHARS
    return dg.AssetCheckResult(
        passed=chars >= expected,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"text_chars": chars, "expected_at_least": expected, "format": document.format,
                  "images": len(document.images)},
    )
