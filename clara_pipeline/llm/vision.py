"""Preparing a stored image for a vision model: RGB, at most 2048 px, under a byte limit, as a data URL.

Ingestion already stores 8-bit PNG (alpha kept) or JPEG, but this step does not rely on it: CMYK, 16-bit,
palette and alpha images are converted here too, so any image can be sent. Transparent areas are
composited on white (diagrams drawn on a transparent canvas are black-on-nothing otherwise, and many
vision endpoints flatten alpha to black). The result is always JPEG: every vision endpoint accepts it and
it keeps requests small; the quality, then the size, is lowered until the bytes fit.
"""

from __future__ import annotations

import base64
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

VISION_PREP_VERSION = "1"  # part of the caption cache key: bump when the bytes sent for an image change


@dataclass(frozen=True)
class VisionLimits:
    min_side: int = 16  # below this a vision model sees nothing worth describing
    max_side: int = 2048  # the largest side OpenAI's high-detail mode uses; larger is scaled down anyway
    max_bytes: int = 4 * 1024 * 1024  # encoded JPEG; several providers refuse images above 4-5 MB
    jpeg_quality: int = 90  # high: text in screenshots must stay legible for transcription
    min_jpeg_quality: int = 50  # below this text blurs; shrink the image instead
    max_pixels: int = 100_000_000  # decompression-bomb guard

    def __post_init__(self) -> None:
        if not 1 <= self.min_side <= self.max_side:
            raise ValueError(f"VisionLimits: need 1 <= min_side <= max_side, got {self.min_side}, {self.max_side}")
        if not 1 <= self.min_jpeg_quality <= self.jpeg_quality <= 100:
            raise ValueError("VisionLimits: need 1 <= min_jpeg_quality <= jpeg_quality <= 100, got "
                             f"{self.min_jpeg_quality}, {self.jpeg_quality}")
        if self.max_bytes < 1024:
            raise ValueError(f"VisionLimits.max_bytes must be >= 1024, got {self.max_bytes}")


class ImageRejected(ValueError):
    """An image that cannot be sent; `code` is one of: too_small, undecodable, too_large."""

    def __init__(self, code: str, reason: str):
        self.code = code
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class PreparedImage:
    data_url: str  # data:image/jpeg;base64,...
    width: int
    height: int
    bytes: int  # size of the JPEG
    quality: int


def prepare_image(data: bytes, limits: VisionLimits = VisionLimits()) -> PreparedImage:
    """`data` (any Pillow-decodable image) as a JPEG data URL within `limits`.

    Raises:
        ImageRejected: undecodable data, a side below `min_side`, more than `max_pixels`, or an image that
            cannot get under `max_bytes` even at reduced size.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > limits.max_pixels:
                raise ImageRejected("too_large", f"{image.width}x{image.height} px exceeds "
                                                 f"{limits.max_pixels:,} pixels")
            image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageRejected("undecodable", f"not a decodable image ({exc})") from None
    ImageOps.exif_transpose(image, in_place=True)  # a phone photo upright (in place: no copy)
    if min(image.size) < limits.min_side:
        raise ImageRejected("too_small", f"{image.width}x{image.height} px has a side below "
                                         f"{limits.min_side} px; a vision model cannot read it")
    image = to_rgb(image)
    if max(image.size) > limits.max_side:
        image.thumbnail((limits.max_side, limits.max_side), Image.Resampling.LANCZOS)
    return _encode_within(image, limits)


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB (or L) copy of `image`: alpha on white, CMYK and palette converted, 16-bit scaled."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Scale by the image's own maximum: Pillow's convert("L") clips everything above 255 to white.
        values = np.asarray(image, dtype=np.float64)
        top = float(values.max()) if values.size else 0.0
        scale = 255.0 / top if top > 255 else 1.0
        return Image.fromarray(np.clip(values * scale, 0, 255).astype(np.uint8), mode="L")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image if mode == "RGBA" else image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in ("RGB", "L"):
        return image
    return image.convert("RGB")  # CMYK, YCbCr, LAB, 1-bit ...


def _encode_within(image: Image.Image, limits: VisionLimits) -> PreparedImage:
    quality = limits.jpeg_quality
    while True:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality, optimize=True)
        size = buffer.tell()
        if size <= limits.max_bytes:
            encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
            return PreparedImage(f"data:image/jpeg;base64,{encoded}", image.width, image.height, size, quality)
        if quality > limits.min_jpeg_quality:
            quality = max(limits.min_jpeg_quality, quality - 10)
            continue
        if min(image.size) * 0.75 < limits.min_side:
            raise ImageRejected("too_large", f"cannot encode under {limits.max_bytes:,} bytes without "
                                             f"shrinking below {limits.min_side} px")
        image = image.resize((max(1, int(image.width * 0.75)), max(1, int(image.height * 0.75))),
                             Image.Resampling.LANCZOS)
