"""Which base the stages train on, and how a change of base reaches their run folders."""

import json

import dagster as dg
import pytest

from clara_pipeline.defs.training import resolve_stage_base
from clara_pipeline.training.base_model import (
    CPU_BASE,
    BaseRecord,
    describe_base,
    read_record,
    weights_digest,
    write_record,
)
from clara_pipeline.training.stages import STAGES, plan_stage_run


def _folder(tmp_path, weights: bytes):
    folder = tmp_path / "my-model"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen3", "hidden_size": 8}))
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def test_a_local_folder_is_recorded_by_content(tmp_path):
    folder = _folder(tmp_path, b"weights one")
    record = describe_base(str(folder))
    assert record.kind == "local" and record.config == {"model_type": "qwen3", "hidden_size": 8}
    assert record.name_or_path == str(folder.resolve())
    (folder / "model.safetensors").write_bytes(b"weights two")
    assert describe_base(str(folder)).digest != record.digest  # new weights, new data version


def test_a_folder_without_weights_and_an_unavailable_hub_id_are_named(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no weight files"):
        weights_digest(empty)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="'nobody/no-such-model' is not available: HF_HUB_OFFLINE"):
        describe_base("nobody/no-such-model")


def test_stages_take_the_recorded_base_and_its_digest(tmp_path):
    with pytest.raises(dg.Failure, match="materialize clara_base_model first"):
        resolve_stage_base(tmp_path, CPU_BASE)
    assert resolve_stage_base(tmp_path, "tiny") == ("tiny", None)
    write_record(tmp_path, BaseRecord(CPU_BASE, "/x/base_model", "cpu-pretrained", "abc"))
    assert read_record(tmp_path).digest == "abc"
    assert resolve_stage_base(tmp_path, CPU_BASE) == ("/x/base_model", "abc")
    assert resolve_stage_base(tmp_path, "tiny") == ("tiny", None)  # a record for another base is not used


def test_a_new_base_digest_is_a_new_run_folder(tmp_path):
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    (datasets / "pretrain.jsonl").write_text("{}\n")
    plans = [plan_stage_run(STAGES["pretrain"], artifacts_root=tmp_path, datasets_dir=datasets, compression_rate=32,
                            previous=None, base_model="/x/base_model", overrides=[], base_digest=digest)
             for digest in ("abc", "abd")]
    assert plans[0].fingerprint != plans[1].fingerprint
    assert plans[0].inputs["base"] == "abc"
