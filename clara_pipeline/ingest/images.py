"""Image normalization: any decodable raster becomes PNG or JPEG, 8 bits per channel, in Gray/RGB(A).

Icons, slivers and decompression bombs are rejected by their header dimensions before any pixel is
decoded. PNG and JPEG files that are already normal pass through untouched (no re-encoding, so no quality
loss and no cost); everything else is converted:

- CMYK (including Adobe's inverted CMYK JPEGs, which Pillow decodes) -> RGB, re-encoded as JPEG;
- 16-bit grayscale -> 8-bit by scaling (Pillow's own convert("L") would clip everything above 255 to white);
- palette images -> RGB, or RGBA when the palette carries transparency;
- an alpha channel is kept (PNG) unless it is fully opaque, in which case it is dropped;
- EXIF orientation is applied, so a phone photo is stored upright;
- GIF/TIFF/BMP/WebP -> PNG (the first frame; further frames are reported).

Formats that cannot be decoded here (EMF/WMF, SVG, corrupt data) raise `ImageSkipped` with a reason; the
caller turns it into a warning, never a silent drop.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from .model import NormalizedImage

# Vector/metafile formats that show up in Office documents and that Pillow cannot rasterise off Windows.
_VECTOR_SIGNATURES = {
    b"\x01\x00\x00\x00": "EMF",
    b"\xd7\xcd\xc6\x9a": "WMF",
    b"\x01\x00\x09\x00": "WMF",
}
_PASSTHROUGH_MODES = {"PNG": {"L", "LA", "RGB", "RGBA"}, "JPEG": {"L", "RGB"}}


@dataclass(frozen=True)
class ImageLimits:
    """Which images are worth keeping, and how large an image may be before it is refused."""

    icon_max_side: int = 64  # both sides at most this many px: an icon, bullet or logo
    min_side: int = 16  # a side shorter than this: a rule line or sliver
    max_aspect_ratio: float = 12.0  # long side / short side above this: a banner or divider
    max_pixels: int = 64_000_000  # width x height above this is refused (decompression bomb guard)
    max_bytes: int = 64 * 1024 * 1024  # encoded size above this is refused
    jpeg_quality: int = 90  # only used when a conversion has to re-encode a photo

    def __post_init__(self) -> None:
        for name in ("icon_max_side", "min_side", "max_pixels", "max_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"ImageLimits.{name} must be >= 0, got {getattr(self, name)}")
        if self.max_aspect_ratio < 1:
            raise ValueError(f"ImageLimits.max_aspect_ratio must be >= 1, got {self.max_aspect_ratio}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"ImageLimits.jpeg_quality must be in 1..100, got {self.jpeg_quality}")


class ImageSkipped(Exception):
    """An image that is not stored. `code` is one of: icon, sliver, too_large, undecodable."""

    def __init__(self, code: str, reason: str):
        self.code = code
        self.reason = reason
        super().__init__(reason)


def check_dimensions(width: int, height: int, limits: ImageLimits) -> None:
    """Raises ImageSkipped for icons, slivers and images above the pixel limit."""
    if width * height > limits.max_pixels:
        raise ImageSkipped(
            "too_large",
            f"{width}x{height} px exceeds the {limits.max_pixels:,}-pixel limit (possible decompression bomb)",
        )
    if width <= limits.icon_max_side and height <= limits.icon_max_side:
        raise ImageSkipped("icon", f"{width}x{height} px is an icon (both sides <= {limits.icon_max_side} px)")
    short, long = sorted((width, height))
    if short < limits.min_side:
        raise ImageSkipped("sliver", f"{width}x{height} px is a sliver (a side < {limits.min_side} px)")
    if long / max(short, 1) > limits.max_aspect_ratio:
        raise ImageSkipped(
            "sliver", f"{width}x{height} px is a banner or divider (aspect ratio > {limits.max_aspect_ratio:g})"
        )


def sniff_vector_format(data: bytes) -> str | None:
    head = data[:4]
    if head in _VECTOR_SIGNATURES and (head != b"\x01\x00\x00\x00" or data[40:44] == b" EMF"):
        return _VECTOR_SIGNATURES[head]
    stripped = data[:512].lstrip()
    if stripped.startswith(b"<svg") or (stripped.startswith(b"<?xml") and b"<svg" in data[:2048]):
        return "SVG"
    return None


def normalize_image(data: bytes, limits: ImageLimits) -> NormalizedImage:
    """Returns `data` as a normal PNG or JPEG.

    Raises:
        ImageSkipped: an icon or sliver, an image over the pixel or byte limit, or data that cannot be
            decoded (EMF/WMF/SVG, truncated or unknown formats).
    """
    if len(data) > limits.max_bytes:
        raise ImageSkipped("too_large", f"{len(data):,} bytes exceeds the {limits.max_bytes:,}-byte limit")
    vector = sniff_vector_format(data)
    if vector:
        raise ImageSkipped("undecodable", f"{vector} vector image cannot be rasterised here; export it as PNG")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit is checked below, before decoding; keep Pillow's bomb guard as a backstop.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageSkipped("undecodable", "not a recognised image format") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageSkipped("too_large", f"refused by the decompression-bomb guard ({exc})") from None
    except OSError as exc:
        raise ImageSkipped("undecodable", f"not a decodable image ({exc})") from None
    check_dimensions(image.width, image.height, limits)
    try:
        return _normalize_opened(image, data, limits)
    except ImageSkipped:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # Truncated streams and broken headers surface only when pixels are decoded.
        raise ImageSkipped("undecodable", f"{image.format or 'image'} data is corrupt ({exc})") from None


def _normalize_opened(image: Image.Image, data: bytes, limits: ImageLimits) -> NormalizedImage:
    fmt = image.format
    # EXIF orientation matters for camera formats; reading a PNG's EXIF could load its pixels before verify().
    orientation = image.getexif().get(0x0112, 1) if fmt in ("JPEG", "WEBP", "TIFF", "MPO") else 1
    bits16 = image.mode.startswith("I;16") or image.mode in ("I", "F")
    if fmt in _PASSTHROUGH_MODES and image.mode in _PASSTHROUGH_MODES[fmt] and orientation in (0, 1):
        if "A" in image.mode:
            if not _alpha_is_opaque(image):  # decodes the pixels, which also proves the data is whole
                return NormalizedImage(data, "png", image.width, image.height)
        else:
            width, height = image.size  # before _verify, which may decode a JPEG at reduced size
            _verify(image)
            return NormalizedImage(data, "png" if fmt == "PNG" else "jpeg", width, height)

    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    image.load()
    if orientation not in (0, 1):
        image = ImageOps.exif_transpose(image)
    photo = fmt == "JPEG"  # keep photos lossy-small; diagrams and anything with alpha go to PNG

    if bits16:
        image = _to_8bit_gray(image)
    elif image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    elif image.mode == "PA":
        image = image.convert("RGBA")
    elif image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.mode else "RGB")

    if image.mode in ("RGBA", "LA") and _alpha_is_opaque(image):
        image = image.convert(image.mode[:-1])
    if photo and image.mode in ("L", "RGB"):
        out = io.BytesIO()
        image.save(out, "JPEG", quality=limits.jpeg_quality, optimize=False)
        return NormalizedImage(out.getvalue(), "jpeg", image.width, image.height)
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=6)
    return NormalizedImage(out.getvalue(), "png", image.width, image.height)


def _verify(image: Image.Image) -> None:
    """Proves a pass-through file decodes, cheaply: PNG chunk CRCs, JPEG decoded at 1/8 scale."""
    if image.format == "PNG":
        image.verify()
    else:
        image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
        image.load()


def _alpha_is_opaque(image: Image.Image) -> bool:
    low, _ = image.getchannel("A").getextrema()
    return low == 255


def _to_8bit_gray(image: Image.Image) -> Image.Image:
    # 16-bit samples are scaled by 1/257 (65535 -> 255) instead of being clipped at 255.
    if image.mode == "F":
        low, high = image.getextrema()
        scale = 255.0 / (high - low) if high > low else 0.0
        return image.point(lambda v: (v - low) * scale).convert("L")
    return image.convert("I").point(lambda v: v / 257).convert("L")
