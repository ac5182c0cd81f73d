"""The trainer's configuration (clara_model/training/config.py): defaults, YAML files, --set, resolution."""

import dataclasses
import json
from pathlib import Path

import pytest

from clara_model import ClaraConfig, ModelConfig, Stage, StageConfig
from clara_model.training.config import (
    ConfigError,
    Plan,
    defaults,
    parse_set,
    resolve,
    resolved_config,
    resume_mismatches,
)
from tests.clara_model.conftest import FORK_PRETRAIN

CONFIGS = Path(__file__).resolve().parents[2] / "clara_model" / "configs"


def fake_checkpoint(tmp_path, **model) -> Path:
    """A directory whose config.json records a model, as a stage-1 export does (the weights are not read)."""
    path = tmp_path / "stage1-final"
    path.mkdir(exist_ok=True)
    config = ClaraConfig(model=ModelConfig(**model), stage=StageConfig.for_stage(Stage.PRETRAIN))
    (path / "config.json").write_text(json.dumps({"clara": config.to_dict()}))
    return path


def resolve_stage(stage, tmp_path, **kwargs):
    if stage != "pretrain" and "init_from" not in kwargs:
        kwargs["init_from"] = fake_checkpoint(tmp_path, base_model="tiny", doc_max_length=64, compression_rate=16)
    return resolve(stage, data=[FORK_PRETRAIN], output=tmp_path / "out", **kwargs)


def test_defaults_are_the_reference_scripts():
    pretrain, instruct, e2e = (defaults(s) for s in Stage)
    assert [d["optim"]["lr"] for d in (pretrain, instruct, e2e)] == [1e-4, 1e-4, 5e-6]
    assert [d["schedule"]["name"] for d in (pretrain, instruct, e2e)] == ["cosine", "cosine", "constant"]
    assert [d["batch"]["global_batch_size"] for d in (pretrain, instruct, e2e)] == [128, 128, 32]
    for d in (pretrain, instruct, e2e):
        assert d["optim"]["betas"] == (0.9, 0.95) and d["optim"]["grad_clip"] == 1.0
        assert d["optim"]["weight_decay"] == 0.0 and d["train"]["zero_stage"] == 2
        assert d["schedule"]["warmup_ratio"] == 0.03 and d["schedule"]["min_lr_ratio"] == 0.1
        assert d["batch"]["micro_batch_size"] == 2 and d["train"]["precision"] == "auto"
    assert pretrain["model"]["base_model"] == "tiny"
    assert (pretrain["model"]["compression_rate"], pretrain["model"]["doc_max_length"]) == (32, 256)
    assert [d["stage"]["generation_top_k"] for d in (pretrain, instruct, e2e)] == [1, 5, 5]


@pytest.mark.parametrize("stage", [s.value for s in Stage])
def test_shipped_yaml_resolves_to_the_built_in_defaults(stage, tmp_path):
    text = (CONFIGS / f"{stage}.yaml").read_text()
    assert "deepspeed --num_gpus" in text and "--hostfile" in text and "torchrun" in text  # launch lines first
    assert text.startswith("#")
    with_file = resolve_stage(stage, tmp_path, config_file=CONFIGS / f"{stage}.yaml")
    assert with_file.hp == resolve_stage(stage, tmp_path).hp


