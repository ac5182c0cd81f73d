"""Loss curves as small PNGs, drawn with matplotlib's Agg canvas (no display, no pyplot global state).

The PNG is written next to the checkpoint and embedded in the materialization's Markdown metadata as a
`data:image/png;base64` image, which the Dagster UI renders (dagster-io/dagster PR #13443).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

WIDTH, HEIGHT = 640, 360  # pixels
DPI = 100
LOSS_COLOUR = "#1f77b4"
SMOOTH_COLOUR = "#d62728"
RECALL_COLOUR = "#2ca02c"
SMOOTH_AFTER = 10  # a moving average once there are more points than this


def loss_curve_png(
    steps: Sequence[int],
    losses: Sequence[float],
    *,
    title: str = "training loss",
    loss_label: str = "loss (cross-entropy)",
    recall: Sequence[tuple[int, float]] = (),
) -> bytes:
    """Return a PNG of loss against optimizer step, with a moving average once there are more than 10 points and,
    when `recall` holds (step, recall@1) points, recall@1 on a second y axis (0 to 1). `loss_label` names the
    loss line in the legend (what the loss adds up).

    Raises:
        ValueError: when the sequences differ in length or hold no finite loss.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(steps) != len(losses):
        raise ValueError(f"{len(steps)} steps but {len(losses)} losses")
    points = [(int(s), float(v)) for s, v in zip(steps, losses) if math.isfinite(v)]
    if not points:
        raise ValueError("no finite loss to plot")
    xs, ys = [p[0] for p in points], [p[1] for p in points]

    figure = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.plot(xs, ys, color=LOSS_COLOUR, linewidth=1.5, marker="o" if len(points) == 1 else None,
            label=loss_label)
    if len(points) > SMOOTH_AFTER:
        window = max(3, len(points) // 10)
        ax.plot(xs, moving_average(ys, window), color=SMOOTH_COLOUR, linewidth=1.5,
                label=f"mean of the last {window} steps")
    ax.set_title(title)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats per token)")
    ax.xaxis.get_major_locator().set_params(integer=True)  # steps are whole numbers
    ax.grid(True, color="#e0e0e0", linewidth=0.8)
    handles, labels = ax.get_legend_handles_labels()

    recall_points = [(int(s), float(v)) for s, v in recall if math.isfinite(v)]
    if recall_points:
        right = ax.twinx()
        right.plot([s for s, _ in recall_points], [v for _, v in recall_points], color=RECALL_COLOUR,
                   linewidth=1.2, linestyle="--", label="recall@1 of the picked documents")
        right.set_ylim(-0.02, 1.02)
        right.set_ylabel("recall@1 (fraction of questions)")
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, loc="upper right", fontsize="small", framealpha=0.9)

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
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
