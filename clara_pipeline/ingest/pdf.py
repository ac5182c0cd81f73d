"""PDF extraction with PyMuPDF: page text in reading order, tables as Markdown, figures in place.

Per page, text blocks, tables (`page.find_tables()`) and image placements (`page.get_image_info`) are
laid out together and ordered by a recursive XY-cut, which reads a two-column page column by column
instead of line by line across the gutter. Text blocks inside a table's area are replaced by the table.
Headings are recognised by font size relative to the document's body text.

Images are decoded once per PDF object (xref). A JPEG stored as a plain RGB/Gray DCT stream is kept
byte-for-byte; anything else (CMYK, Indexed, 16-bit, JPX, JBIG2, an image with a soft mask) is decoded
by MuPDF, which applies the colour space, /Decode arrays and the /SMask, and re-encoded as PNG (or JPEG
for an opaque DCT photo). An image placed on many pages is a logo or background and is skipped.
"""

from __future__ import annotations

import logging
import re
import sys
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass

# PyMuPDF 2 imports `pymupdf.layout` and `pymupdf4llm` when they are installed (dependencies it pulls in): ONNX
# layout models run by onnxruntime, whose telemetry looks up and posts to mobile.events.data.microsoft.com once
# a model session exists. We never use layout analysis (find_tables(use_layout=False)) nor pymupdf4llm, so they
# are kept from loading at all: a pipeline that reads company documents does not phone home. A `None` entry
# makes the import fail with ImportError, which PyMuPDF expects when the packages are absent.
for _module in ("pymupdf.layout", "pymupdf4llm"):
    sys.modules.setdefault(_module, None)
import pymupdf  # noqa: E402

pymupdf.no_recommend_layout()  # else find_tables prints an advert for pymupdf_layout on stdout (into `clara extract`'s JSON)

from .images import ImageLimits, ImageSkipped, check_dimensions, normalize_image
from .model import DocumentBuilder, ExtractionError, NormalizedImage

log = logging.getLogger(__name__)

# Text flags: keep whitespace and ligatures, clip to the page, and do NOT decode image blocks (images come
# from get_image_info, which reports placements without decoding pixels).
_TEXT_FLAGS = (pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_IMAGES) | pymupdf.TEXT_MEDIABOX_CLIP
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
# A drawn bullet at the start of a block becomes "- " (a middle dot only when a space follows it).
_BULLET = re.compile(r"^(?:[\u2022\u25cf\u25aa\u25e6\u25a0\u2023\u2043\u2219\uf0b7]\s*|\u00b7\s+)")
_MARGIN = 0.08  # top and bottom 8% of the page: where running headers and footers sit


@dataclass(frozen=True)
class PdfOptions:
    repeated_image_pages: int = 3  # an image placed on at least this many pages is a logo/background
    min_display_pt: float = 18.0  # placements smaller than this on both sides are icons
    detect_tables: bool = True
    heading_ratio: float = 1.2  # a short block whose font is this much larger than body text is a heading


@dataclass
class _Item:
    """Something placed on a page: text block, table or image, with its bounding box."""

    kind: str  # "text" | "table" | "image" | "icon"
    bbox: tuple[float, float, float, float]
    margin: bool = False  # lies in the top or bottom band of the page, where running headers live
    text: str = ""
    size: float = 0.0  # largest font size in a text block
    xref: int = 0  # image object number; 0 for an inline image, whose bytes are in `data`
    data: bytes | None = None


