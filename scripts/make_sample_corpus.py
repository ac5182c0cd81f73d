"""Generate the shipped sample corpus ``raw_data/``.

The corpus belongs to one fictional company, **Kestrel Dynamics Co., Ltd.**
(凯斯特动力科技有限公司), maker of the EG-series industrial edge gateways
(EG-400, EG-200), the PS-24-60 DIN-rail power supply and the KestrelOS firmware.
All documents share the same product names, specifications and policies, so
the question/answer pairs synthesized from them are consistent with each other.

Generated files (relative to ``--out``, default ``raw_data``)::

    eg400_user_manual_en.pdf            English product manual (PDF, figures, tables)
    eg400_user_manual_zh.pdf            Chinese product manual (PDF, CJK text)
    field_service_procedure.docx        English installation/service procedure (DOCX)
    eg_series_troubleshooting_faq.md    Troubleshooting FAQ (Markdown, pipe table)
    firmware_release_notes.txt          KestrelOS release notes (plain text)
    system_architecture_diagram.png     Standalone system diagram (EN/ZH labels)
    eg200_front_panel.jpg               Standalone annotated product rendering
    policies/warranty_and_returns_policy.pdf   Warranty & RMA policy (PDF)
    policies/travel_and_expense_policy.docx    Travel & expense policy (DOCX)
    policies/信息安全管理制度.docx               Information security policy (DOCX, Chinese)

The PDFs are laid out with PyMuPDF's Story HTML engine (real text including
Chinese, ruled tables that ``page.find_tables()`` detects, PNG figures with an
alpha channel embedded with an /SMask, JPEG figures embedded as-is with
/DCTDecode).  The DOCX files use python-docx with real heading, list and table
styles and inline pictures.  All figures are drawn with Pillow.

The output is deterministic: fixed PDF metadata and no random /ID, fixed DOCX
core properties and zip timestamps, fixed image encoder settings.  Byte-identical
output across machines additionally needs the same versions of PyMuPDF, Pillow
(and its zlib/libjpeg) and python-docx.  Requires the DejaVu Sans fonts
(Debian/Ubuntu package fonts-dejavu-core); Chinese glyphs come from PyMuPDF's
built-in CJK font.

Usage::

    .venv/bin/python scripts/make_sample_corpus.py [--out raw_data]
    .venv/bin/python scripts/make_sample_corpus.py --verify             # generate, then check with the libraries
    .venv/bin/python scripts/make_sample_corpus.py --check-determinism  # generate twice, compare sha256

No network access is needed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import html
import io
import math
import random
import re
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import docx
import pymupdf
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Cm, Pt, RGBColor
from PIL import Image, ImageChops, ImageDraw, ImageFont

# ---------------------------------------------------------------------------
# Shared facts: every document draws on these, so they stay consistent.
# ---------------------------------------------------------------------------

COMPANY_EN = "Kestrel Dynamics Co., Ltd."
COMPANY_ZH = "凯斯特动力科技有限公司"
ADDRESS_EN = "Building 7, 1288 Fenghuang Road, Suzhou Industrial Park, Jiangsu 215126, China"
ADDRESS_ZH = "江苏省苏州工业园区凤凰路 1288 号 7 号楼（邮编 215126）"
SUPPORT_EMAIL = "support@kestrel-dynamics.example"
RMA_EMAIL = "rma@kestrel-dynamics.example"
SECURITY_EMAIL = "security@kestrel-dynamics.example"
FINANCE_EMAIL = "finance@kestrel-dynamics.example"
SUPPORT_PHONE = "+86 512 6288 0100"
SUPPORT_PHONE_US = "+1 (555) 010-2400"
SUPPORT_HOURS_EN = "Monday to Friday, 08:30-17:30 China Standard Time (UTC+8)"
SUPPORT_HOURS_ZH = "周一至周五 8:30-17:30（北京时间）"
PORTAL = "https://support.kestrel-dynamics.example"
CLOUD = "https://cloud.kestrel-dynamics.example"
FIRMWARE = "KestrelOS 3.2.1"
DEFAULT_IP = "192.168.10.1"

# Fixed timestamp used for PDF metadata, DOCX core properties and zip entries.
FIXED_DATE = dt.datetime(2024, 9, 16, 9, 0, 0)
PDF_DATE = "D:20240916090000+08'00'"
ZIP_DATE = (2024, 9, 16, 9, 0, 0)

DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
DEJAVU_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
DEJAVU_OBLIQUE = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Oblique.ttf"

# Colour palette shared by the figures.
NAVY = (28, 52, 84)
BLUE = (46, 110, 180)
LIGHT_BLUE = (214, 230, 247)
ORANGE = (232, 126, 34)
LIGHT_ORANGE = (253, 229, 204)
GREEN = (46, 150, 80)
LIGHT_GREEN = (213, 240, 218)
RED = (200, 40, 40)
GREY = (110, 116, 124)
LIGHT_GREY = (236, 238, 241)
DARK = (33, 37, 41)
WHITE = (255, 255, 255)


# ---------------------------------------------------------------------------
# Drawing helpers (Pillow).  Figures are drawn at 2x and downsampled, which
# gives anti-aliased lines without any randomness.
# ---------------------------------------------------------------------------

SCALE = 2


@functools.lru_cache(maxsize=None)
def _font(size: int, bold: bool, cjk: bool) -> ImageFont.FreeTypeFont:
    if cjk:
        return ImageFont.truetype(io.BytesIO(pymupdf.Font("cjk").buffer), size)
    return ImageFont.truetype(DEJAVU_BOLD if bold else DEJAVU, size)


def _is_cjk(text: str) -> bool:
    return any(ord(ch) >= 0x2E80 for ch in text)


class Canvas:
    """A small drawing surface in logical pixels (rendered at ``SCALE``x)."""

    def __init__(self, width: int, height: int, background=(255, 255, 255, 255)):
        self.width, self.height = width, height
        self.img = Image.new("RGBA", (width * SCALE, height * SCALE), background)
        self.draw = ImageDraw.Draw(self.img)

    # -- primitives ---------------------------------------------------------
    @staticmethod
    def _s(values):
        return [v * SCALE for v in values]

    def font(self, size: int, bold: bool = False, text: str = ""):
        return _font(size * SCALE, bold and not _is_cjk(text), _is_cjk(text))

    def rect(self, box, fill=None, outline=DARK, width=2, radius=0):
        self.draw.rounded_rectangle(self._s(box), radius=radius * SCALE, fill=fill,
                                    outline=outline, width=width * SCALE if outline else 0)

    def ellipse(self, box, fill=None, outline=DARK, width=2):
        self.draw.ellipse(self._s(box), fill=fill, outline=outline,
                          width=width * SCALE if outline else 0)

    def polygon(self, points, fill=None, outline=DARK, width=2):
        flat = [c * SCALE for p in points for c in p]
        self.draw.polygon(flat, fill=fill, outline=outline, width=width * SCALE if outline else 0)

    def line(self, points, fill=DARK, width=2, dash: int = 0):
        pts = [(x * SCALE, y * SCALE) for x, y in points]
        if not dash:
            self.draw.line(pts, fill=fill, width=width * SCALE, joint="curve")
            return
        for (x1, y1), (x2, y2) in zip(pts, pts[1:]):
            length = math.hypot(x2 - x1, y2 - y1)
            step = dash * SCALE
            for start in range(0, int(length), 2 * step):
                end = min(start + step, length)
                fx, fy = (x2 - x1) / length, (y2 - y1) / length
                self.draw.line([(x1 + fx * start, y1 + fy * start), (x1 + fx * end, y1 + fy * end)],
                               fill=fill, width=width * SCALE)

    def arrow(self, points, fill=DARK, width=2, head=9, label: str = "", label_size=13,
              label_pos: float = 0.5, label_offset=(6, -18), dash: int = 0):
        """Polyline with an arrow head at the last point, optional label on the longest segment."""
        (x1, y1), (x2, y2) = points[-2], points[-1]
        angle = math.atan2(y2 - y1, x2 - x1)
        tip = (x2, y2)
        base = (x2 - head * math.cos(angle), y2 - head * math.sin(angle))
        self.line(points[:-1] + [base], fill=fill, width=width, dash=dash)
        left = (base[0] + head * 0.55 * math.sin(angle), base[1] - head * 0.55 * math.cos(angle))
        right = (base[0] - head * 0.55 * math.sin(angle), base[1] + head * 0.55 * math.cos(angle))
        self.polygon([tip, left, right], fill=fill, outline=None)
        if label:
            seg = max(zip(points, points[1:]), key=lambda s: math.hypot(s[1][0] - s[0][0], s[1][1] - s[0][1]))
            lx = seg[0][0] + (seg[1][0] - seg[0][0]) * label_pos + label_offset[0]
            ly = seg[0][1] + (seg[1][1] - seg[0][1]) * label_pos + label_offset[1]
            self.text((lx, ly), label, size=label_size, fill=fill)

    def text(self, xy, text: str, size=14, fill=DARK, bold=False, anchor="la"):
        # The CJK font has no bold face: emulate it with a thin stroke.
        stroke = 1 if bold and _is_cjk(text) else 0
        self.draw.text((xy[0] * SCALE, xy[1] * SCALE), text, font=self.font(size, bold, text),
                       fill=fill, anchor=anchor, stroke_width=stroke, stroke_fill=fill)

    def text_block(self, box, lines, size=14, fill=DARK, bold_first=False, spacing=1.35, align="center"):
        """Draw lines centred vertically in box (horizontal alignment: center or left)."""
        if isinstance(lines, str):
            lines = lines.split("\n")
        x0, y0, x1, y1 = box
        height = len(lines) * size * spacing
        y = (y0 + y1) / 2 - height / 2 + size * spacing / 2
        for i, line in enumerate(lines):
            bold = bold_first and i == 0
            if align == "center":
                self.text(((x0 + x1) / 2, y), line, size=size, fill=fill, bold=bold, anchor="mm")
            else:
                self.text((x0 + 8, y), line, size=size, fill=fill, bold=bold, anchor="lm")
            y += size * spacing

    def box(self, box, lines, fill=LIGHT_BLUE, outline=BLUE, size=14, radius=8, bold_first=True, width=2):
        self.rect(box, fill=fill, outline=outline, radius=radius, width=width)
        self.text_block(box, lines, size=size, bold_first=bold_first)

    def diamond(self, center, w, h, lines, fill=LIGHT_ORANGE, outline=ORANGE, size=13):
        cx, cy = center
        self.polygon([(cx, cy - h / 2), (cx + w / 2, cy), (cx, cy + h / 2), (cx - w / 2, cy)],
                     fill=fill, outline=outline)
        self.text_block((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), lines, size=size)

    def callout(self, number: int, xy, radius=11, fill=ORANGE):
        x, y = xy
        self.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill, outline=WHITE, width=2)
        self.text((x, y), str(number), size=int(radius * 1.15), fill=WHITE, bold=True, anchor="mm")

    # -- output -------------------------------------------------------------
    def image(self) -> Image.Image:
        return self.img.resize((self.width, self.height), Image.LANCZOS)


def png_bytes(img: Image.Image, colors: int = 256) -> bytes:
    """Encode as PNG; RGBA input stays RGBA (colour type 6, a real alpha channel).

    The colours are first reduced to a 256-entry palette (deterministic octree) and expanded back to
    RGBA: flat diagrams look the same, and the files shrink by about a third.
    """
    if colors:
        mode = "RGBA" if img.mode == "RGBA" else "RGB"
        img = img.convert(mode).quantize(colors, method=Image.FASTOCTREE).convert(mode)
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def jpeg_bytes(img: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality, subsampling=2, optimize=False,
                            progressive=False)
    return buf.getvalue()


def noise_layer(size, seed: int, strength: int = 10) -> Image.Image:
    """Deterministic grain (seeded), used to make renderings look photographic."""
    rng = random.Random(seed)
    w, h = size
    data = bytes(128 + rng.randint(-strength, strength) for _ in range(w * h))
    return Image.frombytes("L", size, data)


def photo_finish(img: Image.Image, seed: int, strength: int = 9) -> Image.Image:
    """Add seeded grain and a soft vignette so a flat rendering looks like a photo."""
    img = img.convert("RGB")
    grain = noise_layer(img.size, seed, strength).convert("RGB")
    img = ImageChops.add(img, grain, scale=1.0, offset=-128)
    # radial_gradient: 0 in the centre, 255 at the rim -> 255..205 multiplier
    vignette = Image.radial_gradient("L").resize(img.size, Image.BILINEAR)
    vignette = vignette.point(lambda v: 255 - v // 5).convert("RGB")
    return ImageChops.multiply(img, vignette)


# ---------------------------------------------------------------------------
# Figures.  One function per picture; each returns encoded bytes.
# PNG figures keep a transparent background (alpha channel) on purpose.
# ---------------------------------------------------------------------------

TRANSPARENT = (255, 255, 255, 0)


def _terminal_block(c: Canvas, x: float, y: float, labels, pitch=24, label_size=10, label_above=True,
                    label_colour=WHITE):
    """A row of screw terminals with pin labels; returns the block's box."""
    w = pitch * len(labels)
    c.rect((x, y, x + w, y + 30), fill=(60, 160, 90), outline=(30, 90, 50), width=1, radius=2)
    for i, name in enumerate(labels):
        cx = x + pitch * i + pitch / 2
        c.ellipse((cx - 7, y + 8, cx + 7, y + 22), fill=(200, 204, 208), outline=(90, 90, 90), width=1)
        c.line([(cx - 4, y + 15), (cx + 4, y + 15)], fill=(90, 90, 90), width=1)
        ty = y - 8 if label_above else y + 40
        c.text((cx, ty), name, size=label_size, fill=label_colour, anchor="mm", bold=True)
    return (x, y, x + w, y + 30)


def _rj45(c: Canvas, x: float, y: float, name: str):
    c.rect((x, y, x + 56, y + 50), fill=(200, 200, 196), outline=(80, 80, 80), width=2, radius=3)
    c.rect((x + 8, y + 10, x + 48, y + 44), fill=(30, 30, 30), outline=None)
    c.rect((x + 20, y + 38, x + 36, y + 46), fill=(30, 30, 30), outline=None)
    c.ellipse((x + 4, y + 2, x + 10, y + 8), fill=(90, 200, 90), outline=None)
    c.ellipse((x + 46, y + 2, x + 52, y + 8), fill=(240, 180, 40), outline=None)
    c.text((x + 28, y + 62), name, size=11, fill=WHITE, anchor="mm", bold=True)