def test_precedence_yaml_then_set_then_max_steps(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("optim:\n  lr: 3.0e-4\ntrain:\n  max_steps: 50\n  seed: 7\n")
    cfg = resolve_stage("pretrain", tmp_path, config_file=config,
                        overrides=["train.max_steps=20", "optim.betas=[0.8, 0.9]", "model.lora.r=8"], max_steps=5)
    assert cfg.hp.optim.lr == 3e-4 and cfg.hp.train.seed == 7
    assert cfg.hp.train.max_steps == 5
    assert cfg.hp.optim.betas == (0.8, 0.9) and cfg.hp.model.lora.r == 8


def test_set_reads_values_as_yaml_and_numbers_without_a_dot():
    assert parse_set(["optim.lr=1e-4", "train.shuffle=false", "stage.adapter_init.decoder=checkpoint"]) == {
        "optim": {"lr": "1e-4"}, "train": {"shuffle": False}, "stage": {"adapter_init": {"decoder": "checkpoint"}},
    }


def test_set_coerces_1e_minus_4_to_a_float(tmp_path):
    assert resolve_stage("pretrain", tmp_path, overrides=["optim.lr=1e-4"]).hp.optim.lr == 1e-4


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown key 'optim.lrr'"),
        ("foo.bar=1", "unknown key 'foo'"),
        ("stage.stage=e2e", "unknown key 'stage.stage'"),
        ("stage.adapter_init.query_reasoner=fresh", "unknown key 'stage.adapter_init.query_reasoner'"),
        ("optim.lr=fast", "optim.lr must be a number"),
        ("train.max_steps=2.5", "train.max_steps must be an integer or null"),
        ("train.shuffle=1", "train.shuffle must be true or false"),
        ("model=3", "model is a section"),
        ("optim.lr", "expected key=value"),
        ("train.zero_stage=3", "train.zero_stage must be 1 or 2"),
        ("train.precision=fp16", "train.precision must be one of"),
        ("stage.generation_top_k=2", "generation_top_k must be 1 in stage pretrain"),
    ],
)
def test_bad_keys_and_values_are_refused_by_name(override, message, tmp_path):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        resolve_stage("pretrain", tmp_path, overrides=[override])