def extract_pdf(data: bytes, name: str, builder: DocumentBuilder, limits: ImageLimits,
                options: PdfOptions = PdfOptions(), max_page_content: int = 8 * 1024 * 1024) -> str:
    """Extracts the PDF `data` (from file `name`) into `builder` page by page; returns the document title.

    A page whose content streams (its own and its form XObjects') inflate to more than `max_page_content`
    bytes is skipped with a warning: MuPDF would hold every glyph of it in memory (a 0.9 MB file whose one
    page inflates to 256 MB of text operators took more than 9 GB).

    Raises:
        ExtractionError: not a PDF, damaged beyond repair, password-protected, no page readable, or pages
            that together inflate to more than 32 x `max_page_content` bytes (a PDF bomb spread over pages).
    """
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except (pymupdf.FileDataError, RuntimeError, ValueError) as exc:
        raise ExtractionError(name, f"not a readable PDF: the file is damaged or not a PDF ({exc})") from None
    with doc:
        if doc.needs_pass:
            raise ExtractionError(name, "the PDF is password-protected; save an unprotected copy and drop that in")
        if doc.page_count == 0:
            raise ExtractionError(name, "the PDF has no pages")
        pages = _layout_pages(doc, name, builder, options, max_page_content)
        if all(items is None for items in pages):
            too_large = sum(w.code == "page_too_large" for w in builder.warnings)
            raise ExtractionError(name, f"none of the {doc.page_count} pages could be read: " + (
                f"{too_large} inflate to more than {max_page_content / 2**20:,.0f} MB of content (a PDF bomb?)"
                if too_large else "the PDF is damaged"))
        _drop_running_lines(pages, builder)
        icons = sum(1 for items in pages for i in items or () if i.kind == "icon")
        if icons:
            builder.warn("image_icon", f"{icons} image placement(s) drawn smaller than {options.min_display_pt:g} pt "
                         "on both sides were skipped as icons or bullets")
        body_size = _body_font_size(pages)
        images = _PdfImages(doc, limits, builder, _decorative_xrefs(pages, options))
        for number, items in enumerate(pages, start=1):
            builder.start_page(number)
            for item in items or ():
                block = _render(item, body_size, options, images, number)
                if block:
                    builder.add_block(block)
            builder.end_page()
            if items is not None and not any(i.kind in ("text", "table") for i in items):
                if any(i.kind == "image" for i in items):
                    builder.warn("no_text_layer", f"page {number} has images but no text layer (a scan?); "
                                 "its text is not OCRed, the figure captions will carry it")
        title = (doc.metadata or {}).get("title") or ""
    return title.strip()


def _layout_pages(doc, name: str, builder: DocumentBuilder, options: PdfOptions,
                  max_page_content: int) -> list[list[_Item] | None]:
    pages: list[list[_Item] | None] = []
    total = 0
    for number, page in enumerate(doc, start=1):
        try:
            content = page_content_size(doc, page, max_page_content)
        except (RuntimeError, ValueError):  # a broken xref: the page's own reading below says so
            content = 0
        total += min(content, max_page_content)
        if total > 32 * max_page_content:
            raise ExtractionError(name, f"pages 1-{number} inflate to more than {32 * max_page_content / 2**20:,.0f} "
                                  "MB of content (a PDF bomb?); the PDF is not read")
        if content > max_page_content:
            builder.warn("page_too_large", f"page {number}: its content inflates to more than "
                         f"{max_page_content / 2**20:,.0f} MB (a PDF bomb?); skipped")
            pages.append(None)
            continue
        try:
            pages.append(_page_items(page, options))
        except Exception as exc:  # MuPDF raises plain RuntimeErrors for broken page content
            log.warning("%s: page %d unreadable: %s", name, number, exc)
            builder.warn("page_unreadable", f"page {number} could not be read and is skipped ({exc})")
            pages.append(None)
    return pages


def page_content_size(doc, page, cap: int) -> int:
    """Inflated bytes of the page's content streams and form XObjects, counted without holding them; stops
    counting a little past `cap`."""
    xrefs = list(page.get_contents()) + [x[0] for x in page.get_xobjects()]
    total = 0
    for xref in dict.fromkeys(xrefs):
        total += _stream_size(doc, xref, cap - total + 1)
        if total > cap:
            break
    return total


def _stream_size(doc, xref: int, cap: int) -> int:
    kind, value = doc.xref_get_key(xref, "Filter")
    raw = doc.xref_stream_raw(xref) or b""
    if kind == "null":
        return len(raw)
    if value != "/FlateDecode":  # rare in content streams, and no filter but Flate inflates by orders of magnitude
        return len(doc.xref_stream(xref) or b"")
    inflate, total = zlib.decompressobj(), 0
    try:
        chunk = inflate.decompress(raw, 1 << 20)
        while chunk and total <= cap:
            total += len(chunk)
            chunk = inflate.decompress(inflate.unconsumed_tail, 1 << 20)
    except zlib.error:  # damaged: MuPDF reads what it can, which is at most what inflated so far
        pass
    return total


