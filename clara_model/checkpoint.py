"""Checkpoints: one directory, no pickle anywhere. Two public functions, `save_checkpoint` and `load_checkpoint`.

Layout:

    config.json                      format version, every hyperparameter (ClaraConfig), base model id,
                                     special token ids, the adapters saved, a fingerprint of the base
    adapters/<name>/adapter_model.safetensors, adapter_config.json    one PEFT-format LoRA per adapter
    special_tokens.safetensors       the [S, H] rows of <MEM*>, <ENC>, <SEP> (not the whole embedding matrix)
    tokenizer/                       the tokenizer with CLaRa's tokens
    progress.json                    optional TrainingProgress, for resume
    optimizer.safetensors + optimizer.json    optional optimizer state: tensors, and the rest as JSON
    ranks/rank<r>.safetensors + rank<r>.json  optional per-rank state (resume checkpoints of a distributed run:
                                     rank r's ZeRO optimizer partition and RNG states), same encoding

The base model's weights are not copied: they are reloaded from the base model id (the `tiny` preset from its
seed), and the fingerprint in config.json must match. A checkpoint is written to a temporary sibling directory
and renamed into place, so a crash never leaves a half-written checkpoint under the final name.

Loading:
- `load_checkpoint(path)` restores exactly what was saved, every adapter included (resume, or inference with
  `for_inference=True`). The original silently dropped a stage-2 checkpoint's trained decoder (reference B2).
- `load_checkpoint(path, next_stage=StageConfig.for_stage(...))` starts the next stage: each adapter is
  initialised as `next_stage.adapter_init` says, and the hand-off is logged.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from clara_model.adapters import add_adapters, adapter_names, adapter_state_dict, load_adapter_state_dict, lora_config
from clara_model.base import load_base_model
from clara_model.config import Adapter, AdapterInit, ClaraConfig, StageConfig
from clara_model.contract import CHECKPOINT_CONFIG_FILE as CONFIG_FILE
from clara_model.contract import OPTIMIZER_TENSORS_FILE, OPTIMIZER_TREE_FILE, PROGRESS_FILE, RANKS_DIR
from clara_model.modeling import ClaraModel
from clara_model.tokens import SpecialTokens, special_tokens_of

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
ADAPTERS_DIR = "adapters"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"  # PEFT's file names, so PEFT can load an adapter directory
ADAPTER_CONFIG_FILE = "adapter_config.json"
SPECIAL_TOKENS_FILE = "special_tokens.safetensors"
SPECIAL_TOKENS_KEY = "weight"
# The base embedding's own rows of the new ids, as drawn at the first stage: a tied head scores the new tokens
# with them. Stored, not redrawn, so that a loaded model computes exactly what the saved one did (a redraw
# depends on the BLAS thread count in the last bits). Older checkpoints without it get a redraw.
BASE_ROWS_KEY = "base_rows"
TOKENIZER_DIR = "tokenizer"


@dataclass(frozen=True)
class TrainingProgress:
    """Where training stood when the checkpoint was written; enough to resume the data order and schedule."""

    stage: str
    epoch: int = 0
    global_step: int = 0  # optimizer steps taken
    samples_seen: int = 0
    seed: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)  # anything else JSON-serialisable (losses, lr, ...)


@dataclass
class LoadedCheckpoint:
    """What `load_checkpoint` returns. `progress` and `optimizer_state` are None when they were not saved;
    `rank_state` is the state of the rank asked for (None when not asked or not saved), `saved_ranks` how many
    ranks saved one."""

    model: ClaraModel
    progress: TrainingProgress | None
    optimizer_state: dict[str, Any] | None
    rank_state: dict[str, Any] | None = None
    saved_ranks: int = 0


def save_checkpoint(
    model: ClaraModel,
    directory: str | Path,
    *,
    progress: TrainingProgress | None = None,
    optimizer_state: Mapping[str, Any] | None = None,
    rank_states: Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """Write `model` (adapters, special-token rows, tokenizer, config) and optional resume state; return the path.

    `optimizer_state` is any nest of dicts, lists and tuples of tensors and JSON scalars, such as
    `torch.optim.Optimizer.state_dict()`. `rank_states[r]` is such a nest for rank r of a distributed run (its
    optimizer partition, its RNG states); each goes to its own file. An existing checkpoint at `directory` is
    replaced only once the new one is complete.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        _write(model, tmp, progress, optimizer_state, rank_states)
        if directory.exists():
            old = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex[:8]}"
            directory.rename(old)
            tmp.rename(directory)
            shutil.rmtree(old)
        else:
            tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("saved checkpoint %s (adapters %s)", directory, adapter_names(model.base))
    return directory


