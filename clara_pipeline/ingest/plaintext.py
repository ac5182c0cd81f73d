"""Markdown and plain-text documents: decoding with detection, and local Markdown images in place."""

from __future__ import annotations

import codecs
import os
import re
from pathlib import Path

from charset_normalizer import from_bytes

from .images import ImageLimits, ImageSkipped, normalize_image
from .model import DocumentBuilder, ExtractionError
from .rawfiles import RawFileRefused, read_regular

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def decode_text(data: bytes, name: str, builder: DocumentBuilder) -> str:
    """Returns the text of `data`: UTF-8 (with or without BOM), UTF-16/32 with BOM, or a detected encoding.

    Raises:
        ExtractionError: binary data, or bytes no text encoding explains.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise ExtractionError(name, f"starts with a {encoding} byte-order mark but is not valid {encoding} ({exc.reason} at byte {exc.start})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    if b"\x00" in data[:8192]:
        raise ExtractionError(name, "binary data, not text (NUL bytes and no UTF-16 byte-order mark)")
    matches = from_bytes(data)
    best = matches.best()
    if best is not None:
        # Short Western texts often fit several code pages equally well; Windows-1252 is by far the
        # most common legacy one, so it wins a tie.
        tied = [m for m in matches if m.chaos <= best.chaos and m.coherence >= best.coherence]
        best = next((m for m in tied if m.encoding == "cp1252"), best)
    if best is None or best.chaos > 0.3:
        raise ExtractionError(name, f"not valid UTF-8 (first bad byte at offset {first_bad}) and no other text encoding fits; re-save it as UTF-8")
    builder.warn("text_encoding", f"not UTF-8 (first bad byte at offset {first_bad}); decoded as {best.encoding}. Re-save it as UTF-8 to be sure")
    return str(best)


def extract_text_file(data: bytes, path: Path, builder: DocumentBuilder, *, markdown: bool, limits: ImageLimits,
                      root: Path, allow_links: bool = False) -> str:
    """Reads .md/.txt `data` (from `path`) into `builder`, a block per paragraph; returns the first heading.

    Local Markdown images (`![alt](figures/a.png)`) are resolved against the file's folder and must be
    regular files inside `root`, reached without a symbolic link (unless `allow_links`, and then only links
    that stay inside); remote ones keep only their alt text.
    """
    text = decode_text(data, path.name, builder).replace("\r\n", "\n").replace("\r", "\n")
    if markdown:
        text = _MD_IMAGE.sub(lambda m: _markdown_image(m, path, builder, limits, root, allow_links), text)
    for block in re.split(r"\n\s*\n", text):
        builder.add_block(block.rstrip())
    heading = _HEADING.search(text) if markdown else None
    return heading.group(1) if heading else ""


def _markdown_image(match: re.Match, path: Path, builder: DocumentBuilder, limits: ImageLimits, root: Path,
                    allow_links: bool) -> str:
    alt, target = match.group(1), match.group(2)
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
        builder.warn("image_remote", f"image {target} is not a local file and is not fetched; its alt text is kept")
        return alt
    # Lexically, without following links: a link is refused (or resolved inside the folder) when it is opened.
    candidate = Path(os.path.normpath(path.parent / target))
    if not candidate.is_relative_to(root):
        builder.warn("image_outside_root", f"image {target} lies outside the raw-data folder and is not read")
        return alt
    try:
        data = read_regular(root, candidate.relative_to(root).as_posix(), max_bytes=limits.max_bytes,
                            allow_links=allow_links)
    except FileNotFoundError:
        builder.warn("image_missing", f"image {target} does not exist; its alt text is kept")
        return alt
    except RawFileRefused as refused:
        builder.warn("image_refused", f"image {target} is not read: {refused.reason}")
        return alt
    try:
        image = normalize_image(data, limits)
    except ImageSkipped as skip:
        builder.warn(f"image_{skip.code}", f"image {target} skipped: {skip.reason}")
        return alt
    return builder.add_image(image, alt_text=alt)
