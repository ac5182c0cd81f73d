"""Builders for the documents the ingestion tests read: real PDF, DOCX and image files, made on the fly."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import docx
import numpy as np
import pymupdf
from docx.shared import Inches
from PIL import Image, ImageDraw

CJK_FONT = "china-s"  # PyMuPDF's built-in simplified-Chinese font


def png(size=(320, 200), color=(30, 120, 200), mode="RGB", alpha=None, label="") -> bytes:
    """A diagram-like PNG; with `alpha`, the background is transparent and the box has that opacity."""
    if alpha is not None:
        image = Image.new("RGBA", size, (0, 0, 0, 0))
        ImageDraw.Draw(image).rectangle([10, 10, size[0] - 10, size[1] - 10], fill=(*color, alpha))
    else:
        image = Image.new(mode, size, color if mode == "RGB" else 128)
        ImageDraw.Draw(image).rectangle([10, 10, size[0] // 2, size[1] // 2], fill=(255, 255, 255) if mode == "RGB" else 255)
    if label:
        ImageDraw.Draw(image).text((15, 15), label, fill=(0, 0, 0, 255) if image.mode == "RGBA" else 0)
    return encode(image, "PNG")


def jpeg(size=(320, 200), color=(200, 60, 40), mode="RGB", exif_orientation=None) -> bytes:
    image = Image.new(mode, size, color)
    ImageDraw.Draw(image).rectangle([20, 20, size[0] // 3, size[1] // 3], fill=(250, 250, 250) if mode == "RGB" else None)
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        return encode(image, "JPEG", exif=exif.tobytes())
    return encode(image, "JPEG", quality=90)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def png_16bit_gray(size=(300, 200)) -> bytes:
    ramp = np.tile(np.linspace(0, 65535, size[0]).astype(np.uint16), (size[1], 1))
    return encode(Image.fromarray(ramp), "PNG")


def png_palette(size=(300, 200), transparent=True) -> bytes:
    image = Image.new("P", size, 0)  # index 0: white background (transparent when `transparent`)
    image.putpalette([255, 255, 255, 200, 30, 30, 30, 30, 200] + [0] * 759)
    ImageDraw.Draw(image).rectangle([20, 20, 120, 120], fill=1)
    return encode(image, "PNG", transparency=0) if transparent else encode(image, "PNG")


def bomb_png(width=60_000, height=60_000) -> bytes:
    """A valid PNG header declaring width x height pixels, with a tiny IDAT: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(b"\x00" * (width + 1) * 4)  # a few rows; decoding the rest would inflate GBs
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


EMF_BYTES = b"\x01\x00\x00\x00" + b"\x00" * 36 + b" EMF" + b"\x00" * 88


