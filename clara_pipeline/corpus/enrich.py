"""Enrichment: each `[IMAGE_REF: id]` marker in a document's text becomes that figure's caption.

This is the text training sees. The reference put the captions into the synthesis prompt only and left the
raw marker (a file path) in the training documents; here no marker, id or path survives. A figure without a
caption (its captioning failed, or it is parked: see `clara run --retry-failed`) never silently disappears: it
leaves the placeholder `[Figure (caption unavailable)]`, or `[Figure (caption unavailable): <alt text>]` when the
document gave one, so a reader of the training text sees that a figure stood there. The placeholder names no
image id or path (the raw-reference checks stay clean); QA synthesis is not asked about it (`strip_placeholders`),
and a chunk made of placeholders alone is not content (see corpus/build.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..ingest.model import MARKER_RE, raw_figure_references

UNCAPTIONED = "[Figure (caption unavailable)]"
# The placeholder, with or without alt text (which never holds brackets or a newline: see `placeholder`).
PLACEHOLDER_RE = re.compile(r"\[Figure \(caption unavailable\)(?:: [^\[\]\n]*)?\]")


def placeholder(alt_text: str = "") -> str:
    """What stands in the training text for a figure that has no caption: `UNCAPTIONED`, with the alt text."""
    alt = " ".join(re.sub(r"[\[\]]", " ", alt_text).split())
    return f"{UNCAPTIONED[:-1]}: {alt}]" if alt else UNCAPTIONED


def strip_placeholders(text: str) -> str:
    """`text` without the placeholders of uncaptioned figures: what is content to ask questions about."""
    text = re.sub(r"(?<=\S)[ \t]{2,}(?=\S)", " ", PLACEHOLDER_RE.sub("", text))
    return re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]+\n", "\n", text)).strip()


@dataclass(frozen=True)
class EnrichedText:
    text: str
    captioned: int  # markers replaced by a caption
    uncaptioned: list[str]  # ids of figures that had no caption (a placeholder left in their place)


def enrich_text(text: str, captions: Mapping[str, str], alt_texts: Mapping[str, str] | None = None) -> EnrichedText:
    """Returns `text` with every marker replaced by its figure's caption.

    A marker alone on its line becomes the caption as its own paragraph; a marker inside a Markdown table row
    becomes the caption on one line with `|` escaped, so the table stays a table.
    """
    alt_texts = alt_texts or {}
    captioned, uncaptioned = 0, []
    lines = []
    for line in text.split("\n"):
        in_table = line.lstrip().startswith("|")

        def replace(match: re.Match) -> str:
            nonlocal captioned
            image_id = match.group(1)
            caption = (captions.get(image_id) or "").strip()
            if caption:
                captioned += 1
            else:
                uncaptioned.append(image_id)
                caption = placeholder(alt_texts.get(image_id) or "")
            if in_table:
                return " ".join(caption.split()).replace("|", "\\|")
            return caption

        replaced = MARKER_RE.sub(replace, line)
        lines.append(re.sub(r"(?<=\S) {2,}(?=\S)", " ", replaced) if replaced != line else line)
    enriched = "\n".join(lines)
    enriched = re.sub(r"[ \t]+\n", "\n", enriched)
    enriched = re.sub(r"\n{3,}", "\n\n", enriched).strip()
    return EnrichedText(enriched, captioned, uncaptioned)


def raw_reference_problems(text: str) -> list[str]:
    """Every raw marker, image id or image path left in `text`, with some context; empty when clean."""
    problems = []
    for kind, match in raw_figure_references(text):
        start = max(0, match.start() - 20)
        problems.append(f"{kind.replace('_', ' ')} at character {match.start()}: ...{text[start:match.end() + 20]!r}...")
    return problems
