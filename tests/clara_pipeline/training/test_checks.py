"""The training checks' logic on real (tiny) checkpoints: a good one passes, a broken or misfiled one fails
with the reason. The checks themselves run in test_training_assets.py, inside real runs."""

import json
import math

import dagster as dg
import pytest

from clara_pipeline.defs.training import checkpoint_loads_result, loss_fell_result
from clara_pipeline.training.runs import checkpoint_digest, publish_run, stage_dir
from clara_pipeline.training.stages import STAGES
from tests.clara_pipeline.training.conftest import write_tiny_datasets


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A stage-1 checkpoint of the tiny model at compression rate 16 (doc_max_length 32: 2 memory tokens)."""
    from clara_model import ClaraConfig, ClaraModel, ModelConfig, StageConfig, save_checkpoint

    model = ClaraModel.from_config(ClaraConfig(
        model=ModelConfig(base_model="tiny", doc_max_length=32, compression_rate=16, max_len=256),
        stage=StageConfig.for_stage("pretrain")))
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "final")


def publish(root, rate, checkpoint, losses=(3.0, 2.5, 2.0, 1.5)):
    """File `checkpoint` as stage 1's current run at `rate`, with a metrics.jsonl of `losses`."""
    import shutil

    directory = stage_dir(root, rate, "pretrain")
    run = directory / "runs" / "r1"
    shutil.copytree(checkpoint, run / "final")
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": i + 1, "loss": v}) + "\n"
                                               for i, v in enumerate(losses)))
    publish_run(directory, run, checkpoint_digest(run / "final"))
    return run


def test_a_good_checkpoint_loads_and_computes(tmp_path, checkpoint):
    datasets = write_tiny_datasets(tmp_path / "datasets")
    publish(tmp_path, 16, checkpoint)
    result = checkpoint_loads_result(tmp_path, datasets, 16, STAGES["pretrain"])
    meta = {k: v.value for k, v in result.metadata.items()}
    assert result.passed, meta
    assert meta["details"] == "loads and computes" and math.isfinite(meta["loss"]) and meta["n_mem"] == 2
    assert meta["adapters"] == "encoder, decoder" and meta["rows"] == 2


def test_a_checkpoint_filed_under_another_rate_fails(tmp_path, checkpoint):
    datasets = write_tiny_datasets(tmp_path / "datasets")
    publish(tmp_path, 32, checkpoint)  # trained at rate 16
    result = checkpoint_loads_result(tmp_path, datasets, 32, STAGES["pretrain"])
    assert not result.passed
    assert result.metadata["details"].value == "compression rate 16, partition 32"


def test_a_damaged_checkpoint_fails_with_the_loaders_reason(tmp_path, checkpoint):
    datasets = write_tiny_datasets(tmp_path / "datasets")
    run = publish(tmp_path, 16, checkpoint)
    weights = run / "final" / "adapters" / "encoder" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a copy cut short
    result = checkpoint_loads_result(tmp_path, datasets, 16, STAGES["pretrain"])
    assert not result.passed
    assert result.metadata["details"].value.startswith("SafetensorError")
    assert checkpoint_loads_result(tmp_path, datasets, 64, STAGES["pretrain"]).metadata["details"].value == \
        "no checkpoint for this partition"


def test_loss_fell_reads_the_current_runs_metrics(tmp_path, checkpoint):
    publish(tmp_path, 16, checkpoint, losses=(3.0, 2.5, 2.0, 1.5))
    result = loss_fell_result(tmp_path, 16, STAGES["pretrain"])
    assert result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["first_mean_loss"].value == 3.0 and result.metadata["last_mean_loss"].value == 1.5
    publish(tmp_path, 4, checkpoint, losses=(1.0, 1.2, 1.4, 1.6))
    assert not loss_fell_result(tmp_path, 4, STAGES["pretrain"]).passed
