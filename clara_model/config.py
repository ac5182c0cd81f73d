"""Typed configuration for the CLaRa model: what the user asked for, validated once.

Two frozen dataclasses, one per concern:

- `ModelConfig`: the architecture of one CLaRa model (base LLM, compression, LoRA). It is fixed for the
  life of a model: every stage of one run shares it, and a checkpoint records it.
- `StageConfig`: what one training stage does: which adapters exist and how each one is initialised from
  the previous stage (the hand-off), what trains, and how the loss is weighted.

`ClaraConfig` holds both and is what `config.json` in a checkpoint stores. Contradictions are rejected in
`__post_init__`, naming the field, so a bad config fails when it is built rather than mid-training.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BASE_MODEL = "Qwen/Qwen3-4B-Instruct-2507"
TINY_BASE_MODEL = "tiny"  # seeded random-init Qwen3 with small dimensions and the real Qwen3 tokenizer


class Stage(str, enum.Enum):
    """The three CLaRa training stages (the original code calls them stage1, stage1_2 and stage2)."""

    PRETRAIN = "pretrain"  # salient compressor pretraining (SCP): QA + paraphrase targets, one document
    INSTRUCT = "instruct"  # compression instruction tuning: answer from k compressed documents
    E2E = "e2e"  # end to end: query reasoner + differentiable top-k over N candidates + generator


class Adapter(str, enum.Enum):
    """The three LoRA adapters on the one frozen base model."""

    ENCODER = "encoder"  # compresses a document into n_mem memory vectors
    QUERY_REASONER = "query_reasoner"  # encodes a question in the same layout, for retrieval
    DECODER = "decoder"  # answers from a chat prompt whose memory slots hold compressed documents


class AdapterInit(str, enum.Enum):
    """How an adapter of a stage is initialised: the explicit hand-off between stages."""

    FRESH = "fresh"  # a new LoRA (B = 0, so it starts as the identity)
    FROM_CHECKPOINT = "checkpoint"  # the same adapter, as the previous stage saved it
    COPY_OF_ENCODER = "copy_of_encoder"  # the previous stage's encoder (the stage-3 query reasoner)


@dataclass(frozen=True)
class LoraSettings:
    """One LoRA configuration, shared by the three adapters (paper: r=16, alpha=2r, dropout 0.1)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.1
    target_modules: str | tuple[str, ...] = "all-linear"  # q, k, v, o, gate, up, down; never lm_head

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"lora.r must be >= 1, got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"lora.alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if not self.target_modules:
            raise ValueError("lora.target_modules must name at least one module (or be 'all-linear')")


@dataclass(frozen=True)
class ModelConfig:
    """The architecture of a CLaRa model. Shared by all stages of a run; changing it needs a new run.

    Raises:
        ValueError: when doc_max_length < compression_rate (no memory token), or a length is not positive.
    """

    base_model: str = DEFAULT_BASE_MODEL  # hub id, local path, or "tiny"
    doc_max_length: int = 256  # document tokens kept by the encoder; longer documents are cut at the end
    compression_rate: int = 32  # document tokens per memory vector
    max_len: int = 2048  # decoder tokens (prompt + answer); answers are cut at the end to fit
    lora: LoraSettings = field(default_factory=LoraSettings)
    attn_implementation: str = "sdpa"  # "flash_attention_2" when flash-attn is installed
    seed: int = 0  # seeds the random init of the "tiny" preset (and nothing else)

    def __post_init__(self) -> None:
        if isinstance(self.lora, Mapping):
            object.__setattr__(self, "lora", LoraSettings(**self.lora))
        if self.compression_rate < 1:
            raise ValueError(f"compression_rate must be >= 1, got {self.compression_rate}")
        if self.doc_max_length < self.compression_rate:
            raise ValueError(
                f"doc_max_length ({self.doc_max_length}) must be >= compression_rate ({self.compression_rate}): "
                "n_mem = doc_max_length // compression_rate would be 0"
            )
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}")
        if not self.base_model:
            raise ValueError("base_model must name a hub id, a local path or 'tiny'")

    @property
    def n_mem(self) -> int:
        """Memory vectors per document (and per question)."""
        return self.doc_max_length // self.compression_rate


