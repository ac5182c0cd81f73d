"""DOCX extraction with python-docx: the body in document order, as Markdown, figures in place.

The body is walked element by element, so paragraphs, tables and images keep their order (the reference
read all paragraphs, then all tables, then appended the images). Headings become `#` lines (from the
style chain or an outline level), list paragraphs become `-` or numbered items with their nesting (the
numbering definitions are read, so `List Number` counts 1, 2, 3), tables become pipe tables, and each
picture (DrawingML or legacy VML, including inside tables and text boxes) becomes a marker where it is
anchored. Tracked deletions, field codes and the fallback copies of `mc:AlternateContent` are skipped, so
nothing is read twice. Headers, footers, footnotes and comments are not part of the body and are left out.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass

import docx
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table
from lxml import etree

from .images import ImageLimits, ImageSkipped, normalize_image
from .model import MARKER_RE, DocumentBuilder, ExtractionError, NormalizedImage

_NS = {
    "w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
    "a": "http://schemas.openxmlformats.org/drawingml/2006/main",
    "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
    "wp": "http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing",
    "v": "urn:schemas-microsoft-com:vml",
    "mc": "http://schemas.openxmlformats.org/markup-compatibility/2006",
    "c": "http://schemas.openxmlformats.org/drawingml/2006/chart",
    "dgm": "http://schemas.openxmlformats.org/drawingml/2006/diagram",
}


def _q(tag: str) -> str:
    prefix, name = tag.split(":")
    return f"{{{_NS[prefix]}}}{name}"


W_P, W_TBL, W_SDT, W_SDTCONTENT, W_CUSTOMXML = map(_q, ("w:p", "w:tbl", "w:sdt", "w:sdtContent", "w:customXml"))
W_T, W_TAB, W_BR, W_CR = map(_q, ("w:t", "w:tab", "w:br", "w:cr"))
W_NOBREAKHYPHEN, W_SOFTHYPHEN = _q("w:noBreakHyphen"), _q("w:softHyphen")
W_DRAWING, W_PICT, W_OBJECT = _q("w:drawing"), _q("w:pict"), _q("w:object")
W_TXBXCONTENT, W_PPR, W_RPR = _q("w:txbxContent"), _q("w:pPr"), _q("w:rPr")
W_ALTCHUNK, W_VAL = _q("w:altChunk"), _q("w:val")
_SKIP = set(map(_q, ("w:del", "w:delText", "w:instrText", "w:delInstrText", "w:moveFrom", "w:pPr", "w:rPr",
                     "w:footnoteReference", "w:endnoteReference", "w:commentReference")))
MC_ALTERNATE, MC_CHOICE, MC_FALLBACK = _q("mc:AlternateContent"), _q("mc:Choice"), _q("mc:Fallback")
A_BLIP, V_IMAGEDATA, WP_DOCPR = _q("a:blip"), _q("v:imagedata"), _q("wp:docPr")
R_EMBED, R_LINK, R_ID = _q("r:embed"), _q("r:link"), _q("r:id")

# python-docx parses every XML part into an lxml tree, which takes up to this many times the XML text in memory
# (measured peak RSS over XML size: 16x for ordinary runs of text, 23x for dense empty elements such as
# `<w:p/>`); other parts (media) are held as bytes once.
XML_TREE_FACTOR = 25
_MB = 1024 * 1024
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


@dataclass(frozen=True)
class _StyleInfo:
    name: str
    heading: int  # 0: not a heading
    num_id: str | None
    ilvl: int


def extract_docx(data: bytes, name: str, builder: DocumentBuilder, limits: ImageLimits,
                 max_memory: int = 1024 * _MB) -> str:
    """Extracts the body of the .docx `data` (from file `name`) into `builder`; returns the title.

    Raises:
        ExtractionError: not a ZIP package (an old .doc, an encrypted file, or garbage), a zip bomb (its parts
            would take more than `max_memory` bytes once inflated and parsed), or a package without a readable
            main document part.
    """
    _check_package(data, name, max_memory)
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile, etree.XMLSyntaxError) as exc:
        raise ExtractionError(name, f"not a valid .docx: the package is damaged ({type(exc).__name__}: {exc})") from None
    walker = _BodyWalker(document, builder, limits)
    walker.blocks(document.element.body)
    return (document.core_properties.title or walker.first_heading or "").strip()


def package_memory(infos: list[zipfile.ZipInfo]) -> tuple[int, int, int]:
    """(XML bytes, other bytes, estimated memory) of a package, from its central directory.

    The declared sizes can be trusted as upper bounds: zipfile stops inflating a member at its declared size
    (and then fails its CRC), so a lying header cannot make a part larger than it says.
    """
    xml = sum(i.file_size for i in infos if i.filename.lower().endswith((".xml", ".rels", ".vml")))
    other = sum(i.file_size for i in infos) - xml
    return xml, other, XML_TREE_FACTOR * xml + other


def _check_package(data: bytes, name: str, max_memory: int) -> None:
    if data[:8] == _OLE_MAGIC:
        raise ExtractionError(name, "this is an OLE compound file, not a .docx: a password-protected Office "
                              "document or a legacy .doc renamed; remove the password or re-save it as .docx")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ExtractionError(name, "not a valid .docx: the file is not a ZIP package (damaged, or another format renamed)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            xml, other, memory = package_memory(zf.infolist())
            names = set(zf.namelist())
    except zipfile.BadZipFile as exc:
        raise ExtractionError(name, f"not a valid .docx: the ZIP package is damaged ({exc})") from None
    if memory > max_memory:
        raise ExtractionError(name, f"the package inflates to {xml / _MB:,.0f} MB of XML and {other / _MB:,.0f} MB of "
                              f"other parts, about {memory / _MB:,.0f} MB in memory once parsed, over the "
                              f"{max_memory / _MB:,.0f} MB limit (a zip bomb? CLARA_MAX_ARCHIVE_MB)")
    if "word/document.xml" not in names and "[Content_Types].xml" not in names:
        raise ExtractionError(name, "not a valid .docx: the ZIP has no Word document part")


class _BodyWalker:
    def __init__(self, document, builder: DocumentBuilder, limits: ImageLimits):
        self.part = document.part
        self.builder = builder
        self.limits = limits
        self.styles = _read_styles(document)
        self.numbering = _read_numbering(document)
        self.counters: dict[tuple[str, int], int] = {}
        self.images: dict[str, NormalizedImage | None] = {}  # part name -> image (None when skipped)
        # w:tc element -> rendered text, so a merged cell renders once. Keyed by the element itself:
        # holding it keeps lxml's proxy (and so its identity) alive, which id() would not.
        self.cells: dict[object, str] = {}
        self.first_heading = ""
        self.warned: set[str] = set()

    # -- blocks -------------------------------------------------------------------------------------
    def blocks(self, container) -> None:
        items: list[str] = []  # consecutive list items form one block
        for el in container:
            tag = el.tag
            if tag == W_P:
                text, is_list_item = self.render_paragraph(el)
                if is_list_item and text:
                    items.append(text)
                    continue
                self.builder.add_block("\n".join(items))
                items = []
                self.builder.add_block(text)
                continue
            self.builder.add_block("\n".join(items))
            items = []
            if tag == W_TBL:
                self.builder.add_block(self.table(el))
            elif tag == W_SDT:
                content = el.find(W_SDTCONTENT)
                if content is not None:
                    self.blocks(content)
            elif tag == W_CUSTOMXML:
                self.blocks(el)
            elif tag == W_ALTCHUNK:
                self.warn_once("altchunk", "an embedded foreign-format chunk (altChunk) is not extracted")
        self.builder.add_block("\n".join(items))

    def paragraph(self, p) -> str:
        return self.render_paragraph(p)[0]

    def render_paragraph(self, p) -> tuple[str, bool]:
        """Returns the paragraph as Markdown, and whether it is a list item."""
        text = "\n".join(" ".join(line.split()) for line in self.inline(p).split("\n")).strip()
        if not text:
            return "", False
        style = self.paragraph_style(p)
        if style.heading:
            self.first_heading = self.first_heading or text
            return "#" * min(style.heading, 6) + " " + " ".join(text.split()), False
        if style.num_id and style.num_id != "0":
            label = self.list_label(style.num_id, style.ilvl)
            return "  " * style.ilvl + label + " ".join(text.split()), True
        return text, False

    def table(self, tbl) -> str:
        rows, seen = [], set()
        for row in Table(tbl, self.part).rows:
            cells = []
            for cell in row.cells:  # a merged cell is returned once per grid column / row it covers
                text = self.cell_text(cell._tc)
                if cell._tc in seen:
                    text = _strip_markers(text)  # repeat merged text, not the figure
                seen.add(cell._tc)
                cells.append(text)
            rows.append(cells)
        rows = [r for r in rows if any(c.strip() for c in r)]
        if not rows:
            return ""
        width = max(len(r) for r in rows)
        rows = [r + [""] * (width - len(r)) for r in rows]
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * width]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows[1:]])

    def cell_text(self, tc) -> str:
        key = tc
        if key not in self.cells:
            parts = []
            for el in tc:
                if el.tag == W_P:
                    parts.append(self.paragraph(el))
                elif el.tag == W_TBL:  # nested table: flattened into the cell
                    parts.append(" ".join(self.cell_text(c) for c in el.iter(_q("w:tc"))))
            text = "<br>".join(" ".join(p.split()) for p in parts if p.strip())
            self.cells[key] = text.replace("|", "\\|")
        return self.cells[key]

    # -- inline content ------------------------------------------------------------------------------
    def inline(self, el) -> str:
        parts: list[str] = []
        self._walk(el, parts)
        return "".join(parts)

    def _walk(self, el, parts: list[str]) -> None:
        for child in el:
            tag = child.tag
            if tag == W_T:
                parts.append(child.text or "")
            elif tag == W_TAB:
                parts.append("\t")
            elif tag in (W_BR, W_CR):
                parts.append("\n")
            elif tag == W_NOBREAKHYPHEN:
                parts.append("-")
            elif tag in _SKIP or tag == W_SOFTHYPHEN:
                continue
            elif tag in (W_DRAWING, W_PICT, W_OBJECT):
                parts.append(self.drawing(child))
            elif tag == MC_ALTERNATE:
                # Choice and Fallback hold the same content in two encodings: read only one.
                chosen = child.find(MC_CHOICE)
                if chosen is None:
                    chosen = child.find(MC_FALLBACK)
                if chosen is not None:
                    self._walk(chosen, parts)
            elif isinstance(tag, str):
                self._walk(child, parts)

    def drawing(self, el) -> str:
        out = []
        docpr = next(el.iter(WP_DOCPR), None)
        alt = ""
        if docpr is not None:
            alt = docpr.get("descr") or docpr.get("title") or ""
        for blip in el.iter(A_BLIP, V_IMAGEDATA):
            rid = blip.get(R_EMBED) or blip.get(R_ID)
            if rid:
                out.append(self.image(rid, alt))
            elif blip.get(R_LINK):
                self.builder.warn("image_linked", f"a linked (not embedded) picture{_alt(alt)} is skipped; embed it in the document")
        if next(el.iter(_q("c:chart")), None) is not None:
            self.builder.warn("chart_skipped", f"a chart object{_alt(alt)} is not rasterised; paste it as a picture to keep it")
        if next(el.iter(_q("dgm:relIds")), None) is not None:
            self.builder.warn("smartart_skipped", f"a SmartArt diagram{_alt(alt)} is not rasterised; paste it as a picture to keep it")
        for box in el.iter(W_TXBXCONTENT):  # text boxes: their paragraphs, in place
            text = "\n".join(t for t in (self.paragraph(p) for p in box.iter(W_P)) if t)
            if text:
                out.append("\n" + text + "\n")
        return "".join(f" {m} " if m.startswith("[IMAGE_REF") else m for m in out if m)

    def image(self, rid: str, alt: str) -> str:
        try:
            part = self.part.related_parts[rid]
        except KeyError:
            self.builder.warn("image_missing", f"a picture{_alt(alt)} points to relationship {rid}, which does not exist; skipped")
            return ""
        name = str(part.partname)
        if name not in self.images:
            try:
                self.images[name] = normalize_image(part.blob, self.limits)
            except ImageSkipped as skip:
                self.builder.warn(f"image_{skip.code}", f"{name.lstrip('/')}{_alt(alt)} skipped: {skip.reason}")
                self.images[name] = None
        image = self.images[name]
        return self.builder.add_image(image, alt_text=alt) if image is not None else ""

    # -- styles and numbering ------------------------------------------------------------------------
    def paragraph_style(self, p) -> _StyleInfo:
        ppr = p.find(W_PPR)
        style_id = None
        num_id, ilvl, outline = None, None, None
        if ppr is not None:
            ps = ppr.find(_q("w:pStyle"))
            style_id = ps.get(W_VAL) if ps is not None else None
            num_id, ilvl = _num_pr(ppr)
            ol = ppr.find(_q("w:outlineLvl"))
            outline = int(ol.get(W_VAL)) if ol is not None and ol.get(W_VAL, "").isdigit() else None
        base = self.styles.get(style_id or "", _StyleInfo("", 0, None, 0))
        heading = outline + 1 if outline is not None and outline < 9 else base.heading
        level = ilvl if ilvl is not None else base.ilvl
        nested = _NESTED_LIST_STYLE.match(base.name)
        if nested and level == 0:  # "List Bullet 2" nests by style, with its own level-0 numbering
            level = int(nested.group(1)) - 1
        return _StyleInfo(base.name, heading, num_id if num_id is not None else base.num_id, level)

    def list_label(self, num_id: str, ilvl: int) -> str:
        fmt, start = self.numbering.get((num_id, ilvl), ("bullet", 1))
        for key in [k for k in self.counters if k[0] == num_id and k[1] > ilvl]:
            del self.counters[key]  # a shallower item restarts the deeper levels
        n = self.counters.get((num_id, ilvl), start - 1) + 1
        self.counters[(num_id, ilvl)] = n
        if fmt in ("bullet", "none"):
            return "- "
        if fmt == "lowerLetter":
            return f"{_letters(n)}. "
        if fmt == "upperLetter":
            return f"{_letters(n).upper()}. "
        if fmt == "lowerRoman":
            return f"{_roman(n).lower()}. "
        if fmt == "upperRoman":
            return f"{_roman(n)}. "
        return f"{n}. "

    def warn_once(self, code: str, message: str) -> None:
        if code not in self.warned:
            self.warned.add(code)
            self.builder.warn(code, message)


_NESTED_LIST_STYLE = re.compile(r"^List(?: Bullet| Number| Continue)? ([2-9])$", re.IGNORECASE)


def _alt(alt: str) -> str:
    return f' ("{alt.strip()[:60]}")' if alt.strip() else ""


def _strip_markers(text: str) -> str:
    return " ".join(MARKER_RE.sub("", text).split())


def _num_pr(ppr) -> tuple[str | None, int | None]:
    num_pr = ppr.find(_q("w:numPr"))
    if num_pr is None:
        return None, None
    nid, lvl = num_pr.find(_q("w:numId")), num_pr.find(_q("w:ilvl"))
    return (nid.get(W_VAL) if nid is not None else None,
            int(lvl.get(W_VAL)) if lvl is not None and lvl.get(W_VAL, "").isdigit() else None)


def _read_styles(document) -> dict[str, _StyleInfo]:
    raw: dict[str, tuple[str, str | None, int | None, str | None, int | None]] = {}
    for st in document.styles.element.iter(_q("w:style")):
        sid = st.get(_q("w:styleId"))
        name_el, based_el, ppr = st.find(_q("w:name")), st.find(_q("w:basedOn")), st.find(W_PPR)
        outline, num_id, ilvl = None, None, None
        if ppr is not None:
            ol = ppr.find(_q("w:outlineLvl"))
            outline = int(ol.get(W_VAL)) if ol is not None and ol.get(W_VAL, "").isdigit() else None
            num_id, ilvl = _num_pr(ppr)
        raw[sid] = (name_el.get(W_VAL) if name_el is not None else sid,
                    based_el.get(W_VAL) if based_el is not None else None, outline, num_id, ilvl)

    def resolve(sid: str, depth: int = 0) -> _StyleInfo:
        name, based, outline, num_id, ilvl = raw[sid]
        parent = resolve(based, depth + 1) if based in raw and depth < 20 else _StyleInfo("", 0, None, 0)
        lowered = (name or "").lower()
        heading = 0
        if lowered.startswith("heading ") and lowered[8:].isdigit():
            heading = int(lowered[8:])
        elif lowered == "title":
            heading = 1
        elif outline is not None and outline < 9:
            heading = outline + 1
        elif lowered not in ("normal", "body text"):
            heading = parent.heading
        return _StyleInfo(name, heading, num_id if num_id is not None else parent.num_id,
                          ilvl if ilvl is not None else parent.ilvl)

    return {sid: resolve(sid) for sid in raw}


def _read_numbering(document) -> dict[tuple[str, int], tuple[str, int]]:
    """(numId, level) -> (number format, start value)."""
    try:
        numbering = document.part.numbering_part.element
    except (NotImplementedError, KeyError, AttributeError):
        return {}
    abstract: dict[str, dict[int, tuple[str, int]]] = {}
    for an in numbering.iter(_q("w:abstractNum")):
        levels = {}
        for lvl in an.iter(_q("w:lvl")):
            fmt_el, start_el = lvl.find(_q("w:numFmt")), lvl.find(_q("w:start"))
            ilvl = lvl.get(_q("w:ilvl"), "0")
            start = start_el.get(W_VAL) if start_el is not None else "1"
            levels[int(ilvl) if ilvl.isdigit() else 0] = (
                fmt_el.get(W_VAL) if fmt_el is not None else "decimal", int(start) if start.isdigit() else 1)
        abstract[an.get(_q("w:abstractNumId"))] = levels
    out: dict[tuple[str, int], tuple[str, int]] = {}
    for num in numbering.iter(_q("w:num")):
        aid = num.find(_q("w:abstractNumId"))
        levels = dict(abstract.get(aid.get(W_VAL) if aid is not None else "", {}))
        for override in num.iter(_q("w:lvlOverride")):
            so = override.find(_q("w:startOverride"))
            lvl = int(override.get(_q("w:ilvl"), "0"))
            if so is not None and lvl in levels and so.get(W_VAL, "").isdigit():
                levels[lvl] = (levels[lvl][0], int(so.get(W_VAL)))
        for lvl, value in levels.items():
            out[(num.get(_q("w:numId")), lvl)] = value
    return out


def _letters(n: int) -> str:
    s = ""
    while n > 0:
        n, r = divmod(n - 1, 26)
        s = chr(97 + r) + s
    return s


def _roman(n: int) -> str:
    out = ""
    for value, numeral in ((1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
                           (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")):
        while n >= value:
            out += numeral
            n -= value
    return out
