"""Loss curves as PNG."""

import base64
import io

import pytest
from PIL import Image

from clara_pipeline.training.plots import WIDTH, HEIGHT, _ticks, loss_curve_png, moving_average, png_markdown

BLUE = (31, 119, 180)


def test_loss_curve_is_a_png_with_the_curve_drawn():
    png = loss_curve_png(list(range(1, 31)), [5.0 / s for s in range(1, 31)], title="pretrain loss")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)
    pixels = list(image.convert("RGB").get_flattened_data())
    assert sum(1 for p in pixels if p == BLUE) > 200  # the loss line is there
    assert len(png) < 60_000  # small enough to embed in event metadata


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


def test_ticks_are_round_and_inside_the_range():
    assert _ticks(0.0, 10.0) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert _ticks(2.31, 2.79) == pytest.approx([2.4, 2.5, 2.6, 2.7])
    assert moving_average([1.0, 2.0, 3.0, 4.0], window=2) == [1.0, 1.5, 2.5, 3.5]