def load_checkpoint(
    directory: str | Path,
    *,
    next_stage: StageConfig | None = None,
    for_inference: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    rank: int | None = None,
) -> LoadedCheckpoint:
    """Load a checkpoint: exactly as saved (resume or inference), or handed off to `next_stage`.

    With `rank`, also return that rank's saved state (`rank_state`), if the checkpoint has one.

    Raises:
        FileNotFoundError: when `directory` is not a checkpoint.
        ValueError: on an unknown format version, a base model that does not match the fingerprint, special
            token ids that moved, or a hand-off that needs an adapter the checkpoint lacks.
        KeyError: when an adapter file has missing or unexpected keys.
    """
    directory = Path(directory)
    meta = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{directory}: checkpoint format {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
    saved = ClaraConfig.from_dict(meta["clara"])
    saved_adapters = [Adapter(name) for name in meta["adapters"]]
    config = saved if next_stage is None else saved.with_stage(next_stage)

    spec = config.model
    base = load_base_model(
        spec.base_model, device=device, dtype=dtype, attn_implementation=spec.attn_implementation, seed=spec.seed
    )
    tokenizer = AutoTokenizer.from_pretrained(str(directory / TOKENIZER_DIR))
    tokens = special_tokens_of(tokenizer, spec.n_mem)
    if tokens != SpecialTokens.from_dict(meta["tokens"]):
        raise ValueError(f"{directory}: the saved tokenizer's special token ids differ from config.json's")

    add_adapters(base, config.stage.adapters, spec.lora)
    for adapter, source in _adapter_sources(config.stage, saved_adapters, resume=next_stage is None).items():
        if source is not None:
            state = load_file(directory / ADAPTERS_DIR / source.value / ADAPTER_WEIGHTS_FILE)
            load_adapter_state_dict(base, adapter, state)
    model = ClaraModel(base, tokenizer, config, tokens)
    _check_fingerprint(directory, model, meta["base_fingerprint"])
    rows = load_file(directory / SPECIAL_TOKENS_FILE)
    shape = model.special_embedding.weight.shape
    if (set(rows) - {BASE_ROWS_KEY} != {SPECIAL_TOKENS_KEY}
            or any(tensor.shape != shape for tensor in rows.values())):
        raise ValueError(f"{directory}: {SPECIAL_TOKENS_FILE} does not hold [S, H] tensors of this model's shape")
    with torch.no_grad():
        model.special_embedding.weight.copy_(rows[SPECIAL_TOKENS_KEY])
        if BASE_ROWS_KEY in rows:
            embedding = base.get_input_embeddings().weight
            embedding[list(tokens.new_ids)] = rows[BASE_ROWS_KEY].to(embedding.device, embedding.dtype)

    if for_inference:
        model.requires_grad_(False)
        model.eval()
    progress = None
    if (directory / PROGRESS_FILE).exists():
        progress = TrainingProgress(**json.loads((directory / PROGRESS_FILE).read_text(encoding="utf-8")))
    optimizer_state = None
    if (directory / OPTIMIZER_TREE_FILE).exists():
        tree = json.loads((directory / OPTIMIZER_TREE_FILE).read_text(encoding="utf-8"))
        optimizer_state = _from_json_tree(tree, load_file(directory / OPTIMIZER_TENSORS_FILE))
    saved_ranks = len(list((directory / RANKS_DIR).glob("rank*.json"))) if (directory / RANKS_DIR).is_dir() else 0
    rank_state = None
    if rank is not None and (directory / RANKS_DIR / f"rank{rank}.json").exists():
        tree = json.loads((directory / RANKS_DIR / f"rank{rank}.json").read_text(encoding="utf-8"))
        rank_state = _from_json_tree(tree, load_file(directory / RANKS_DIR / f"rank{rank}.safetensors"))
    return LoadedCheckpoint(
        model=model,
        progress=progress,
        optimizer_state=optimizer_state,
        rank_state=rank_state,
        saved_ranks=saved_ranks,
    )


# -- writing -----------------------------------------------------------------------------------------------


def _write(
    model: ClaraModel,
    directory: Path,
    progress: TrainingProgress | None,
    optimizer_state: Mapping[str, Any] | None,
    rank_states: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    saved = [Adapter(name) for name in adapter_names(model.base)]
    for adapter in saved:
        target = directory / ADAPTERS_DIR / adapter.value
        target.mkdir(parents=True)
        state = {key: value.contiguous().cpu() for key, value in adapter_state_dict(model.base, adapter).items()}
        save_file(state, target / ADAPTER_WEIGHTS_FILE, metadata={"format": "pt"})
        lora_config(model.config.model.lora, model.config.model.base_model).save_pretrained(str(target))
    rows = model.special_embedding.weight.detach().contiguous().cpu()
    base_rows = model.base.get_input_embeddings().weight.detach()[list(model.tokens.new_ids)].contiguous().cpu()
    save_file({SPECIAL_TOKENS_KEY: rows, BASE_ROWS_KEY: base_rows}, directory / SPECIAL_TOKENS_FILE,
              metadata={"format": "pt"})
    model.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))
    meta = {
        "format_version": FORMAT_VERSION,
        "base_model": model.config.model.base_model,
        "clara": model.config.to_dict(),
        "tokens": model.tokens.to_dict(),
        "adapters": [a.value for a in saved],
        "base_fingerprint": _fingerprint(model),
    }
    _write_json(directory / CONFIG_FILE, meta)
    if progress is not None:
        _write_json(directory / PROGRESS_FILE, asdict(progress))
    if optimizer_state is not None:
        _write_tree(optimizer_state, directory / OPTIMIZER_TENSORS_FILE, directory / OPTIMIZER_TREE_FILE)
    for r, state in enumerate(rank_states or ()):
        (directory / RANKS_DIR).mkdir(exist_ok=True)
        _write_tree(state, directory / RANKS_DIR / f"rank{r}.safetensors", directory / RANKS_DIR / f"rank{r}.json")