def test_unknown_key_in_a_yaml_file_names_the_file(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("optim:\n  learning_rate: 1.0e-3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'optim\.learning_rate'"):
        resolve_stage("pretrain", tmp_path, config_file=config)


def test_gradient_accumulation_is_derived_and_checked(tmp_path):
    cfg = resolve_stage("pretrain", tmp_path, overrides=["batch.global_batch_size=16", "batch.micro_batch_size=2"],
                        world_size=2)
    assert cfg.accumulation == 4  # 16 = 2 x 4 x 2
    with pytest.raises(ConfigError, match="not a multiple of batch.micro_batch_size 2 x world size 3 = 6"):
        resolve_stage("pretrain", tmp_path, overrides=["batch.global_batch_size=16"], world_size=3)
    with pytest.raises(ConfigError, match="gradient_accumulation_steps 2 contradicts"):
        resolve_stage("pretrain", tmp_path, world_size=2, overrides=[
            "batch.global_batch_size=16", "batch.gradient_accumulation_steps=2"])
    explicit = resolve_stage("pretrain", tmp_path, world_size=2, overrides=[
        "batch.global_batch_size=16", "batch.gradient_accumulation_steps=4"])
    assert explicit.accumulation == 4


def test_init_from_is_required_after_stage_1_and_refused_for_it(tmp_path):
    with pytest.raises(ConfigError, match="stage instruct needs --init-from"):
        resolve("instruct", data=[FORK_PRETRAIN], output=tmp_path)
    with pytest.raises(ConfigError, match="--init-from is not used by stage pretrain"):
        resolve("pretrain", data=[FORK_PRETRAIN], output=tmp_path, init_from=tmp_path)
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        resolve("e2e", data=[FORK_PRETRAIN], output=tmp_path, init_from=tmp_path)


def test_stages_2_and_3_take_the_model_from_the_checkpoint(tmp_path):
    checkpoint = fake_checkpoint(tmp_path, base_model="tiny", doc_max_length=64, compression_rate=16, max_len=300)
    cfg = resolve_stage("e2e", tmp_path, init_from=checkpoint, overrides=["model.compression_rate=16"])
    assert (cfg.hp.model.compression_rate, cfg.hp.model.doc_max_length, cfg.hp.model.max_len) == (16, 64, 300)
    with pytest.raises(ConfigError, match=r"model\.compression_rate=4 conflicts with the --init-from checkpoint's 16"):
        resolve_stage("instruct", tmp_path, init_from=checkpoint, overrides=["model.compression_rate=4"])
    with pytest.raises(ConfigError, match=r"model\.base_model='Qwen/Qwen3-4B-Instruct-2507' conflicts"):
        resolve_stage("e2e", tmp_path, init_from=checkpoint, overrides=["model.base_model=Qwen/Qwen3-4B-Instruct-2507"])


def test_stage_3_decoder_length_is_1024_unless_set_and_the_model_keeps_its_own(tmp_path):
    checkpoint = fake_checkpoint(tmp_path, base_model="tiny", doc_max_length=64, compression_rate=16, max_len=2048)

    def decoder_max_len(stage, *overrides):
        hp = resolve_stage(stage, tmp_path, init_from=checkpoint, overrides=list(overrides)).hp
        assert hp.model.max_len == 2048  # the checkpoint's architecture is untouched
        return ClaraConfig(model=hp.model, stage=hp.stage).decoder_max_len

    assert decoder_max_len("e2e") == 1024  # the official stage-3 --max_len
    assert decoder_max_len("instruct") == 2048  # stage 2 keeps the model's
    assert decoder_max_len("e2e", "stage.max_len=512") == 512
    assert decoder_max_len("e2e", "stage.max_len=null") == 2048
    assert decoder_max_len("instruct", "stage.max_len=700") == 700
    with pytest.raises(ConfigError, match=r"model\.max_len=1024 conflicts.*set stage\.max_len"):
        decoder_max_len("e2e", "model.max_len=1024")
    with pytest.raises(ConfigError, match="stage.max_len must be an integer or null"):
        decoder_max_len("e2e", "stage.max_len=long")
    with pytest.raises(ConfigError, match="max_len must be >= 1"):
        decoder_max_len("e2e", "stage.max_len=0")


def test_a_missing_data_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jsonl: no such data file"):
        resolve("pretrain", data=[tmp_path / "missing.jsonl"], output=tmp_path)


def test_plan_counts_full_global_batches_and_at_least_one(tmp_path):
    cfg = resolve_stage("pretrain", tmp_path, overrides=["batch.global_batch_size=4", "train.epochs=3"])
    assert Plan.of(cfg, rows=10).steps_per_epoch == 2 and Plan.of(cfg, rows=10).total_steps == 6
    assert Plan.of(cfg, rows=3).steps_per_epoch == 1  # smaller than one global batch: still a step
    assert Plan.of(cfg, rows=400).warmup_steps == 9  # ceil(0.03 x 300)
    stepped = resolve_stage("pretrain", tmp_path, overrides=["batch.global_batch_size=4"], max_steps=7)
    assert Plan.of(stepped, rows=10).total_steps == 7  # max_steps wins over epochs


def test_resolved_config_records_job_hyperparameters_and_counts(tmp_path):
    from clara_model.training.config import describe_data_file

    cfg = resolve_stage("pretrain", tmp_path, overrides=["batch.global_batch_size=4"])
    plan = Plan.of(cfg, rows=10)
    resolved = resolved_config(cfg, [describe_data_file(FORK_PRETRAIN, 10)], plan)
    assert resolved["job"]["stage"] == "pretrain" and resolved["job"]["world_size"] == 1
    assert resolved["job"]["data"][0]["sha256"] and resolved["job"]["data"][0]["rows"] == 10
    assert resolved["optim"]["lr"] == 1e-4 and resolved["stage"]["mse_weight"] == 0.1
    assert resolved["derived"]["total_steps"] == 2
    json.dumps(resolved)  # JSON all the way down

    other = json.loads(json.dumps(resolved))
    other["optim"]["lr"] = 2e-4
    other["train"]["save_every"] = 5  # cadence may change on resume
    other["log"]["level"] = "debug"
    assert resume_mismatches(resolved, other) == ["optim.lr: 0.0001 -> 0.0002"]


def test_the_papers_stage3_recipe_differs_from_the_default_only_by_the_infonce_term(tmp_path):
    default = resolve_stage("e2e", tmp_path, config_file=CONFIGS / "e2e.yaml").hp
    paper = resolve_stage("e2e", tmp_path, config_file=CONFIGS / "recipes" / "e2e_paper.yaml").hp
    assert default.stage.retrieval_loss_weight == 1.0 and paper.stage.retrieval_loss_weight == 0.0
    assert dataclasses.replace(paper, stage=dataclasses.replace(paper.stage, retrieval_loss_weight=1.0)) == default
