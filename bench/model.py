"""Stage-1 CLaRa step against a plain causal-LM step of the same model, per token. Prints one JSON object.

    python bench/model.py                       # tiny model on CPU, 1 thread
    python bench/model.py --threads 2 --iterations 10

CLaRa's stage-1 step (compress the documents with the encoder adapter, slot the memory vectors into the decoder
prompt, decoder CE on the answer + 0.1 x MSE, backward) is timed on real rows of the official stage-1 sample.
The baseline is a plain `model(input_ids, labels=...)` forward + backward of the same model (same adapters and
trainable parameters, the decoder adapter active) on the same token rows: the encoder rows and the decoder rows,
with the same padding and attention masks, every attended token labelled. Both are timed in the same run,
interleaved, median of `--iterations`. Per-token figures divide by the attended tokens of both passes.

The plain step computes full-vocabulary logits for every token (that is what a plain causal-LM step does);
CLaRa computes them for the answer tokens only, so that ratio is below 1 when the vocabulary dominates, as it
does for Qwen3's 151,936 rows. A second baseline isolates the overhead of compression and slotting: the same
rows through the backbone under one adapter, logits for the same answer tokens only, and a loss on the encoder
rows' states, but no second adapter, special-token rows, memory slotting or MSE.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from clara_model import ClaraConfig, ClaraModel, ModelConfig, Stage, StageConfig, read_rows  # noqa: E402
from clara_model.adapters import use_adapter  # noqa: E402
from clara_model.collate import IGNORE_INDEX, build_collator  # noqa: E402
from clara_model.config import Adapter  # noqa: E402

DEFAULT_DATA = ROOT / "tests" / "clara_model" / "data" / "official_stage1_sample_head200.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batch-rows", type=int, default=2)
    parser.add_argument("--doc-max-length", type=int, default=256)
    parser.add_argument("--compression-rate", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=2048)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable on a busy CPU)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = ClaraConfig(
        model=ModelConfig(base_model="tiny", doc_max_length=args.doc_max_length,
                          compression_rate=args.compression_rate, max_len=args.max_len),
        stage=StageConfig.for_stage(Stage.PRETRAIN),
    )
    model = ClaraModel.from_config(config)
    model.train()
    rows = read_rows(args.data, Stage.PRETRAIN)[: args.batch_rows]
    batch = build_collator(model.tokenizer, model.tokens, config)(rows)
    tokens = int(batch.doc_mask.sum() + batch.dec_mask.sum())

    def clara_step() -> None:
        model(batch).loss.backward()
        model.zero_grad(set_to_none=True)

    def plain_step() -> None:
        with use_adapter(model.base, Adapter.DECODER):
            for ids, mask in ((batch.doc_ids, batch.doc_mask), (batch.dec_ids, batch.dec_mask)):
                labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
                model.base(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        model.zero_grad(set_to_none=True)

    def matched_step() -> None:
        embedding = model.base.get_input_embeddings()
        targets = batch.labels[:, 1:]
        keep = targets != IGNORE_INDEX
        with use_adapter(model.base, Adapter.DECODER):
            encoder_states = model.hidden_states(embedding(batch.doc_ids), batch.doc_mask)
            decoder_states = model.hidden_states(embedding(batch.dec_ids), batch.dec_mask)
        logits = model.base.get_output_embeddings()(decoder_states[:, :-1][keep]).float()
        loss = torch.nn.functional.cross_entropy(logits, targets[keep]) + encoder_states.float().pow(2).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    steps = {"clara": clara_step, "plain": plain_step, "matched": matched_step}
    for step in steps.values():  # warm-up
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.iterations):
        for name, step in steps.items():  # interleaved, so drift hits all three alike
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)

    clara, plain, matched = (statistics.median(times[name]) for name in steps)
    print(json.dumps({
        "benchmark": "clara_stage1_step_vs_plain_causal_lm_step",
        "model": "tiny (random-init Qwen3, hidden 64, 2 layers, 151,936 vocabulary rows)",
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "batch_rows": args.batch_rows,
        "doc_max_length": args.doc_max_length,
        "compression_rate": args.compression_rate,
        "n_mem": config.model.n_mem,
        "max_len": args.max_len,
        "encoder_tokens": int(batch.doc_mask.sum()),
        "decoder_tokens": int(batch.dec_mask.sum()),
        "answer_tokens": int((batch.labels != IGNORE_INDEX).sum()),
        "iterations": args.iterations,
        "clara_ms_per_step": round(clara * 1e3, 2),
        "plain_ms_per_step": round(plain * 1e3, 2),
        "clara_us_per_token": round(clara / tokens * 1e6, 2),
        "plain_us_per_token": round(plain / tokens * 1e6, 2),
        "ratio_clara_over_plain": round(clara / plain, 3),
        "matched_ms_per_step": round(matched * 1e3, 2),
        "matched_us_per_token": round(matched / tokens * 1e6, 2),
        "ratio_clara_over_matched": round(clara / matched, 3),
    }))


if __name__ == "__main__":
    main()
