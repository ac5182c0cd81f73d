"""One entry point for every supported format: `extract_document(path, ...) -> ExtractedDocument`."""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..storage import hash_only_sink, sha256_bytes
from .images import ImageLimits, ImageSkipped, normalize_image
from .model import DocumentBuilder, ExtractedDocument, ExtractionError, ImageSink
from .pdf import PdfOptions, extract_pdf
from .plaintext import extract_text_file
from .rawfiles import RawFilePolicy, RawFileRefused, kind_of, read_regular
from .word import extract_docx

FORMATS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".md": "markdown", ".markdown": "markdown",
    ".txt": "text",
    **{ext: "image" for ext in (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")},
}
SUPPORTED_EXTENSIONS = tuple(sorted(FORMATS))


@dataclass(frozen=True)
class ExtractionConfig:
    images: ImageLimits = field(default_factory=ImageLimits)
    pdf: PdfOptions = field(default_factory=PdfOptions)


def extract_document(
    path: Path,
    *,
    root: Path | None = None,
    sink: ImageSink = hash_only_sink,
    config: ExtractionConfig = ExtractionConfig(),
    source_sha256: str | None = None,
    policy: RawFilePolicy = RawFilePolicy(),
) -> ExtractedDocument:
    """Extracts one file: text with `[IMAGE_REF: id]` markers in place, its figures (passed to `sink`), warnings.

    `root` is the raw-data folder: the document's `source` is its path relative to `root`, the file is read
    from inside it without following links (unless `policy` allows links that stay inside), and Markdown
    image links may not leave it. `source_sha256`, when given, must match the bytes read (a partition
    key names one version of a file).

    Raises:
        ExtractionError: the file is missing, empty, not a regular file, over its size limit, of an
            unsupported type, or unreadable; the message names the file and the cause.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    if not path.is_relative_to(root):
        raise ExtractionError(str(path), f"lies outside the raw-data folder {root}; not read")
    source = path.relative_to(root).as_posix()
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        raise ExtractionError(source, "the file does not exist (deleted or moved after it was listed)") from None
    if stat.S_ISDIR(mode):
        raise ExtractionError(source, "a folder, not a document file")
    if not stat.S_ISREG(mode) and not stat.S_ISLNK(mode):
        raise ExtractionError(source, f"{kind_of(mode)}, not a regular file; not read")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ExtractionError(source, f"unsupported file type '{path.suffix or '(no extension)'}'; supported: "
                              + ", ".join(SUPPORTED_EXTENSIONS))
    max_bytes = policy.max_text_bytes if fmt in ("text", "markdown") else policy.max_file_bytes
    try:
        data = read_regular(root, source, max_bytes=max_bytes, allow_links=policy.allow_links)
    except FileNotFoundError:
        raise ExtractionError(source, "the file disappeared while it was being read") from None
    except RawFileRefused as refused:
        raise ExtractionError(source, refused.reason) from None
    if not data:
        raise ExtractionError(source, "the file is empty (0 bytes)")
    digest = sha256_bytes(data)  # read once: the hash and the extraction see the same bytes
    if source_sha256 is not None and digest != source_sha256:
        raise ExtractionError(source, f"the file changed since it was listed (sha256 {digest[:12]}, expected "
                              f"{source_sha256[:12]}); the new version gets its own partition")

    builder = DocumentBuilder(sink=sink)
    try:
        if fmt == "pdf":
            title = extract_pdf(data, source, builder, config.images, config.pdf, policy.max_page_content_bytes)
        elif fmt == "docx":
            title = extract_docx(data, source, builder, config.images, policy.max_archive_memory_bytes)
        elif fmt == "image":
            title = _extract_image(data, source, builder, config.images)
        else:
            title = extract_text_file(data, path, builder, markdown=fmt == "markdown", limits=config.images, root=root,
                                      allow_links=policy.allow_links)
    except ExtractionError as exc:  # name the file by its path under the raw-data folder
        raise ExtractionError(source, exc.reason) from None
    except MemoryError:
        raise ExtractionError(source, "ran out of memory while reading the file") from None
    return builder.build(source=source, source_sha256=digest, format=fmt, title=title or path.stem)


def _extract_image(data: bytes, name: str, builder: DocumentBuilder, limits: ImageLimits) -> str:
    """A standalone image is a document of one figure; an image that cannot be kept fails the document."""
    try:
        image = normalize_image(data, limits)
    except ImageSkipped as skip:
        raise ExtractionError(name, f"image not usable: {skip.reason}") from None
    builder.add_block(builder.add_image(image, alt_text=""))
    return ""
