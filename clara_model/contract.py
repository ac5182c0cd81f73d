"""What the trainer and whoever launches it agree on: the trainer's command line, its version, its stage names and
the files it leaves in its output folder. Torch-free (it imports only the standard library and
`clara_model.config`), so the Dagster side (`clara_pipeline.training`) imports these names instead of copying them.

    python -m clara_model.train --stage STAGE --data FILE [--data FILE ...] --output DIR
        [--init-from PREVIOUS/final] [--config FILE.yaml] [--set key=value ...] [--max-steps N] [--no-resume]

`TrainerArgs` is that command line as a dataclass: `add_arguments` gives the trainer's (and the launcher's)
argparse options from its fields, `to_argv` renders it for a subprocess.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from clara_model.config import Stage

TRAINER_VERSION = "2"  # bump when a change to the trainer changes what a given config and data produce
TRAINER_MODULE = "clara_model.train"
TRAINER_ERROR_PREFIX = "clara_model.train: error:"  # the trainer's last stderr line when it fails: this, then why
STAGES = tuple(stage.value for stage in Stage)  # "pretrain", "instruct", "e2e"

# The trainer's output folder (DIR); rank 0 writes everything.
TRAIN_CONFIG_FILE = "train_config.json"  # the resolved config, written before the first step
METRICS_FILE = "metrics.jsonl"  # one JSON object per optimizer step, flushed as the step ends
TENSORBOARD_DIR = "tensorboard"
RESUME_DIR = "resume"  # resume/step-XXXXXXXX/ checkpoints
FINAL_DIR = "final"  # the exported model: the next stage's --init-from
SUMMARY_FILE = "summary.json"  # written last: its presence means the run finished

# Inside a checkpoint folder (clara_model.checkpoint): the model's config, and the training bookkeeping that a
# resume needs and the model does not.
CHECKPOINT_CONFIG_FILE = "config.json"
PROGRESS_FILE = "progress.json"
OPTIMIZER_TENSORS_FILE = "optimizer.safetensors"
OPTIMIZER_TREE_FILE = "optimizer.json"
RANKS_DIR = "ranks"
BOOKKEEPING = (PROGRESS_FILE, OPTIMIZER_TENSORS_FILE, OPTIMIZER_TREE_FILE, RANKS_DIR)


def _flag(name: str, default: Any = None, **argparse_options: Any) -> Any:
    """A TrainerArgs field: its command-line flag and argparse options ride in the field's metadata."""
    metadata = {"flag": name, **argparse_options}
    if argparse_options.get("required"):
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class TrainerArgs:
    """The trainer's command line: one field per option, in the order `to_argv` writes them."""

    stage: str = _flag("--stage", required=True, choices=STAGES)
    data: tuple[str, ...] = _flag("--data", required=True, action="append", metavar="FILE",
                                  help="JSONL rows (repeatable)")
    output: str = _flag("--output", required=True, metavar="DIR")
    init_from: str | None = _flag("--init-from", metavar="CKPT_DIR",
                                  help=f"the previous stage's DIR/{FINAL_DIR} (stages 2 and 3)")
    config: str | None = _flag("--config", metavar="FILE.yaml", help="hyperparameters (see clara_model/configs/)")
    overrides: tuple[str, ...] = _flag("--set", (), action="append", metavar="KEY=VALUE",
                                       help="override a config key, dotted for nesting: --set optim.lr=2e-4")
    max_steps: int | None = _flag("--max-steps", type=int, metavar="N", help="same as --set train.max_steps=N")
    resume: bool = _flag("--no-resume", True, action="store_false",
                         help="start over: delete what an earlier run left in DIR instead of resuming it")

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", tuple(str(d) for d in self.data))
        object.__setattr__(self, "overrides", tuple(self.overrides))

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, *, skip: Sequence[str] = ()) -> None:
        """Add an option per field (except those named in `skip`) to `parser`; `from_namespace` reads them back."""
        for f in fields(cls):
            if f.name in skip:
                continue
            options = {k: v for k, v in f.metadata.items() if k != "flag"}
            if options.get("action") == "append":
                options["default"] = None  # argparse appends to a given default list in place
            elif not options.get("required"):
                options["default"] = f.default
            parser.add_argument(f.metadata["flag"], dest=f.name, **options)

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> TrainerArgs:
        """Return the fields `add_arguments` parsed into `args`."""
        values = {f.name: getattr(args, f.name) for f in fields(cls)}
        values["overrides"] = values["overrides"] or ()
        return cls(**values)

    def to_argv(self) -> list[str]:
        """Return the arguments that parse back to this (`python -m clara_model.train` + these)."""
        argv: list[str] = []
        for f in fields(self):
            value, flag, action = getattr(self, f.name), f.metadata["flag"], f.metadata.get("action")
            if action == "append":
                for item in value:
                    argv += [flag, str(item)]
            elif action == "store_false":
                argv += [] if value else [flag]
            elif value is not None:
                argv += [flag, str(value)]
        return argv


def clock(seconds: float) -> str:
    """The elapsed / ETA format of every progress line (the CPU base's and the stages' relayed by `clara run`):
    `0:42`, `12:05`, `1:02:03`."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