def sample_pdf(path: Path) -> Path:
    """Three pages: heading, text, an alpha PNG, a JPEG, a ruled table, a logo on every page, and a
    Chinese page; page 2 has two columns."""
    doc = pymupdf.open()
    logo = png((200, 80), color=(10, 10, 10), label="ACME")
    page = doc.new_page()
    page.insert_text((72, 60), "Installation Guide", fontsize=22)
    page.insert_textbox(pymupdf.Rect(72, 80, 520, 130), "Mount the X200 controller on a DIN rail before wiring. "
                        "Keep 5 cm of clearance on each side.", fontsize=11)
    page.insert_image(pymupdf.Rect(72, 140, 312, 290), stream=png(alpha=160, label="wiring"))
    page.insert_textbox(pymupdf.Rect(72, 300, 520, 330), "Figure 1: Wiring diagram of the X200.", fontsize=10)
    page.insert_image(pymupdf.Rect(72, 340, 312, 490), stream=jpeg())
    page.insert_textbox(pymupdf.Rect(72, 500, 520, 530), "Figure 2: Front panel.", fontsize=10)
    rows = [["Parameter", "Value"], ["Voltage", "24 V DC"], ["Current", "1.5 A"], ["IP rating", "IP65"]]
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            rect = pymupdf.Rect(72 + c * 150, 550 + r * 20, 222 + c * 150, 570 + r * 20)
            page.draw_rect(rect, color=(0, 0, 0), width=0.7)
            page.insert_text((rect.x0 + 4, rect.y1 - 6), cell, fontsize=10)
    page.insert_textbox(pymupdf.Rect(72, 650, 520, 680), "The table above lists the electrical ratings.", fontsize=11)
    page.insert_image(pymupdf.Rect(480, 20, 580, 60), stream=logo)

    page = doc.new_page()  # two columns
    left = ("Left column first paragraph about maintenance intervals. " * 3).strip()
    right = ("Right column paragraph about spare parts and ordering. " * 3).strip()
    page.insert_text((72, 60), "Maintenance", fontsize=22)
    page.insert_textbox(pymupdf.Rect(72, 90, 290, 200), left, fontsize=11)
    page.insert_textbox(pymupdf.Rect(72, 210, 290, 320), "Left column second paragraph ends here.", fontsize=11)
    page.insert_textbox(pymupdf.Rect(320, 90, 540, 200), right, fontsize=11)
    page.insert_textbox(pymupdf.Rect(320, 210, 540, 320), "Right column second paragraph ends here.", fontsize=11)
    page.insert_image(pymupdf.Rect(480, 20, 580, 60), stream=logo)

    page = doc.new_page()
    page.insert_text((72, 60), "安装说明", fontsize=22, fontname=CJK_FONT)
    page.insert_textbox(pymupdf.Rect(72, 80, 520, 140), "控制器必须安装在导轨上。接线前请断开电源。", fontsize=11, fontname=CJK_FONT)
    page.insert_image(pymupdf.Rect(480, 20, 580, 60), stream=logo)
    doc.set_metadata({"title": "X200 Installation Guide"})
    doc.save(path)
    return path


def cmyk_jpeg_pdf(path: Path) -> Path:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 60), "A CMYK photo follows.", fontsize=11)
    page.insert_image(pymupdf.Rect(72, 80, 312, 230), stream=jpeg(mode="CMYK", color=(0, 255, 255, 0)))
    doc.save(path)
    return path


def encrypted_pdf(path: Path) -> Path:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "Secret salary bands.", fontsize=11)
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="user", owner_pw="owner")
    return path


def scanned_pdf(path: Path) -> Path:
    """A page that is only a full-page picture: no text layer."""
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_image(page.rect, stream=jpeg((600, 800), color=(240, 240, 235)))
    doc.save(path)
    return path


def sample_docx(path: Path) -> Path:
    d = docx.Document()
    d.core_properties.title = "Travel Policy"
    d.add_heading("Travel Policy", level=1)
    d.add_paragraph("This policy applies to all employees.")
    d.add_heading("Booking", level=2)
    d.add_paragraph("Book through the portal", style="List Number")
    d.add_paragraph("Attach the approval", style="List Number")
    d.add_paragraph("Economy class only", style="List Bullet")
    d.add_paragraph("Nested detail", style="List Bullet 2")
    p = d.add_paragraph("The approval flow is shown here: ")
    p.add_run().add_picture(io.BytesIO(png(alpha=200, label="flow")), width=Inches(2))
    p.add_run(" and continues below.")
    d.add_paragraph("Figure 1: Approval flow", style="Caption")
    table = d.add_table(rows=3, cols=3)
    table.style = "Table Grid"
    for r, row in enumerate([["Grade", "Hotel limit", "Photo"], ["Staff", "150 EUR | night", ""], ["Manager", "200 EUR", ""]]):
        for c, text in enumerate(row):
            table.cell(r, c).text = text
    table.cell(1, 2).paragraphs[0].add_run().add_picture(io.BytesIO(jpeg()), width=Inches(1))
    d.add_paragraph("Receipts are due within 30 days.")
    d.save(path)
    return path


def docx_with_replaced_media(src: Path, dst: Path, replacement: bytes) -> Path:
    """Copies a .docx, replacing the bytes of its first media file (to embed e.g. an EMF)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        replaced = False
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.startswith("word/media/") and not replaced:
                data, replaced = replacement, True
            zout.writestr(item, data)
    return dst


def single_image_docx(path: Path, image: bytes) -> Path:
    d = docx.Document()
    d.add_paragraph("Diagram below.")
    d.add_paragraph().add_run().add_picture(io.BytesIO(image), width=Inches(2))
    d.add_paragraph("End of document.")
    d.save(path)
    return path