def fig_eg400_front_panel() -> bytes:
    """EG-400 front panel with numbered callouts (PNG, transparent background)."""
    c = Canvas(900, 600, TRANSPARENT)
    body = (285, 40, 615, 565)
    c.rect((body[0] + 6, body[1] + 6, body[2] + 6, body[3] + 6), fill=(0, 0, 0, 60), outline=None, radius=14)
    c.rect(body, fill=(58, 68, 82), outline=(30, 36, 44), width=3, radius=14)
    c.rect((body[0] + 12, body[1] + 12, body[2] - 12, body[3] - 12), fill=None, outline=(90, 102, 118), width=1, radius=10)
    # LTE antenna connector on the top edge
    c.rect((560, 22, 584, 42), fill=(212, 175, 55), outline=(120, 96, 20), width=1, radius=2)
    # top terminal rows: power + digital inputs, then relay outputs
    _terminal_block(c, 305, 80, ["V+", "V-", "FG"])
    _terminal_block(c, 400, 80, ["DI1", "DI2", "DI3", "DI4", "COM"], pitch=26)
    _terminal_block(c, 475, 140, ["DO1", "DO1", "DO2", "DO2"], pitch=30, label_size=9, label_above=False)
    # brand plate
    c.text((310, 150), "KESTREL", size=20, fill=WHITE, bold=True)
    c.text((310, 176), "EG-400-L  Edge Gateway", size=12, fill=(200, 210, 222))
    # LEDs
    leds = [("PWR", (70, 210, 90)), ("RUN", (70, 210, 90)), ("NET", (245, 170, 40)),
            ("ERR", (90, 40, 40)), ("SIG", (70, 210, 90))]
    for i, (name, colour) in enumerate(leds):
        y = 225 + i * 26
        c.ellipse((312, y - 7, 326, y + 7), fill=colour, outline=(20, 20, 20), width=1)
        c.text((336, y), name, size=12, fill=WHITE, anchor="lm", bold=True)
    # console, reset, SIM
    c.rect((470, 222, 520, 240), fill=(20, 20, 20), outline=(150, 150, 150), width=2, radius=8)
    c.text((530, 231), "CONSOLE", size=10, fill=WHITE, anchor="lm")
    c.ellipse((488, 262, 502, 276), fill=(15, 15, 15), outline=(150, 150, 150), width=2)
    c.text((530, 269), "RESET", size=10, fill=WHITE, anchor="lm")
    c.rect((462, 296, 528, 316), fill=(30, 30, 30), outline=(150, 150, 150), width=2, radius=3)
    c.ellipse((518, 302, 526, 310), fill=(120, 120, 120), outline=None)
    c.text((536, 306), "SIM", size=10, fill=WHITE, anchor="lm")
    # Ethernet
    _rj45(c, 340, 370, "ETH1 WAN")
    _rj45(c, 470, 370, "ETH2 LAN")
    # bottom terminal row: serial ports and CAN
    _terminal_block(c, 302, 505, ["A", "B", "G", "A", "B", "G", "H", "L"], pitch=36, label_size=10)
    c.text((356, 478), "COM1", size=10, fill=(200, 210, 222), anchor="mm")
    c.text((464, 478), "COM2", size=10, fill=(200, 210, 222), anchor="mm")
    c.text((554, 478), "CAN", size=10, fill=(200, 210, 222), anchor="mm")

    left = [
        (1, (340, 95), (255, 70), ["Power input V+ / V- / FG", "9-36 V DC, reverse-polarity safe"]),
        (4, (318, 250), (255, 250), ["Status LEDs", "PWR, RUN, NET, ERR, SIG"]),
        (8, (368, 395), (255, 395), ["ETH1 (WAN) / ETH2 (LAN)", "10/100/1000 Mbps RJ45"]),
        (9, (356, 520), (255, 525), ["COM1 / COM2 RS-485", "A, B, GND - isolated 2 kV"]),
    ]
    right = [
        (11, (572, 30), (645, 40), ["LTE antenna (SMA female)", "EG-400-L only"]),
        (2, (465, 95), (645, 100), ["Digital inputs DI1-DI4", "dry contact or 10-30 V"]),
        (3, (535, 155), (645, 165), ["Relay outputs DO1, DO2", "30 V DC / 2 A max"]),
        (5, (495, 231), (645, 225), ["USB-C console", "115200 baud, 8N1"]),
        (6, (495, 269), (645, 280), ["RESET pinhole", "hold > 10 s: factory reset"]),
        (7, (495, 306), (645, 335), ["Nano-SIM tray", "push-push, power off first"]),
        (10, (573, 520), (645, 525), ["CAN bus (H, L)", "CAN 2.0B, up to 1 Mbps"]),
    ]
    for number, target, anchor, lines in left + right:
        is_left = anchor[0] < 450
        c.line([target, anchor], fill=ORANGE, width=2)
        c.ellipse((target[0] - 3, target[1] - 3, target[0] + 3, target[1] + 3), fill=ORANGE, outline=None)
        c.callout(number, anchor, radius=12)
        tx = anchor[0] - 18 if is_left else anchor[0] + 18
        for j, line in enumerate(lines):
            c.text((tx, anchor[1] - 8 + j * 17), line, size=12 if j == 0 else 11,
                   fill=DARK if j == 0 else GREY, bold=j == 0, anchor="rm" if is_left else "lm")
    return png_bytes(c.image())


def _ground_symbol(c: Canvas, x: float, y: float, colour=DARK):
    c.line([(x, y), (x, y + 12)], fill=colour, width=2)
    for i, half in enumerate((14, 9, 4)):
        c.line([(x - half, y + 12 + i * 5), (x + half, y + 12 + i * 5)], fill=colour, width=2)


def _resistor(c: Canvas, x: float, y1: float, y2: float):
    """A vertical resistor symbol between y1 and y2."""
    mid = (y1 + y2) / 2
    c.line([(x, y1), (x, mid - 18)], width=2)
    c.rect((x - 7, mid - 18, x + 7, mid + 18), fill=WHITE, outline=DARK, width=2)
    c.line([(x, mid + 18), (x, y2)], width=2)


def fig_eg400_wiring() -> bytes:
    """Power and RS-485 wiring of the EG-400 (JPEG)."""
    c = Canvas(960, 580, (250, 250, 247, 255))
    c.text((480, 26), "EG-400 wiring: 24 V DC power and RS-485 Modbus RTU bus (COM1)", size=17, bold=True, anchor="mm")
    # power supply
    c.box((20, 90, 200, 230), ["PS-24-60", "DIN-rail power supply", "24 V DC / 2.5 A", "(60 W)"],
          fill=LIGHT_GREY, outline=GREY, size=13)
    c.text((110, 252), "AC input 100-240 V", size=11, fill=GREY, anchor="mm")
    c.text((110, 268), "via breaker QF1 (2 A, C-curve)", size=11, fill=GREY, anchor="mm")
    # gateway
    c.rect((330, 70, 520, 420), fill=(226, 232, 240), outline=NAVY, radius=8)
    c.text((425, 92), "EG-400", size=16, bold=True, anchor="mm")
    pins = {"V+": 120, "V-": 160, "FG": 200, "COM1 A": 290, "COM1 B": 330, "COM1 GND": 370}
    for name, y in pins.items():
        c.rect((330, y - 10, 352, y + 10), fill=(60, 160, 90), outline=(30, 90, 50), width=1)
        c.text((360, y), name, size=12, anchor="lm", bold=True)
    # power wires
    c.line([(200, 120), (330, 120)], fill=RED, width=4)
    c.line([(200, 160), (330, 160)], fill=(20, 20, 20), width=4)
    c.text((206, 110), "+V", size=11, bold=True, anchor="lm")
    c.text((206, 150), "-V", size=11, bold=True, anchor="lm")
    c.line([(330, 200), (290, 200), (290, 300)], fill=(60, 160, 60), width=4)
    _ground_symbol(c, 290, 300)
    c.text((282, 345), "Protective earth", size=11, anchor="rm", fill=GREY)
    c.text((280, 110), "red 1.5 mm²", size=11, fill=RED, anchor="mm")
    c.text((280, 175), "black 1.5 mm²", size=11, anchor="mm")
    # internal termination
    c.text((425, 400), "SW1 = ON: internal 120 Ω", size=11, fill=NAVY, anchor="mm")
    # RS-485 bus to three meters
    bus_a, bus_b = 290, 330
    c.line([(520, bus_a), (905, bus_a)], fill=BLUE, width=3)
    c.line([(520, bus_b), (905, bus_b)], fill=ORANGE, width=3)
    c.line([(520, 370), (905, 370)], fill=GREY, width=2, dash=5)
    c.text((530, bus_a - 12), "A (D+)", size=11, fill=BLUE, bold=True)
    c.text((530, bus_b - 12), "B (D-)", size=11, fill=ORANGE, bold=True)
    c.text((530, 358), "GND (signal reference)", size=11, fill=GREY)
    for i, x in enumerate((620, 730, 840)):
        for y, colour in ((bus_a, BLUE), (bus_b, ORANGE)):
            c.ellipse((x - 4, y - 4, x + 4, y + 4), fill=colour, outline=None)
        c.line([(x - 12, bus_a), (x - 12, 440)], fill=BLUE, width=2)
        c.line([(x, bus_b), (x, 440)], fill=ORANGE, width=2)
        c.line([(x + 12, 370), (x + 12, 440)], fill=GREY, width=2)
        c.box((x - 48, 440, x + 48, 510), [f"Meter {i + 1}", f"Modbus ID {i + 1}", "9600 8N1"],
              fill=WHITE, outline=GREY, size=11)
    _resistor(c, 925, bus_a, bus_b)
    c.line([(905, bus_a), (925, bus_a)], fill=BLUE, width=3)
    c.line([(905, bus_b), (925, bus_b)], fill=ORANGE, width=3)
    c.text((940, 250), "120 Ω", size=12, anchor="rm", bold=True)
    c.text((900, 232), "end-of-line", size=10, anchor="rm", fill=GREY)
    notes = ["Shielded twisted pair, 24 AWG, 120 Ω; max. 1200 m, max. 32 devices per port",
             "Shield grounded at the gateway end only; daisy-chain topology, no star wiring"]
    for i, note in enumerate(notes):
        c.text((30, 538 + i * 18), "• " + note, size=12, fill=DARK)
    return jpeg_bytes(c.image(), quality=88)


def _din_rail_side(c: Canvas, x: float, y: float, h: float = 300):
    """Side view of a 35 mm DIN rail (a top-hat profile) standing vertically at x."""
    c.rect((x - 6, y, x + 6, y + h), fill=(190, 195, 200), outline=GREY, width=1)
    c.rect((x + 6, y + h / 2 - 60, x + 14, y + h / 2 + 60), fill=(170, 176, 182), outline=GREY, width=1)


def fig_din_rail_mounting_zh() -> bytes:
    """DIN-rail mounting and removal steps, Chinese labels (PNG, transparent background)."""
    c = Canvas(960, 560, TRANSPARENT)
    c.text((480, 24), "EG-400 导轨安装与拆卸（35 mm DIN 导轨，EN 60715）", size=18, bold=True, anchor="mm")
    panels = [(20, "步骤 1：挂上", "将设备背面上卡槽挂在导轨上沿"),
             (340, "步骤 2：压入", "向下压设备底部，听到“咔嗒”声即锁紧"),
             (660, "拆卸", "用一字螺丝刀向下拉动底部卡扣，向外取下")]
    for i, (x0, title, hint) in enumerate(panels):
        c.rect((x0, 50, x0 + 280, 470), fill=(255, 255, 255, 200), outline=(180, 186, 194), width=1, radius=10)
        c.callout(i + 1, (x0 + 24, 76), radius=13, fill=BLUE)
        c.text((x0 + 46, 76), title, size=16, bold=True, anchor="lm")
        rail_x = x0 + 170
        _din_rail_side(c, rail_x, 110, 330)
        if i == 0:   # device tilted, hooking onto the top edge
            body = [(rail_x - 12, 180), (rail_x - 120, 150), (rail_x - 160, 390), (rail_x - 52, 420)]
            c.polygon(body, fill=(58, 68, 82), outline=(30, 36, 44))
            c.arrow([(rail_x - 150, 140), (rail_x - 40, 190)], fill=ORANGE, width=4, head=16)
        elif i == 1:  # device upright, push at the bottom
            c.rect((rail_x - 112, 170, rail_x - 12, 410), fill=(58, 68, 82), outline=(30, 36, 44), radius=6)
            c.arrow([(rail_x - 62, 440), (rail_x - 62, 414)], fill=ORANGE, width=4, head=14)
            c.arrow([(rail_x - 170, 300), (rail_x - 118, 300)], fill=ORANGE, width=4, head=16)
            c.text((rail_x - 62, 452), "咔嗒", size=14, fill=ORANGE, bold=True, anchor="mm")
        else:         # removal with a screwdriver on the latch
            c.rect((rail_x - 112, 170, rail_x - 12, 410), fill=(58, 68, 82), outline=(30, 36, 44), radius=6)
            c.rect((rail_x - 80, 410, rail_x - 44, 422), fill=(220, 120, 40), outline=None)
            c.line([(rail_x - 62, 420), (rail_x - 130, 455)], fill=(150, 150, 150), width=5)
            c.line([(rail_x - 130, 455), (rail_x - 170, 476)], fill=(200, 40, 40), width=10)
            c.arrow([(rail_x - 20, 430), (rail_x - 20, 462)], fill=ORANGE, width=4, head=14)
            c.arrow([(rail_x - 118, 250), (rail_x - 200, 250)], fill=ORANGE, width=4, head=16)
        c.text((x0 + 140, 494), hint, size=12, anchor="mm")
    # clearance note
    c.rect((20, 516, 940, 552), fill=LIGHT_ORANGE, outline=ORANGE, width=1, radius=6)
    c.text((480, 534), "安装间距：设备上下方各预留 ≥ 20 mm，左右各预留 ≥ 10 mm；导轨须可靠接地。",
           size=14, anchor="mm", bold=True)
    return png_bytes(c.image())


def _chart_axes(c: Canvas, box, x_range, y_range, x_ticks, y_ticks, x_label, y_label, fmt_y=str):
    """Draw a grid with ticks; returns a function mapping data (x, y) to canvas coordinates."""
    x0, y0, x1, y1 = box
    (xmin, xmax), (ymin, ymax) = x_range, y_range

    def to_px(x, y):
        return (x0 + (x - xmin) / (xmax - xmin) * (x1 - x0), y1 - (y - ymin) / (ymax - ymin) * (y1 - y0))

    for t in x_ticks:
        px, _ = to_px(t, ymin)
        c.line([(px, y0), (px, y1)], fill=(220, 222, 226), width=1)
        c.text((px, y1 + 14), str(t), size=12, anchor="mm")
    for t in y_ticks:
        _, py = to_px(xmin, t)
        c.line([(x0, py), (x1, py)], fill=(220, 222, 226), width=1)
        c.text((x0 - 10, py), fmt_y(t), size=12, anchor="rm")
    c.line([(x0, y0), (x0, y1), (x1, y1)], fill=DARK, width=2)
    c.text(((x0 + x1) / 2, y1 + 40), x_label, size=14, anchor="mm", bold=True)
    c.text((x0 - 10, y0 - 22), y_label, size=14, anchor="lm", bold=True)
    return to_px


def fig_relay_derating_zh() -> bytes:
    """Relay output derating curve, Chinese labels (JPEG)."""
    c = Canvas(900, 540, (255, 255, 255, 255))
    c.text((450, 26), "继电器输出（DO1/DO2）负载电流降额曲线", size=18, bold=True, anchor="mm")
    to_px = _chart_axes(c, (110, 90, 840, 440), (-20, 70), (0, 2.5), list(range(-20, 71, 10)),
                        [0, 0.5, 1.0, 1.5, 2.0, 2.5], "环境温度（°C）", "每路最大负载电流（A，30 V DC）",
                        fmt_y=lambda v: f"{v:.1f}")
    curve = [(-20, 2.0), (45, 2.0), (60, 1.0)]
    area = [to_px(x, y) for x, y in curve] + [to_px(60, 0), to_px(-20, 0)]
    c.polygon(area, fill=(214, 234, 219), outline=None)
    c.line([to_px(x, y) for x, y in curve], fill=GREEN, width=4)
    for x, y in curve[1:]:
        px, py = to_px(x, y)
        c.ellipse((px - 6, py - 6, px + 6, py + 6), fill=GREEN, outline=WHITE, width=2)
    c.text((to_px(45, 2.0)[0] + 10, to_px(45, 2.0)[1] - 16), "45 °C，2.0 A", size=13, fill=GREEN, bold=True)
    c.text((to_px(60, 1.0)[0] + 10, to_px(60, 1.0)[1] - 16), "60 °C，1.0 A", size=13, fill=GREEN, bold=True)
    xs, _ = to_px(60, 0)
    c.line([(xs, 90), (xs, 440)], fill=RED, width=2, dash=6)
    c.text((xs + 6, 100), "最高工作温度 60 °C", size=13, fill=RED, anchor="lm")
    c.text(to_px(5, 1.0), "允许工作区", size=18, fill=(30, 110, 60), anchor="mm", bold=True)
    c.text((110, 500), "说明：45 °C 以上每升高 1 °C，每路允许电流降低约 0.067 A；感性负载须加续流二极管或 RC 吸收回路。",
           size=12, fill=GREY, anchor="lm")
    return jpeg_bytes(c.image(), quality=88)


def fig_rma_flowchart() -> bytes:
    """Warranty claim / RMA process flowchart (PNG, transparent background)."""
    c = Canvas(980, 700, TRANSPARENT)
    c.text((490, 24), "Warranty claim and RMA process", size=19, bold=True, anchor="mm")
    col, w = 235, 370
    steps = [
        (60, ["1. Customer opens a support case", f"support portal or {SUPPORT_PHONE}"]),
        (150, ["2. Remote diagnosis by Technical Support", "first response within 1 business day"]),
    ]
    for y, lines in steps:
        c.box((col - w / 2, y, col + w / 2, y + 60), lines, size=13)
    c.arrow([(col, 120), (col, 150)], width=2)
    c.arrow([(col, 210), (col, 238)], width=2)
    c.diamond((col, 285), 250, 92, ["Resolved", "remotely?"])
    c.arrow([(col + 125, 285), (700, 285)], label="Yes", label_pos=0.4, label_offset=(0, -20))
    c.box((700, 255, 940, 315), ["Case closed", "(log kept 5 years)"], fill=LIGHT_GREEN, outline=GREEN, size=13)
    c.arrow([(col, 331), (col, 360)], label="No", label_offset=(8, -12))
    c.box((col - w / 2, 360, col + w / 2, 420), ["3. RMA number issued (valid 30 days)", "format RMA-YYMM-NNNN"], size=13)
    c.arrow([(col, 420), (col, 448)])
    c.box((col - w / 2, 448, col + w / 2, 508), ["4. Customer ships the unit", "with RMA form, freight prepaid"], size=13)
    c.arrow([(col, 508), (col, 536)])
    c.box((col - w / 2, 536, col + w / 2, 596), ["5. Inspection at Suzhou Repair Center", "within 5 business days of receipt"], size=13)
    c.arrow([(col + w / 2, 566), (700, 566), (700, 521)])
    c.diamond((700, 475), 230, 90, ["Covered by", "warranty?"])
    c.arrow([(700, 430), (700, 392)], label="Yes", label_offset=(8, -6))
    c.box((580, 332, 940, 392), ["6a. Free repair or replacement", "return freight paid by Kestrel"], fill=LIGHT_GREEN, outline=GREEN, size=13)
    c.arrow([(815, 475), (865, 475), (865, 560)], label="No", label_offset=(8, -10))
    c.box((750, 560, 975, 640), ["6b. Quotation sent", "evaluation fee USD 75 / CNY 500,", "waived if repair approved"],
          fill=LIGHT_ORANGE, outline=ORANGE, size=12)
    c.text((490, 678), "Target turnaround: 10 business days from receipt to return shipment (in-warranty repairs).",
           size=13, fill=GREY, anchor="mm")
    return png_bytes(c.image())


