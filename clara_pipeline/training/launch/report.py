"""What a finished launch reports: the materialization's metadata (losses, steps, throughput, the loss curve, the
checkpoint), its data version (the checkpoint's digest), and a failed trainer's own reason.
"""

from __future__ import annotations

import json
import shlex
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clara_model.contract import FINAL_DIR, METRICS_FILE, RESUME_DIR, SUMMARY_FILE, TRAINER_ERROR_PREFIX

from ...storage import write_bytes_atomic
from ..metrics import read_metrics
from ..plots import loss_curve_png, png_markdown
from ..runs import LOSS_CURVE_FILE, REPORT_FILE, checkpoint_digest, directory_bytes
from .spec import LaunchError, LaunchSpec
from .supervise import TrainerRun


@dataclass(frozen=True)
class LaunchResult:
    """What a successful launch reports: materialization metadata (plain values) and the data version."""

    metadata: dict[str, Any]
    markdown: dict[str, str]  # metadata keys whose values are Markdown
    paths: dict[str, str]  # metadata keys whose values are paths
    data_version: str


def collect_result(spec: LaunchSpec, run: TrainerRun) -> LaunchResult:
    """Read the finished run folder; write the loss curve next to the checkpoint; return what to report.

    Raises:
        LaunchError: when the trainer failed, was stopped, or left no checkpoint or summary.
    """
    output = Path(spec.output_dir)
    if run.signal_received is not None:
        raise LaunchError(f"stopped by {signal.Signals(run.signal_received).name} (trainer exit {run.returncode}); "
                          f"a re-launch resumes from the last checkpoint in {output / RESUME_DIR}")
    if run.returncode != 0:
        raise LaunchError(f"the trainer exited with {run.returncode}: {_failure_reason(run.stderr_tail)}")
    final, summary_path = output / FINAL_DIR, output / SUMMARY_FILE
    if not final.is_dir() or not summary_path.exists():
        raise LaunchError(f"the trainer exited with 0 but left no {FINAL_DIR}/ or {SUMMARY_FILE} in {output}")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    records = read_metrics(output / METRICS_FILE)
    losses = [(r["step"], r["loss"]) for r in records if isinstance(r.get("loss"), (int, float))]

    metadata: dict[str, Any] = {
        "stage": spec.stage,
        "steps": summary.get("steps", len(records)),
        "epochs": summary.get("epochs"),
        "samples": summary.get("samples"),
        "first_loss": summary.get("first_loss", losses[0][1] if losses else None),
        "final_loss": summary.get("final_loss", losses[-1][1] if losses else None),
        "best_loss": summary.get("best_loss", min(v for _, v in losses) if losses else None),
        "tokens_per_s": summary.get("tokens_per_s"),
        "train_wall_s": summary.get("wall_s"),
        "launch_wall_s": round(run.wall_s, 2),
        "world_size": summary.get("world_size"),
        "resumed_from_step": summary.get("resumed_from_step"),
        "checkpoint_bytes": directory_bytes(final),
        "command": shlex.join(run.command),
    }
    if spec.compression_rate is not None:
        metadata["compression_rate"] = spec.compression_rate
    for key in ("recall@1", "recall@3", "recall@5"):
        if records and isinstance(records[-1].get(key), (int, float)):
            metadata[f"final_{key}"] = records[-1][key]
    metadata = {k: v for k, v in metadata.items() if v is not None}
    markdown, paths = {}, {"checkpoint": str(final), "run_dir": str(output), "metrics": str(output / METRICS_FILE)}
    if losses:
        recall = [(r["step"], r["recall@1"]) for r in records if isinstance(r.get("recall@1"), (int, float))]
        rate = f" at compression rate {spec.compression_rate}" if spec.compression_rate else ""
        png = loss_curve_png([s for s, _ in losses], [v for _, v in losses], loss_label=_loss_label(records),
                             recall=recall, title=f"stage {spec.stage}: training loss{rate}")
        write_bytes_atomic(output / LOSS_CURVE_FILE, png)
        markdown["loss_curve"] = png_markdown(png, f"{spec.stage} loss curve")
        paths["loss_curve_png"] = str(output / LOSS_CURVE_FILE)
    return LaunchResult(metadata=metadata, markdown=markdown, paths=paths, data_version=checkpoint_digest(final))


def _loss_label(records: Sequence[dict[str, Any]]) -> str:
    """What the trainer's `loss` adds up for this run: the answer's cross-entropy, plus the weighted MSE
    (stage 1) or the retrieval term (stage 3) when they were on."""
    numbers = [r for r in records if all(isinstance(r.get(k), (int, float)) for k in ("loss", "ce"))]
    if any(isinstance(r.get("retrieval_loss"), (int, float)) for r in records):
        return "loss = cross-entropy + retrieval term"
    if any(abs(r["loss"] - r["ce"]) > 1e-6 * max(1.0, abs(r["ce"])) for r in numbers):
        return "loss = cross-entropy + weighted MSE"  # the only other term (stage.mse_weight)
    return "loss (cross-entropy)"


def read_report(run_dir: str | Path) -> LaunchResult | None:
    """Return what the launcher reported for a finished run folder (None when it has no report)."""
    path = Path(run_dir) / REPORT_FILE
    if not path.exists():
        return None
    return LaunchResult(**json.loads(path.read_text(encoding="utf-8")))


def pipes_metadata(result: LaunchResult) -> dict[str, Any]:
    """The report as Pipes metadata: plain values, Markdown and paths typed as such."""
    metadata: dict[str, Any] = dict(result.metadata)
    metadata.update({k: {"raw_value": v, "type": "md"} for k, v in result.markdown.items()})
    metadata.update({k: {"raw_value": v, "type": "path"} for k, v in result.paths.items()})
    return metadata


def _failure_reason(stderr_tail: Sequence[str]) -> str:
    """The trainer's own one-line reason when it gave one (`clara_model.train: error: ...`), else its last lines."""
    stated = [line for line in stderr_tail if TRAINER_ERROR_PREFIX in line]
    if stated:
        return stated[-1][stated[-1].index(TRAINER_ERROR_PREFIX) + len(TRAINER_ERROR_PREFIX):].strip()
    return "\n".join(stderr_tail[-8:]) or "no output on stderr"

