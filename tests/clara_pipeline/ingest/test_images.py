import io

import numpy as np
import pytest
from PIL import Image

from clara_pipeline.ingest import ImageLimits, ImageSkipped, normalize_image
from tests.clara_pipeline import docgen

LIMITS = ImageLimits()


def decode(normalized):
    return Image.open(io.BytesIO(normalized.data))


def test_plain_png_and_jpeg_pass_through_byte_for_byte():
    for data, fmt in ((docgen.png(), "png"), (docgen.jpeg(), "jpeg")):
        out = normalize_image(data, LIMITS)
        assert out.data == data and out.format == fmt and (out.width, out.height) == (320, 200)


def test_16bit_grayscale_is_scaled_not_clipped():
    out = normalize_image(docgen.png_16bit_gray(), LIMITS)
    image = decode(out)
    assert out.format == "png" and image.mode == "L"
    row = np.asarray(image)[0]
    assert row[0] == 0 and row[-1] == 255
    assert 120 <= row[len(row) // 2] <= 135  # mid-grey stays mid-grey (convert("L") would give 255)


def test_palette_with_transparency_becomes_rgba():
    image = decode(normalize_image(docgen.png_palette(transparent=True), LIMITS))
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0 and image.getpixel((50, 50)) == (200, 30, 30, 255)


def test_palette_without_transparency_becomes_rgb():
    image = decode(normalize_image(docgen.png_palette(transparent=False), LIMITS))
    assert image.mode == "RGB" and image.getpixel((50, 50)) == (200, 30, 30)


def test_alpha_is_kept_and_opaque_alpha_dropped():
    assert decode(normalize_image(docgen.png(alpha=128), LIMITS)).mode == "RGBA"
    opaque = docgen.encode(Image.new("RGBA", (200, 100), (5, 6, 7, 255)), "PNG")
    assert decode(normalize_image(opaque, LIMITS)).mode == "RGB"


def test_cmyk_jpeg_becomes_rgb_jpeg():
    out = normalize_image(docgen.jpeg(mode="CMYK", color=(0, 255, 255, 0)), LIMITS)
    image = decode(out)
    assert out.format == "jpeg" and image.mode == "RGB"
    r, g, b = image.getpixel((300, 190))
    assert r > 200 and g < 60 and b < 60


def test_exif_orientation_is_applied():
    out = normalize_image(docgen.jpeg(size=(320, 200), exif_orientation=6), LIMITS)  # rotate 90 degrees
    assert (out.width, out.height) == (200, 320)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "WEBP"])
def test_other_raster_formats_become_png(fmt):
    data = docgen.encode(Image.new("RGB", (200, 120), (10, 200, 10)), fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    out = normalize_image(data, LIMITS)
    assert out.format == "png" and decode(out).getpixel((5, 5))[:3] == (10, 200, 10)


@pytest.mark.parametrize("size, code", [((40, 40), "icon"), ((400, 10), "sliver"), ((1300, 100), "sliver")])
def test_icons_and_slivers_are_refused(size, code):
    with pytest.raises(ImageSkipped) as exc:
        normalize_image(docgen.encode(Image.new("RGB", size), "PNG"), LIMITS)
    assert exc.value.code == code


def test_thresholds_are_configurable():
    small = docgen.encode(Image.new("RGB", (40, 40)), "PNG")
    assert normalize_image(small, ImageLimits(icon_max_side=16)).width == 40


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageSkipped) as exc:
        normalize_image(docgen.bomb_png(), LIMITS)
    assert exc.value.code == "too_large"
    with pytest.raises(ImageSkipped, match="pixel limit"):
        normalize_image(docgen.bomb_png(9000, 9000), LIMITS)


@pytest.mark.parametrize("data, vector", [(docgen.EMF_BYTES, "EMF"), (b"\xd7\xcd\xc6\x9a" + b"\0" * 40, "WMF"),
                                          (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG")])
def test_vector_formats_are_reported_undecodable(data, vector):
    with pytest.raises(ImageSkipped, match=vector) as exc:
        normalize_image(data, LIMITS)
    assert exc.value.code == "undecodable"


def test_truncated_png_is_undecodable():
    data = docgen.png()
    with pytest.raises(ImageSkipped) as exc:
        normalize_image(data[: len(data) // 2], LIMITS)
    assert exc.value.code == "undecodable"


def test_invalid_limits_are_rejected():
    with pytest.raises(ValueError, match="max_aspect_ratio"):
        ImageLimits(max_aspect_ratio=0.5)
