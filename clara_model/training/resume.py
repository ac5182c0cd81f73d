"""Resume checkpoints: `DIR/resume/step-XXXXXXXX/`, in clara_model.checkpoint's format (no pickle).

What one holds, beyond the model (adapters and special-token rows, written by `save_checkpoint`):

- progress.json: the stage, epoch, optimizer steps, samples seen, seed, and in `extra` the step within the
  epoch, the world size, the running totals the summary needs, the scheduler state and the resolved config;
- ranks/rank<r>.*: rank r's ZeRO optimizer partition (its fp32 master weights and AdamW moments, exactly as
  DeepSpeed's `state_dict` gives them) and its RNG states (python, numpy, torch, CUDA).

ZeRO partitions the optimizer state by rank, so a checkpoint resumes only at the world size that wrote it; the
trainer refuses any other with a message saying so. Checkpoints are written whole into a temporary directory
and renamed (by `save_checkpoint`), so the newest `step-*` directory is always complete.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clara_model.contract import RESUME_DIR

_STEP_DIR = re.compile(r"^step-(\d{8})$")
# The ZeRO optimizer state_dict entries that resume needs. Left out: the loss scaler object (fp16 only, refused
# by the trainer) and the parameter slice mappings (used by DeepSpeed's universal checkpoints only).
_ZERO_KEYS = (
    "dynamic_loss_scale",
    "overflow",
    "clip_grad",
    "base_optimizer_state",
    "single_partition_of_fp32_groups",
    "group_paddings",
    "param_alignment_paddings",
    "partition_count",
    "ds_version",
)


def step_dir(output: Path, step: int) -> Path:
    return output / RESUME_DIR / f"step-{step:08d}"


def resume_checkpoints(output: Path) -> list[Path]:
    """Return the complete resume checkpoints under `output`, oldest first."""
    root = output / RESUME_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / "progress.json").is_file()]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def prune(output: Path, keep: int) -> None:
    """Delete all but the newest `keep` resume checkpoints, and leftovers of interrupted writes."""
    for old in resume_checkpoints(output)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    root = output / RESUME_DIR
    if root.is_dir():
        for leftover in root.glob(".step-*"):
            shutil.rmtree(leftover, ignore_errors=True)


def capture_rank_state(zero_optimizer: Any) -> dict[str, Any]:
    """Return this rank's resume state on the CPU: its ZeRO optimizer partition and RNG states."""
    state = zero_optimizer.state_dict()
    missing = [key for key in _ZERO_KEYS if key not in state]
    if missing:
        raise RuntimeError(f"the ZeRO optimizer's state_dict lacks {missing}: unsupported DeepSpeed version?")
    optimizer = _to_cpu({key: state[key] for key in _ZERO_KEYS})
    return {"optimizer": optimizer, "rng": rng_state()}


def restore_rank_state(zero_optimizer: Any, state: dict[str, Any], *, rank: int, world_size: int) -> None:
    """Load this rank's optimizer partition into the ZeRO optimizer (fp32 masters included) and its RNG states.

    Call once the engine exists and right before the first step, so nothing draws random numbers in between.
    """
    state_list: list[Any] = [None] * world_size  # DeepSpeed reads entry `rank` only (same world size)
    state_list[rank] = state["optimizer"]  # CPU tensors: DeepSpeed and torch copy them where they belong
    zero_optimizer.load_state_dict(state_list, load_optimizer_states=True, load_from_fp32_weights=True)
    zero_optimizer.update_lp_params()  # the model's weights from the fp32 masters (bf16: no rounding drift)
    set_rng_state(state["rng"])


def rng_state() -> dict[str, Any]:
    """Return the python, numpy, torch (and CUDA) RNG states as tensors and JSON values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _to_cpu(obj: Any) -> Any:
    """Copy every tensor of a nest to its own CPU storage (a view would drag its whole buffer along)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {key: _to_cpu(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(value) for value in obj)
    return obj