def _barcode(c: Canvas, x: float, y: float, w: float, h: float, payload: str):
    """Deterministic barcode-looking stripes derived from the payload (decorative only)."""
    bits = "".join(f"{b:08b}" for b in hashlib.sha256(payload.encode()).digest())
    bar = w / len(bits[:96])
    for i, bit in enumerate(bits[:96]):
        if bit == "1":
            c.rect((x + i * bar, y, x + (i + 1) * bar, y + h), fill=DARK, outline=None)


def fig_product_label() -> bytes:
    """Photo-like rendering of the EG-400 rating/serial label on the housing (JPEG)."""
    c = Canvas(860, 480, (128, 136, 146, 255))
    # brushed aluminium housing
    for i in range(0, 480, 3):
        shade = 128 + int(10 * math.sin(i * 0.7)) + (i % 7)
        c.line([(0, i), (860, i)], fill=(shade, shade + 6, shade + 14), width=2)
    c.rect((94, 64, 774, 424), fill=(0, 0, 0, 70), outline=None, radius=8)
    c.rect((86, 56, 766, 416), fill=(250, 250, 246), outline=(200, 200, 196), width=1, radius=8)
    c.text((110, 88), "KESTREL DYNAMICS", size=20, fill=NAVY, bold=True, anchor="lm")
    c.text((110, 116), "Industrial Edge Gateway", size=14, fill=GREY, anchor="lm")
    rows = [("Model", "EG-400-L"), ("S/N", "K4L-2409-01234"), ("MAC", "02:4B:44:0A:1F:3C"),
            ("Input", "9-36 V DC, 12 W max"), ("Init. password", "see scratch-off field"),
            ("Made in", "China (Suzhou), 2024-09")]
    for i, (k, v) in enumerate(rows):
        y = 150 + i * 30
        c.text((110, y), k, size=14, fill=GREY, anchor="lm")
        c.text((260, y), v, size=15, fill=DARK, bold=True, anchor="lm")
    _barcode(c, 110, 334, 330, 44, "K4L-2409-01234")
    c.text((275, 392), "K4L-2409-01234", size=12, anchor="mm")
    for i, mark in enumerate(("CE", "FCC", "UKCA")):
        c.rect((520 + i * 76, 330, 584 + i * 76, 378), fill=None, outline=DARK, width=2, radius=6)
        c.text((552 + i * 76, 354), mark, size=16 if len(mark) < 3 else 13, bold=True, anchor="mm")
    # QR-like block (decorative, derived from the serial number)
    bits = "".join(f"{b:08b}" for b in hashlib.sha256(b"K4L-2409-01234-qr").digest())
    for i in range(15):
        for j in range(15):
            if bits[(i * 15 + j) % len(bits)] == "1" or (i < 4 and j < 4) or (i < 4 and j > 10) or (i > 10 and j < 4):
                c.rect((560 + j * 10, 120 + i * 10, 570 + j * 10, 130 + i * 10), fill=DARK, outline=None)
    c.text((635, 284), "Scan to register", size=12, anchor="mm", fill=GREY)
    # tamper seal on the housing screw
    c.ellipse((790, 380, 842, 432), fill=(200, 40, 40), outline=(120, 20, 20), width=2)
    c.text((816, 406), "VOID", size=11, fill=WHITE, bold=True, anchor="mm")
    c.text((816, 448), "warranty seal", size=11, fill=WHITE, anchor="mm")
    return jpeg_bytes(photo_finish(c.image(), seed=2409), quality=86)


def icon_logo_16() -> bytes:
    """Tiny 16x16 company logo (PNG with alpha); the extractor should skip it as an icon."""
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.polygon([(4, 56), (32, 6), (60, 56), (32, 40)], fill=BLUE + (255,))
    d.polygon([(32, 40), (60, 56), (32, 48)], fill=ORANGE + (255,))
    return png_bytes(img.resize((16, 16), Image.LANCZOS))


def fig_expense_approval_flow() -> bytes:
    """Expense claim approval routing by amount (PNG, transparent background)."""
    c = Canvas(1000, 520, TRANSPARENT)
    c.text((500, 24), "Expense claim approval routing (amounts per claim, USD)", size=19, bold=True, anchor="mm")
    lanes = ["Employee", "Line manager", "Department head", "CFO", "Finance"]
    for i, lane in enumerate(lanes):
        y = 50 + i * 90
        c.rect((10, y, 990, y + 90), fill=(245, 247, 250, 230) if i % 2 == 0 else (255, 255, 255, 200),
               outline=(200, 205, 212), width=1)
        c.text((70, y + 45), lane, size=12, bold=True, anchor="mm")
    c.line([(134, 50), (134, 500)], fill=(200, 205, 212), width=1)
    c.box((150, 62, 360, 128), ["Submit claim in ExpensePoint", "within 30 days of the trip,", "receipts for items ≥ USD 25"], size=11)
    c.arrow([(255, 128), (255, 158)])
    c.box((150, 158, 360, 218), ["Review and approve", "(all claims)"], size=12)
    c.arrow([(360, 188), (430, 188)])
    c.diamond((510, 188), 160, 76, ["Total", "> 1,000?"], size=12)
    c.arrow([(510, 226), (510, 250)], label="Yes", label_offset=(6, -12))
    c.box((420, 250, 600, 310), ["Approve claims", "1,000 - 5,000"], size=12)
    c.arrow([(600, 280), (660, 280)])
    c.diamond((730, 280), 150, 70, ["Total", "> 5,000?"], size=12)
    c.arrow([(730, 315), (730, 340)], label="Yes", label_offset=(6, -10))
    c.box((650, 340, 810, 400), ["Approve claims", "above 5,000"], size=12)
    c.arrow([(590, 188), (900, 188), (900, 428)], label="No", label_pos=0.2, label_offset=(0, -20))
    c.arrow([(805, 280), (880, 280), (880, 428)], label="No", label_pos=0.4, label_offset=(0, -20))
    c.arrow([(810, 370), (860, 370), (860, 428)])
    c.box((640, 428, 980, 492), ["Audit within 5 business days;", "paid with the next payroll run", "(15th or last working day of month)"],
          fill=LIGHT_GREEN, outline=GREEN, size=11)
    return png_bytes(c.image())


def fig_receipt_example() -> bytes:
    """Photo-like hotel receipt with the fields an approver checks (JPEG)."""
    c = Canvas(520, 700, (120, 92, 64, 255))
    for i in range(0, 700, 4):   # wooden desk
        shade = int(12 * math.sin(i * 0.045) + 6 * math.sin(i * 0.31))
        c.line([(0, i), (520, i)], fill=(120 + shade, 90 + shade, 62 + shade), width=3)
    paper = Canvas(380, 600, (252, 251, 246, 255))
    header = [("Lakeside Garden Hotel Suzhou", 17, True), ("88 Jinji Lake Avenue, Suzhou", 11, False),
              ("Tax ID 91320594MA1XXXXX0K", 11, False), ("", 6, False),
              ("FOLIO / INVOICE  No. 240514-0387", 13, True), ("Guest: LI WEI  (Kestrel Dynamics)", 12, False),
              ("Arrival 2024-05-14   Departure 2024-05-16", 12, False)]
    items = [("05-14 Room, Deluxe King", "680.00"), ("05-15 Room, Deluxe King", "680.00"),
             ("05-14 Breakfast (incl.)", "0.00"), ("05-15 Laundry", "68.00"), ("Service charge", "0.00")]
    highlights = []   # boxes an approver checks: merchant, itemisation, total + payment
    y = 40
    for text, size, bold in header:
        paper.text((190, y), text, size=size, bold=bold, anchor="mm")
        if y == 40:
            highlights.append((12, y - 18, 368, y + 16))
        y += size + 12
    y += 6
    paper.line([(20, y), (360, y)], fill=GREY, width=1, dash=4)
    y += 24
    top = y - 16
    for desc, amount in items:
        paper.text((24, y), desc, size=12, anchor="lm")
        paper.text((356, y), amount, size=12, anchor="rm")
        y += 26
    highlights.append((12, top, 368, y - 12))
    paper.line([(20, y), (360, y)], fill=GREY, width=1, dash=4)
    y += 26
    top = y - 18
    paper.text((24, y), "TOTAL (CNY)", size=14, bold=True, anchor="lm")
    paper.text((356, y), "1,428.00", size=14, bold=True, anchor="rm")
    y += 28
    paper.text((24, y), "Paid: VISA ****4821  2024-05-16 08:12", size=12, anchor="lm")
    highlights.append((12, top, 368, y + 16))
    y += 56
    paper.text((190, y), "Thank you for staying with us", size=12, fill=GREY, anchor="mm")
    for box in highlights:
        paper.rect(box, fill=None, outline=RED, width=2, radius=6)
    sheet = paper.image().rotate(-3, resample=Image.BICUBIC, expand=True, fillcolor=(0, 0, 0, 0))
    base = c.image()
    shadow = Image.new("RGBA", sheet.size, (0, 0, 0, 90))
    base.paste(shadow, (76, 60), sheet)
    base.alpha_composite(sheet, (66, 48))
    return jpeg_bytes(photo_finish(base, seed=514, strength=7), quality=84)


def fig_network_zones_zh() -> bytes:
    """Network security zones and firewall rules, Chinese labels (PNG, transparent background)."""
    c = Canvas(1000, 640, TRANSPARENT)
    c.text((500, 24), "公司网络安全分区示意图", size=20, bold=True, anchor="mm")
    c.box((420, 52, 580, 102), ["互联网", "Internet"], fill=LIGHT_GREY, outline=GREY, size=13)
    c.arrow([(500, 102), (500, 128)])
    c.box((400, 128, 600, 176), ["边界防火墙 FW-01", "仅开放 443 / 8883"], fill=LIGHT_ORANGE, outline=ORANGE, size=12)
    # DMZ
    c.rect((650, 112, 980, 236), fill=(255, 246, 230, 220), outline=ORANGE, width=2, radius=10)
    c.text((815, 130), "DMZ 区（VLAN 50）", size=14, bold=True, anchor="mm")
    c.box((665, 150, 815, 222), ["对外门户", "Web / 工单系统"], fill=WHITE, outline=ORANGE, size=12)
    c.box((825, 150, 970, 222), ["VPN 网关", "多因素认证"], fill=WHITE, outline=ORANGE, size=12)
    c.arrow([(600, 152), (650, 170)])
    c.arrow([(500, 176), (500, 220)])
    c.box((380, 220, 620, 268), ["内部防火墙 FW-02", "跨区访问需审批后放行"], fill=LIGHT_ORANGE, outline=ORANGE, size=12)
    zones = [
        (20, "办公网 VLAN 10", ["员工电脑", "打印机 / 会议设备"], BLUE, LIGHT_BLUE),
        (265, "研发网 VLAN 20", ["代码仓库 Git", "构建服务器"], (120, 80, 170), (232, 224, 244)),
        (510, "服务器区 VLAN 40", ["ERP / 邮件", "备份服务器"], NAVY, (222, 228, 238)),
        (755, "生产网 OT VLAN 30", ["EG-400 网关 / PLC", "SCADA 工作站"], GREEN, LIGHT_GREEN),
    ]
    for x, title, items, outline, fill in zones:
        c.rect((x, 330, x + 225, 520), fill=fill + (230,), outline=outline, width=2, radius=10)
        c.text((x + 112, 352), title, size=14, bold=True, anchor="mm", fill=outline)
        for j, item in enumerate(items):
            c.box((x + 18, 378 + j * 66, x + 207, 432 + j * 66), [item], fill=WHITE, outline=outline, size=13,
                  bold_first=False)
        c.arrow([(500, 268), (x + 112, 330)], width=2, fill=GREY)
    rules = ["规则 1：生产网（OT）禁止直接访问互联网，远程维护须经 VPN + 堡垒机。",
             "规则 2：研发网与生产网之间默认拒绝，临时访问须提交变更单，最长 72 小时。",
             "规则 3：所有防火墙日志集中保存不少于 180 天。"]
    for i, rule in enumerate(rules):
        c.text((24, 550 + i * 26), rule, size=13, anchor="lm")
    return png_bytes(c.image())


def fig_risk_matrix_zh() -> bytes:
    """Security incident severity matrix (impact x likelihood), Chinese labels (JPEG)."""
    c = Canvas(900, 560, (255, 255, 255, 255))
    c.text((450, 26), "信息安全事件分级矩阵", size=20, bold=True, anchor="mm")
    impacts = ["低", "中", "高", "严重"]
    likelihood = ["罕见", "可能", "很可能", "几乎确定"]
    grid = [["P4", "P4", "P3", "P3"],   # rows: impact low .. critical; cols: likelihood
            ["P4", "P3", "P3", "P2"],
            ["P3", "P2", "P2", "P1"],
            ["P2", "P2", "P1", "P1"]]
    colours = {"P1": (214, 48, 49), "P2": (240, 130, 40), "P3": (246, 200, 60), "P4": (120, 190, 110)}
    x0, y0, cell_w, cell_h = 170, 70, 110, 80
    for r in range(4):
        row = 3 - r  # draw the most severe impact at the top
        c.text((x0 - 14, y0 + r * cell_h + cell_h / 2), impacts[row], size=15, anchor="rm", bold=True)
        for col in range(4):
            level = grid[row][col]
            box = (x0 + col * cell_w, y0 + r * cell_h, x0 + (col + 1) * cell_w, y0 + (r + 1) * cell_h)
            c.rect(box, fill=colours[level], outline=WHITE, width=3)
            c.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), level, size=20, fill=WHITE, bold=True, anchor="mm")
    for col in range(4):
        c.text((x0 + col * cell_w + cell_w / 2, y0 + 4 * cell_h + 18), likelihood[col], size=14, anchor="mm")
    c.text((x0 + 2 * cell_w, y0 + 4 * cell_h + 48), "发生可能性 →", size=15, bold=True, anchor="mm")
    c.text((40, y0 + 2 * cell_h), "影响程度", size=15, bold=True, anchor="mm")
    c.text((40, y0 + 2 * cell_h + 22), "↑", size=15, bold=True, anchor="mm")
    legend = [("P1", "特别重大", "15 分钟内响应，4 小时内遏制"), ("P2", "重大", "1 小时内响应，24 小时内遏制"),
              ("P3", "较大", "4 小时内响应"), ("P4", "一般", "1 个工作日内响应")]
    c.text((640, 84), "响应时限", size=16, bold=True, anchor="lm")
    for i, (level, name, sla) in enumerate(legend):
        y = 120 + i * 70
        c.rect((640, y, 680, y + 40), fill=colours[level], outline=None, radius=4)
        c.text((660, y + 20), level, size=14, fill=WHITE, bold=True, anchor="mm")
        c.text((692, y + 10), name, size=14, bold=True, anchor="lm")
        c.text((692, y + 32), sla, size=12, fill=GREY, anchor="lm")
    c.text((450, 505), "P1/P2 事件须同时通知信息安全委员会；涉及个人信息泄露的须在 72 小时内完成评估。",
           size=13, fill=GREY, anchor="mm")
    return jpeg_bytes(c.image(), quality=88)


