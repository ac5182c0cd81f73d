"""Loss curves as PNG, drawn with matplotlib."""

import base64
import io

import pytest
from PIL import Image

from clara_pipeline.training.plots import HEIGHT, WIDTH, loss_curve_png, moving_average, png_markdown

BLUE, GREEN = (31, 119, 180), (44, 160, 44)  # the loss line, the recall@1 line


def colour_pixels(png: bytes, colour) -> int:
    image = Image.open(io.BytesIO(png))
    return sum(1 for p in image.convert("RGB").get_flattened_data() if p == colour)


def test_loss_curve_is_a_png_with_the_curve_drawn():
    png = loss_curve_png(list(range(1, 31)), [5.0 / s for s in range(1, 31)], title="pretrain loss")
    image = Image.open(io.BytesIO(png))
    image.verify()  # a valid PNG, not just its magic bytes
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)
    assert colour_pixels(png, BLUE) > 200  # the loss line is there
    assert colour_pixels(png, GREEN) == 0  # no recall axis without recall points
    assert 10_000 < len(png) < 80_000  # axes, labels and legend drawn; small enough to embed in event metadata


def test_recall_goes_on_a_second_axis():
    steps = list(range(1, 21))
    png = loss_curve_png(steps, [3.0 - s / 10 for s in steps], recall=[(s, s / 20) for s in steps])
    assert colour_pixels(png, BLUE) > 100 and colour_pixels(png, GREEN) > 50


def test_a_single_point_and_a_flat_line_still_plot():
    assert loss_curve_png([7], [2.5]).startswith(b"\x89PNG")
    assert loss_curve_png([1, 2, 3], [1.0, 1.0, 1.0]).startswith(b"\x89PNG")


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="2 steps but 1 losses"):
        loss_curve_png([1, 2], [1.0])
    with pytest.raises(ValueError, match="no finite loss"):
        loss_curve_png([1], [float("nan")])


def test_markdown_embeds_the_png():
    md = png_markdown(b"\x89PNGabc", "loss")
    assert md.startswith("![loss](data:image/png;base64,")
    assert base64.b64decode(md.split(",", 1)[1].rstrip(")")) == b"\x89PNGabc"


def test_moving_average_is_trailing():
    assert moving_average([1.0, 2.0, 3.0, 4.0], window=2) == [1.0, 1.5, 2.5, 3.5]
