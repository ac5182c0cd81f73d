"""CLaRa (arXiv 2511.18659) on a frozen causal LM with three LoRA adapters: compression, retrieval, generation.

Importing this package loads no model, tokenizer or data and changes no global setting.

    from clara_model import ClaraConfig, ModelConfig, StageConfig, Stage, ClaraModel
    model = ClaraModel.from_config(ClaraConfig(model=ModelConfig(base_model="tiny")))
"""

from clara_model.adapters import (
    active_adapters,
    adapter_names,
    adapter_parameters,
    enable_activation_checkpointing,
    set_trainable,
    use_adapter,
)
from clara_model.base import (
    BaseModelUnavailableError,
    load_base_model,
    load_tokenizer,
    qwen3_4b_config,
    tiny_qwen3_config,
)
from clara_model.checkpoint import LoadedCheckpoint, TrainingProgress, load_checkpoint, save_checkpoint
from clara_model.collate import (
    CompressionBatch,
    E2ECollator,
    InstructCollator,
    PretrainCollator,
    RetrievalBatch,
    build_collator,
)
from clara_model.config import (
    DEFAULT_BASE_MODEL,
    TINY_BASE_MODEL,
    Adapter,
    AdapterInit,
    ClaraConfig,
    LoraSettings,
    ModelConfig,
    Stage,
    StageConfig,
)
from clara_model.data import (
    DataError,
    PretrainRow,
    QuestionRow,
    RowKind,
    read_rows,
    validate_data_main,
    validate_file,
)
from clara_model.inference import RetrievalAnswers, answer, answer_with_retrieval, compress, paraphrase
from clara_model.metrics import score_answers, score_retrieval
from clara_model.modeling import ClaraModel, ClaraOutput, Compression
from clara_model.tokens import SpecialTokens
from clara_model.topk import cosine_scores, differentiable_topk, multi_positive_infonce

__all__ = [
    "DEFAULT_BASE_MODEL",
    "TINY_BASE_MODEL",
    "Adapter",
    "AdapterInit",
    "BaseModelUnavailableError",
    "ClaraConfig",
    "ClaraModel",
    "ClaraOutput",
    "Compression",
    "CompressionBatch",
    "DataError",
    "E2ECollator",
    "InstructCollator",
    "LoadedCheckpoint",
    "LoraSettings",
    "ModelConfig",
    "PretrainCollator",
    "PretrainRow",
    "QuestionRow",
    "RetrievalAnswers",
    "RetrievalBatch",
    "RowKind",
    "SpecialTokens",
    "Stage",
    "StageConfig",
    "TrainingProgress",
    "active_adapters",
    "adapter_names",
    "adapter_parameters",
    "answer",
    "answer_with_retrieval",
    "build_collator",
    "compress",
    "cosine_scores",
    "differentiable_topk",
    "enable_activation_checkpointing",
    "load_base_model",
    "load_checkpoint",
    "load_tokenizer",
    "multi_positive_infonce",
    "paraphrase",
    "qwen3_4b_config",
    "read_rows",
    "save_checkpoint",
    "score_answers",
    "score_retrieval",
    "set_trainable",
    "tiny_qwen3_config",
    "use_adapter",
    "validate_data_main",
    "validate_file",
]