_ALL_FRESH_PRETRAIN = {Adapter.ENCODER: AdapterInit.FRESH, Adapter.DECODER: AdapterInit.FRESH}
# Stage 2 keeps the stage-1 encoder and, like the paper's code, starts a fresh generator (reference B3);
# set DECODER to FROM_CHECKPOINT to keep the stage-1 decoder instead.
_INSTRUCT_HANDOFF = {Adapter.ENCODER: AdapterInit.FROM_CHECKPOINT, Adapter.DECODER: AdapterInit.FRESH}
_E2E_HANDOFF = {
    Adapter.ENCODER: AdapterInit.FROM_CHECKPOINT,  # frozen document compressor
    Adapter.QUERY_REASONER: AdapterInit.COPY_OF_ENCODER,  # starts where the document encoder is
    Adapter.DECODER: AdapterInit.FROM_CHECKPOINT,
}

_STAGE_DEFAULTS: dict[Stage, dict[str, Any]] = {
    Stage.PRETRAIN: dict(
        adapter_init=_ALL_FRESH_PRETRAIN,
        trainable_adapters=frozenset({Adapter.ENCODER, Adapter.DECODER}),
        train_special_tokens=True,
        generation_top_k=1,
        mse_weight=0.1,
    ),
    Stage.INSTRUCT: dict(
        adapter_init=_INSTRUCT_HANDOFF,
        trainable_adapters=frozenset({Adapter.ENCODER, Adapter.DECODER}),
        train_special_tokens=False,
        generation_top_k=5,
        mse_weight=0.1,
    ),
    Stage.E2E: dict(
        adapter_init=_E2E_HANDOFF,
        trainable_adapters=frozenset({Adapter.QUERY_REASONER, Adapter.DECODER}),
        train_special_tokens=False,
        generation_top_k=5,
        mse_weight=0.0,
        max_len=1024,  # the official stage-3 scripts' --max_len (stages 1 and 2: 2048, the model's)
        # Not the paper's (0: answer loss only): the InfoNCE term on pos_index is what made retrieval learn in
        # bench/learning.py; the paper's recipe is configs/recipes/e2e_paper.yaml.
        retrieval_loss_weight=1.0,
    ),
}


