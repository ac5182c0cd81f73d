"""Train one CLaRa stage with DeepSpeed ZeRO-2: `python -m clara_model.train --stage {pretrain,instruct,e2e}`.

    python -m clara_model.train --stage STAGE --data FILE [--data FILE ...] --output DIR
        [--init-from PREVIOUS/final] [--config FILE.yaml] [--set key=value ...] [--max-steps N] [--no-resume]

Launch (the same module under every launcher; clara_model/configs/<stage>.yaml opens with these lines too):

    # one process, no launcher (CPU with gloo, or one GPU): the trainer sets RANK/WORLD_SIZE/MASTER_* itself
    python -m clara_model.train --stage pretrain --data pretrain.jsonl --output runs/s1
    # the GPUs of one node (or 2 gloo ranks on a CPU-only machine)
    deepspeed --num_gpus 8 --module clara_model.train --stage pretrain --data pretrain.jsonl --output runs/s1 \\
        --set model.base_model=Qwen/Qwen3-4B-Instruct-2507
    torchrun --nproc_per_node 8 -m clara_model.train --stage pretrain ...
    # several nodes: a hostfile with one "hostname slots=GPUS" line per node, passwordless ssh (pdsh), and DIR,
    # the data and --init-from on a filesystem every node sees
    deepspeed --hostfile hostfile --num_nodes 2 --num_gpus 8 --master_addr node1 --module clara_model.train ...
    # or torchrun on every node, NODE_RANK 0..N-1, the same rendezvous endpoint
    torchrun --nnodes 2 --node_rank $NODE_RANK --nproc_per_node 8 --rdzv_backend c10d \\
        --rdzv_endpoint node1:29500 -m clara_model.train --stage pretrain ...
    # the next stages start from the previous stage's export
    python -m clara_model.train --stage instruct --init-from runs/s1/final --data instruction.jsonl --output runs/s2
    python -m clara_model.train --stage e2e --init-from runs/s2/final --data end_to_end.jsonl --output runs/s3

Output DIR (rank 0 writes everything; JSON files atomically):

    train_config.json        the resolved config: job (stage, data files with sha256 and rows, init_from, world
                             size), every hyperparameter, derived counts (accumulation, steps)
    metrics.jsonl            one object per optimizer step: step, epoch, samples, loss, ce, mse, lr, grad_norm,
                             tokens_per_s, samples_per_s, elapsed_s; in e2e also retrieval_loss (when its
                             weight is set) and recall@1/3/5 of the picked documents against pos_index (k up to
                             stage.generation_top_k; absent for a step without any pos_index). Written as
                             each step ends on CPU; on GPU every log.every steps, when the trainer reads the
                             device's sums back (the only wait for the device outside DeepSpeed's own)
    tensorboard/             the same scalars
    resume/step-XXXXXXXX/    every train.save_every steps and at the end; the last train.keep_resume are kept
    final/                   the exported model (clara_model.checkpoint format): next stage's --init-from
    summary.json             written last: stage, steps, epochs, samples, first/final/best loss, tokens_per_s,
                             wall_s, world_size, resumed_from_step, final_checkpoint

Re-running with the same --output resumes from the newest resume checkpoint (same world size and settings),
unless --no-resume, which deletes what an earlier run left there and starts over. Exit code 0 means final/ and
summary.json were written; otherwise stderr ends with one line saying why.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from clara_model.base import BaseModelUnavailableError
from clara_model.checkpoint import PROGRESS_FILE, TrainingProgress, load_checkpoint, save_checkpoint
from clara_model.collate import build_collator
from clara_model.config import ClaraConfig, Stage
from clara_model.contract import (
    FINAL_DIR,
    METRICS_FILE,
    RESUME_DIR,
    SUMMARY_FILE,
    TENSORBOARD_DIR,
    TRAIN_CONFIG_FILE,
    TRAINER_ERROR_PREFIX,
    TrainerArgs,
)
from clara_model.data import DataError
from clara_model.modeling import ClaraModel
from clara_model.training import distributed as dist_utils
from clara_model.training.config import (
    ConfigError,
    Plan,
    TrainConfig,
    describe_data_file,
    resolve,
    resolved_config,
    resume_mismatches,
)
from clara_model.training.dataset import CollateWithIndices, IndexedRows, read_training_data
from clara_model.training.report import TrainingReport, truncate_metrics
from clara_model.training.report import write_json_atomic
from clara_model.training.resume import capture_rank_state, prune, restore_rank_state, resume_checkpoints
from clara_model.training.resume import step_dir
from clara_model.training.sampler import RankBatches, epoch_order
from clara_model.training.step import RECALL_KS, STAT_FIELDS, build_engine, train_step, trainable_digest

logger = logging.getLogger("clara_model.train")


# -- the recipe --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Position:
    """Where training stands, and the running totals the summary needs (what a resume checkpoint restores)."""

    epoch: int = 0
    step_in_epoch: int = 0
    step: int = 0
    samples: int = 0
    tokens: int = 0
    elapsed_s: float = 0.0
    first_loss: float | None = None
    best_loss: float | None = None
    last_loss: float | None = None


class StageRecipe:
    """One stage's training run: `setup`, `train`, `save`, `cleanup`.

    Raises (from __init__, before any process group exists):
        DataError: a bad data file, naming every bad line.
    Raises (from setup):
        ConfigError: a resume checkpoint written with other settings or another world size.
        BaseModelUnavailableError: the base model cannot be loaded.
    """

    def __init__(self, cfg: TrainConfig, ranks: dist_utils.Ranks) -> None:
        self.cfg, self.ranks = cfg, ranks
        self.is_main = ranks.is_main
        self.rows, counts = read_training_data(cfg.data, cfg.stage, cfg.hp.stage.generation_top_k)
        self.plan = Plan.of(cfg, len(self.rows))
        files = [describe_data_file(path, n) for path, n in zip(cfg.data, counts)]
        self.resolved = resolved_config(cfg, files, self.plan)
        self.position = Position()
        self.resumed_from: int | None = None
        self.resumed_elapsed_s = 0.0
        self.rank_state: dict[str, Any] | None = None
        self.scheduler_state: dict[str, Any] | None = None
        self.report: TrainingReport | None = None
        self.started = time.time()

    # -- setup

    def setup(self) -> None:
        cfg, loop = self.cfg, self.cfg.hp.train
        self.device = dist_utils.init_process_group(self.ranks)
        bf16 = loop.precision == "bf16" or (loop.precision == "auto" and self.device.type == "cuda")
        self.dtype = torch.bfloat16 if bf16 else torch.float32
        if self.is_main:
            cfg.output.mkdir(parents=True, exist_ok=True)
            self._clear_previous_run()
        checkpoint = dist_utils.broadcast_from_main(self._latest_resume_checkpoint())

        torch.manual_seed(loop.seed)  # the same fresh LoRA init on every rank (DeepSpeed also broadcasts rank 0's)
        model = self._setup_model(checkpoint)
        self.engine = self._setup_engine(model, bf16)
        self.collator = build_collator(model.tokenizer, model.tokens, model.config, seed=loop.seed)

        if self.plan.rows < cfg.hp.batch.global_batch_size:
            logger.warning("the data has %d rows, fewer than one global batch (%d): each epoch repeats rows to fill "
                           "one batch and takes one optimizer step", self.plan.rows, cfg.hp.batch.global_batch_size)
        logger.info("%d rows, %d steps per epoch, %d steps (%d warmup); global batch %d = micro %d x accumulation "
                    "%d x world size %d; %s", self.plan.rows, self.plan.steps_per_epoch, self.plan.total_steps,
                    self.plan.warmup_steps, cfg.hp.batch.global_batch_size, cfg.hp.batch.micro_batch_size,
                    cfg.accumulation, cfg.world_size, "bf16" if bf16 else "fp32")
        if self.is_main:
            write_json_atomic(cfg.output / TRAIN_CONFIG_FILE, {**self.resolved, "resumed_from_step": self.resumed_from})
            kept = truncate_metrics(cfg.output / METRICS_FILE, self.position.step)
            if kept != self.position.step:
                logger.warning("%s holds %d steps up to step %d", METRICS_FILE, kept, self.position.step)
            self.report = TrainingReport(cfg.output, start_step=self.position.step, total_steps=self.plan.total_steps,
                                         tensorboard=cfg.hp.log.tensorboard, log_every=cfg.hp.log.every)

    def _clear_previous_run(self) -> None:
        output = self.cfg.output
        (output / SUMMARY_FILE).unlink(missing_ok=True)  # present only once this run has finished
        if not self.cfg.resume:
            removed = []
            for name in (RESUME_DIR, FINAL_DIR, TENSORBOARD_DIR, METRICS_FILE, TRAIN_CONFIG_FILE):
                path = output / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
                else:
                    continue
                removed.append(name)
            if removed:
                logger.info("--no-resume: removed %s from %s", ", ".join(removed), output)

    def _latest_resume_checkpoint(self) -> str | None:
        if not self.is_main or not self.cfg.resume:
            return None
        found = resume_checkpoints(self.cfg.output)
        return str(found[-1]) if found else None

    def _setup_model(self, checkpoint: str | None) -> ClaraModel:
        cfg, hp = self.cfg, self.cfg.hp
        if checkpoint is not None:
            progress = self._check_resumable(Path(checkpoint))
            loaded = load_checkpoint(checkpoint, device=self.device, dtype=self.dtype, rank=self.ranks.rank)
            if loaded.rank_state is None:
                raise ConfigError(f"{checkpoint} holds no state for rank {self.ranks.rank}; pass --no-resume")
            extra = progress.extra
            self.position = Position(
                epoch=progress.epoch, step_in_epoch=extra["step_in_epoch"], step=progress.global_step,
                samples=progress.samples_seen, tokens=extra["tokens"], elapsed_s=extra["elapsed_s"],
                first_loss=extra["first_loss"], best_loss=extra["best_loss"], last_loss=extra["last_loss"],
            )
            self.rank_state, self.scheduler_state = loaded.rank_state, extra["scheduler"]
            self.resumed_from, self.resumed_elapsed_s = progress.global_step, extra["elapsed_s"]
            logger.info("resuming from %s: step %d (epoch %d, step %d of the epoch)", checkpoint,
                        progress.global_step, progress.epoch, extra["step_in_epoch"])
            return loaded.model
        clara = ClaraConfig(model=hp.model, stage=hp.stage)
        if cfg.stage is Stage.PRETRAIN:
            return ClaraModel.from_config(clara, device=self.device, dtype=self.dtype)
        logger.info("starting stage %s from %s", cfg.stage.value, cfg.init_from)
        return load_checkpoint(cfg.init_from, next_stage=hp.stage, device=self.device, dtype=self.dtype).model

    def _check_resumable(self, checkpoint: Path) -> TrainingProgress:
        """Return the checkpoint's progress, or refuse a resume that could not continue the same run."""
        progress = TrainingProgress(**json.loads((checkpoint / PROGRESS_FILE).read_text(encoding="utf-8")))
        saved_world = progress.extra["world_size"]
        if saved_world != self.cfg.world_size:
            raise ConfigError(
                f"{checkpoint} was written by {saved_world} ranks and this run has {self.cfg.world_size}: ZeRO-2 "
                "partitions the optimizer state by rank, so resume with the same world size, or pass --no-resume "
                "to start over"
            )
        mismatches = resume_mismatches(_comparable(progress.extra["train_config"]), _comparable(self.resolved))
        if mismatches:
            raise ConfigError(f"cannot resume from {checkpoint}: settings changed ({'; '.join(mismatches)}); "
                              "rerun with the same settings, or pass --no-resume to start over")
        return progress

    def _setup_engine(self, model: ClaraModel, bf16: bool) -> Any:
        from deepspeed.utils import logger as ds_logger

        if self.cfg.hp.log.level != "debug":
            ds_logger.setLevel(logging.WARNING)  # its per-step INFO lines would drown the trainer's
        engine, self.zero_optimizer, self.scheduler = build_engine(
            model, self.cfg.hp, accumulation=self.cfg.accumulation, total_steps=self.plan.total_steps,
            warmup_steps=self.plan.warmup_steps, bf16=bf16,
        )
        return engine

    # -- train

    def train(self) -> None:
        cfg, plan, pos = self.cfg, self.plan, self.position
        loop, micro = cfg.hp.train, cfg.hp.batch.micro_batch_size
        if self.rank_state is not None:
            restore_rank_state(self.zero_optimizer, self.rank_state, rank=self.ranks.rank, world_size=cfg.world_size)
            self.scheduler.load_state_dict(self.scheduler_state)
            self.engine.global_steps, self.engine.global_samples = pos.step, pos.samples
        else:
            _seed_everything(loop.seed + self.ranks.rank)  # dropout differs between ranks
        self.engine.train()
        dataset = IndexedRows(self.rows)
        run_start = time.perf_counter() - pos.elapsed_s
        self.pending: list[tuple[int, float, torch.Tensor, float, Any]] = []  # steps not read back yet
        self.window_start = time.perf_counter()
        while pos.step < plan.total_steps:
            order = epoch_order(plan.rows, pos.epoch, seed=loop.seed, global_batch=plan.global_batch_size,
                                shuffle=loop.shuffle)
            sampler = RankBatches(order, pos.step_in_epoch, rank=self.ranks.rank, world_size=cfg.world_size,
                                  micro_batch=micro, accumulation=cfg.accumulation)
            collate = CollateWithIndices(self.collator, epoch=pos.epoch)  # seeds per-sample draws by (epoch, row)
            # A generator of its own: a DataLoader draws its base seed from the global RNG otherwise, which would
            # shift every later dropout mask of a resumed run against the original.
            loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=loop.num_workers,
                                pin_memory=self.device.type == "cuda", generator=torch.Generator())
            batches = iter(loader)
            while pos.step_in_epoch < plan.steps_per_epoch and pos.step < plan.total_steps:
                lr = self.zero_optimizer.optimizer.param_groups[0]["lr"]  # what this step uses
                indexed = [next(batches) for _ in range(cfg.accumulation)]
                logger.debug("rank %d step %d rows %s", self.ranks.rank, pos.step + 1, [i for i, _ in indexed])
                stats = train_step(self.engine, [batch for _, batch in indexed], self.device)
                pos.step += 1
                pos.step_in_epoch += 1
                epoch = round(pos.epoch + pos.step_in_epoch / plan.steps_per_epoch, 6)
                self.pending.append((pos.step, epoch, dist_utils.all_reduce_sum(stats), lr,
                                     self.engine.get_global_grad_norm()))
                save = pos.step % loop.save_every == 0 or pos.step == plan.total_steps
                # Reading the sums waits for the device: on an accelerator only every log.every steps (and before
                # a save); on the CPU nothing is queued, so every step is recorded as it ends.
                if save or self.device.type == "cpu" or pos.step % cfg.hp.log.every == 0:
                    self._record_pending(run_start)
                if save:
                    self._save_resume()
                    self.window_start = time.perf_counter()  # the save is no step's time
            if pos.step_in_epoch >= plan.steps_per_epoch:
                pos.epoch, pos.step_in_epoch = pos.epoch + 1, 0
        if self.report is not None:
            self.report.close()

    def _record_pending(self, run_start: float) -> None:
        """Read the pending steps' sums back (one wait for the device) and record each step; the steps of the
        window share its wall time evenly."""
        if not self.pending:
            return
        sums = torch.stack([stats for _, _, stats, _, _ in self.pending]).tolist()  # [steps, fields]
        now = time.perf_counter()
        step_s = (now - self.window_start) / len(self.pending)
        for i, ((step, epoch, _, lr, grad_norm), stats) in enumerate(zip(self.pending, sums)):
            elapsed_s = self.window_start - run_start + (i + 1) * step_s
            record = self._record(step, epoch, stats, lr, grad_norm, step_s, elapsed_s)
            if self.report is not None:
                self.report.log_step(record)
        self.pending.clear()
        self.window_start = now

    def _record(self, step: int, epoch: float, stats: list[float], lr: float, grad_norm: Any, step_s: float,
                elapsed_s: float) -> dict:
        pos, s = self.position, dict(zip(STAT_FIELDS, stats))
        n = s["micro_batches"]
        loss = s["loss"] / n
        pos.samples += int(s["samples"])
        pos.tokens += int(s["tokens"])
        pos.elapsed_s = elapsed_s
        pos.first_loss = loss if pos.first_loss is None else pos.first_loss
        pos.best_loss = loss if pos.best_loss is None else min(pos.best_loss, loss)
        pos.last_loss = loss
        record: dict[str, Any] = {
            "step": step,
            "epoch": epoch,
            "samples": pos.samples,
            "loss": loss,
            "ce": s["ce"] / n,
            "mse": s["mse"] / n,
            "lr": lr,
            "grad_norm": float(grad_norm) if grad_norm is not None else None,
            "tokens_per_s": s["tokens"] / step_s,
            "samples_per_s": s["samples"] / step_s,
            "elapsed_s": pos.elapsed_s,
        }
        if self.cfg.stage is Stage.E2E:
            if s["retrieval_micro_batches"]:
                record["retrieval_loss"] = s["retrieval_loss"] / s["retrieval_micro_batches"]
            # No row of the step with a pos_index: no recall rather than a made-up 0. Only k <= top-k: the step
            # picks top-k documents, so recall@5 of 3 picks would just repeat recall@3.
            if s["recall_rows"]:
                for k in RECALL_KS:
                    if k <= self.cfg.hp.stage.generation_top_k:
                        record[f"recall@{k}"] = s[f"recall@{k}"] / s["recall_rows"]
        return record

    def _save_resume(self) -> None:
        """Write a resume checkpoint: every rank's state is gathered to rank 0, which writes it."""
        pos = self.position
        states = dist_utils.gather_to_main(capture_rank_state(self.zero_optimizer))
        if not self.is_main:
            return
        extra = {**{k: v for k, v in dataclasses.asdict(pos).items() if k not in ("epoch", "step", "samples")},
                 "world_size": self.cfg.world_size, "scheduler": self.scheduler.state_dict(),
                 "train_config": self.resolved}
        progress = TrainingProgress(stage=self.cfg.stage.value, epoch=pos.epoch, global_step=pos.step,
                                    samples_seen=pos.samples, seed=self.cfg.hp.train.seed, extra=extra)
        path = save_checkpoint(self.engine.module, step_dir(self.cfg.output, pos.step), progress=progress,
                               rank_states=states)
        prune(self.cfg.output, self.cfg.hp.train.keep_resume)
        logger.info("resume checkpoint %s", path)

    # -- save

    def save(self) -> dict[str, Any]:
        """Export the final model and write summary.json (rank 0); return the summary on every rank.

        Raises:
            RuntimeError: when the ranks' trainable parameters differ (a broken data-parallel update).
        """
        module, pos = self.engine.module, self.position
        digests = dist_utils.all_gather(trainable_digest(module))
        summary = {
            "stage": self.cfg.stage.value,
            "steps": pos.step,
            "epochs": round(pos.step / self.plan.steps_per_epoch, 6),
            "samples": pos.samples,
            "first_loss": pos.first_loss,
            "final_loss": pos.last_loss,
            "best_loss": pos.best_loss,
            "tokens_per_s": pos.tokens / pos.elapsed_s if pos.elapsed_s else None,
            "wall_s": None,
            "world_size": self.cfg.world_size,
            "resumed_from_step": self.resumed_from,
            "final_checkpoint": FINAL_DIR,
        }
        if self.is_main:
            logger.info("trainable parameters sha256: %s",
                        ", ".join(f"rank {r} {digest}" for r, digest in enumerate(digests)))
            if len(set(digests)) != 1:
                raise RuntimeError(f"the ranks hold different trainable parameters after training: {digests}")
            progress = TrainingProgress(stage=self.cfg.stage.value, epoch=pos.epoch, global_step=pos.step,
                                        samples_seen=pos.samples, seed=self.cfg.hp.train.seed)
            save_checkpoint(module, self.cfg.output / FINAL_DIR, progress=progress)
            # wall_s: this run from start to export, plus the training time of the runs it resumed from
            summary["wall_s"] = time.time() - self.started + self.resumed_elapsed_s
            write_json_atomic(self.cfg.output / SUMMARY_FILE, summary)
            logger.info("done: %d steps, loss %.4f -> %.4f (best %.4f); exported %s", pos.step, pos.first_loss,
                        pos.last_loss, pos.best_loss, self.cfg.output / FINAL_DIR)
        dist_utils.barrier()
        return summary

    def cleanup(self) -> None:
        if self.report is not None:
            self.report.close()
        dist_utils.destroy()


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a resolved config that must match for a resume (data file paths may move; hashes may not)."""
    config = {**config, "job": dict(config["job"])}
    config["job"]["data"] = [{"sha256": f["sha256"], "rows": f["rows"]} for f in config["job"]["data"]]
    config["job"].pop("init_from", None)
    config.pop("resumed_from_step", None)
    return config


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- command line ------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> tuple[TrainerArgs, int | None]:
    """Return the trainer's arguments (clara_model.contract.TrainerArgs) and DeepSpeed's --local_rank."""
    parser = argparse.ArgumentParser(
        prog="python -m clara_model.train",
        description="Train one CLaRa stage with DeepSpeed (standalone, or under deepspeed / torchrun).",
    )
    TrainerArgs.add_arguments(parser)
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return TrainerArgs.from_namespace(args), args.local_rank


def build_config(args: TrainerArgs, world_size: int) -> TrainConfig:
    return resolve(args.stage, data=args.data, output=args.output, init_from=args.init_from, config_file=args.config,
                   overrides=args.overrides, max_steps=args.max_steps, resume=args.resume, world_size=world_size)


def main(cfg: TrainConfig, ranks: dist_utils.Ranks | None = None) -> dict[str, Any]:
    """Train the stage `cfg` describes; return the summary (what summary.json holds)."""
    recipe = StageRecipe(cfg, ranks or dist_utils.launch_environment())
    try:
        recipe.setup()
        recipe.train()
        return recipe.save()
    finally:
        recipe.cleanup()


def cli(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 only once final/ and summary.json are written)."""
    args, local_rank = parse_args(argv)
    ranks = dist_utils.launch_environment(local_rank)
    _setup_logging(ranks, "info")
    try:
        cfg = build_config(args, ranks.world_size)
        _setup_logging(ranks, cfg.hp.log.level)
        main(cfg, ranks)
        return 0
    except (ConfigError, DataError, FileNotFoundError, BaseModelUnavailableError) as error:
        _fail(ranks, _one_line(error))
        return 2 if isinstance(error, ConfigError) else 1
    except Exception as error:  # a bug or an environment problem: the traceback goes to the log first
        logger.exception("training failed")
        _fail(ranks, f"{type(error).__name__}: {_one_line(error)}")
        return 1


def _one_line(error: BaseException) -> str:
    if isinstance(error, DataError):
        more = len(error.problems) - 1
        return error.problems[0] + (f" (and {more} more bad row{'s' if more > 1 else ''})" if more else "")
    return " ".join(str(error).split())


def _fail(ranks: dist_utils.Ranks, reason: str) -> None:
    where = f"[rank {ranks.rank}] " if ranks.world_size > 1 else ""
    print(f"{TRAINER_ERROR_PREFIX} {where}{reason}", file=sys.stderr, flush=True)


def _setup_logging(ranks: dist_utils.Ranks, level: str) -> None:
    # Rank 0 alone logs, except errors, and at debug level, where every rank says what it trained on.
    chosen = getattr(logging, level.upper()) if ranks.is_main or level == "debug" else logging.ERROR
    logging.basicConfig(
        level=chosen,
        format=f"%(asctime)s [rank {ranks.rank}] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(cli())