def _write_tree(state: Mapping[str, Any], tensors_path: Path, tree_path: Path) -> None:
    tensors: dict[str, torch.Tensor] = {}
    tree = _to_json_tree(state, tensors)
    save_file(tensors, tensors_path, metadata={"format": "pt"})
    _write_json(tree_path, tree)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _fingerprint(model: ClaraModel) -> dict[str, Any]:
    config = model.base.config
    return {
        "model_type": config.model_type,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
        "embedding_rows": model.base.get_input_embeddings().num_embeddings,
    }


def _check_fingerprint(directory: Path, model: ClaraModel, expected: Mapping[str, Any]) -> None:
    found = _fingerprint(model)
    if found != dict(expected):
        raise ValueError(f"{directory}: base model {model.config.model.base_model!r} is {found}, "
                         f"the checkpoint was trained on {dict(expected)}")


# -- adapter hand-off --------------------------------------------------------------------------------------


def _adapter_sources(stage: StageConfig, saved: list[Adapter], *, resume: bool) -> dict[Adapter, Adapter | None]:
    """Map each adapter of `stage` to the saved adapter its weights come from (None: stays fresh)."""
    if resume:
        if set(saved) != set(stage.adapters):
            raise ValueError(f"checkpoint holds adapters {[a.value for a in saved]}, its stage expects "
                             f"{[a.value for a in stage.adapters]}")
        return {adapter: adapter for adapter in stage.adapters}
    sources: dict[Adapter, Adapter | None] = {}
    for adapter, how in stage.adapter_init.items():
        source = {AdapterInit.FRESH: None, AdapterInit.FROM_CHECKPOINT: adapter,
                  AdapterInit.COPY_OF_ENCODER: Adapter.ENCODER}[how]
        if source is not None and source not in saved:
            raise ValueError(f"stage {stage.stage.value} initialises {adapter.value} from the checkpoint's "
                             f"{source.value}, which it does not hold (it has {[a.value for a in saved]})")
        sources[adapter] = source
        logger.info("stage %s: %s <- %s", stage.stage.value, adapter.value, source.value if source else "fresh")
    dropped = sorted(a.value for a in set(saved) - set(sources.values()))
    if dropped:
        logger.info("stage %s: not using the checkpoint's %s", stage.stage.value, dropped)
    return sources


# -- optimizer state without pickle ------------------------------------------------------------------------


def _to_json_tree(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors by references into `tensors`; keep dict key types and tuples, which JSON would lose."""
    if isinstance(obj, torch.Tensor):
        name = str(len(tensors))
        tensors[name] = obj.detach().contiguous().cpu()
        return {"__tensor__": name}
    if isinstance(obj, Mapping):
        for key in obj:
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise TypeError(f"cannot store a dict key of type {type(key).__name__} without pickle")
        return {"__dict__": [[key, _to_json_tree(value, tensors)] for key, value in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_to_json_tree(value, tensors) for value in obj]}
    if isinstance(obj, list):
        return [_to_json_tree(value, tensors) for value in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint without pickle")


def _from_json_tree(tree: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__tuple__" in tree:
            return tuple(_from_json_tree(value, tensors) for value in tree["__tuple__"])
        return {key: _from_json_tree(value, tensors) for key, value in tree["__dict__"]}
    if isinstance(tree, list):
        return [_from_json_tree(value, tensors) for value in tree]
    return tree
