"""The extracted-document data model and the builder every format extractor writes through.

An extracted document is plain text (Markdown-flavoured: `#` headings, `-`/`1.` lists, pipe tables) with an
`[IMAGE_REF: <id>]` marker at the exact position of every figure, plus the list of those figures and the
warnings collected on the way. Image ids are content-addressed (`img-` + the first 16 hex digits of the
stored bytes' sha256), never a path, so two documents that embed the same picture share one stored file
and a document can never point the pipeline at a file of its choosing.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .rawfiles import printable

EXTRACTOR_VERSION = "1"  # bump when extraction output changes for the same input (it is the assets' code_version)

MARKER_RE = re.compile(r"\[IMAGE_REF:\s*([A-Za-z0-9_-]+)\]")

# What must never reach training text: a marker or an image id ...
IMAGE_REFERENCE_RE = re.compile(r"IMAGE_REF|\bimg-[0-9a-f]{16}\b", re.IGNORECASE)
# ... or a path to an image file / into the artifact store's image layout. The look-behind makes a match start
# at a token's start, which keeps the search linear in a long run of word characters (Chinese has no spaces).
IMAGE_PATH_RE = re.compile(
    r"(?<![\w.~-])(?:[a-z]:)?(?:[\w.~-]*[\\/])+[\w.-]+\.(?:png|jpe?g|gif|bmp|webp|tiff?|emf|wmf|svg)\b"
    r"|\bimages[\\/][0-9a-f]{2}[\\/][0-9a-f]{64}",
    re.IGNORECASE)
URL_RE = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)  # a URL is content, not a leaked path


def raw_figure_references(text: str) -> list[tuple[str, re.Match]]:
    """Every leaked figure reference in `text`: ("image_marker", match) or ("file_path", match)."""
    found = [("image_marker", m) for m in IMAGE_REFERENCE_RE.finditer(text)]
    if "/" in text or "\\" in text:
        found += [("file_path", m) for m in IMAGE_PATH_RE.finditer(URL_RE.sub(lambda u: " " * len(u.group()), text))]
    return sorted(found, key=lambda item: item[1].start())


def image_marker(image_id: str) -> str:
    return f"[IMAGE_REF: {image_id}]"


def image_id_for(sha256: str) -> str:
    return f"img-{sha256[:16]}"


class ExtractionError(Exception):
    """A document that cannot be extracted at all. str() is one line: `<file>: <cause and what to do>`."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{printable(self.path)}: {reason}")  # a newline in a file name must not start a line


@dataclass(frozen=True)
class ExtractionWarning:
    """Something skipped or degraded while extracting; `code` is stable, `message` says what and where."""

    code: str
    message: str


@dataclass(frozen=True)
class ImageRecord:
    """One distinct figure of a document, stored once under its sha256."""

    id: str
    sha256: str
    format: str  # "png" | "jpeg"
    width: int
    height: int
    page: int | None  # 1-based page of its first occurrence; None for formats without pages
    bytes: int
    alt_text: str = ""
    occurrences: int = 1


@dataclass(frozen=True)
class PageSpan:
    """Page `number` (1-based) is `text[start:end]`; pages are joined by a blank line."""

    number: int
    start: int
    end: int


@dataclass(frozen=True)
class ExtractedDocument:
    source: str  # file name relative to the raw-data root
    source_sha256: str
    format: str  # "pdf" | "docx" | "image" | "markdown" | "text"
    title: str
    lang: str  # "en" | "zh" | "und" (dominant script, a hint for captioning and synthesis)
    text: str
    pages: list[PageSpan]
    images: list[ImageRecord]
    warnings: list[ExtractionWarning]
    extractor_version: str = EXTRACTOR_VERSION

    @property
    def page_count(self) -> int:
        return len(self.pages)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExtractedDocument":
        return cls(
            source=data["source"],
            source_sha256=data["source_sha256"],
            format=data["format"],
            title=data["title"],
            lang=data["lang"],
            text=data["text"],
            pages=[PageSpan(**p) for p in data["pages"]],
            images=[ImageRecord(**i) for i in data["images"]],
            warnings=[ExtractionWarning(**w) for w in data["warnings"]],
            extractor_version=data["extractor_version"],
        )


@dataclass(frozen=True)
class NormalizedImage:
    """Image bytes in a normal format (PNG or baseline JPEG, 8 bits per channel, Gray/RGB/alpha)."""

    data: bytes
    format: str  # "png" | "jpeg"
    width: int
    height: int


# Where normalized image bytes go: called with (bytes, format), returns the sha256 hex digest.
ImageSink = Callable[[bytes, str], str]


@dataclass
class DocumentBuilder:
    """Accumulates text blocks, page boundaries, figures and warnings in reading order."""

    sink: ImageSink
    _blocks: list[str] = field(default_factory=list)
    _pages: list[tuple[int, int, int]] = field(default_factory=list)  # (number, first block, end block)
    _images: dict[str, ImageRecord] = field(default_factory=dict)
    warnings: list[ExtractionWarning] = field(default_factory=list)
    _page_start: int | None = None
    _page_number: int | None = None

    def warn(self, code: str, message: str) -> None:
        self.warnings.append(ExtractionWarning(code, message))

    def add_block(self, text: str) -> None:
        text = text.strip("\n")
        if text.strip():
            self._blocks.append(text)

    def add_image(self, image: NormalizedImage, *, page: int | None = None, alt_text: str = "") -> str:
        """Stores the image (once per content) and returns the marker to place in the text."""
        sha = self.sink(image.data, image.format)
        image_id = image_id_for(sha)
        seen = self._images.get(image_id)
        if seen is None:
            self._images[image_id] = ImageRecord(
                id=image_id, sha256=sha, format=image.format, width=image.width, height=image.height,
                page=page, bytes=len(image.data), alt_text=alt_text.strip(),
            )
        else:
            self._images[image_id] = dataclasses.replace(
                seen, occurrences=seen.occurrences + 1, alt_text=seen.alt_text or alt_text.strip()
            )
        return image_marker(image_id)

    def start_page(self, number: int) -> None:
        self._page_number, self._page_start = number, len(self._blocks)

    def end_page(self) -> None:
        assert self._page_number is not None and self._page_start is not None, "end_page without start_page"
        self._pages.append((self._page_number, self._page_start, len(self._blocks)))
        self._page_number = self._page_start = None

    def build(self, *, source: str, source_sha256: str, format: str, title: str) -> ExtractedDocument:
        # Blocks are joined by one blank line; page spans are recovered from block offsets.
        offsets, pos = [], 0
        for block in self._blocks:
            offsets.append(pos)
            pos += len(block) + 2
        text = "\n\n".join(self._blocks)
        pages = []
        for number, first, end in self._pages:
            start = offsets[first] if first < len(offsets) else len(text)
            stop = offsets[end - 1] + len(self._blocks[end - 1]) if end > first else start
            pages.append(PageSpan(number, start, stop))
        return ExtractedDocument(
            source=source, source_sha256=source_sha256, format=format, title=title.strip(),
            lang=detect_language(text), text=text, pages=pages,
            images=list(self._images.values()), warnings=list(self.warnings),
        )


_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def detect_language(text: str) -> str:
    """Returns "zh" when CJK ideographs dominate the letters of `text`, "en" for Latin script, else "und"."""
    text = MARKER_RE.sub(" ", text)
    cjk = len(_CJK_RE.findall(text))
    latin_words = len(re.findall(r"[A-Za-z]{2,}", text))
    if cjk + latin_words < 5:
        return "und"
    # One CJK character carries about as much as one English word.
    return "zh" if cjk >= latin_words else "en"
