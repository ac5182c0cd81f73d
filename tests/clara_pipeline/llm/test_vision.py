import base64
import io

import numpy as np
import pytest
from PIL import Image

from clara_pipeline.llm.vision import ImageRejected, VisionLimits, prepare_image


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def decode(data_url: str) -> Image.Image:
    assert data_url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


def test_transparent_areas_become_white_not_black():
    image = Image.new("RGBA", (100, 80), (0, 0, 0, 0))
    image.paste((200, 0, 0, 255), (10, 10, 40, 40))
    out = decode(prepare_image(encode(image)).data_url)
    assert out.mode == "RGB"
    assert min(out.getpixel((90, 70))) >= 245  # the transparent corner
    red = out.getpixel((25, 25))
    assert red[0] > 150 and red[1] < 60


def test_long_side_is_scaled_to_2048():
    data = encode(Image.new("RGB", (5000, 1000), (30, 120, 200)), "JPEG")
    prepared = prepare_image(data)
    assert (prepared.width, prepared.height) == (2048, 410)
    assert decode(prepared.data_url).size == (2048, 410)


def test_cmyk_and_16_bit_are_converted():
    cmyk = Image.new("CMYK", (64, 64), (0, 255, 255, 0))  # red in CMYK
    assert decode(prepare_image(encode(cmyk, "JPEG")).data_url).getpixel((32, 32))[0] > 200
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)  # up to 65520
    sixteen = Image.fromarray(ramp)
    assert sixteen.mode == "I;16"
    out = np.asarray(decode(prepare_image(encode(sixteen)).data_url).convert("L"), dtype=int)
    assert out[0, 0] < 10 and out[-1, -1] > 240  # scaled over the full range, not clipped to white


def test_byte_limit_lowers_quality_then_size():
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (900, 900, 3), dtype=np.uint8))  # incompressible
    limits = VisionLimits(max_bytes=200_000)
    prepared = prepare_image(encode(noise), limits)
    assert prepared.bytes <= 200_000
    assert prepared.quality == limits.min_jpeg_quality and prepared.width < 900


@pytest.mark.parametrize("size", [(8, 300), (300, 15)])
def test_too_small_is_rejected_with_a_reason(size):
    with pytest.raises(ImageRejected) as info:
        prepare_image(encode(Image.new("RGB", size)))
    assert info.value.code == "too_small" and "16 px" in info.value.reason


def test_undecodable_is_rejected():
    with pytest.raises(ImageRejected) as info:
        prepare_image(b"%PDF-1.7 not an image")
    assert info.value.code == "undecodable"