@dataclass(frozen=True)
class StageConfig:
    """One training stage: its adapters and their hand-off, what trains, and the loss weights.

    Build it with `StageConfig.for_stage(Stage.X, **overrides)` to start from the paper's defaults.

    Raises:
        ValueError: on a contradiction, naming the field (for example a trainable adapter the stage does not
            have, a trainable encoder in the end-to-end stage, or a hand-off in the first stage).
    """

    stage: Stage
    adapter_init: Mapping[Adapter, AdapterInit]
    trainable_adapters: frozenset[Adapter]
    train_special_tokens: bool  # the memory / <ENC> / <SEP> rows (only stage 1 in the paper)
    generation_top_k: int  # documents in the decoder prompt (stage 1: 1; stage 2: per row; stage 3: top-k)
    mse_weight: float  # weight of the memory/token mean alignment loss (paper: 0.1)
    topk_temperature: float = 0.02  # straight-through top-k softmax temperature (stage 3)
    retrieval_loss_weight: float = 0.0  # optional multi-positive InfoNCE on pos_index (stage 3 only)
    activation_checkpointing: bool = False
    # Decoder tokens (prompt + answer) in this stage; None: model.max_len. A length, not an architecture: it
    # changes no weight, so unlike the model section it may differ from the stage the weights come from.
    max_len: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "stage", Stage(self.stage))
        init = {Adapter(k): AdapterInit(v) for k, v in dict(self.adapter_init).items()}  # a copy, in enum order
        init = {a: init[a] for a in Adapter if a in init}
        object.__setattr__(self, "adapter_init", init)
        object.__setattr__(self, "trainable_adapters", frozenset(Adapter(a) for a in self.trainable_adapters))

        missing = self.trainable_adapters - set(init)
        if missing:
            names = sorted(a.value for a in missing)
            raise ValueError(f"trainable_adapters {names} are not in adapter_init of stage {self.stage.value}")
        if Adapter.ENCODER not in init or Adapter.DECODER not in init:
            raise ValueError(f"adapter_init of stage {self.stage.value} needs both encoder and decoder")
        if init.get(Adapter.ENCODER) is AdapterInit.COPY_OF_ENCODER:
            raise ValueError("adapter_init: the encoder cannot be a copy of itself")
        if self.generation_top_k < 1:
            raise ValueError(f"generation_top_k must be >= 1, got {self.generation_top_k}")
        if self.mse_weight < 0:
            raise ValueError(f"mse_weight must be >= 0, got {self.mse_weight}")
        if self.topk_temperature <= 0:
            raise ValueError(f"topk_temperature must be > 0, got {self.topk_temperature}")
        if self.retrieval_loss_weight < 0:
            raise ValueError(f"retrieval_loss_weight must be >= 0, got {self.retrieval_loss_weight}")
        if self.max_len is not None and self.max_len < 1:
            raise ValueError(f"max_len must be >= 1 (or None for the model's), got {self.max_len}")

        if self.stage is Stage.PRETRAIN:
            handed_off = sorted(a.value for a, how in init.items() if how is not AdapterInit.FRESH)
            if handed_off:
                raise ValueError(f"adapter_init: stage pretrain is the first stage, {handed_off} must be fresh")
            if self.generation_top_k != 1:
                raise ValueError(f"generation_top_k must be 1 in stage pretrain, got {self.generation_top_k}")
        if self.stage is Stage.E2E:
            if Adapter.QUERY_REASONER not in init:
                raise ValueError("adapter_init of stage e2e needs a query_reasoner")
            if Adapter.ENCODER in self.trainable_adapters:
                raise ValueError("trainable_adapters: stage e2e encodes documents without gradient, "
                                 "so the encoder cannot train")
            if self.mse_weight != 0:
                raise ValueError("mse_weight must be 0 in stage e2e: documents are encoded without gradient")
        else:
            if Adapter.QUERY_REASONER in init:
                raise ValueError(f"adapter_init: stage {self.stage.value} does not use a query_reasoner")
            if self.retrieval_loss_weight:
                raise ValueError(f"retrieval_loss_weight applies to stage e2e only, not {self.stage.value}")

    @classmethod
    def for_stage(cls, stage: Stage | str, **overrides: Any) -> StageConfig:
        """Return the paper's settings for `stage`, with `overrides` applied (unknown names raise TypeError)."""
        stage = Stage(stage)
        return cls(stage=stage, **{**_STAGE_DEFAULTS[stage], **overrides})

    @property
    def adapters(self) -> tuple[Adapter, ...]:
        """The adapters this stage's model carries, in enum order."""
        return tuple(a for a in Adapter if a in self.adapter_init)


@dataclass(frozen=True)
class ClaraConfig:
    """Everything that defines a CLaRa model at one stage; what a checkpoint's config.json stores."""

    model: ModelConfig = field(default_factory=ModelConfig)
    stage: StageConfig = field(default_factory=lambda: StageConfig.for_stage(Stage.PRETRAIN))

    @property
    def decoder_max_len(self) -> int:
        """Decoder tokens (prompt + answer) at this stage: the stage's `max_len`, else the model's."""
        return self.stage.max_len if self.stage.max_len is not None else self.model.max_len

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (enums as their values, sets as sorted lists)."""
        return {"model": dataclasses.asdict(self.model), "stage": _stage_to_dict(self.stage)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClaraConfig:
        """Rebuild from `to_dict` output. Unknown keys raise TypeError, as a typo should."""
        model = dict(data["model"])
        lora = model.pop("lora", {})
        return cls(model=ModelConfig(lora=LoraSettings(**lora), **model), stage=StageConfig(**data["stage"]))

    def with_stage(self, stage: StageConfig) -> ClaraConfig:
        """Return the same model at another stage."""
        return dataclasses.replace(self, stage=stage)


def _stage_to_dict(stage: StageConfig) -> dict[str, Any]:
    data = {f.name: getattr(stage, f.name) for f in dataclasses.fields(stage)}
    data["stage"] = stage.stage.value
    data["adapter_init"] = {a.value: how.value for a, how in stage.adapter_init.items()}
    data["trainable_adapters"] = sorted(a.value for a in stage.trainable_adapters)
    return data