def _page_items(page, options: PdfOptions) -> list[_Item]:
    tables = []
    if options.detect_tables and _may_have_table(page):
        # use_layout=False: the classic ruled-cell finder. PyMuPDF 2's default first runs an ONNX layout
        # model (about 1 s per page on a laptop CPU), which would make ingestion 20x slower.
        found = page.find_tables(use_layout=False).tables
        words = page.get_text("words", flags=_TEXT_FLAGS) if found else []
        for table in found:
            markdown = _table_markdown([[_cell_text(words, cell) for cell in row.cells] for row in table.rows])
            if markdown:
                tables.append(_Item("table", tuple(table.bbox), text=markdown))

    items: list[_Item] = list(tables)
    for block in page.get_text("dict", flags=_TEXT_FLAGS)["blocks"]:
        if block.get("type") != 0:
            continue
        bbox = tuple(block["bbox"])
        if any(_center_inside(bbox, t.bbox) for t in tables):
            continue
        text, size = _block_text(block)
        if text:
            margin = bbox[3] < page.rect.y0 + _MARGIN * page.rect.height or bbox[1] > page.rect.y1 - _MARGIN * page.rect.height
            items.append(_Item("text", bbox, text=text, size=size, margin=margin))

    for info in page.get_image_info(xrefs=True):
        x0, y0, x1, y1 = info["bbox"]
        small = x1 - x0 < options.min_display_pt and y1 - y0 < options.min_display_pt
        # Drawn as a bullet or icon, whatever its pixel size: kept in the layout only to be counted.
        items.append(_Item("icon" if small else "image", (x0, y0, x1, y1), xref=info["xref"]))
    if any(i.kind == "image" and i.xref == 0 for i in items):
        _attach_inline_images(page, items)
    return _xy_cut(items)


def _drop_running_lines(pages: list[list[_Item] | None], builder: DocumentBuilder) -> None:
    """Removes running headers and footers: margin lines repeated (digits aside) on most pages.

    "Page 3 of 12" and "ACME | Manual Rev. C" on every page are noise in every training chunk.
    """
    readable = [items for items in pages if items is not None]
    if len(readable) < 2:
        return
    seen: Counter[str] = Counter()
    for items in readable:
        seen.update({_running_key(i.text) for i in items if i.kind == "text" and i.margin})
    needed = max(2, (len(readable) + 1) // 2)
    repeated = {key for key, count in seen.items() if count >= needed}
    if not repeated:
        return
    removed = 0
    for items in readable:
        keep = [i for i in items if not (i.kind == "text" and i.margin and _running_key(i.text) in repeated)]
        removed += len(items) - len(keep)
        items[:] = keep
    example = min(repeated, key=len)
    builder.warn("running_lines_removed", f"removed {removed} running header/footer line(s) repeated on "
                 f"{needed}+ of {len(readable)} pages (e.g. '{example[:60]}')")


def _running_key(text: str) -> str:
    return " ".join(re.sub(r"\d+", "#", text).split()).lower()


def _may_have_table(page) -> bool:
    # find_tables looks for ruled cells; a page without any vector line or rectangle has none, and
    # skipping it saves most of the table detector's cost on text-only pages.
    return bool(page.get_cdrawings())


def _block_text(block) -> tuple[str, float]:
    lines, size = [], 0.0
    for line in block.get("lines", ()):
        spans = line.get("spans", ())
        text = "".join(s["text"] for s in spans)
        if text.strip():
            lines.append(text.strip())
            size = max([size] + [s["size"] for s in spans if s["text"].strip()])
    return _join_lines(lines), size


def _join_lines(lines: list[str]) -> str:
    """Joins the lines of one block into a paragraph: no space at CJK line breaks, de-hyphenated."""
    out = ""
    for line in lines:
        if not out:
            out = line
        elif out.endswith("-") and len(out) > 1 and out[-2].isalpha() and line[:1].islower():
            out = out[:-1] + line  # "exam-" + "ple"
        elif out.endswith(("-", "/")) and len(out) > 1 and out[-2].isalnum() and line[:1].isalnum():
            out += line  # "KD-UM-EG400-" + "ZH", "SELV/" + "PELV"
        elif _CJK.match(out[-1]) or _CJK.match(line[0]):
            out += line
        else:
            out += " " + line
    return _BULLET.sub("- ", out)


def _center_inside(bbox, outer) -> bool:
    cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]


