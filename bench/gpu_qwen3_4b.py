"""Stage-1 CLaRa training steps at Qwen3-4B's real size on one CUDA GPU: tokens/s, MFU, peak memory. One JSON.

    python bench/gpu_qwen3_4b.py                        # about 2 minutes on an H100/H200
    python bench/gpu_qwen3_4b.py --peak-tflops 312      # another GPU (A100: 312 dense bf16 TFLOPS)

The model is random-initialised from Qwen3-4B-Instruct-2507's hard-coded architecture (no download), in bf16, with
the real Qwen3 tokenizer, CLaRa's three-part stage-1 step (encoder pass, decoder pass with slotted memory,
CE + 0.1 x MSE, backward) and AdamW on the trainable parameters (two r=16 LoRA adapters and the special-token
rows, kept in fp32 as mixed-precision training keeps its master weights). Micro-batch 1, doc_max_length 256,
compression rate 32, max_len 2048.

Four cases: {typical, full} x {activation checkpointing off, on}. "typical" rows are official stage-1 sample
rows as they are (~500 decoder tokens); "full" rows concatenate QA pairs until the decoder sequence is cut at
max_len = 2048 tokens, the worst case for memory. The target is that the full case fits in 24 GB.

MFU counts 6 x (non-embedding parameters) FLOPs per token through the transformer, plus the attention
(12 x layers x hidden x context / 2 for causal) and the LM head on the answer tokens only (the encoder pass runs no
LM head). With a frozen base, backward skips the weight gradients of the base, so the hardware does about 2/3 of
these FLOPs; "mfu" follows the usual 6N convention, "mfu_hardware" the 4N estimate.

Exits with status 1 and a message on stderr when no CUDA device is present. `--smoke-cpu` runs the same code
on the CPU with the tiny preset's dimensions, to check the script itself where there is no GPU (its figures mean
nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import Qwen3ForCausalLM  # noqa: E402

from clara_model import ClaraConfig, ClaraModel, ModelConfig, Stage, StageConfig, read_rows  # noqa: E402
from clara_model.adapters import add_adapters, enable_activation_checkpointing  # noqa: E402
from clara_model.base import load_tokenizer, qwen3_4b_config, tiny_qwen3_config  # noqa: E402
from clara_model.collate import IGNORE_INDEX, build_collator  # noqa: E402
from clara_model.data import PretrainRow, RowKind  # noqa: E402
from clara_model.tokens import add_special_tokens  # noqa: E402

DEFAULT_DATA = ROOT / "tests" / "clara_model" / "data" / "official_stage1_sample_head200.jsonl"
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
                    "4090": 165.0, "3090": 71.0}  # dense bf16 tensor-core peaks (no sparsity)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per case (after 2 warm-up steps)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak")
    parser.add_argument("--attn", default="sdpa", help="attention implementation (sdpa, flash_attention_2)")
    parser.add_argument("--smoke-cpu", action="store_true", help="tiny dimensions on the CPU: checks the script only")
    args = parser.parse_args()
    if args.smoke_cpu:
        device, name, peak, dtype, base_config = torch.device("cpu"), "cpu (smoke run)", None, torch.float32, \
            tiny_qwen3_config()
        args.steps = 1
    elif not torch.cuda.is_available():
        print("bench/gpu_qwen3_4b.py needs a CUDA GPU; none is available here (nothing was measured).",
              file=sys.stderr)
        raise SystemExit(1)
    else:
        device, dtype, base_config = torch.device("cuda"), torch.bfloat16, qwen3_4b_config()
        name = torch.cuda.get_device_name(device)
        peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    cuda = device.type == "cuda"
    torch.manual_seed(0)

    spec = ModelConfig(base_model="qwen3-4b-random-init", doc_max_length=256, compression_rate=32, max_len=2048)
    config = ClaraConfig(model=spec, stage=StageConfig.for_stage(Stage.PRETRAIN))
    base_config._attn_implementation = args.attn
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise straight in bf16: an fp32 Qwen3-4B alone would take 16 GB
    try:
        with torch.device(device):
            base = Qwen3ForCausalLM(base_config)
    finally:
        torch.set_default_dtype(default_dtype)
    base.requires_grad_(False)
    tokenizer = load_tokenizer("tiny")  # the real Qwen3 tokenizer files
    tokens = add_special_tokens(tokenizer, spec.n_mem)
    add_adapters(base, config.stage.adapters, spec.lora)
    model = ClaraModel(base, tokenizer, config, tokens)
    trainable = [p for p in model.parameters() if p.requires_grad]
    for param in trainable:  # fp32 master weights, as bf16 mixed-precision training keeps them
        param.data = param.data.float()
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0)
    model.train()

    rows = read_rows(args.data, Stage.PRETRAIN)
    collator = build_collator(tokenizer, tokens, config)
    cases = {"typical": [collator([row]) for row in rows[: args.steps + 2]], "full": [collator([_full_row(rows, i)])
                                                                                      for i in range(args.steps + 2)]}
    dims = _dimensions(base_config)
    results = []
    for checkpointing in (False, True):
        if checkpointing:
            enable_activation_checkpointing(model.base)
        for case, batches in cases.items():
            batches = [b.to(device) for b in batches]
            for batch in batches[:2]:  # warm-up
                _step(model, optimizer, batch)
            _synchronize(cuda)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            times, counted, flops = [], 0, 0.0
            for batch in batches[2:]:
                _synchronize(cuda)
                start = time.perf_counter()
                _step(model, optimizer, batch)
                _synchronize(cuda)
                times.append(time.perf_counter() - start)
                counted += int(batch.doc_mask.sum() + batch.dec_mask.sum())
                flops += _step_flops(batch, dims)
            seconds = sum(times)
            results.append({
                "case": case,
                "activation_checkpointing": checkpointing,
                "encoder_tokens_per_step": int(batches[-1].doc_mask.sum()),
                "decoder_tokens_per_step": int(batches[-1].dec_mask.sum()),
                "median_step_ms": round(statistics.median(times) * 1e3, 1),
                "tokens_per_s": round(counted / seconds, 1),
                "achieved_tflops": round(flops / seconds / 1e12, 1),
                "mfu": round(flops / seconds / (peak * 1e12), 4) if peak else None,
                "mfu_hardware": round(flops * 2 / 3 / seconds / (peak * 1e12), 4) if peak else None,
                "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
                "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2) if cuda else None,
            })

    full_peaks = [r["peak_memory_gib"] for r in results if r["case"] == "full"]
    print(json.dumps({
        "benchmark": "clara_stage1_qwen3_4b_random_init",
        "gpu": name,
        "peak_bf16_tflops": peak,
        "torch": torch.__version__,
        "attn_implementation": args.attn,
        "parameters": sum(p.numel() for p in base.parameters()),
        "trainable_parameters": sum(p.numel() for p in trainable),
        "micro_batch": 1,
        "doc_max_length": spec.doc_max_length,
        "compression_rate": spec.compression_rate,
        "max_len": spec.max_len,
        "steps_per_case": args.steps,
        "results": results,
        "fits_24_gib": min(full_peaks) < 24.0 if cuda else None,
    }))


def _synchronize(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def _step(model: ClaraModel, optimizer: torch.optim.Optimizer, batch) -> None:
    model(batch).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _full_row(rows: list[PretrainRow], offset: int) -> PretrainRow:
    """A QA row whose target is long enough to be cut at max_len: QA pairs of many rows, one document."""
    questions, answers = [], []
    for row in rows[offset : offset + 40]:
        questions.extend(row.questions)
        answers.extend(row.answers)
    return PretrainRow(RowKind.QA, rows[offset].doc, tuple(questions), tuple(answers))


def _dimensions(config) -> dict[str, int]:
    hidden, layers = config.hidden_size, config.num_hidden_layers
    q, kv = config.num_attention_heads * config.head_dim, config.num_key_value_heads * config.head_dim
    per_layer = hidden * (q + 2 * kv) + q * hidden + 3 * hidden * config.intermediate_size
    return {"layer_params": layers * per_layer, "layers": layers, "attention_width": q,
            "vocab": config.vocab_size, "hidden": hidden}


def _step_flops(batch, dims: dict[str, int]) -> float:
    """6N-convention FLOPs of one stage-1 step: both passes through the layers, causal attention, LM head on the
    answer tokens."""
    total = 0.0
    for mask in (batch.doc_mask, batch.dec_mask):
        lengths = mask.sum(dim=1).tolist()
        for length in lengths:
            total += 6 * dims["layer_params"] * length
            total += 6 * dims["layers"] * dims["attention_width"] * length * length  # QK^T and AV, causal half
    answer_tokens = int((batch.labels != IGNORE_INDEX).sum())
    total += 6 * dims["vocab"] * dims["hidden"] * answer_tokens
    return total


if __name__ == "__main__":
    main()
