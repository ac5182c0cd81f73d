"""Shared fixtures for clara_model tests: the tiny random-init Qwen3 with the real Qwen3 tokenizer, on CPU."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub id fails at once instead of retrying for ~45 s
# DeepSpeed JIT-compiles its C++ ops once into this cache (as .ci/run sets it); the trainer's subprocesses inherit it.
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(_REPO, ".cache", "torch_extensions"))

import random
from pathlib import Path

import pytest
import torch

from clara_model import ClaraConfig, ClaraModel, ModelConfig, Stage, StageConfig
from clara_model.adapters import adapter_parameters
from clara_model.config import Adapter, AdapterInit
from clara_model.data import read_rows

DATA = Path(__file__).resolve().parent / "data"  # copies of the formats seen in the wild (see data/README.md)
OFFICIAL_SAMPLE = DATA / "official_stage1_sample_head200.jsonl"
FORK_PRETRAIN = DATA / "fork_example_pretrain_data.jsonl"
FORK_INSTRUCT = DATA / "fork_example_instruction_data.jsonl"
FORK_E2E = DATA / "fork_example_end_to_end_data.jsonl"
FULL_OFFICIAL_SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "clara_official_stage1_sample.jsonl"

# Small layouts keep every test fast: 4 memory tokens per document, short decoder sequences.
SMALL_MODEL = ModelConfig(base_model="tiny", doc_max_length=32, compression_rate=8, max_len=160)

# Stage configs whose hand-offs start fresh, so a model can be built without a previous checkpoint.
FRESH_INSTRUCT = {Adapter.ENCODER: AdapterInit.FRESH, Adapter.DECODER: AdapterInit.FRESH}
FRESH_E2E = {
    Adapter.ENCODER: AdapterInit.FRESH,
    Adapter.QUERY_REASONER: AdapterInit.COPY_OF_ENCODER,
    Adapter.DECODER: AdapterInit.FRESH,
}


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    # One intra-op thread: the tiny model's matmuls are microseconds, and on a busy 2-core machine OpenMP's
    # thread hand-off made them ~300x slower. Restored after each test, so other test packages are unaffected.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    random.seed(0)
    yield
    torch.set_num_threads(threads)


def stage_config(stage: Stage, **overrides) -> StageConfig:
    """The paper's stage config, with hand-offs made fresh so no checkpoint is needed."""
    fresh = {Stage.PRETRAIN: {}, Stage.INSTRUCT: {"adapter_init": FRESH_INSTRUCT},
             Stage.E2E: {"adapter_init": FRESH_E2E}}
    return StageConfig.for_stage(stage, **{**fresh[stage], **overrides})


def build_model(stage: Stage = Stage.PRETRAIN, *, model: ModelConfig = SMALL_MODEL, **overrides) -> ClaraModel:
    return ClaraModel.from_config(ClaraConfig(model=model, stage=stage_config(stage, **overrides)))


def fit(model: ClaraModel, rows, steps: int, lr: float = 3e-3) -> ClaraModel:
    """Train `model` on one batch of `rows` for `steps` AdamW steps (a model that has learned those rows)."""
    from clara_model.collate import build_collator

    batch = build_collator(model.tokenizer, model.tokens, model.config)(rows)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        model(batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model


def perturb_adapters(model: ClaraModel, scale: float = 0.05) -> None:
    """Give every LoRA B a non-zero value: a fresh LoRA has B = 0, which leaves every lora_A gradient at 0."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for adapter in Adapter:
            for name, param in adapter_parameters(model.base, adapter).items():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * scale)


@pytest.fixture(scope="session")
def official_rows():
    """The first 16 rows of the official stage-1 sample."""
    return read_rows(OFFICIAL_SAMPLE, Stage.PRETRAIN)[:16]


@pytest.fixture(scope="session")
def frozen_pretrain_model():
    """A stage-1 model that tests must not modify (read-only use: layouts, shapes, prompts)."""
    return build_model(Stage.PRETRAIN)


@pytest.fixture(scope="session")
def qwen_tokenizer():
    """The real Qwen3 tokenizer with CLaRa's tokens for SMALL_MODEL (4 memory tokens). Do not modify."""
    from clara_model.base import load_tokenizer
    from clara_model.tokens import add_special_tokens

    tokenizer = load_tokenizer("tiny")
    add_special_tokens(tokenizer, SMALL_MODEL.n_mem)
    return tokenizer
