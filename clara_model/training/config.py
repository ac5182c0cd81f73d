"""Training configuration: built-in defaults per stage, a YAML file, `--set key=value` overrides, resolution.

A YAML config has up to seven sections, the same ones `train_config.json` records:

    model:     the architecture (clara_model.config.ModelConfig; `lora` nested). Stages 2 and 3 take it from the
               --init-from checkpoint: a value there that differs from the checkpoint's is an error.
    stage:     the stage's StageConfig fields (mse_weight, generation_top_k, topk_temperature, adapter_init, ...);
               `stage.max_len` is this stage's decoder length (null: model.max_len; e2e: 1024, as officially)
    optim:     AdamW and gradient clipping
    schedule:  warmup, then cosine down to a floor or constant
    batch:     global batch (all ranks), micro batch (per rank); gradient accumulation is derived
    train:     epochs or max_steps, seed, checkpoint cadence, ZeRO stage, precision, loader workers
    log:       log line cadence when stderr is not a terminal, log level, TensorBoard

Precedence: built-in defaults (the reference scripts', `defaults(stage)`) < the YAML file < `--set` < `--max-steps`.
An unknown key, a value of the wrong type or a contradiction is refused with `ConfigError` naming the key.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clara_model.config import TINY_BASE_MODEL, ClaraConfig, ModelConfig, Stage, StageConfig
from clara_model.contract import TRAINER_VERSION

PRECISIONS = ("auto", "bf16", "fp32")
SCHEDULES = ("cosine", "constant")
LOG_LEVELS = ("debug", "info", "warning")
SECTIONS = ("model", "stage", "optim", "schedule", "batch", "train", "log")
_OPTIONAL_INTS = {"train.max_steps", "batch.gradient_accumulation_steps", "stage.max_len"}  # null or an int


class ConfigError(ValueError):
    """A configuration the trainer refuses; the message names the key and says why."""


@dataclass(frozen=True)
class OptimConfig:
    lr: float
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.0  # the reference's --l2 default
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off


@dataclass(frozen=True)
class ScheduleConfig:
    name: str  # "cosine" (to min_lr_ratio x lr at the last step) or "constant", both after a linear warmup
    warmup_ratio: float = 0.03  # warmup steps = ceil(ratio x total steps)
    min_lr_ratio: float = 0.1  # the cosine floor, as a fraction of optim.lr


@dataclass(frozen=True)
class BatchConfig:
    global_batch_size: int  # samples per optimizer step, all ranks together
    micro_batch_size: int = 2  # samples per forward/backward on one rank
    gradient_accumulation_steps: int | None = None  # derived: global / (micro x world size); if set, must agree


@dataclass(frozen=True)
class LoopConfig:
    epochs: int = 1
    max_steps: int | None = None  # optimizer steps; when set it wins over epochs (and may run past them)
    seed: int = 42  # data order (with the epoch) and dropout (with the rank)
    shuffle: bool = True
    save_every: int = 100  # optimizer steps between resume checkpoints (one is always written at the end)
    keep_resume: int = 2  # resume checkpoints kept
    zero_stage: int = 2
    precision: str = "auto"  # bf16 on GPU, fp32 on CPU
    num_workers: int = 0  # DataLoader worker processes for collation (the collator pickles: no model inside)


@dataclass(frozen=True)
class LogConfig:
    every: int = 10  # optimizer steps between log lines when stderr is not a terminal (else a progress bar)
    level: str = "info"  # "debug" makes every rank log, including the rows each step trained on
    tensorboard: bool = True


@dataclass(frozen=True)
class Hyperparameters:
    """Everything a YAML config sets, validated."""

    model: ModelConfig
    stage: StageConfig
    optim: OptimConfig
    schedule: ScheduleConfig
    batch: BatchConfig
    train: LoopConfig
    log: LogConfig

    def to_dict(self) -> dict[str, Any]:
        clara = ClaraConfig(model=self.model, stage=self.stage).to_dict()
        return {**clara, **{name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS[2:]}}


@dataclass(frozen=True)
class TrainConfig:
    """One training job: what to train on, where from, where to, with which hyperparameters, on how many ranks."""

    stage: Stage
    data: tuple[Path, ...]
    output: Path
    init_from: Path | None
    resume: bool
    world_size: int
    hp: Hyperparameters

    @property
    def accumulation(self) -> int:
        """Micro-batches per rank per optimizer step: global = micro x accumulation x world size."""
        return self.hp.batch.global_batch_size // (self.hp.batch.micro_batch_size * self.world_size)


@dataclass(frozen=True)
class DataFile:
    path: str  # absolute
    sha256: str
    rows: int


@dataclass(frozen=True)
class Plan:
    """How many optimizer steps the job takes, from its config and the rows of its data."""

    rows: int
    global_batch_size: int
    epochs: int
    max_steps: int | None
    warmup_ratio: float

    @property
    def steps_per_epoch(self) -> int:
        """Full global batches per pass over the data, and at least one: a dataset smaller than one global
        batch is repeated to fill it (reference B22 divided by zero there)."""
        return max(1, self.rows // self.global_batch_size)

    @property
    def total_steps(self) -> int:
        return self.max_steps if self.max_steps is not None else self.epochs * self.steps_per_epoch

    @property
    def warmup_steps(self) -> int:
        return math.ceil(self.warmup_ratio * self.total_steps)

    @classmethod
    def of(cls, cfg: TrainConfig, rows: int) -> Plan:
        hp = cfg.hp
        return cls(rows, hp.batch.global_batch_size, hp.train.epochs, hp.train.max_steps, hp.schedule.warmup_ratio)


def resolved_config(cfg: TrainConfig, files: Sequence[DataFile], plan: Plan) -> dict[str, Any]:
    """Return the resolved config as `train_config.json` stores it: job, every hyperparameter, derived counts."""
    return {
        "trainer_version": TRAINER_VERSION,
        "job": {
            "stage": cfg.stage.value,
            "data": [dataclasses.asdict(f) for f in files],
            "init_from": str(cfg.init_from) if cfg.init_from else None,
            "output": str(cfg.output),
            "world_size": cfg.world_size,
            "resume": cfg.resume,
        },
        **cfg.hp.to_dict(),
        "derived": {
            "rows": plan.rows,
            "gradient_accumulation_steps": cfg.accumulation,
            "steps_per_epoch": plan.steps_per_epoch,
            "total_steps": plan.total_steps,
            "warmup_steps": plan.warmup_steps,
        },
    }


def describe_data_file(path: str | Path, rows: int) -> DataFile:
    return DataFile(path=str(Path(path).resolve()), sha256=sha256_of(path), rows=rows)


def defaults(stage: Stage) -> dict[str, Any]:
    """Return the built-in defaults of `stage` as a YAML-shaped tree (the reference scripts' values).

    The `model` section is stage 1's; stages 2 and 3 take theirs from the --init-from checkpoint.
    """
    stage = Stage(stage)
    model = ModelConfig(base_model=TINY_BASE_MODEL, doc_max_length=256, compression_rate=32, max_len=2048)
    stage_fields = ClaraConfig(model=model, stage=StageConfig.for_stage(stage)).to_dict()["stage"]
    del stage_fields["stage"]  # set by --stage
    e2e = stage is Stage.E2E
    return {
        "model": dataclasses.asdict(model),
        "stage": stage_fields,
        "optim": dataclasses.asdict(OptimConfig(lr=5e-6 if e2e else 1e-4)),
        "schedule": dataclasses.asdict(ScheduleConfig(name="constant" if e2e else "cosine")),
        "batch": dataclasses.asdict(BatchConfig(global_batch_size=32 if e2e else 128, micro_batch_size=2)),
        "train": dataclasses.asdict(LoopConfig()),
        "log": dataclasses.asdict(LogConfig()),
    }


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Return the tree of a YAML config file (an empty file is an empty tree).

    Raises:
        ConfigError: when the file is not a YAML mapping.
    """
    try:
        tree = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    if tree is None:
        return {}
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{path}: a config file holds a mapping of sections ({', '.join(SECTIONS)})")
    return dict(tree)


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """Turn `--set a.b=value` items into a nested tree; each value is read as YAML (`1e-4`, `true`, `[1, 2]`).

    Raises:
        ConfigError: on an item without `=` or with an empty key.
    """
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
            raise ConfigError(f"--set {item!r}: expected key=value with a dotted key, e.g. optim.lr=2e-4")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part} was already given a value")
            node = child
        node[parts[-1]] = value
    return tree