def fig_cabinet_layout() -> bytes:
    """Control cabinet layout for an EG-400 installation (PNG, transparent background)."""
    c = Canvas(1060, 640, TRANSPARENT)
    c.text((530, 22), "Reference cabinet layout (600 × 400 mm enclosure, front view)", size=18, bold=True, anchor="mm")
    c.rect((60, 50, 660, 610), fill=(242, 240, 232, 235), outline=DARK, width=3, radius=6)
    # cable ducts
    for y in (70, 300, 540):
        c.rect((80, y, 640, y + 40), fill=(150, 160, 170), outline=(100, 110, 120), width=1)
        for x in range(90, 640, 16):
            c.line([(x, y), (x, y + 40)], fill=(130, 140, 150), width=1)
    c.text((360, 90), "cable duct 40 × 60 mm", size=11, fill=WHITE, anchor="mm", bold=True)
    # DIN rail 1
    c.rect((80, 190, 640, 205), fill=(190, 195, 200), outline=GREY, width=1)
    modules = [(92, 150, "QF1", "2 A, C", (235, 235, 235)),
               (160, 290, "PS-24-60", "24 V / 2.5 A", (210, 214, 220)),
               (310, 440, "EG-400", "edge gateway", (58, 68, 82)),
               (460, 540, "F2", "1 A fuse", (235, 235, 235))]
    for x0, x1, name, sub, colour in modules:
        c.rect((x0, 128, x1, 270), fill=colour, outline=DARK, width=2, radius=4)
        text_colour = WHITE if colour == (58, 68, 82) else DARK
        c.text(((x0 + x1) / 2, 190), name, size=13, bold=True, fill=text_colour, anchor="mm")
        c.text(((x0 + x1) / 2, 210), sub, size=10, fill=text_colour, anchor="mm")
    # DIN rail 2 with terminal blocks
    c.rect((80, 410, 640, 425), fill=(190, 195, 200), outline=GREY, width=1)
    blocks = [(100, "X1", "power", 6, (120, 120, 120)), (250, "X2", "RS-485", 6, BLUE), (400, "X3", "DI / DO", 8, ORANGE)]
    for x0, name, sub, count, colour in blocks:
        for k in range(count):
            c.rect((x0 + k * 14, 370, x0 + k * 14 + 12, 465), fill=colour, outline=DARK, width=1)
        c.text((x0 + count * 7, 480), f"{name} {sub}", size=12, bold=True, anchor="mm")
    # clearance dimension at the gateway
    c.line([(450, 108), (450, 128)], fill=RED, width=2)
    c.line([(445, 108), (455, 108)], fill=RED, width=2)
    c.line([(445, 128), (455, 128)], fill=RED, width=2)
    c.text((458, 118), "≥ 20 mm", size=11, fill=RED, anchor="lm", bold=True)
    c.line([(450, 270), (450, 300)], fill=RED, width=2)
    c.line([(445, 270), (455, 270)], fill=RED, width=2)
    c.line([(445, 300), (455, 300)], fill=RED, width=2)
    c.text((458, 285), "≥ 20 mm", size=11, fill=RED, anchor="lm", bold=True)
    # antenna gland and PE bar
    c.ellipse((560, 34, 592, 66), fill=(212, 175, 55), outline=DARK, width=2)
    c.line([(375, 128), (375, 110), (576, 110), (576, 66)], fill=(40, 40, 40), width=2, dash=5)
    c.rect((90, 570, 300, 584), fill=(200, 160, 60), outline=DARK, width=1)
    c.text((195, 596), "PE busbar", size=11, anchor="mm")
    notes = [("Rail 1", "QF1 → PS-24-60 → EG-400, 35 mm DIN rail"),
             ("Rail 2", "terminal blocks X1-X3 for field wiring"),
             ("Antenna", "LTE antenna via M16 gland in the roof;"),
             ("", "RG-58 cable ≤ 3 m, SMA connector"),
             ("Ducts", "separate 230 V AC and signal cables,"),
             ("", "≥ 100 mm spacing or a partition"),
             ("Heat", "keep cabinet below 45 °C for full"),
             ("", "relay rating (2 A per output)"),
             ("Earth", "FG terminal to PE busbar, 2.5 mm²")]
    for i, (key, value) in enumerate(notes):
        y = 80 + i * 26
        c.text((680, y), key, size=12, bold=True, anchor="lm", fill=NAVY)
        c.text((745, y), value, size=11, anchor="lm")
    return png_bytes(c.image())


def fig_crimp_inspection() -> bytes:
    """Good vs bad wire-ferrule crimp, photo-like close-up (JPEG)."""
    c = Canvas(640, 340, (70, 74, 80, 255))
    for i in range(0, 340, 2):
        v = 70 + int(8 * math.sin(i * 0.05))
        c.line([(0, i), (640, i)], fill=(v, v + 3, v + 8), width=2)

    def ferrule(x: float, y: float, good: bool):
        c.rect((x, y - 16, x + 130, y + 16), fill=(40, 110, 200), outline=None, radius=6)            # wire insulation
        c.rect((x + 110, y - 20, x + 150, y + 20), fill=(230, 60, 60), outline=(120, 20, 20), width=1, radius=4)      # plastic collar
        c.rect((x + 150, y - 12, x + 240, y + 12), fill=(205, 200, 185), outline=(120, 110, 90), width=1)             # metal sleeve
        for k in range(4):
            c.line([(x + 170 + k * 16, y - 12), (x + 170 + k * 16, y + 12)], fill=(150, 140, 120), width=2)
        if good:
            c.rect((x + 240, y - 8, x + 246, y + 8), fill=(200, 120, 60), outline=None)  # copper flush with the end
        else:
            for k, dy in enumerate((-14, -6, 4, 12)):
                c.line([(x + 150, y), (x + 176 + k * 8, y + dy * 1.8)], fill=(205, 120, 60), width=2)  # stray strands
            c.line([(x + 240, y), (x + 262, y + 3)], fill=(205, 120, 60), width=3)

    ferrule(40, 90, True)
    ferrule(40, 240, False)
    c.text((340, 40), "OK", size=20, fill=(120, 230, 120), bold=True, anchor="lm")
    c.text((340, 62), "conductor flush (0-0.5 mm),", size=12, fill=WHITE, anchor="lm")
    c.text((340, 80), "crimp centred, collar tight", size=12, fill=WHITE, anchor="lm")
    c.text((340, 196), "NG - reject", size=20, fill=(255, 120, 110), bold=True, anchor="lm")
    c.text((340, 218), "stray strands outside sleeve,", size=12, fill=WHITE, anchor="lm")
    c.text((340, 236), "conductor protrudes > 1 mm", size=12, fill=WHITE, anchor="lm")
    c.text((320, 318), "Ferrule 0.75 mm² (AWG 18), crimped with a square-profile tool", size=12,
           fill=(220, 220, 220), anchor="mm")
    return jpeg_bytes(photo_finish(c.image(), seed=75, strength=6), quality=85)


def img_system_architecture() -> bytes:
    """Standalone system architecture diagram with English and Chinese labels (PNG)."""
    c = Canvas(1200, 790, (255, 255, 255, 255))
    c.text((600, 30), "Kestrel IIoT system architecture  系统架构图", size=22, bold=True, anchor="mm")
    layers = [(70, "现场设备层  Field devices", LIGHT_GREY, GREY),
              (250, "边缘层  Edge", LIGHT_BLUE, BLUE),
              (430, "云平台  Kestrel Cloud", (232, 224, 244), (120, 80, 170)),
              (610, "应用层  Applications", LIGHT_GREEN, GREEN)]
    for y, name, fill, outline in layers:
        c.rect((20, y, 1180, y + 140), fill=fill, outline=outline, width=2, radius=12)
        c.text((40, y + 18), name, size=15, bold=True, fill=outline, anchor="lm")
    devices = [(60, ["电能表 Energy meter", "Modbus RTU, RS-485"]), (340, ["PLC", "Modbus TCP / OPC UA"]),
               (620, ["温湿度传感器", "Temp/RH sensor, RS-485"]), (900, ["急停 / 门磁", "E-stop, door contact → DI"])]
    for x, lines in devices:
        c.box((x, 110, x + 240, 180), lines, fill=WHITE, outline=GREY, size=14)
    c.box((150, 290, 560, 370), ["EG-400 边缘网关", f"{FIRMWARE}: protocol drivers, rule engine,", "本地缓存 72 h store-and-forward"],
          fill=WHITE, outline=BLUE, size=13)
    c.box((660, 290, 1000, 370), ["EG-200 紧凑型网关", "1 × RS-485, 1 × Ethernet", "small sites, up to 32 meters"],
          fill=WHITE, outline=BLUE, size=13)
    for x, _ in devices:
        target = (355, 290) if x < 700 else (830, 290)
        c.arrow([(x + 120, 180), (x + 120, 236), (target[0], 236), target], fill=GREY, width=2)
    cloud = [(60, ["设备管理", "Device management, OTA"]), (340, ["时序数据库", "Time-series DB, 2-year retention"]),
             (620, ["告警服务", "Alarm rules, SMS / e-mail"]), (900, ["开放 API", "REST + webhooks, OAuth 2.0"])]
    for x, lines in cloud:
        c.box((x, 470, x + 240, 540), lines, fill=WHITE, outline=(120, 80, 170), size=13)
    c.arrow([(355, 370), (355, 470)], fill=BLUE, width=3, label="MQTT over TLS 1.2, port 8883", label_offset=(8, -8))
    c.arrow([(830, 370), (830, 470)], fill=BLUE, width=3, label="Ethernet / LTE Cat 4", label_offset=(8, -8))
    apps = [(60, ["Web 控制台", "Web dashboard"]), (340, ["手机 App", "iOS / Android"]),
            (620, ["ERP / MES 集成", "via REST API"]), (900, ["报表", "Energy reports (PDF/CSV)"])]
    for x, lines in apps:
        c.box((x, 650, x + 240, 720), lines, fill=WHITE, outline=GREEN, size=13)
        c.arrow([(x + 120, 540), (x + 120, 650)], fill=(120, 80, 170), width=2)
    c.text((600, 772), f"Cloud portal: {CLOUD}    数据加密：传输 TLS 1.2+，存储 AES-256", size=12, fill=GREY, anchor="mm")
    return png_bytes(c.image().convert("RGB"))  # opaque standalone diagram


def img_eg200_front_panel() -> bytes:
    """Standalone photo-like rendering of the EG-200 on a DIN rail with callouts (JPEG)."""
    c = Canvas(1000, 620, (226, 228, 230, 255))
    for i in range(0, 620, 3):
        v = 214 + int(10 * (i / 620))
        c.line([(0, i), (1000, i)], fill=(v, v + 1, v + 3), width=3)
    c.rect((0, 300, 1000, 330), fill=(186, 190, 196), outline=(150, 154, 160), width=1)   # DIN rail
    for x in range(30, 1000, 60):
        c.rect((x, 310, x + 25, 320), fill=(150, 154, 160), outline=None, radius=3)
    body = (330, 120, 630, 520)
    c.rect((body[0] + 12, body[1] + 14, body[2] + 12, body[3] + 14), fill=(90, 90, 90, 120), outline=None, radius=16)
    c.rect(body, fill=(236, 238, 240), outline=(150, 155, 160), width=2, radius=16)
    c.rect((345, 135, 615, 505), fill=None, outline=(205, 208, 212), width=2, radius=12)
    c.text((480, 160), "KESTREL  EG-200", size=20, fill=NAVY, bold=True, anchor="mm")
    _terminal_block(c, 365, 200, ["V+", "V-", "FG"], pitch=30, label_size=11, label_above=False, label_colour=DARK)
    _terminal_block(c, 490, 200, ["A", "B", "G"], pitch=30, label_size=11, label_above=False, label_colour=DARK)
    for i, (name, colour) in enumerate((("PWR", (70, 200, 90)), ("RUN", (70, 200, 90)), ("NET", (245, 170, 40)))):
        y = 290 + i * 30
        c.ellipse((370, y - 7, 384, y + 7), fill=colour, outline=(40, 40, 40), width=1)
        c.text((394, y), name, size=13, fill=DARK, bold=True, anchor="lm")
    c.rect((475, 280, 545, 340), fill=(200, 200, 196), outline=(90, 90, 90), width=2, radius=3)
    c.rect((485, 290, 535, 334), fill=(30, 30, 30), outline=None)
    c.text((510, 356), "ETH", size=12, bold=True, anchor="mm")
    _terminal_block(c, 380, 420, ["DI1", "DI2", "COM"], pitch=34, label_size=11, label_above=False, label_colour=DARK)
    c.ellipse((560, 436, 574, 450), fill=(20, 20, 20), outline=(120, 120, 120), width=2)
    c.text((567, 470), "RST", size=11, bold=True, anchor="mm")
    callouts = [(1, (410, 215), (270, 150), ["Power 9-36 V DC", "3 W typical"]),
                (2, (535, 215), (700, 150), ["RS-485 (A, B, GND)", "300-115200 bps"]),
                (3, (377, 320), (270, 320), ["LEDs PWR / RUN / NET", "NET amber = no cloud link"]),
                (4, (510, 310), (700, 320), ["Ethernet 10/100 Mbps", f"default IP {DEFAULT_IP}"]),
                (5, (430, 435), (270, 470), ["Digital inputs DI1, DI2", "dry contact"]),
                (6, (567, 443), (700, 470), ["Reset button", "hold > 10 s = factory reset"])]
    for number, target, anchor, lines in callouts:
        is_left = anchor[0] < 480
        c.line([target, anchor], fill=ORANGE, width=2)
        c.callout(number, anchor, radius=14)
        tx = anchor[0] - 22 if is_left else anchor[0] + 22
        for j, line in enumerate(lines):
            c.text((tx, anchor[1] - 9 + j * 20), line, size=14 if j == 0 else 12,
                   fill=DARK if j == 0 else GREY, bold=j == 0, anchor="rm" if is_left else "lm")
    c.text((500, 590), "EG-200 compact gateway - 90 × 70 × 30 mm, 180 g, -20 to +60 °C, IP30", size=15,
           fill=DARK, bold=True, anchor="mm")
    return jpeg_bytes(photo_finish(c.image(), seed=200, strength=5), quality=85)


# ---------------------------------------------------------------------------
# Document model shared by the PDF and DOCX renderers.
#
# A document body is a list of blocks (plain tuples):
#   ("title", text)              ("subtitle", text)
#   ("h1", text)                 ("h2", text)
#   ("p", text)                  text may contain **bold** spans
#   ("ul", [item, ...])          ("ol", [item, ...])
#   ("table", header, rows)      cells are text or Img(...)
#   ("fig", image_name, caption) a figure followed by its caption
#   ("caption", text)            a caption paragraph on its own (e.g. under a table)
#   ("logo", image_name, text)   a paragraph starting with a small inline image
# ---------------------------------------------------------------------------

class Img:
    """An image placed inside a table cell."""

    def __init__(self, name: str, width_cm: float):
        self.name, self.width_cm = name, width_cm


def _bold_spans(text: str):
    """Split 'a **b** c' into [(a, False), (b, True), (c, False)]."""
    parts = text.split("**")
    return [(part, i % 2 == 1) for i, part in enumerate(parts) if part]


# --- PDF (PyMuPDF Story) ----------------------------------------------------

PDF_PAGE = pymupdf.paper_rect("a4")
PDF_BODY = PDF_PAGE + (56, 70, -56, -60)
PDF_HEADER = pymupdf.Rect(56, 28, PDF_PAGE.width - 56, 52)
PDF_FOOTER = pymupdf.Rect(56, PDF_PAGE.height - 40, PDF_PAGE.width - 56, PDF_PAGE.height - 16)
PDF_FIGURE_WIDTH = 380  # points

PDF_FONTS = {  # CSS family "body": DejaVu Sans without ligatures (see _font_without_ligatures)
    "body-regular.ttf": (DEJAVU, "normal", "normal"),
    "body-bold.ttf": (DEJAVU_BOLD, "bold", "normal"),
    "body-italic.ttf": (DEJAVU_OBLIQUE, "normal", "italic"),
}

PDF_CSS = "".join(
    f"@font-face {{ font-family: body; src: url({name}); font-weight: {weight}; font-style: {style}; }}\n"
    for name, (_, weight, style) in PDF_FONTS.items()
) + """
body { font-family: body; font-size: 9.5pt; line-height: 1.4; color: #212529; }
p { margin-top: 0pt; margin-bottom: 6pt; }
h1 { font-size: 15pt; font-weight: bold; color: #1c3454; margin-top: 12pt; margin-bottom: 5pt; }
h2 { font-size: 12pt; font-weight: bold; color: #2e6eb4; margin-top: 9pt; margin-bottom: 4pt; }
.title { font-size: 22pt; font-weight: bold; color: #1c3454; margin-bottom: 4pt; }
.subtitle { font-size: 9.5pt; color: #555555; margin-bottom: 10pt; }
.logo { font-size: 9pt; font-weight: bold; color: #2e6eb4; margin-bottom: 2pt; }
.figure { text-align: center; margin-top: 6pt; margin-bottom: 2pt; }
.caption { text-align: center; font-size: 9pt; font-style: italic; color: #444444; margin-bottom: 10pt; }
ul, ol { margin-top: 0pt; margin-bottom: 6pt; }
li { margin-bottom: 2pt; }
/* keep >= one line of space above tables, so find_tables() does not take the text above as header */
table { border-collapse: collapse; margin-top: 14pt; margin-bottom: 10pt; }
th { border: 0.8pt solid #333333; padding: 3pt 5pt; font-size: 9pt; font-weight: bold; color: #1c3454; text-align: left; }
td { border: 0.8pt solid #333333; padding: 3pt 5pt; font-size: 9pt; }
.pagehead { font-size: 8pt; color: #777777; margin: 0pt; }
.pagefoot { font-size: 8pt; color: #777777; text-align: center; margin: 0pt; }
"""