def _xy_cut(items: list[_Item]) -> list[_Item]:
    """Orders items for reading: recursive XY-cut, columns first when the page really has columns."""
    if len(items) <= 1:
        return items
    columns = _split(items, axis=0)
    if len(columns) > 1:
        top = min(i.bbox[1] for i in items)
        height = max(i.bbox[3] for i in items) - top
        # Cut vertically first only for true columns (each spans most of the region's height);
        # otherwise a side-by-side figure and paragraph would be read as two columns.
        if all(_extent(c, 1) >= 0.5 * height for c in columns):
            return [i for c in columns for i in _xy_cut(c)]
    rows = _split(items, axis=1)
    if len(rows) > 1:
        return [i for r in rows for i in _xy_cut(r)]
    if len(columns) > 1:
        return [i for c in columns for i in _xy_cut(c)]
    return sorted(items, key=lambda i: (round(i.bbox[1]), i.bbox[0]))


def _split(items: list[_Item], axis: int) -> list[list[_Item]]:
    """Splits items into groups separated by a gap along `axis` (0: x, 1: y) that no item crosses."""
    ordered = sorted(items, key=lambda i: i.bbox[axis])
    groups, current, end = [], [ordered[0]], ordered[0].bbox[axis + 2]
    for item in ordered[1:]:
        if item.bbox[axis] > end + 1.0:  # 1 pt tolerance for touching boxes
            groups.append(current)
            current = []
        current.append(item)
        end = max(end, item.bbox[axis + 2])
    groups.append(current)
    return groups


def _extent(items: list[_Item], axis: int) -> float:
    return max(i.bbox[axis + 2] for i in items) - min(i.bbox[axis] for i in items)


def _body_font_size(pages: list[list[_Item] | None]) -> float:
    sizes: Counter[float] = Counter()
    for items in pages:
        for item in items or ():
            if item.kind == "text":
                sizes[round(item.size, 1)] += len(item.text)
    return sizes.most_common(1)[0][0] if sizes else 0.0


def _decorative_xrefs(pages: list[list[_Item] | None], options: PdfOptions) -> set[int]:
    on_pages: dict[int, set[int]] = defaultdict(set)
    for number, items in enumerate(pages):
        for item in items or ():
            if item.kind == "image" and item.xref:
                on_pages[item.xref].add(number)
    return {xref for xref, where in on_pages.items() if len(where) >= options.repeated_image_pages}


def _render(item: _Item, body_size: float, options: PdfOptions, images: "_PdfImages", page: int) -> str:
    if item.kind == "icon":
        return ""
    if item.kind == "table":
        return item.text
    if item.kind == "image":
        return images.marker(item, page)
    if body_size and item.size >= options.heading_ratio * body_size and len(item.text) <= 150:
        level = 1 if item.size >= 1.6 * body_size else 2 if item.size >= 1.35 * body_size else 3
        return "#" * level + " " + item.text
    return item.text


def _table_markdown(rows: list[list[str | None]]) -> str:
    rows = [[_cell(c) for c in row] for row in rows if any(c and c.strip() for c in row)]
    if not rows or max(len(r) for r in rows) < 2 and len(rows) < 2:
        return ""
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def _cell_text(words: list[tuple], cell) -> str | None:
    """The text of one table cell from the page's words (MuPDF's own spacing; the table finder's
    character-level text drops spaces). None for a cell swallowed by a merged neighbour."""
    if cell is None:
        return None
    lines: dict[tuple[int, int], list[str]] = {}
    for x0, y0, x1, y1, word, block, line, _ in words:  # words come in reading order
        if _center_inside((x0, y0, x1, y1), cell):
            lines.setdefault((block, line), []).append(word)
    return _join_lines([" ".join(ws) for ws in lines.values()])


def _cell(value: str | None) -> str:
    return value.replace("|", "\\|") if value else ""


def _attach_inline_images(page, items: list[_Item]) -> None:
    """Inline images (BI ... EI in the content stream) have no xref; fetch their bytes from the text dict."""
    blocks = [b for b in page.get_text("dict", flags=pymupdf.TEXT_PRESERVE_IMAGES)["blocks"] if b.get("type") == 1]
    for item in items:
        if item.kind == "image" and item.xref == 0:
            match = min(blocks, key=lambda b: _bbox_distance(b["bbox"], item.bbox), default=None)
            if match is not None and _bbox_distance(match["bbox"], item.bbox) < 2.0:
                item.data = match["image"]


