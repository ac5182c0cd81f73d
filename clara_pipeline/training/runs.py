"""Where training runs live, what makes two runs the same, and which run a stage currently stands on.

Layout under the artifacts root, per compression rate and stage:

    training/rate-<r>/<stage>/
        runs/<fingerprint>/     the trainer's output folder: train_config.json, metrics.jsonl, tensorboard/,
                                resume/step-*/, final/ (the checkpoint), summary.json, loss_curve.png, launch.json,
                                report.json, train.log
        current.json            the run this stage stands on: written (atomically) only after a run succeeded

The fingerprint hashes everything that decides what a run computes: stage, compression rate, the content of the
data files and of the checkpoint it starts from, the stage's YAML config and overrides, max steps, the number of
processes, and the trainer version. A re-launch of the same work (after a crash or a cancellation) therefore
lands in the same folder and the trainer resumes from its last `resume/` checkpoint; new data or settings start
a fresh folder, and the previous good checkpoint stays in place until the new one is complete.

Pure stdlib (and the torch-free clara_model.contract): the launcher imports this without torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clara_model.contract import BOOKKEEPING, CHECKPOINT_CONFIG_FILE, FINAL_DIR

from ..storage import ArtifactStore, sha256_file, write_json_atomic

# What the trainer writes in a run folder (metrics.jsonl, final/, summary.json, ...) is named in
# clara_model.contract; these are the pipeline's own files.
FINGERPRINT_CHARS = 16
CURRENT_FILE = "current.json"
RUNS_DIR = "runs"
LOSS_CURVE_FILE = "loss_curve.png"
LAUNCH_FILE = "launch.json"
FAILURE_FILE = "launch_failed.txt"
REPORT_FILE = "report.json"  # what the launcher reported for a finished run (LaunchResult)
TRAIN_LOG_FILE = "train.log"  # everything the trainer printed, every launch of the run appended


def stage_dir(artifacts_root: str | Path, compression_rate: int | str, stage: str) -> Path:
    """Return `training/rate-<r>/<stage>` under the artifacts root (the layout is storage.ArtifactStore's)."""
    return ArtifactStore(Path(artifacts_root)).training_stage_dir(compression_rate, stage)


def run_fingerprint(parts: Mapping[str, Any]) -> str:
    """Return a short stable hash of `parts` (JSON-serialisable; key order does not matter)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:FINGERPRINT_CHARS]


def file_digests(paths: Iterable[str | Path]) -> list[str]:
    """Return the sha256 of each file, in order.

    Raises:
        FileNotFoundError: naming the missing file.
    """
    digests = []
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such file")
        digests.append(sha256_file(Path(path)))
    return digests


# BOOKKEEPING: what a checkpoint may carry next to the model (clara_model.checkpoint): where training stood and
# the optimizer's state. Not part of the model, so not part of its digest: a run that resumes at its last step
# exports the same model with its own progress.json.


def checkpoint_digest(directory: str | Path) -> str:
    """Return the sha256 over the model files of a checkpoint folder (relative path and content, sorted by path);
    the training bookkeeping (BOOKKEEPING) is left out.

    Raises:
        FileNotFoundError: when the folder does not exist or holds no model file.
    """
    directory = Path(directory)
    files = sorted(p for p in directory.rglob("*")
                   if p.is_file() and p.relative_to(directory).parts[0] not in BOOKKEEPING) \
        if directory.is_dir() else []
    if not files:
        raise FileNotFoundError(f"{directory}: no checkpoint files")
    h = hashlib.sha256()
    for path in files:
        h.update(path.relative_to(directory).as_posix().encode("utf-8") + b"\0")
        h.update(sha256_file(path).encode("ascii") + b"\n")
    return h.hexdigest()


def directory_bytes(directory: str | Path) -> int:
    """Return the total size of the files under `directory` (0 when it does not exist)."""
    directory = Path(directory)
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) if directory.is_dir() else 0


@dataclass(frozen=True)
class CurrentRun:
    """What `current.json` says: the run a stage stands on and its checkpoint's digest (the data version)."""

    run_dir: Path
    checkpoint: Path
    data_version: str
    fingerprint: str

    @classmethod
    def read(cls, directory: str | Path) -> CurrentRun | None:
        """Return the current run of a stage folder, or None when the stage has never succeeded."""
        path = Path(directory) / CURRENT_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        base = Path(directory)
        return cls(run_dir=base / data["run"], checkpoint=base / data["checkpoint"],
                   data_version=data["data_version"], fingerprint=data["fingerprint"])


def publish_run(directory: str | Path, run_dir: str | Path, data_version: str) -> CurrentRun:
    """Make `run_dir` the stage's current run (atomic) and delete the stage's other runs; return it.

    Raises:
        FileNotFoundError: when the run has no exported checkpoint.
    """
    directory, run_dir = Path(directory), Path(run_dir)
    checkpoint = run_dir / FINAL_DIR
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"{checkpoint}: the run exported no checkpoint")
    write_json_atomic(directory / CURRENT_FILE, {
        "run": run_dir.relative_to(directory).as_posix(),
        "checkpoint": checkpoint.relative_to(directory).as_posix(),
        "data_version": data_version,
        "fingerprint": run_dir.name,
    })
    for other in (directory / RUNS_DIR).iterdir():
        if other.is_dir() and other.resolve() != run_dir.resolve():
            shutil.rmtree(other, ignore_errors=True)  # superseded: new data or settings
    return CurrentRun.read(directory)


def read_init_compression_rate(checkpoint: str | Path) -> int | None:
    """Return the compression rate recorded in a checkpoint's config.json (None when it records none)."""
    path = Path(checkpoint) / CHECKPOINT_CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{checkpoint}: not a checkpoint (no config.json)")
    meta = json.loads(path.read_text(encoding="utf-8"))
    return meta.get("clara", {}).get("model", {}).get("compression_rate")


def clear_failure(run_dir: str | Path) -> None:
    try:
        os.unlink(Path(run_dir) / FAILURE_FILE)
    except FileNotFoundError:
        pass


def read_failure(run_dir: str | Path) -> str | None:
    """Return the launcher's failure reason for a run folder, if it left one."""
    path = Path(run_dir) / FAILURE_FILE
    return path.read_text(encoding="utf-8").strip() if path.exists() else None
