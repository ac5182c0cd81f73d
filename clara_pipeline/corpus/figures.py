"""Captioning a document's figures: from its image manifest to `documents/<key>/captions.json`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..llm import BatchResult, Caption, CaptionInput, LLMConfig, render_caption, run_captions


def caption_figures(entries: list[dict[str, Any]], artifacts_root: Path, *, config: LLMConfig | None,
                    cache_path: Path | None, retry_failed: bool = False) -> BatchResult[Caption]:
    """Captions every figure of one document (cached by image content, model and prompt version).

    Never raises for one figure: each ends as a caption or as a reported failure. A figure whose captions
    never validated in an earlier run is parked (reported, not asked again) unless `retry_failed`.

    Raises:
        EndpointUnreachable: the endpoint answered nothing; no figure is marked as failed.
    """
    items = {entry["id"]: CaptionInput.from_record(entry, artifacts_root) for entry in entries}
    return run_captions(items, config=config, cache_path=cache_path, retry_failed=retry_failed)


def captions_artifact(result: BatchResult[Caption], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """What captions.json holds: per figure the rendered caption text (what replaces its marker) and the
    structured caption; the failures with their reasons (retried on the next run); the provider used."""
    langs = {entry["id"]: entry.get("lang") or "und" for entry in entries}
    return {
        "provider": result.provider,
        "captions": {image_id: {"text": render_caption(caption, langs[image_id]), **caption.model_dump()}
                     for image_id, caption in sorted(result.outputs.items())},
        "failures": [failure.as_dict() for failure in result.failures.values()],
    }
