"""The training entrypoint's inner step against a bare PyTorch loop, in tokens/s. Prints one JSON object.

    python bench/train.py                       # tiny model on CPU, 1 thread, stage 1, micro 2 x accumulation 2
    python bench/train.py --rounds 10 --steps-per-round 4

Both sides train the same tiny model (two copies, same seed) on the same pre-collated batches of real stage-1
rows (the official sample), with the same optimizer settings:

- entrypoint: `clara_model.training.step.train_step` on the engine `build_engine` makes from the trainer's
  resolved config (DeepSpeed ZeRO-2, gloo, torch AdamW as client optimizer, LambdaLR, clipping 1.0), exactly
  what `python -m clara_model.train` runs per optimizer step, its per-step metric sums included;
- bare loop: forward, `(loss / accumulation).backward()` per micro-batch, then clip_grad_norm_, AdamW.step,
  scheduler.step and zero_grad.

One-time setup (process group, JIT op load, model builds, `deepspeed.initialize`, collation) and `--warmup`
steps of each are excluded. Then rounds alternate the two (so a busy machine slows both alike); each round times
`--steps-per-round` optimizer steps. Reported: median tokens/s of each (tokens = non-padding document and
decoder tokens) and their ratio (target >= 0.9).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))  # as CI and the tests

import torch  # noqa: E402

from clara_model import ClaraConfig, ClaraModel, Stage  # noqa: E402
from clara_model.collate import build_collator  # noqa: E402
from clara_model.training import distributed as dist_utils  # noqa: E402
from clara_model.training.config import resolve  # noqa: E402
from clara_model.training.dataset import read_training_data  # noqa: E402
from clara_model.training.schedule import build_scheduler  # noqa: E402
from clara_model.training.step import build_engine, count_tokens, train_step  # noqa: E402

DEFAULT_DATA = ROOT / "tests" / "clara_model" / "data" / "official_stage1_sample_head200.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--accumulation", type=int, default=2)
    parser.add_argument("--doc-max-length", type=int, default=256)
    parser.add_argument("--compression-rate", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=512, help="decoder tokens; caps the long QA answers")
    parser.add_argument("--warmup", type=int, default=2, help="optimizer steps of each side before timing")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps-per-round", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable on a busy CPU)")
    args = parser.parse_args()

    # DeepSpeed and its op loader print to stdout; keep stdout for the one JSON object.
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        result = run(args)
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
    print(json.dumps(result, indent=2))


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    global_batch = args.micro_batch * args.accumulation
    with tempfile.TemporaryDirectory() as tmp:
        cfg = resolve(
            Stage.PRETRAIN, data=[args.data], output=tmp, world_size=1,
            overrides=[f"model.doc_max_length={args.doc_max_length}", f"model.compression_rate={args.compression_rate}",
                       f"model.max_len={args.max_len}", f"batch.global_batch_size={global_batch}",
                       f"batch.micro_batch_size={args.micro_batch}", "train.precision=fp32"],
        )
    hp = cfg.hp
    rows, _ = read_training_data(cfg.data, cfg.stage, hp.stage.generation_top_k)
    steps_needed = args.warmup + args.rounds * args.steps_per_round
    total_steps = 2 * steps_needed  # the schedule's length: lr stays away from its floor during the run

    ranks = dist_utils.launch_environment()
    device = dist_utils.init_process_group(ranks)
    torch.set_num_threads(args.threads)  # init_process_group may have chosen a share of the cores

    clara = ClaraConfig(model=hp.model, stage=hp.stage)
    torch.manual_seed(hp.train.seed)
    ds_model = ClaraModel.from_config(clara, device=device, dtype=torch.float32)
    torch.manual_seed(hp.train.seed)
    bare_model = ClaraModel.from_config(clara, device=device, dtype=torch.float32)
    engine, _, _ = build_engine(ds_model, hp, accumulation=args.accumulation, total_steps=total_steps,
                                warmup_steps=1, bf16=False)
    params = list(bare_model.trainable_parameters().values())
    optimizer = torch.optim.AdamW(params, lr=hp.optim.lr, betas=hp.optim.betas, eps=hp.optim.eps,
                                  weight_decay=hp.optim.weight_decay)
    scheduler = build_scheduler(optimizer, total_steps=total_steps, warmup_steps=1, name=hp.schedule.name,
                                min_ratio=hp.schedule.min_lr_ratio)

    collator = build_collator(ds_model.tokenizer, ds_model.tokens, ds_model.config, seed=hp.train.seed)
    n_steps = 8  # distinct optimizer steps of batches, cycled
    if n_steps * global_batch > len(rows):
        raise SystemExit(f"{args.data}: {len(rows)} rows, the benchmark needs {n_steps * global_batch}")
    batches = [[collator(rows[s * global_batch + m * args.micro_batch:][: args.micro_batch])
                for m in range(args.accumulation)] for s in range(n_steps)]
    tokens = [sum(int(count_tokens(b)) for b in step) for step in batches]

    def entrypoint_step(i: int) -> None:
        stats = train_step(engine, batches[i % n_steps], device)
        dist_utils.all_reduce_sum(stats).tolist()  # what the trainer does with them, once per step

    def bare_step(i: int) -> None:
        loss_sum = torch.zeros((), dtype=torch.float64)
        for batch in batches[i % n_steps]:
            out = bare_model(batch.to(device))
            (out.loss / args.accumulation).backward()
            loss_sum += out.loss.detach()
        torch.nn.utils.clip_grad_norm_(params, hp.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_sum.item()

    engine.train()
    bare_model.train()
    for i in range(args.warmup):
        entrypoint_step(i)
        bare_step(i)

    timings: dict[str, list[float]] = {"entrypoint": [], "bare": []}
    step_index = args.warmup
    for _ in range(args.rounds):
        for name, step in (("entrypoint", entrypoint_step), ("bare", bare_step)):
            n_tokens = sum(tokens[(step_index + j) % n_steps] for j in range(args.steps_per_round))
            start = time.perf_counter()
            for j in range(args.steps_per_round):
                step(step_index + j)
            timings[name].append(n_tokens / (time.perf_counter() - start))
        step_index += args.steps_per_round
    dist_utils.destroy()

    entry, bare = statistics.median(timings["entrypoint"]), statistics.median(timings["bare"])
    return {
        "benchmark": "train_step",
        "entrypoint_tokens_per_s": round(entry, 1),
        "bare_pytorch_tokens_per_s": round(bare, 1),
        "ratio": round(entry / bare, 3),
        "target_ratio": 0.9,
        "entrypoint_rounds_tokens_per_s": [round(t, 1) for t in timings["entrypoint"]],
        "bare_rounds_tokens_per_s": [round(t, 1) for t in timings["bare"]],
        "tokens_per_step_mean": round(statistics.mean(tokens), 1),
        "setup": {
            "model": "tiny (random-init Qwen3, 2 layers, hidden 64, real tokenizer)",
            "stage": "pretrain",
            "micro_batch": args.micro_batch,
            "accumulation": args.accumulation,
            "doc_max_length": args.doc_max_length,
            "compression_rate": args.compression_rate,
            "max_len": args.max_len,
            "deepspeed": "ZeRO-2, gloo, 1 process, fp32, torch AdamW client optimizer",
            "rounds": args.rounds,
            "steps_per_round": args.steps_per_round,
            "warmup_steps": args.warmup,
            "threads": args.threads,
            "device": str(device),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
