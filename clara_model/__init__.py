"""CLaRa (arXiv 2511.18659) on a frozen causal LM with three LoRA adapters: compression, retrieval, generation.

Importing this package loads no model, tokenizer or data and changes no global setting.

    from clara_model import ClaraConfig, ModelConfig, StageConfig, Stage, ClaraModel
    model = ClaraModel.from_config(ClaraConfig(model=ModelConfig(base_model="tiny")))

Each public name is imported from its module on first use (PEP 562), so importing `clara_model.contract` or
`clara_model.config`, which need no torch, does not load torch: the Dagster side imports those.
"""

from __future__ import annotations

import importlib
from typing import Any

# the public names, by the module that defines them
_MODULES = {
    "clara_model.adapters": ("active_adapters", "adapter_names", "adapter_parameters",
                             "enable_activation_checkpointing", "set_trainable", "use_adapter"),
    "clara_model.base": ("BaseModelUnavailableError", "load_base_model", "load_tokenizer", "qwen3_4b_config",
                         "tiny_qwen3_config"),
    "clara_model.checkpoint": ("LoadedCheckpoint", "TrainingProgress", "load_checkpoint", "save_checkpoint"),
    "clara_model.collate": ("CompressionBatch", "E2ECollator", "InstructCollator", "PretrainCollator",
                            "RetrievalBatch", "build_collator"),
    "clara_model.config": ("Adapter", "AdapterInit", "ClaraConfig", "DEFAULT_BASE_MODEL", "LoraSettings",
                           "ModelConfig", "Stage", "StageConfig", "TINY_BASE_MODEL"),
    "clara_model.data": ("DataError", "PretrainRow", "QuestionRow", "RowKind", "read_rows", "validate_data_main",
                         "validate_file"),
    "clara_model.inference": ("RetrievalAnswers", "answer", "answer_with_retrieval", "compress", "paraphrase"),
    "clara_model.metrics": ("score_answers", "score_retrieval"),
    "clara_model.modeling": ("ClaraModel", "ClaraOutput", "Compression"),
    "clara_model.tokens": ("SpecialTokens",),
    "clara_model.topk": ("cosine_scores", "differentiable_topk", "multi_positive_infonce"),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