def _font_without_ligatures(path: str) -> bytes:
    """Return the TrueType font with its GSUB 'liga' feature renamed to the unused tag 'lign'.

    MuPDF's HTML engine shapes text with HarfBuzz, which applies standard ligatures by default, so
    "office" would be extracted as "o\ufb03ce".  Renaming the feature tag (the list stays sorted)
    switches the ligatures off, so that get_text() returns plain "fi", "fl" and "ff".
    """
    data = bytearray(Path(path).read_bytes())
    (num_tables,) = struct.unpack(">H", data[4:6])
    for i in range(num_tables):
        tag, _, offset, _ = struct.unpack(">4sIII", data[12 + 16 * i:28 + 16 * i])
        if tag != b"GSUB":
            continue
        feature_list = offset + struct.unpack(">H", data[offset + 6:offset + 8])[0]
        (count,) = struct.unpack(">H", data[feature_list:feature_list + 2])
        for k in range(count):
            record = feature_list + 2 + 6 * k
            if data[record:record + 4] == b"liga":
                data[record:record + 4] = b"lign"
    return bytes(data)


def _inline_html(text: str) -> str:
    return "".join(f"<b>{html.escape(t)}</b>" if bold else html.escape(t) for t, bold in _bold_spans(text))


def _aspect(image: bytes) -> float:
    """Width / height of an encoded image (portrait figures are placed narrower)."""
    with Image.open(io.BytesIO(image)) as img:
        return img.width / img.height


def blocks_to_html(blocks, images: dict[str, bytes]) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "title":
            out.append(f'<p class="title">{_inline_html(block[1])}</p>')
        elif kind == "subtitle":
            out.append(f'<p class="subtitle">{_inline_html(block[1])}</p>')
        elif kind in ("h1", "h2"):
            out.append(f"<{kind}>{_inline_html(block[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline_html(block[1])}</p>")
        elif kind in ("ul", "ol"):
            items = "".join(f"<li>{_inline_html(item)}</li>" for item in block[1])
            out.append(f"<{kind}>{items}</{kind}>")
        elif kind == "table":
            header, rows = block[1], block[2]
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in header)
            body = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in rows)
            out.append(f'<table width="100%"><tr>{head}</tr>{body}</table>')
        elif kind == "fig":
            width = round(min(PDF_FIGURE_WIDTH, 280 * _aspect(images[block[1]])))
            out.append(f'<p class="figure"><img src="{block[1]}" width="{width}"/></p>')
            out.append(f'<p class="caption">{_inline_html(block[2])}</p>')
        elif kind == "caption":
            out.append(f'<p class="caption">{_inline_html(block[1])}</p>')
        elif kind == "logo":
            out.append(f'<p class="logo"><img src="{block[1]}" width="12" height="12"/> {_inline_html(block[2])}</p>')
        else:
            raise ValueError(f"unknown block {kind!r}")
    return "\n".join(out)