def resolve(
    stage: Stage | str,
    *,
    data: Sequence[str | Path],
    output: str | Path,
    init_from: str | Path | None = None,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    max_steps: int | None = None,
    resume: bool = True,
    world_size: int = 1,
) -> TrainConfig:
    """Return the job's resolved, validated configuration (the data files are read later, by the trainer).

    Raises:
        ConfigError: an unknown key, a wrong type, inconsistent batch sizes, --init-from missing for stages 2 and 3
            (or given for stage 1), or a model key that conflicts with the --init-from checkpoint.
        FileNotFoundError: a data file or the --init-from checkpoint does not exist.
    """
    stage = Stage(stage)
    tree = defaults(stage)
    given: dict[str, Any] = {}
    if config_file is not None:
        _merge(given, load_yaml(config_file), tree, "", str(config_file))
    _merge(given, parse_set(overrides), tree, "", "--set")
    if max_steps is not None:
        _merge(given, {"train": {"max_steps": max_steps}}, tree, "", "--max-steps")

    if stage is Stage.PRETRAIN and init_from is not None:
        raise ConfigError("--init-from is not used by stage pretrain: it starts from the base model")
    if stage is not Stage.PRETRAIN:
        if init_from is None:
            raise ConfigError(f"stage {stage.value} needs --init-from: the previous stage's DIR/final")
        init_from = Path(init_from).resolve()
        checkpoint_model = _checkpoint_model(init_from)
        for key, value in _flatten(given.get("model", {}), "model.").items():
            saved = _lookup(checkpoint_model, key.split(".")[1:])
            if _normalise(value) != _normalise(saved):
                hint = "; set stage.max_len for this stage's decoder length" if key == "model.max_len" else ""
                raise ConfigError(
                    f"{key}={value!r} conflicts with the --init-from checkpoint's {saved!r}: the architecture of "
                    f"stages 2 and 3 comes from {init_from}{hint}"
                )
        given["model"] = {}
        tree["model"] = checkpoint_model
    tree = _apply(tree, given)

    hp = _build(stage, tree)
    _check(hp, world_size)
    if not data:
        raise ConfigError("at least one --data file is needed")
    paths = tuple(Path(path).resolve() for path in data)
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such data file")
    return TrainConfig(
        stage=stage,
        data=paths,
        output=Path(output).resolve(),
        init_from=Path(init_from) if init_from else None,
        resume=resume,
        world_size=world_size,
        hp=hp,
    )


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resume_mismatches(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Return `key: saved -> current` for every setting that changes what training computes (data, model, stage,
    hyperparameters, world size, schedule length); cadence, logging and output settings may change."""
    ignore = {"job.output", "job.resume", "train.save_every", "train.keep_resume", "train.num_workers"}
    a, b = _flatten(saved, ""), _flatten(current, "")
    keys = sorted(set(a) | set(b))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys
            if k not in ignore and not k.startswith("log.") and _normalise(a.get(k)) != _normalise(b.get(k))]


# -- merging and building ------------------------------------------------------------------------------------


def _merge(given: dict[str, Any], updates: Mapping[str, Any], schema: Mapping[str, Any], prefix: str, source: str):
    """Merge `updates` into `given`, refusing keys that `schema` (the defaults tree) does not have."""
    for key, value in updates.items():
        name = f"{prefix}{key}"
        if not isinstance(key, str) or key not in schema:
            known = ", ".join(sorted(str(k) for k in schema))
            where = f"section {prefix[:-1]!r}" if prefix else "the top level"
            raise ConfigError(f"{source}: unknown key {name!r} (known keys in {where}: {known})")
        if isinstance(schema[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: {name} is a section; set its keys, e.g. {name}.{next(iter(schema[key]))}")
            _merge(given.setdefault(key, {}), value, schema[key], f"{name}.", source)
        else:
            given[key] = _coerce(value, schema[key], name, source)


def _coerce(value: Any, default: Any, name: str, source: str) -> Any:
    """Return `value` in the type of `default`, or raise ConfigError."""
    def wrong(expected: str) -> ConfigError:
        return ConfigError(f"{source}: {name} must be {expected}, got {value!r}")

    if name in _OPTIONAL_INTS:
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise wrong("an integer or null")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise wrong("a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong("a number")
        return float(value)
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise wrong("a list")
        if default and len(value) != len(default) and isinstance(default, tuple):
            raise wrong(f"a list of {len(default)}")
        return [_coerce(v, default[0], f"{name}[{i}]", source) if default else v for i, v in enumerate(value)]
    if isinstance(default, str):
        if name.endswith("target_modules") and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        if not isinstance(value, str):
            raise wrong("a string")
        return value
    return value


def _apply(tree: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Return `tree` with the values of `given` (already checked against it) put in, section by section."""
    out = copy.deepcopy(dict(tree))
    for key, value in given.items():
        out[key] = _apply(out[key], value) if isinstance(value, Mapping) else value
    return out


def _build(stage: Stage, tree: Mapping[str, Any]) -> Hyperparameters:
    try:
        model = ModelConfig(**tree["model"])
        stage_config = StageConfig.for_stage(stage, **tree["stage"])
        return Hyperparameters(
            model=model,
            stage=stage_config,
            optim=OptimConfig(**{**tree["optim"], "betas": tuple(tree["optim"]["betas"])}),
            schedule=ScheduleConfig(**tree["schedule"]),
            batch=BatchConfig(**tree["batch"]),
            train=LoopConfig(**tree["train"]),
            log=LogConfig(**tree["log"]),
        )
    except (ValueError, TypeError) as error:
        raise ConfigError(str(error)) from None


def _check(hp: Hyperparameters, world_size: int) -> None:
    """Refuse contradictions the dataclasses cannot see on their own."""
    o, s, b, t, log = hp.optim, hp.schedule, hp.batch, hp.train, hp.log
    if o.lr <= 0:
        raise ConfigError(f"optim.lr must be > 0, got {o.lr}")
    if not all(0 <= beta < 1 for beta in o.betas):
        raise ConfigError(f"optim.betas must be in [0, 1), got {list(o.betas)}")
    if o.eps <= 0 or o.weight_decay < 0 or o.grad_clip < 0:
        raise ConfigError("optim.eps must be > 0, optim.weight_decay and optim.grad_clip >= 0")
    if s.name not in SCHEDULES:
        raise ConfigError(f"schedule.name must be one of {', '.join(SCHEDULES)}, got {s.name!r}")
    if not 0 <= s.warmup_ratio < 1 or not 0 <= s.min_lr_ratio <= 1:
        raise ConfigError("schedule.warmup_ratio must be in [0, 1) and schedule.min_lr_ratio in [0, 1]")
    if b.micro_batch_size < 1 or b.global_batch_size < 1:
        raise ConfigError("batch.global_batch_size and batch.micro_batch_size must be >= 1")
    per_step = b.micro_batch_size * world_size
    if b.global_batch_size % per_step:
        raise ConfigError(
            f"batch.global_batch_size {b.global_batch_size} is not a multiple of batch.micro_batch_size "
            f"{b.micro_batch_size} x world size {world_size} = {per_step}: gradient accumulation would not be whole"
        )
    accumulation = b.global_batch_size // per_step
    if b.gradient_accumulation_steps is not None and b.gradient_accumulation_steps != accumulation:
        raise ConfigError(
            f"batch.gradient_accumulation_steps {b.gradient_accumulation_steps} contradicts global "
            f"{b.global_batch_size} = micro {b.micro_batch_size} x world size {world_size} x accumulation "
            f"{accumulation}; leave it null to derive it"
        )
    if t.epochs < 1:
        raise ConfigError(f"train.epochs must be >= 1, got {t.epochs}")
    if t.max_steps is not None and t.max_steps < 1:
        raise ConfigError(f"train.max_steps must be >= 1 (or null), got {t.max_steps}")
    if t.save_every < 1 or t.keep_resume < 1:
        raise ConfigError("train.save_every and train.keep_resume must be >= 1")
    if t.zero_stage not in (1, 2):
        raise ConfigError(
            f"train.zero_stage must be 1 or 2, got {t.zero_stage}: the trainable adapters are small, and the export "
            "reads whole parameters on rank 0 (ZeRO-3 partitions them)"
        )
    if t.precision not in PRECISIONS:
        raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {t.precision!r} "
                          "(fp16 is not supported: no loss scaling)")
    if t.num_workers < 0 or log.every < 1:
        raise ConfigError("train.num_workers must be >= 0 and log.every >= 1")
    if log.level not in LOG_LEVELS:
        raise ConfigError(f"log.level must be one of {', '.join(LOG_LEVELS)}, got {log.level!r}")


def _checkpoint_model(init_from: Path) -> dict[str, Any]:
    config = init_from / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{init_from}: not a checkpoint (no config.json); pass the previous stage's DIR/final")
    meta = json.loads(config.read_text(encoding="utf-8"))
    return meta["clara"]["model"]


def _flatten(tree: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _lookup(tree: Mapping[str, Any], parts: Sequence[str]) -> Any:
    for part in parts:
        tree = tree[part]
    return tree


def _normalise(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