def _bbox_distance(a, b) -> float:
    return max(abs(a[k] - b[k]) for k in range(4))


class _PdfImages:
    """Decodes each image object once and turns placements into markers (or warnings)."""

    def __init__(self, doc, limits: ImageLimits, builder: DocumentBuilder, decorative: set[int]):
        self.doc, self.limits, self.builder, self.decorative = doc, limits, builder, decorative
        self._done: dict[int, NormalizedImage | None] = {}

    def marker(self, item: _Item, page: int) -> str:
        if item.xref in self.decorative:
            if item.xref not in self._done:
                self._done[item.xref] = None
                self.builder.warn("image_repeated", f"page {page}: image object {item.xref} appears on "
                                  "many pages and is treated as a logo or background; skipped")
            return ""
        if item.xref == 0:
            if item.data is None:
                self.builder.warn("image_undecodable", f"page {page}: an inline image could not be read; skipped")
                return ""
            image = self._generic(item.data, f"page {page}: inline image")
        else:
            if item.xref not in self._done:
                self._done[item.xref] = self._decode(item.xref, page)
            image = self._done[item.xref]
        return self.builder.add_image(image, page=page) if image is not None else ""

    def _generic(self, data: bytes, where: str) -> NormalizedImage | None:
        try:
            return normalize_image(data, self.limits)
        except ImageSkipped as skip:
            self.builder.warn(f"image_{skip.code}", f"{where} skipped: {skip.reason}")
            return None

    def _decode(self, xref: int, page: int) -> NormalizedImage | None:
        where = f"page {page}: image object {xref}"
        doc = self.doc
        try:
            width = int(doc.xref_get_key(xref, "Width")[1])
            height = int(doc.xref_get_key(xref, "Height")[1])
            check_dimensions(width, height, self.limits)
            smask = doc.xref_get_key(xref, "SMask")
            has_mask = smask[0] == "xref"
            filt = doc.xref_get_key(xref, "Filter")[1]
            decode = doc.xref_get_key(xref, "Decode")[0] != "null"
            if filt == "/DCTDecode" and not has_mask and not decode:
                raw = doc.xref_stream_raw(xref)
                if len(raw) > self.limits.max_bytes:
                    raise ImageSkipped("too_large", f"{len(raw):,} bytes exceeds the {self.limits.max_bytes:,}-byte limit")
                # Plain JPEG: Pillow's normalizer keeps RGB/Gray bytes as they are, and converts CMYK.
                return normalize_image(raw, self.limits)
            pix = pymupdf.Pixmap(doc, xref)
            if has_mask:
                try:
                    mask = pymupdf.Pixmap(doc, int(smask[1].split()[0]))
                    pix = pymupdf.Pixmap(pix, mask)
                except (RuntimeError, ValueError) as exc:
                    self.builder.warn("image_mask_dropped", f"{where}: soft mask could not be applied ({exc}); stored opaque")
            if pix.colorspace is not None and pix.colorspace.n not in (1, 3):
                pix = pymupdf.Pixmap(pymupdf.csRGB, pix)
            elif pix.colorspace is None and not pix.alpha:
                raise ImageSkipped("undecodable", "stencil mask without colour data")
            if pix.alpha and _opaque(pix):
                pix = pymupdf.Pixmap(pix, 0)
            if filt == "/DCTDecode" and not pix.alpha:
                data, fmt = pix.tobytes("jpg", jpg_quality=self.limits.jpeg_quality), "jpeg"
            else:
                data, fmt = pix.tobytes("png"), "png"
            return NormalizedImage(data, fmt, pix.width, pix.height)
        except ImageSkipped as skip:
            self.builder.warn(f"image_{skip.code}", f"{where} skipped: {skip.reason}")
        except (RuntimeError, ValueError) as exc:
            self.builder.warn("image_undecodable", f"{where} skipped: MuPDF cannot decode it ({exc})")
        return None


def _opaque(pix) -> bool:
    alpha = pix.samples[pix.n - 1 :: pix.n]  # the alpha channel is the last byte of every pixel
    return alpha.count(255) == len(alpha)
