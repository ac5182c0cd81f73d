"""Loss curves as small PNGs, drawn with Pillow (already a dependency; no plotting library needed).

The PNG is written next to the checkpoint and embedded in the materialization's Markdown metadata as a
`data:image/png;base64` image, which the Dagster UI renders (dagster-io/dagster PR #13443).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 640, 360
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 20, 36, 44
LINE = (31, 119, 180)  # the loss
SMOOTH = (214, 39, 40)  # its moving average
GRID = (225, 225, 225)
INK = (40, 40, 40)


def loss_curve_png(steps: Sequence[int], losses: Sequence[float], *, title: str = "training loss") -> bytes:
    """Return a PNG of loss against step, with a moving average once there are more than 10 points.

    Raises:
        ValueError: when the sequences differ in length or hold no finite point.
    """
    if len(steps) != len(losses):
        raise ValueError(f"{len(steps)} steps but {len(losses)} losses")
    points = [(float(s), float(v)) for s, v in zip(steps, losses) if math.isfinite(v)]
    if not points:
        raise ValueError("no finite loss to plot")

    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    x_lo, x_hi = _span([p[0] for p in points])
    y_lo, y_hi = _span([p[1] for p in points])
    left, right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x_lo) / (x_hi - x_lo) * (right - left),
                bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top))

    for tick in _ticks(y_lo, y_hi):
        _, py = to_pixel(x_lo, tick)
        draw.line([(left, py), (right, py)], fill=GRID)
        draw.text((left - 6, py), _label(tick), fill=INK, font=font, anchor="rm")
    for tick in _ticks(x_lo, x_hi):
        px, _ = to_pixel(tick, y_lo)
        draw.line([(px, bottom), (px, bottom + 4)], fill=INK)
        draw.text((px, bottom + 6), _label(tick), fill=INK, font=font, anchor="ma")
    draw.rectangle([left, top, right, bottom], outline=INK)
    draw.text((WIDTH // 2, 10), title, fill=INK, font=font, anchor="ma")
    draw.text(((left + right) // 2, HEIGHT - 14), "optimizer step", fill=INK, font=font, anchor="ma")

    pixels = [to_pixel(x, y) for x, y in points]
    if len(pixels) == 1:
        x, y = pixels[0]
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=LINE)
    else:
        draw.line(pixels, fill=LINE, width=2)
    if len(points) > 10:
        smooth = moving_average([y for _, y in points], window=max(3, len(points) // 10))
        draw.line([to_pixel(x, y) for (x, _), y in zip(points, smooth)], fill=SMOOTH, width=2)
        draw.text((right - 4, top + 4), "moving average", fill=SMOOTH, font=font, anchor="ra")

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def png_markdown(png: bytes, alt: str = "loss curve") -> str:
    """Return Markdown that shows `png` inline (a base64 data URI)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Return the trailing mean of `values` over up to `window` points (shorter at the start)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _span(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi == lo:  # a flat line still needs a scale
        pad = abs(lo) * 0.05 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 x 10^n apart) inside [lo, hi]."""
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _label(value: float) -> str:
    if value == int(value) and abs(value) >= 1:
        return f"{int(value)}"
    return f"{value:.3g}"
