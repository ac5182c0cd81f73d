"""Document ingestion: pure functions from a file to text with in-place image markers and stored figures."""

from .extract import FORMATS, SUPPORTED_EXTENSIONS, ExtractionConfig, extract_document
from .images import ImageLimits, ImageSkipped, normalize_image
from .model import (
    EXTRACTOR_VERSION,
    MARKER_RE,
    ExtractedDocument,
    ExtractionError,
    ExtractionWarning,
    ImageRecord,
    PageSpan,
    image_marker,
)
from .pdf import PdfOptions

__all__ = [
    "EXTRACTOR_VERSION", "FORMATS", "MARKER_RE", "SUPPORTED_EXTENSIONS", "ExtractedDocument", "ExtractionConfig",
    "ExtractionError", "ExtractionWarning", "ImageLimits", "ImageRecord", "ImageSkipped", "PageSpan", "PdfOptions",
    "extract_document", "image_marker", "normalize_image",
]