def render_pdf(path: Path, blocks, images: dict[str, bytes], *, title: str, header: str,
               footer: str, author: str, subject: str, keywords: str) -> None:
    """Lay out blocks on A4 pages with a running header and 'page x of n' footer.

    ``footer`` is a format string with ``{page}`` and ``{pages}``.
    """
    archive = pymupdf.Archive()
    for name, (font_path, _, _) in PDF_FONTS.items():
        archive.add(_font_without_ligatures(font_path), name)
    for name, data in sorted(images.items()):
        archive.add(data, name)
    body_html = blocks_to_html(blocks, images)

    def small_story(text: str, css_class: str, device):
        rect = PDF_HEADER if css_class == "pagehead" else PDF_FOOTER
        story = pymupdf.Story(f'<p class="{css_class}">{html.escape(text)}</p>', user_css=PDF_CSS, archive=archive)
        more, _ = story.place(rect)
        assert not more, f"page header/footer does not fit: {text!r}"
        story.draw(device)

    def layout(writer, pages_total: int) -> int:
        story = pymupdf.Story(body_html, user_css=PDF_CSS, archive=archive)
        page, more = 0, 1
        while more:
            page += 1
            device = writer.begin_page(PDF_PAGE) if writer else None
            more, _ = story.place(PDF_BODY)
            story.draw(device)  # drawing (even to None) advances the story to the next page
            if writer:
                small_story(header, "pagehead", device)
                small_story(footer.format(page=page, pages=pages_total), "pagefoot", device)
                writer.end_page()
        return page

    pages = layout(None, 0)  # first pass: count pages for the footer
    buffer = io.BytesIO()
    writer = pymupdf.DocumentWriter(buffer)
    layout(writer, pages)
    writer.close()

    doc = pymupdf.open("pdf", buffer.getvalue())
    doc.subset_fonts()  # embedded CJK font: ~3.5 MB full, a few KB subset
    doc.set_metadata({
        "title": title, "author": author, "subject": subject, "keywords": keywords,
        "creator": COMPANY_EN + " Technical Documentation", "producer": "PyMuPDF Story",
        "creationDate": PDF_DATE, "modDate": PDF_DATE, "trapped": "",
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    # no_new_id: no random trailer /ID; garbage=4 also merges duplicate objects;
    # use_objstms packs the (large) font width arrays into compressed object streams.
    doc.save(path, garbage=4, deflate=True, use_objstms=True, no_new_id=True)
    doc.close()


# --- DOCX (python-docx) -----------------------------------------------------

def _set_east_asian_font(document, font_name: str) -> None:
    """Give the main styles an East Asian font so Chinese renders in Word."""
    for style_name in ("Normal", "Title", "Subtitle", "Heading 1", "Heading 2", "Caption",
                       "List Bullet", "List Number"):
        rpr = document.styles[style_name].element.get_or_add_rPr()
        fonts = rpr.find(qn("w:rFonts"))
        if fonts is None:
            fonts = OxmlElement("w:rFonts")
            rpr.insert(0, fonts)
        fonts.set(qn("w:eastAsia"), font_name)
        lang = rpr.find(qn("w:lang"))
        if lang is None:
            lang = OxmlElement("w:lang")
            rpr.append(lang)
        lang.set(qn("w:eastAsia"), "zh-CN")


def _restart_numbering(document, paragraph, num_cache: dict) -> None:
    """Make a 'List Number' list start again at 1 (new w:num over the same abstract list)."""
    if "numId" not in num_cache:
        numbering = document.part.numbering_part.element
        style_num_id = document.styles["List Number"].element.pPr.numPr.numId.val
        abstract_id = numbering.num_having_numId(style_num_id).abstractNumId.val
        num = numbering.add_num(abstract_id)
        num.add_lvlOverride(ilvl=0).add_startOverride(1)
        num_cache["numId"] = num.numId
    num_pr = paragraph._p.get_or_add_pPr().get_or_add_numPr()
    num_pr.get_or_add_ilvl().val = 0
    num_pr.get_or_add_numId().val = num_cache["numId"]


def _add_runs(paragraph, text: str) -> None:
    for part, bold in _bold_spans(text):
        paragraph.add_run(part).bold = bold or None


def _shade(cell, hex_fill: str) -> None:
    tc_pr = cell._tc.get_or_add_tcPr()
    shading = OxmlElement("w:shd")
    shading.set(qn("w:val"), "clear")
    shading.set(qn("w:color"), "auto")
    shading.set(qn("w:fill"), hex_fill)
    tc_pr.append(shading)


def _add_table(document, header, rows, images) -> None:
    table = document.add_table(rows=1, cols=len(header), style="Table Grid")
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    for cell, text in zip(table.rows[0].cells, header):
        cell.paragraphs[0].add_run(text).bold = True
        _shade(cell, "D6E6F7")
    # repeat the header row on every page
    tr_pr = table.rows[0]._tr.get_or_add_trPr()
    tbl_header = OxmlElement("w:tblHeader")
    tbl_header.set(qn("w:val"), "true")
    tr_pr.append(tbl_header)
    for row in rows:
        cells = table.add_row().cells
        for cell, value in zip(cells, row):
            if isinstance(value, Img):
                run = cell.paragraphs[0].add_run()
                run.add_picture(io.BytesIO(images[value.name]), width=Cm(value.width_cm))
            else:
                _add_runs(cell.paragraphs[0], value)
    document.add_paragraph()


def blocks_to_docx(document, blocks, images: dict[str, bytes]) -> None:
    for block in blocks:
        kind = block[0]
        if kind == "title":
            document.add_heading(block[1], level=0)
        elif kind == "subtitle":
            document.add_paragraph(block[1], style="Subtitle")
        elif kind == "h1":
            document.add_heading(block[1], level=1)
        elif kind == "h2":
            document.add_heading(block[1], level=2)
        elif kind == "p":
            _add_runs(document.add_paragraph(), block[1])
        elif kind == "ul":
            for item in block[1]:
                _add_runs(document.add_paragraph(style="List Bullet"), item)
        elif kind == "ol":
            cache: dict = {}
            for item in block[1]:
                paragraph = document.add_paragraph(style="List Number")
                _restart_numbering(document, paragraph, cache)
                _add_runs(paragraph, item)
        elif kind == "table":
            _add_table(document, block[1], block[2], images)
        elif kind == "fig":
            paragraph = document.add_paragraph()
            paragraph.alignment = WD_ALIGN_PARAGRAPH.CENTER
            width = Cm(min(15.0, 10.0 * _aspect(images[block[1]])))
            paragraph.add_run().add_picture(io.BytesIO(images[block[1]]), width=width)
            document.add_paragraph(block[2], style="Caption").alignment = WD_ALIGN_PARAGRAPH.CENTER
        elif kind == "caption":
            document.add_paragraph(block[1], style="Caption")
        else:
            raise ValueError(f"unknown block {kind!r}")


def _page_field(paragraph) -> None:
    """Append a PAGE field (current page number) to a paragraph."""
    field = OxmlElement("w:fldSimple")
    field.set(qn("w:instr"), "PAGE")
    run = OxmlElement("w:r")
    text = OxmlElement("w:t")
    text.text = "1"
    run.append(text)
    field.append(run)
    paragraph._p.append(field)


def new_docx(*, title: str, subject: str, keywords: str, header: str, footer: str, chinese: bool = False):
    document = docx.Document()
    section = document.sections[0]
    section.page_width, section.page_height = Cm(21.0), Cm(29.7)
    section.left_margin = section.right_margin = Cm(2.2)
    section.top_margin = section.bottom_margin = Cm(2.2)
    normal = document.styles["Normal"]
    normal.font.name = "Calibri"
    normal.font.size = Pt(10.5)
    if chinese:
        _set_east_asian_font(document, "Microsoft YaHei")
    head = section.header.paragraphs[0]
    head.text = header
    head.runs[0].font.size = Pt(8)
    head.runs[0].font.color.rgb = RGBColor(0x77, 0x77, 0x77)
    foot = section.footer.paragraphs[0]
    foot.alignment = WD_ALIGN_PARAGRAPH.CENTER
    foot.add_run(footer).font.size = Pt(8)
    _page_field(foot)

    props = document.core_properties
    props.title, props.subject, props.keywords = title, subject, keywords
    props.author = props.last_modified_by = COMPANY_EN
    props.comments = ""
    props.category = "Policy" if "Policy" in subject or "制度" in title else "Procedure"
    props.created = props.modified = props.last_printed = FIXED_DATE
    props.revision = 1
    return document


def save_docx(document, path: Path) -> None:
    """Save with a fixed zip layout: same entry order, fixed timestamps, no thumbnail."""
    package = document.part.package
    for r_id, rel in list(package.rels.items()):
        if rel.reltype.endswith("/thumbnail"):   # template thumbnail of an empty page
            package.rels.pop(r_id)
    buffer = io.BytesIO()
    document.save(buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=ZIP_DATE)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            entry.create_system = 0
            dst.writestr(entry, src.read(info.filename), compresslevel=9)


# ---------------------------------------------------------------------------
# Documents.  One function per file; the content is plain data.
# ---------------------------------------------------------------------------

def doc_eg400_manual_en(path: Path) -> None:
    """English product manual (PDF, ~5 pages, 2 figures, 2 tables)."""
    images = {"eg400_front_panel.png": fig_eg400_front_panel(), "eg400_wiring.jpg": fig_eg400_wiring()}
    blocks = [
        ("title", "EG-400 Industrial Edge Gateway - User Manual"),
        ("subtitle", "Models EG-400-E (Ethernet) and EG-400-L (Ethernet + LTE Cat 4). Document KD-UM-EG400-EN, "
                     f"Revision C, September 2024. Valid for hardware revision 2.x and firmware {FIRMWARE}."),
        ("h1", "1 About this manual"),
        ("p", "This manual explains how to install, wire, configure and maintain the Kestrel Dynamics EG-400 "
              "industrial edge gateway. Read the safety information before installing the device and keep the "
              "manual with the equipment. The Chinese edition is document KD-UM-EG400-ZH."),
        ("h2", "1.1 Safety information"),
        ("ul", [
            "**Warning:** install the EG-400 only inside a closed control cabinet, by qualified electricians. "
            "The supply must be a SELV/PELV source of 9-36 V DC.",
            "Disconnect the power supply before wiring any terminal or inserting the SIM card. The SIM tray is "
            "not hot-swappable.",
            "Never apply more than 30 V DC or 2 A to the relay outputs DO1 and DO2.",
            "Connect the FG terminal to protective earth with a conductor of at least 1.5 mm². The surge protection "
            "of the RS-485 and CAN ports depends on this connection.",
            "EG-400-L: keep a separation distance of at least 20 cm between the LTE antenna and persons.",
        ]),
        ("h2", "1.2 Package contents"),
        ("ul", [
            "EG-400 gateway with the DIN-rail clip fitted",
            "Pluggable terminal blocks: 3-pin power, 5-pin digital input, 4-pin relay and 8-pin serial/CAN",
            "LTE antenna with 3 m RG-58 cable and SMA connector (EG-400-L only)",
            "Quick start leaflet and the password card with the initial admin password and the cloud claim code",
        ]),
        ("h1", "2 Product overview"),
        ("p", "The EG-400 collects data from field devices over RS-485 (Modbus RTU), Ethernet (Modbus TCP, OPC UA) "
              "and CAN bus, processes it locally with the KestrelOS rule engine and forwards it to Kestrel Cloud "
              "or to a customer MQTT broker over TLS (port 8883). If the uplink is lost, the gateway buffers up to "
              "72 hours of data (at most 2 GB) and forwards it when the connection returns."),
        ("fig", "eg400_front_panel.png", "Figure 1: EG-400 front panel and connectors (EG-400-L shown)"),
        ("p", "The EG-200 is a compact variant with one Ethernet port, one RS-485 port and two digital inputs for "
              "small sites; it is described in its own quick start guide."),
        ("h1", "3 Technical specifications"),
        ("p", "The specifications apply to both models unless a line names one of them."),
        ("table", ["Parameter", "Specification"], [
            ["Processor", "Quad-core ARM Cortex-A53, 1.6 GHz"],
            ["Memory / storage", "2 GB DDR4 / 16 GB eMMC"],
            ["Ethernet", "2 × 10/100/1000 Mbps RJ45 (ETH1 WAN, ETH2 LAN)"],
            ["Serial ports", "2 × RS-485 (COM2 switchable to RS-232), 300-115200 bps, 2 kV isolation"],
            ["CAN", "1 × CAN 2.0B, up to 1 Mbps"],
            ["Digital I/O", "4 × digital input (dry contact or 10-30 V DC), 2 × relay output (30 V DC / 2 A)"],
            ["Cellular (EG-400-L)", "LTE Cat 4, bands B1/B3/B5/B8/B34/B38/B39/B40/B41, nano-SIM"],
            ["Power input", "24 V DC nominal, 9-36 V DC range, reverse-polarity protected"],
            ["Power consumption", "6 W typical, 12 W maximum"],
            ["Operating temperature", "-20 °C to +60 °C (relay outputs derated above 45 °C)"],
            ["Storage / humidity", "-40 °C to +85 °C; 5 % to 95 % RH, non-condensing"],
            ["Enclosure", "Aluminium, IP30, 35 mm DIN rail (EN 60715)"],
            ["Dimensions / weight", "125 × 105 × 45 mm (H × D × W), 480 g"],
            ["MTBF", "200,000 hours (Telcordia SR-332, 40 °C)"],
            ["Certifications", "CE, UKCA, FCC Part 15 Class A, RoHS 3"],
        ]),
        ("h1", "4 Installation"),
        ("p", "Mount the gateway on a horizontal 35 mm DIN rail inside a cabinet. Leave at least 20 mm of free "
              "space above and below the housing and 10 mm on each side for convection cooling; the EG-400 has "
              "no fan."),
        ("ol", [
            "Switch off and lock out the cabinet supply, then verify that no voltage is present.",
            "Hook the upper edge of the DIN-rail clip onto the rail and press the lower edge until the clip clicks.",
            "Connect FG to the cabinet PE busbar with a green/yellow conductor of at least 1.5 mm².",
            "Wire power and field signals to the pluggable terminal blocks: 0.5-2.5 mm² (AWG 20-14), tightening "
            "torque 0.5-0.6 N·m, ferrules on all stranded wires.",
            "EG-400-L only: insert the nano-SIM with the contacts facing down until it latches, then screw the "
            "antenna cable onto the SMA connector finger-tight.",
            "Plug in the terminal blocks, switch on the supply and check that PWR lights green and that RUN "
            "starts blinking within 60 seconds.",
        ]),
        ("h2", "4.1 Wiring"),
        ("p", "Figure 2 shows the recommended wiring for power and an RS-485 Modbus RTU bus. Terminate the bus "
              "with 120 Ω at both ends: at the gateway by setting DIP switch SW1 (COM1) or SW2 (COM2) to ON, and "
              "at the last device with an external resistor. Each port supports up to 32 devices and 1200 m of "
              "cable at 9600 bps."),
        ("fig", "eg400_wiring.jpg", "Figure 2: Power and RS-485 wiring with three Modbus RTU energy meters"),
        ("p", "Digital inputs accept dry contacts (internal 12 V wetting supply) or wet signals of 10-30 V DC; a "
              "level below 3 V is read as 0. The relay outputs are normally open and rated 30 V DC / 2 A "
              "(resistive) up to 45 °C ambient; above 45 °C derate linearly to 1 A at 60 °C."),
        ("h1", "5 First-time setup"),
        ("ol", [
            "Connect a PC to ETH2 (LAN). The gateway runs a DHCP server on ETH2 and assigns addresses from "
            "192.168.10.100 to 192.168.10.200.",
            f"Open https://{DEFAULT_IP} in a browser and accept the self-signed certificate.",
            "Log in as user **admin** with the initial password from the password card (also printed under the "
            "scratch-off field of the side label).",
            "Set a new password when prompted: at least 12 characters with upper-case and lower-case letters, "
            "digits and a symbol. The initial password cannot be reused.",
            "Under Network > WAN configure ETH1 (DHCP client by default); on the EG-400-L enter the APN of the SIM "
            "card under Network > Cellular.",
            f"Under Cloud > Registration enter the 8-character claim code from the password card to link the "
            f"gateway to your Kestrel Cloud account ({CLOUD}).",
            f"Under System > Firmware update to the latest release (currently {FIRMWARE}).",
        ]),
        ("p", "The USB-C console port (115200 baud, 8 data bits, no parity, 1 stop bit) gives access to the same "
              "settings with the command-line tool **kcli**, for example kcli net show or kcli diag export."),
        ("h1", "6 LED indicators"),
        ("p", "The five LEDs on the front panel (Figure 1, item 4) show the state of the gateway:"),
        ("table", ["LED", "State", "Meaning"], [
            ["PWR", "Green, steady", "Supply voltage within 9-36 V DC"],
            ["PWR", "Off", "No power, or supply connected with reverse polarity"],
            ["RUN", "Green, steady", "Booting (normal for up to 60 s)"],
            ["RUN", "Green, blinking 1 Hz", "System running normally"],
            ["NET", "Green", "Connected to Kestrel Cloud or the configured MQTT broker"],
            ["NET", "Amber", "Local network up, but no cloud connection"],
            ["ERR", "Red, steady", "Hardware fault: contact technical support"],
            ["ERR", "Red, blinking 2 Hz", "Configuration error (details under System > Log)"],
            ["ERR", "Red, blinking 5 Hz", "Factory reset in progress"],
            ["SIG", "Green / amber / off", "LTE signal good (RSRP above -90 dBm) / fair (-90 to -105 dBm) / no service"],
        ]),
        ("h1", "7 Maintenance and factory reset"),
        ("ul", [
            "The EG-400 has no user-serviceable parts. Once a year, check the terminal screws and clean the "
            "ventilation slots with dry compressed air.",
            "Back up the configuration under System > Backup before every firmware update. Backups are encrypted "
            "with AES-256 and can only be restored on EG-400 units.",
            "Press RESET for 1-5 seconds to reboot. Hold it for more than 10 seconds, until ERR blinks fast, to "
            "restore the factory settings: this erases the configuration, certificates and buffered data and "
            "restores the initial password.",
            "The real-time clock is backed by a supercapacitor and keeps time for about 7 days without power; NTP "
            "synchronisation is enabled by default.",
        ]),
        ("h1", "8 Support and warranty"),
        ("p", "The EG-400 has a 36-month warranty from the date of shipment; see the Warranty and Returns Policy "
              f"(KD-POL-WR-01). Technical support: {SUPPORT_EMAIL}, {SUPPORT_PHONE} (China) or "
              f"{SUPPORT_PHONE_US} (North America), {SUPPORT_HOURS_EN}. Have the serial number (format "
              "K4L-YYMM-NNNNN on the side label) and the firmware version ready."),
        ("p", f"{COMPANY_EN}, {ADDRESS_EN}."),
        ("h1", "Appendix A: Factory default settings"),
        ("p", "A new gateway, or one after a factory reset, starts with these settings:"),
        ("table", ["Setting", "Factory default"], [
            ["ETH1 (WAN)", "DHCP client"],
            ["ETH2 (LAN)", f"{DEFAULT_IP}/24, DHCP server on (pool .100-.200)"],
            ["Web console", "HTTPS on port 443, user admin, initial password from the password card"],
            ["SSH", "Disabled (enable under System > Services; key authentication only)"],
            ["COM1 / COM2", "RS-485, 9600 bps, 8 data bits, no parity, 1 stop bit, termination off"],
            ["Modbus polling interval", "5 s per device, timeout 1000 ms, 3 retries"],
            ["Cloud connection", "Kestrel Cloud, MQTT over TLS 1.2, port 8883, QoS 1"],
            ["Local data buffer", "72 hours or 2 GB, whichever is reached first"],
            ["Time", "NTP enabled (pool.ntp.org), time zone UTC+8"],
        ]),
        ("p", "A factory reset (RESET held for more than 10 seconds) returns every setting in this table to its "
              "default value."),
    ]
    render_pdf(path, blocks, images, title="EG-400 Industrial Edge Gateway - User Manual",
               header=f"{COMPANY_EN}  |  EG-400 User Manual  |  KD-UM-EG400-EN Rev. C",
               footer="Page {page} of {pages}  -  © 2024 Kestrel Dynamics Co., Ltd.",
               author=COMPANY_EN, subject="EG-400 installation, wiring, setup and maintenance",
               keywords="EG-400, edge gateway, RS-485, Modbus, LTE, installation, user manual")


def doc_eg400_manual_zh(path: Path) -> None:
    """Chinese product manual (PDF, CJK text, 2 figures, 2 tables)."""
    images = {"din_rail_mounting.png": fig_din_rail_mounting_zh(), "relay_derating.jpg": fig_relay_derating_zh()}
    blocks = [
        ("title", "EG-400 工业边缘网关 用户手册"),
        ("subtitle", "适用型号：EG-400-E（以太网版）、EG-400-L（以太网 + LTE Cat 4 版）。文件编号 KD-UM-EG400-ZH，"
                     f"C 版，2024 年 9 月。适用于硬件 2.x 版本及 {FIRMWARE} 固件。"),
        ("h1", "1 安全须知"),
        ("ul", [
            "**警告：**本设备须由具备资质的电气人员安装在封闭的控制柜内，供电电源须为 9-36 V DC 的 SELV/PELV 电源。",
            "接线或插拔 SIM 卡前必须断开电源，SIM 卡槽不支持热插拔。",
            "继电器输出 DO1、DO2 的负载不得超过 30 V DC / 2 A。",
            "FG 端子须使用截面积不小于 1.5 mm² 的黄绿线可靠接地，否则 RS-485 和 CAN 接口的浪涌防护失效。",
            "EG-400-L 工作时，LTE 天线与人体的距离应不小于 20 cm。",
        ]),
        ("h1", "2 产品概述"),
        ("p", "EG-400 通过 RS-485（Modbus RTU）、以太网（Modbus TCP、OPC UA）和 CAN 总线采集现场设备数据，"
              "由 KestrelOS 规则引擎在本地处理后，经 TLS 加密（端口 8883）上传至凯斯特云平台或用户自建的 MQTT 服务器。"
              "上行链路中断时，网关可在本地缓存最长 72 小时（最多 2 GB）的数据，链路恢复后自动补传。"),
        ("h1", "3 主要技术参数"),
        ("p", "两种型号的主要区别在于蜂窝网络模块和功耗，其余参数相同："),
        ("table", ["参数", "EG-400-E", "EG-400-L"], [
            ["处理器 / 内存 / 存储", "四核 Cortex-A53 1.6 GHz / 2 GB / 16 GB eMMC", "同左"],
            ["以太网", "2 × 10/100/1000 Mbps（ETH1 WAN，ETH2 LAN）", "同左"],
            ["串口", "2 × RS-485（COM2 可切换为 RS-232），隔离 2 kV", "同左"],
            ["CAN / 数字量", "1 × CAN 2.0B；4 路 DI，2 路继电器 DO", "同左"],
            ["蜂窝网络", "无", "LTE Cat 4，Nano SIM 卡"],
            ["供电", "24 V DC（9-36 V DC），防反接", "同左"],
            ["功耗", "典型 5 W，最大 9 W", "典型 6 W，最大 12 W"],
            ["工作温度", "-20 °C ~ +60 °C", "-20 °C ~ +60 °C"],
            ["防护等级 / 安装", "IP30，35 mm DIN 导轨", "同左"],
            ["尺寸 / 重量", "125 × 105 × 45 mm，460 g", "125 × 105 × 45 mm，480 g"],
        ]),
        ("h1", "4 安装"),
        ("p", "网关应水平安装在控制柜内的 35 mm DIN 导轨上。设备上下方各预留不小于 20 mm、左右各预留不小于 10 mm "
              "的散热空间。安装与拆卸步骤见图 1。"),
        ("fig", "din_rail_mounting.png", "图 1：EG-400 在 DIN 导轨上的安装与拆卸步骤"),
        ("ol", [
            "断开控制柜电源并挂牌上锁，确认无电压。",
            "将设备背面卡扣的上沿挂在导轨上，再向下按压设备底部，直到听到“咔嗒”声。",
            "用不小于 1.5 mm² 的黄绿线将 FG 端子连接到柜内 PE 接地排。",
            "按接线图连接电源和现场信号：导线截面 0.5-2.5 mm²，多股线须压接管形端子，拧紧力矩 0.5-0.6 N·m。",
            "EG-400-L：断电状态下插入 Nano SIM 卡（触点朝下），将天线拧紧在 SMA 接口上。",
            "上电后检查 PWR 灯常亮绿色，RUN 灯在 60 秒内开始闪烁。",
        ]),
        ("h1", "5 继电器输出降额"),
        ("p", "继电器输出为常开触点。环境温度不高于 45 °C 时，每路可承载 30 V DC / 2 A 阻性负载；"
              "高于 45 °C 时须按图 2 线性降额，60 °C 时每路最大 1 A。驱动接触器线圈等感性负载时，"
              "须在负载两端并联续流二极管或 RC 吸收回路。"),
        ("fig", "relay_derating.jpg", "图 2：继电器输出负载电流随环境温度的降额曲线"),
        ("h1", "6 首次配置"),
        ("ol", [
            "用网线将电脑连接到 ETH2（LAN）口，网关会自动分配 192.168.10.100 至 192.168.10.200 范围内的地址。",
            f"在浏览器中打开 https://{DEFAULT_IP}，接受自签名证书。",
            "使用用户名 admin 和密码卡上的初始密码登录。",
            "按提示修改密码：新密码不少于 12 位，须包含大写字母、小写字母、数字和特殊字符。",
            "在“网络 > 蜂窝网络”中填写 SIM 卡的 APN（仅 EG-400-L）。",
            "在“云平台 > 设备注册”中输入密码卡上的 8 位认领码，将网关绑定到您的凯斯特云账户。",
        ]),
        ("h1", "7 指示灯说明"),
        ("p", "前面板指示灯的状态及含义如下（完整说明见英文版手册第 6 节）："),
        ("table", ["指示灯", "状态", "含义"], [
            ["PWR", "绿色常亮", "电源电压正常（9-36 V DC）"],
            ["RUN", "绿色 1 Hz 闪烁", "系统运行正常"],
            ["NET", "绿色 / 琥珀色", "已连接云平台 / 仅本地网络连通，未连接云平台"],
            ["ERR", "红色常亮", "硬件故障，请联系技术支持"],
            ["ERR", "红色 5 Hz 快闪", "正在恢复出厂设置"],
        ]),
        ("h1", "8 维护与技术支持"),
        ("ul", [
            "按住 RESET 键 1-5 秒设备重启；按住超过 10 秒（ERR 灯快闪）恢复出厂设置，所有配置、证书和缓存数据将被清除。",
            "升级固件前请在“系统 > 备份”中导出配置文件，备份文件采用 AES-256 加密。",
            "产品保修期为自发货之日起 36 个月，详见《保修与退货政策》（KD-POL-WR-01）。",
            f"技术支持热线 {SUPPORT_PHONE}，邮箱 {SUPPORT_EMAIL}，服务时间 {SUPPORT_HOURS_ZH}。",
        ]),
        ("p", f"{COMPANY_ZH}　地址：{ADDRESS_ZH}"),
    ]
    render_pdf(path, blocks, images, title="EG-400 工业边缘网关 用户手册",
               header=f"{COMPANY_ZH}  |  EG-400 用户手册  |  KD-UM-EG400-ZH C 版",
               footer="第 {page} 页 / 共 {pages} 页",
               author=COMPANY_ZH, subject="EG-400 安装、接线、配置与维护",
               keywords="EG-400, 边缘网关, DIN 导轨, 继电器降额, 用户手册")


def doc_warranty_policy_pdf(path: Path) -> None:
    """Warranty and returns policy (PDF, tiny logo icon, 2 figures, 2 tables)."""
    images = {"kd_logo_16.png": icon_logo_16(), "rma_process.png": fig_rma_flowchart(),
              "eg400_rating_label.jpg": fig_product_label()}
    blocks = [
        ("logo", "kd_logo_16.png", "Kestrel Dynamics Customer Service"),
        ("title", "Warranty and Returns Policy"),
        ("subtitle", "Policy KD-POL-WR-01, version 3.0, effective 1 July 2024. Applies to all hardware sold by "
                     f"{COMPANY_EN} and its authorised distributors."),
        ("h1", "1 Standard warranty periods"),
        ("p", "Kestrel Dynamics warrants that its products are free from defects in material and workmanship for "
              "the periods below. The period starts on the date of shipment from Kestrel or from the authorised "
              "distributor. If the shipment date cannot be proven, it starts 60 days after the manufacturing month "
              "encoded in the serial number: K4L-2409-01234 is an EG-400-L made in September 2024 (prefix K4E = "
              "EG-400-E, K2E = EG-200)."),
        ("table", ["Product", "Warranty period", "Advance replacement (DOA)"], [
            ["EG-400-E / EG-400-L edge gateway", "36 months", "Yes, within 30 days of shipment"],
            ["EG-200 compact gateway", "36 months", "Yes, within 30 days of shipment"],
            ["PS-24-60 DIN-rail power supply", "24 months", "No"],
            ["LTE antenna, cables, terminal blocks", "12 months", "No"],
            ["Refurbished units (R models)", "12 months", "No"],
            ["Repaired or replaced units", "Rest of the original warranty or 90 days, whichever is longer", "No"],
        ]),
        ("h2", "1.1 Extended warranty"),
        ("p", "Kestrel Care Plus (part number KCP-EG-5Y) extends the warranty of EG-series gateways to 60 months. "
              "It must be bought within 90 days of shipment and costs 12 % of the unit list price."),
        ("h1", "2 What is not covered"),
        ("ul", [
            "Damage caused by a supply voltage above 36 V DC, by loads above 30 V DC / 2 A on the relay outputs, or "
            "by lightning and surges when the FG terminal was not earthed.",
            "Water ingress, corrosion, or operation outside -20 °C to +60 °C and 95 % relative humidity.",
            "Units whose warranty seal or serial-number label has been removed or damaged (see Figure 1).",
            "Unauthorised hardware or firmware modifications. Official KestrelOS releases and configuration "
            "changes do not affect the warranty.",
            "Cosmetic damage that does not affect function, SIM cards and cellular data charges.",
        ]),
        ("fig", "eg400_rating_label.jpg",
         "Figure 1: Rating label on the side of the EG-400 with model, serial number, MAC address and warranty seal"),
        ("h1", "3 Returning a product (RMA)"),
        ("p", "Every return needs a Return Material Authorisation (RMA) number. Parcels without an RMA number are "
              "refused and sent back at the sender's cost. Figure 2 summarises the process."),
        ("fig", "rma_process.png", "Figure 2: Warranty claim and RMA process"),
        ("ol", [
            f"Open a case on the support portal ({PORTAL}) or by e-mail to {SUPPORT_EMAIL} with the serial number, "
            "firmware version, a description of the fault and a diagnostics export (System > Diagnostics > Export).",
            "Technical Support answers within 1 business day and first tries to solve the problem remotely.",
            "If a return is needed you receive an RMA number in the format RMA-YYMM-NNNN. It is valid for 30 days.",
            "Pack the unit in its original or equivalent ESD-safe packaging, without SIM card and accessories "
            "unless requested, write the RMA number on the outside of the box and ship it freight prepaid to "
            f"Kestrel Dynamics Repair Center, {ADDRESS_EN}.",
            "The unit is inspected within 5 business days of receipt. In-warranty units are repaired or replaced "
            "and shipped back at Kestrel's cost within 10 business days of receipt.",
        ]),
        ("h2", "3.1 Dead on arrival (DOA)"),
        ("p", "A gateway that fails within 30 days of shipment is treated as dead on arrival: Kestrel ships an "
              "advance replacement within 2 business days after issuing the RMA number. The defective unit must "
              "be returned within 15 days of receiving the replacement, otherwise the replacement is invoiced at "
              "list price."),
        ("h2", "3.2 Out-of-warranty repairs"),
        ("p", "Out-of-warranty units are evaluated for a fee of USD 75 (CNY 500). A quotation is sent within 5 "
              "business days, and the evaluation fee is waived if the repair is approved. Units whose quotation is "
              "not approved within 30 days are returned unrepaired at the customer's cost or, on written request, "
              "scrapped. Repairs carry a 90-day warranty."),
        ("h1", "4 Returns of unused products"),
        ("p", "Unopened products in resaleable condition can be returned within 30 days of delivery for a credit "
              "note, less a 15 % restocking fee. Custom-configured units, units with customer-specific firmware and "
              "software licences cannot be returned."),
        ("h1", "5 Contacts"),
        ("p", "Please have the serial number and, for returns, the RMA number ready when you contact us."),
        ("table", ["Channel", "Details"], [
            ["Support portal", PORTAL],
            ["Technical support e-mail", SUPPORT_EMAIL],
            ["RMA logistics e-mail", RMA_EMAIL],
            ["Phone (China)", SUPPORT_PHONE],
            ["Phone (North America)", SUPPORT_PHONE_US],
            ["Service hours", SUPPORT_HOURS_EN],
        ]),
    ]
    render_pdf(path, blocks, images, title="Warranty and Returns Policy",
               header=f"{COMPANY_EN}  |  Warranty and Returns Policy  |  KD-POL-WR-01 v3.0",
               footer="Page {page} of {pages}  -  Public document",
               author=COMPANY_EN, subject="Warranty periods, exclusions, RMA process and returns",
               keywords="warranty, RMA, returns, DOA, repair, EG-400, EG-200")


def doc_travel_expense_policy(path: Path) -> None:
    """English travel & expense policy (DOCX: headings, lists, table, PNG + JPEG figures)."""
    images = {"approval": fig_expense_approval_flow(), "receipt": fig_receipt_example()}
    blocks = [
        ("title", "Travel and Expense Policy"),
        ("subtitle", "Policy KD-FIN-003 | Version 4.1 | Effective 1 July 2024 | Owner: Finance Department | "
                     "Approved by: Chief Financial Officer"),
        ("h1", "1 Purpose and scope"),
        ("p", f"This policy sets the rules for booking business travel and for reimbursing travel and other business "
              f"expenses at {COMPANY_EN} and its subsidiaries. It applies to all employees, interns and contractors "
              "who travel on company business. Amounts are in US dollars; local-currency equivalents are published "
              "by Finance every January."),
        ("h1", "2 Booking travel"),
        ("h2", "2.1 Flights and trains"),
        ("ul", [
            "Book flights, trains and hotels through the Kestrel Travel Desk (travel@kestrel-dynamics.example, "
            "ext. 8125) or the TravelHub portal; bookings made elsewhere are reimbursed only up to the TravelHub fare.",
            "Book international trips at least 14 days and domestic trips at least 7 days in advance.",
            "Economy class for flights under 6 hours, premium economy for flights of 6 hours or more. Business class "
            "requires written CFO approval before booking.",
            "Use second class for high-speed rail; first class is allowed for trips of more than 4 hours.",
        ]),
        ("h2", "2.2 Hotels and cars"),
        ("ul", [
            "Stay in hotels within the nightly limit of Table 1. Rental cars: compact class, with the company's "
            "insurance included in the rate.",
            "Private cars are reimbursed at USD 0.40 per km (CNY 1.20 per km in China), plus tolls and parking.",
        ]),
        ("p", "**Table 1: Daily limits by city tier (USD)**"),
        ("table", ["City tier", "Examples", "Hotel per night", "Meals per day"], [
            ["A", "New York, London, Tokyo, Hong Kong", "280", "90"],
            ["B", "Shanghai, Beijing, Shenzhen, Munich, Singapore", "200", "70"],
            ["C", "Suzhou, Hangzhou, Chengdu and all other cities", "130", "50"],
        ]),
        ("p", "Meal allowances are reduced by 25 % for each meal provided by a customer, a conference or the "
              "airline. Hotel taxes and the first 1 GB of hotel internet are reimbursed in addition to the limit."),
        ("h1", "3 Submitting an expense claim"),
        ("ol", [
            "Submit the claim in ExpensePoint within 30 days after the end of the trip.",
            "Attach an itemised receipt for every expense of USD 25 or more. Credit-card slips alone are not "
            "accepted; a compliant hotel receipt is shown in Figure 2.",
            "Convert foreign currency at the rate on the transaction date; the rate on your card statement is "
            "also accepted.",
            "State the business purpose and, for meals with guests, the names and companies of all attendees.",
            "Claims submitted more than 90 days after the trip are reimbursed only with CFO approval.",
        ]),
        ("p", "Every claim is approved by the employee's line manager. Claims above USD 1,000 also need the "
              "department head, and claims above USD 5,000 also need the CFO. Finance audits approved claims within "
              "5 business days and pays them with the next payroll run (15th or last working day of the month)."),
        ("fig", "approval", "Figure 1: Approval routing of expense claims in ExpensePoint"),
        ("fig", "receipt", "Figure 2: Compliant itemised hotel receipt; the merchant, the itemised charges and the "
                           "total with the payment method must be readable"),
        ("h1", "4 Non-reimbursable expenses"),
        ("ul", [
            "Minibar, in-room films, spa, gym and other personal expenses",
            "Traffic and parking fines",
            "Upgrades of flights, trains or rooms without prior approval",
            "Travel costs of family members or friends",
            "Loss or theft of personal belongings",
            "Alcohol, except at approved client entertainment",
        ]),
        ("h1", "5 Client entertainment and gifts"),
        ("p", "Client entertainment is limited to USD 60 per person per event and needs the names of all attendees "
              "and the business purpose. Gifts to clients must not exceed USD 50 per person per year. Gifts "
              "received with a value above USD 50 must be registered with Compliance within 5 business days."),
        ("h1", "6 Corporate card"),
        ("ul", [
            "A corporate card is issued to employees who travel more than four times a year.",
            "The standard monthly limit is USD 5,000; higher limits need department-head approval.",
            "Cash withdrawals are allowed only abroad, up to USD 200 per trip.",
            f"Report a lost or stolen card to the bank immediately and to Finance ({FINANCE_EMAIL}) within 24 hours.",
        ]),
        ("h1", "7 Contacts"),
        ("p", f"Questions about this policy: Finance Department, {FINANCE_EMAIL}, ext. 8120. Travel bookings: "
              "Kestrel Travel Desk, ext. 8125. Violations of this policy may lead to the claim being rejected and "
              "to disciplinary action."),
    ]
    document = new_docx(title="Travel and Expense Policy", subject="Policy KD-FIN-003: travel booking and expense reimbursement",
                        keywords="travel, expenses, per diem, hotel, reimbursement, approval",
                        header=f"{COMPANY_EN} | Travel and Expense Policy | KD-FIN-003 v4.1",
                        footer="Internal | Page ")
    blocks_to_docx(document, blocks, images)
    save_docx(document, path)


def doc_infosec_policy_zh(path: Path) -> None:
    """Chinese information security policy (DOCX: headings, lists, table, PNG + JPEG figures)."""
    images = {"zones": fig_network_zones_zh(), "matrix": fig_risk_matrix_zh()}
    blocks = [
        ("title", "信息安全管理制度"),
        ("subtitle", "文件编号：KD-IT-001　版本：V2.0　生效日期：2024 年 3 月 1 日　归口部门：信息技术部　批准：总经理"),
        ("h1", "第一章　总则"),
        ("p", f"第一条　为保护{COMPANY_ZH}（以下简称“公司”）的信息资产，保障业务系统和 EG 系列产品研发、生产数据的"
              "机密性、完整性和可用性，依据《中华人民共和国网络安全法》《数据安全法》《个人信息保护法》及 ISO/IEC 27001 标准，"
              "制定本制度。"),
        ("p", "第二条　本制度适用于公司全体员工、实习生，以及访问公司信息系统的供应商、外包人员和访客。"),
        ("p", "第三条　公司设立信息安全委员会，由总经理任主任，信息技术部负责人任副主任，成员包括研发、生产、财务和人力资源"
              "部门负责人。委员会每季度召开一次例会，审议安全策略、重大风险和事件报告。"),
        ("h1", "第二章　信息分类分级"),
        ("p", "第四条　公司信息按敏感程度分为四级，信息所有者负责定级，并在文件页眉或文件名中标注级别："),
        ("table", ["级别", "定义", "示例", "处理要求"], [
            ["公开", "可对外发布的信息", "产品宣传册、已发布的用户手册", "经市场部审核后发布"],
            ["内部", "仅限员工内部使用", "组织架构、内部通知、本制度", "不得对外传播，使用公司邮箱传递"],
            ["机密", "泄露会造成较大损失", "客户合同与报价、EG-400 电路图、源代码", "加密存储和传输，按最小权限授权"],
            ["绝密", "泄露会造成严重损失", "未发布产品规划、并购信息、固件签名密钥", "专人保管，访问须经总经理审批并留痕"],
        ]),
        ("h1", "第三章　账号与口令管理"),
        ("p", "第五条　所有信息系统实行实名账号管理，禁止共用账号。口令须满足以下要求："),
        ("ol", [
            "口令长度不少于 12 位，至少包含大写字母、小写字母、数字和特殊字符中的三类；",
            "口令每 180 天更换一次，不得与最近 5 次使用过的口令相同；",
            "连续 5 次登录失败，账号自动锁定 30 分钟；",
            "VPN、云平台管理后台及所有服务器的远程访问必须启用多因素认证；",
            "设备出厂初始口令（如 EG-400 的 admin 初始密码）在首次登录时必须修改。",
        ]),
        ("p", "第六条　员工离职当天，人力资源部须通知信息技术部停用其全部账号；员工调岗后，原权限须在 3 个工作日内调整。"
              "各系统负责人每季度开展一次权限评审，评审记录保存 3 年。"),
        ("h1", "第四章　网络与终端安全"),
        ("h2", "一、网络分区"),
        ("p", "第七条　公司网络划分为办公网、研发网、服务器区、生产网（OT）和 DMZ 区，各区之间通过防火墙隔离，"
              "分区结构和主要访问规则见图 1。"),
        ("fig", "zones", "图 1：公司网络安全分区示意图"),
        ("h2", "二、终端安全"),
        ("p", "第八条　终端安全要求："),
        ("ul", [
            "办公电脑须安装公司统一的终端防护软件，并启用全盘加密（BitLocker 或 FileVault）；",
            "默认禁用 USB 存储设备，确需使用的须经部门负责人审批，并使用公司配发的加密 U 盘；",
            "离开座位须锁定屏幕，屏幕保护等待时间不超过 5 分钟；",
            "禁止私自架设无线热点，禁止将个人设备接入研发网或生产网；",
            "访客 Wi-Fi（Kestrel-Guest）与办公网隔离，密码每周一更换。",
        ]),
        ("h1", "第五章　数据备份与恢复"),
        ("p", "第九条　业务系统遵循“3-2-1”备份原则：至少保留 3 份数据副本，使用 2 种不同存储介质，其中 1 份存放在异地。"
              "业务系统每日进行增量备份，每周日进行全量备份，备份数据保留 90 天。ERP 系统的恢复点目标（RPO）为 24 小时，"
              "恢复时间目标（RTO）为 4 小时。信息技术部每半年组织一次恢复演练。"),
        ("h1", "第六章　安全事件管理"),
        ("p", f"第十条　任何人发现安全事件或可疑情况，须在 1 小时内报告信息安全小组：邮箱 {SECURITY_EMAIL}，内线 8110，"
              "7×24 小时值班电话 +86 512 6288 0110。事件按影响程度和发生可能性分为 P1 至 P4 四级，见图 2。"),
        ("fig", "matrix", "图 2：信息安全事件分级矩阵及响应时限"),
        ("p", "第十一条　事件处置按以下步骤进行："),
        ("ol", [
            "报告：发现人立即报告，不得自行删除日志或证据；",
            "分级：信息安全小组在 30 分钟内完成初步分级；",
            "遏制：隔离受影响的主机、账号或网络区域；",
            "根除与恢复：清除威胁，从可信备份恢复系统并加强监控；",
            "总结：事件关闭后 5 个工作日内提交事件报告和改进措施。",
        ]),
        ("h1", "第七章　附则"),
        ("p", "第十二条　违反本制度的，视情节轻重给予警告、通报批评直至解除劳动合同；造成损失的，依法追究责任。"),
        ("p", "第十三条　本制度由信息技术部负责解释，自 2024 年 3 月 1 日起施行，原《信息安全管理制度》（KD-IT-001 V1.3）"
              "同时废止。"),
    ]
    document = new_docx(title="信息安全管理制度", subject="KD-IT-001 信息安全管理制度",
                        keywords="信息安全, 口令, 网络分区, 数据备份, 安全事件",
                        header=f"{COMPANY_ZH}｜信息安全管理制度｜KD-IT-001 V2.0｜内部", footer="内部资料　第 ",
                        chinese=True)
    blocks_to_docx(document, blocks, images)
    save_docx(document, path)


def doc_field_service_procedure(path: Path) -> None:
    """English field service procedure (DOCX: lists, tables, image inside a table cell)."""
    images = {"cabinet": fig_cabinet_layout(), "crimp": fig_crimp_inspection()}
    blocks = [
        ("title", "Field Service Procedure: EG-400 Installation and Replacement"),
        ("subtitle", "Procedure KD-SVC-012 | Revision B | 2 September 2024 | For Kestrel field service engineers "
                     "and certified partners"),
        ("h1", "1 Scope"),
        ("p", "This procedure describes how to install a new EG-400 gateway in a customer control cabinet and how to "
              "replace a defective unit under an RMA. It complements the EG-400 User Manual (KD-UM-EG400-EN) and "
              "the Warranty and Returns Policy (KD-POL-WR-01)."),
        ("h1", "2 Safety"),
        ("h2", "2.1 Personal protective equipment"),
        ("p", "Wear the following personal protective equipment on every site visit:"),
        ("ul", [
            "Safety shoes (S3) and safety glasses",
            "Insulated gloves, class 0 (1000 V AC), when working near live parts",
            "Hard hat where there is overhead work or a site rule requires it",
        ]),
        ("h2", "2.2 Lockout/tagout"),
        ("p", "Before touching any wiring, apply lockout/tagout (LOTO):"),
        ("ol", [
            "Inform the site operator and obtain a signed work permit.",
            "Open breaker QF1 and the cabinet main isolator; attach your personal lock and tag.",
            "Verify the absence of voltage with a two-pole tester; test the tester before and after the measurement.",
            "Only the person who attached a lock may remove it at the end of the work.",
        ]),
        ("h1", "3 Tools and materials"),
        ("table", ["Item", "Specification", "Qty"], [
            ["Torque screwdriver", "0.4-1.0 N·m, 2.5 mm slotted blade", "1"],
            ["Ferrule crimping tool", "Square profile, 0.25-6 mm²", "1"],
            ["Insulated ferrules", "0.75 mm² and 1.5 mm²", "50 each"],
            ["RS-485 cable", "Shielded twisted pair, 24 AWG, 120 Ω", "As needed"],
            ["Termination resistor", "120 Ω, 0.25 W", "2"],
            ["Laptop", "kcli tool installed, USB-C cable", "1"],
            ["Multimeter", "CAT III 600 V", "1"],
        ]),
        ("h1", "4 Cabinet layout"),
        ("p", "Mount QF1, the PS-24-60 power supply and the EG-400 on the upper DIN rail and the field terminal "
              "blocks X1-X3 on the lower rail, as in Figure 1. Keep at least 20 mm between the gateway and the cable "
              "ducts and keep the cabinet below 45 °C so the relay outputs can carry their full 2 A."),
        ("fig", "cabinet", "Figure 1: Reference cabinet layout with QF1, PS-24-60 and EG-400 on rail 1"),
        ("h1", "5 Wiring quality checks"),
        ("p", "Check every connection against Table 1 before switching on. Record the torque values in the service "
              "report."),
        ("p", "**Table 1: Wiring acceptance criteria**"),
        ("table", ["Check", "Acceptance criterion", "Reference"], [
            ["Ferrule crimp", "Conductor flush with the sleeve end (0-0.5 mm), no stray strands, collar tight",
             Img("crimp", 6.0)],
            ["Terminal torque", "0.5-0.6 N·m on all EG-400 terminal blocks", "User Manual, section 4"],
            ["Pull test", "Each conductor withstands a firm pull by hand (about 20 N)", "-"],
            ["RS-485 shield", "Grounded at the gateway end only; 120 Ω termination at both bus ends", "User Manual, Figure 2"],
            ["Protective earth", "FG connected to the PE busbar with at least 1.5 mm²", "Figure 1"],
        ]),
        ("caption", "Figure 2 (in Table 1): acceptable (top) and rejected (bottom) ferrule crimps"),
        ("h1", "6 Replacing a defective gateway"),
        ("ol", [
            "Export the configuration of the old unit (System > Backup) or download the latest automatic backup "
            "from Kestrel Cloud (Devices > Backups; kept for 30 days).",
            "Note the serial numbers of the old and new units and the RMA number.",
            "Apply lockout/tagout as described in section 2.",
            "Unplug the terminal blocks; the field wiring stays in the pluggable blocks.",
            "Release the DIN-rail clip with a flat screwdriver and remove the unit.",
            "Mount the new unit, plug in the terminal blocks and switch on the supply.",
            "Restore the backup and claim the new unit in Kestrel Cloud; device certificates are re-issued "
            "automatically.",
            "Verify that PWR and RUN are normal, NET is green and every Modbus device answers (Diagnostics > Bus).",
            "Return the defective unit with the RMA form within 15 days.",
        ]),
        ("h1", "7 Service report"),
        ("p", "Upload the service report (form KD-SVC-012-F1) to the support case within 24 hours. It must contain:"),
        ("ul", [
            "Customer site, cabinet ID and date of the visit",
            "Serial numbers, firmware version and RMA number",
            "Measured supply voltage at the V+/V- terminals (expected 22.8-25.2 V DC with PS-24-60)",
            "Photos of the cabinet before and after the work",
            "Signature of the site operator",
        ]),
    ]
    document = new_docx(title="Field Service Procedure: EG-400 Installation and Replacement",
                        subject="Procedure KD-SVC-012 for field service engineers",
                        keywords="EG-400, installation, replacement, LOTO, crimp, cabinet layout",
                        header=f"{COMPANY_EN} | Field Service Procedure | KD-SVC-012 Rev. B", footer="Controlled copy | Page ")
    blocks_to_docx(document, blocks, images)
    save_docx(document, path)


def doc_troubleshooting_faq_md(path: Path) -> None:
    """Troubleshooting FAQ (Markdown: headings, lists, pipe table, code)."""
    text = f"""# EG-Series Troubleshooting FAQ

> Applies to EG-400 and EG-200 gateways running KestrelOS 3.x. Last updated 2024-09-20 by
> Kestrel Dynamics Technical Support ({SUPPORT_EMAIL}).

## LED quick reference

| LED pattern | Likely cause | What to do |
|---|---|---|
| PWR off | No supply, reverse polarity or voltage below 9 V | Measure V+/V-: 9-36 V DC expected; check QF1 and the PS-24-60 output |
| RUN steady for more than 2 min | Boot stuck, usually a corrupted update | Power-cycle once; if it persists, re-flash via the USB-C console (`kcli fw recover`) |
| NET amber | LAN works, no cloud connection | Check DNS, firewall (outbound TCP 8883) and the system clock |
| ERR blinking 2 Hz | Configuration error | Open System > Log; the last entry names the faulty setting |
| ERR steady red | Hardware fault | Export diagnostics and open a support case (RMA may be needed) |
| SIG off (EG-400-L) | No SIM, wrong APN or no coverage | Check the SIM orientation, the APN and the antenna connection |

## Power and start-up

### The gateway restarts every few minutes

1. Measure the supply voltage under load at the V+/V- terminals. It must stay above 9 V; long thin
   cables cause voltage drops when the LTE modem transmits (peaks up to 12 W).
2. Check that FG is earthed. Missing earth can cause resets when contactors switch nearby.
3. Look for `watchdog reset` entries in System > Log and send them to support.

### I forgot the admin password

There is no password recovery. Hold RESET for more than 10 seconds to restore the factory settings; the
initial password on the password card is valid again afterwards. All configuration and buffered data are
erased, so restore your last backup (System > Backup) after the reset.

## Network and cloud

### I cannot open https://{DEFAULT_IP}

- Connect the PC to **ETH2 (LAN)**, not ETH1. ETH1 is a DHCP client and has no fixed address.
- Set the PC to obtain an address automatically; it should get one between 192.168.10.100 and 192.168.10.200.
- Use `https://`, not `http://`; the web console only listens on port 443.

### NET stays amber after registration

- The claim code is case-sensitive and has 8 characters.
- Outbound TCP port 8883 (MQTT over TLS) must be open in the site firewall.
- TLS fails if the clock is wrong: check System > Time, NTP needs UDP port 123.

## RS-485 and Modbus

### Modbus devices time out intermittently

- Terminate the bus with 120 Ω at **both** ends (DIP switch SW1/SW2 on the gateway, resistor at the last device).
- Wire the bus as a daisy chain, not a star, and ground the shield at the gateway end only.
- All devices on one port need the same baud rate and framing (default 9600 8N1).
- Increase the timeout from 1000 ms to 2000 ms for slow meters (Fieldbus > COM1 > Timing).

### Values are wrong by a factor of 10 or 65536

Check the register data type and word order in the device template. 32-bit values are read as two
registers; choose *big-endian word swap* for most energy meters.

## Collecting diagnostics for support

```
kcli diag export --out /tmp/diag.tar.gz
```

Attach the file to your support case together with the serial number (for example `K4L-2409-01234`) and the
firmware version. Support: {SUPPORT_PHONE} (China), {SUPPORT_PHONE_US} (North America), {PORTAL}.
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def doc_release_notes_txt(path: Path) -> None:
    """Firmware release notes (plain text)."""
    image = "kestrelos-3.2.1-eg400.kpkg"
    checksum = hashlib.sha256(image.encode()).hexdigest()   # stand-in checksum, stable across runs
    checksum_200 = hashlib.sha256(b"kestrelos-3.2.1-eg200.kpkg").hexdigest()
    text = f"""KestrelOS 3.2.1 - Release Notes
================================

Release date : 2024-09-12
Applies to   : EG-400-E, EG-400-L (hardware revision 2.x), EG-200 (hardware revision 1.x)
Previous     : KestrelOS 3.2.0 (2024-07-30)
Publisher    : {COMPANY_EN}, Product Management Edge Devices

UPGRADE PATH
- From 3.0.x, 3.1.x or 3.2.0: upgrade directly (web console System > Firmware, or OTA from Kestrel Cloud).
- From 2.x: upgrade to 3.0.4 first, then to 3.2.1. Direct upgrades from 2.x are blocked.
- Back up the configuration before upgrading. The upgrade takes about 4 minutes; do not switch off the
  gateway while the RUN LED blinks fast.

NEW FEATURES
- OPC UA client: subscriptions with up to 500 monitored items per gateway (EG-400 only).
- Modbus RTU: per-device timeout and retry settings (default 1000 ms, 3 retries).
- Store-and-forward buffer can now be limited by age (1-72 hours) as well as by size (max 2 GB).
- New CLI command "kcli diag export" collects logs, configuration (without secrets) and bus statistics.

IMPROVEMENTS
- Boot time reduced from 75 s to 52 s on EG-400.
- LTE reconnect after network loss is faster (median 18 s, previously 45 s).
- Web console: password policy now enforced at 12 characters minimum, matching KD-IT-001.

FIXED ISSUES
- KOS-2291  COM2 in RS-232 mode lost the first byte after a baud-rate change.
- KOS-2304  NET LED stayed amber after a successful cloud reconnect on EG-200.
- KOS-2317  Relay output DO2 could toggle briefly during a warm reboot.
- KOS-2330  NTP server list was reset to default after restoring a backup.

SECURITY
- Updated OpenSSL to 3.0.14 and the Linux kernel to 5.15.160.
- KSA-2024-03: the web console accepted weak TLS 1.0 ciphers when TLS 1.0 was enabled manually.
  TLS 1.0 and 1.1 are now removed. Severity: medium. Reported internally.

KNOWN ISSUES
- KOS-2342  After a factory reset, the first cloud registration may take up to 10 minutes.
  Workaround: reboot the gateway once after the reset.
- KOS-2350  CAN bus statistics show 0 error frames when the bus is in bus-off state.

CHECKSUMS (SHA-256)
{checksum}  {image}
{checksum_200}  kestrelos-3.2.1-eg200.kpkg

Support: {SUPPORT_EMAIL} | {SUPPORT_PHONE} | {PORTAL}
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def doc_system_architecture_png(path: Path) -> None:
    """Standalone PNG diagram."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(img_system_architecture())


def doc_eg200_front_panel_jpg(path: Path) -> None:
    """Standalone JPEG product rendering."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(img_eg200_front_panel())


# Output file -> generator.  Paths are relative to --out.
DOCUMENTS: dict[str, Callable[[Path], None]] = {
    "eg400_user_manual_en.pdf": doc_eg400_manual_en,
    "eg400_user_manual_zh.pdf": doc_eg400_manual_zh,
    "field_service_procedure.docx": doc_field_service_procedure,
    "eg_series_troubleshooting_faq.md": doc_troubleshooting_faq_md,
    "firmware_release_notes.txt": doc_release_notes_txt,
    "system_architecture_diagram.png": doc_system_architecture_png,
    "eg200_front_panel.jpg": doc_eg200_front_panel_jpg,
    "policies/warranty_and_returns_policy.pdf": doc_warranty_policy_pdf,
    "policies/travel_and_expense_policy.docx": doc_travel_expense_policy,
    "policies/信息安全管理制度.docx": doc_infosec_policy_zh,
}

MAX_FILE_BYTES = 400 * 1024


def generate(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for relative, build in DOCUMENTS.items():
        path = out_dir / relative
        build(path)
        written.append(path)
    return written


# ---------------------------------------------------------------------------
# Verification with the same libraries the pipeline uses.
# ---------------------------------------------------------------------------

def _verify_pdf(path: Path) -> tuple[list[str], str]:
    problems = []
    doc = pymupdf.open(path)
    texts = [page.get_text() for page in doc]
    images = [(page.number, img) for page in doc for img in page.get_images(full=True)]
    pages = list(doc)  # keep the pages alive: Table.header renders from its page lazily
    tables = [(page.number, t) for page in pages for t in page.find_tables().tables]
    smask = [img for _, img in images if img[1] != 0]
    dct = [img for _, img in images if img[8] == "DCTDecode"]
    if not 2 <= doc.page_count <= 6:
        problems.append(f"{doc.page_count} pages")
    if any(len(t.strip()) < 200 for t in texts):
        problems.append("a page has almost no text")
    if "_zh" in path.stem and not any(_is_cjk(t) for t in texts):
        problems.append("no Chinese text extracted")
    if not smask:
        problems.append("no image with /SMask")
    if not dct:
        problems.append("no DCTDecode image")
    if not tables:
        problems.append("find_tables() found no table")
    # a table split over two pages leaves cell borders at the very top of the next page's body
    if any(d["rect"].y0 < PDF_BODY.y0 + 4 for page in pages[1:] for d in page.get_drawings()):
        problems.append("a table is split across pages")
    if any(t.header.external for _, t in tables):
        problems.append("a table header was taken from the text above the table")
    # figures sit between paragraphs: some body text follows each figure's caption on its page,
    # or the figure is not on the last page
    placed_between = 0
    for number, img in images:
        page = doc[number]
        for rect in page.get_image_rects(img[0]):
            below = [b for b in page.get_text("blocks") if b[1] > rect.y1 + 30 and b[3] < PDF_FOOTER.y0]
            if below or number < doc.page_count - 1:
                placed_between += 1
    if placed_between < len(images):
        problems.append("a figure is not followed by body text")
    for img in dct:
        data = doc.xref_stream_raw(img[0])
        if not data.startswith(b"\xff\xd8"):
            problems.append("JPEG stream is not raw JPEG bytes")
        if doc.extract_image(img[0])["ext"] != "jpeg":
            problems.append("JPEG not extractable as .jpeg")
    captions = sum(len(re.findall(r"^(Figure \d+:|图 \d+：)", t, re.M)) for t in texts)
    if captions < len([i for _, i in images if i[2] >= 100]):
        problems.append("missing figure captions")
    if doc.metadata.get("creationDate") != PDF_DATE:
        problems.append("creation date not fixed")
    summary = (f"{doc.page_count} pages, {len(images)} images ({len(smask)} with SMask, {len(dct)} DCTDecode, "
               f"{sum(1 for _, i in images if i[2] < 32)} icon), {len(tables)} tables "
               f"({', '.join(f'p{p + 1}:{t.row_count}x{t.col_count}' for p, t in tables)}), {captions} captions")
    doc.close()
    return problems, summary


def _verify_docx(path: Path) -> tuple[list[str], str]:
    problems = []
    document = docx.Document(path)
    styles = {p.style.name for p in document.paragraphs}
    for needed in ("Heading 1", "Heading 2", "List Bullet", "List Number", "Caption"):
        if needed not in styles:
            problems.append(f"no '{needed}' paragraph")
    if not document.tables or document.tables[0].style.name != "Table Grid":
        problems.append("no 'Table Grid' table")
    shapes = list(document.inline_shapes)
    if len(shapes) < 2:
        problems.append(f"{len(shapes)} inline pictures")
    kinds = []
    for rel in document.part.rels.values():
        if rel.reltype.endswith("/image"):
            kinds.append(rel.target_part.content_type)
            Image.open(io.BytesIO(rel.target_part.blob)).verify()
    if "image/png" not in kinds or "image/jpeg" not in kinds:
        problems.append(f"pictures are {kinds}, want a PNG and a JPEG")
    in_cells = sum(len(cell._tc.xpath(".//pic:pic")) for table in document.tables
                   for row in table.rows for cell in row.cells)
    num_ids = {p._p.pPr.numPr.numId.val for p in document.paragraphs
               if p.style.name == "List Number" and p._p.pPr is not None and p._p.pPr.numPr is not None}
    with zipfile.ZipFile(path) as z:
        if any(info.date_time != ZIP_DATE for info in z.infolist()):
            problems.append("zip timestamps not fixed")
    summary = (f"{len(shapes)} inline pictures ({', '.join(sorted(kinds))}; {in_cells} in a table cell), "
               f"{len(document.tables)} tables, {len(num_ids)} numbered lists, "
               f"{sum(1 for p in document.paragraphs if p.style.name.startswith('Heading'))} headings")
    return problems, summary


def verify(out_dir: Path) -> bool:
    ok = True
    total = 0
    for relative in DOCUMENTS:
        path = out_dir / relative
        size = path.stat().st_size
        total += size
        problems: list[str] = []
        if size > MAX_FILE_BYTES:
            problems.append(f"larger than {MAX_FILE_BYTES} bytes")
        suffix = path.suffix.lower()
        if suffix == ".pdf":
            more, summary = _verify_pdf(path)
        elif suffix == ".docx":
            more, summary = _verify_docx(path)
        elif suffix in (".png", ".jpg"):
            with Image.open(path) as img:
                img.verify()
            with Image.open(path) as img:
                summary = f"{img.format} {img.mode} {img.size[0]}x{img.size[1]}"
            more = []
        else:
            text = path.read_text(encoding="utf-8")
            more = [] if len(text) > 500 else ["too short"]
            summary = f"{len(text.splitlines())} lines"
        problems += more
        ok &= not problems
        status = "OK  " if not problems else "FAIL"
        print(f"{status} {relative:45s} {size / 1024:7.1f} KB  {summary}")
        for problem in problems:
            print(f"       - {problem}")
    print(f"total {total / 1024:.1f} KB in {len(DOCUMENTS)} files")
    return ok


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def check_determinism() -> bool:
    """Generate the corpus twice, in two fresh interpreter processes (different hash seeds), into
    temporary folders and compare every file's sha256."""
    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
        for folder in (first, second):
            subprocess.run([sys.executable, str(Path(__file__).resolve()), "--out", folder],
                           check=True, stdout=subprocess.DEVNULL)
        a, b = _hashes(Path(first)), _hashes(Path(second))
    same = a == b
    for name in sorted(set(a) | set(b)):
        status = "same" if a.get(name) == b.get(name) else "DIFFERENT"
        print(f"{status:9s} {(a.get(name) or '-')[:16]}  {name}")
    print("deterministic" if same else "NOT deterministic")
    return same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("raw_data"), help="output folder (default: raw_data)")
    parser.add_argument("--verify", action="store_true", help="check the generated files with PyMuPDF/python-docx/Pillow")
    parser.add_argument("--check-determinism", action="store_true",
                        help="generate twice into temporary folders and compare sha256 of every file")
    args = parser.parse_args(argv)
    ok = True
    if args.check_determinism:
        ok &= check_determinism()
    for path in generate(args.out):
        print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KB)")
    if args.verify:
        ok &= verify(args.out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
