import copy
import json
import shutil

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from clara_model import Stage, StageConfig, TrainingProgress, load_checkpoint, save_checkpoint
from clara_model.adapters import adapter_parameters, use_adapter
from clara_model.base import load_base_model
from clara_model.collate import build_collator
from clara_model.config import Adapter, AdapterInit
from clara_model.modeling import eval_mode
from tests.clara_model.conftest import build_model, perturb_adapters

ADAPTER_FILE = "adapter_model.safetensors"


def train_steps(model, rows, steps=2, lr=1e-2):
    collator = build_collator(model.tokenizer, model.tokens, model.config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for step in range(steps):
        model(collator(rows[2 * step : 2 * step + 2])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return optimizer


def decoder_logits(model, rows):
    """Full decoder logits [B, L, V] for a stage-1 batch, as the trained model computes them (eval mode)."""
    batch = build_collator(model.tokenizer, model.tokens, model.config)(rows)
    with torch.no_grad(), eval_mode(model):
        memory = model.compress(batch.doc_ids, batch.doc_mask, Adapter.ENCODER).memory
        embeds = model.decoder_inputs(batch.dec_ids, memory, batch.docs_per_row)
        with use_adapter(model.base, Adapter.DECODER):
            return model.base(inputs_embeds=embeds, attention_mask=batch.dec_mask).logits


def weights(model, adapter):
    return {k: v.detach().clone() for k, v in adapter_parameters(model.base, adapter).items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, official_rows):
    """A stage-1 model trained for 2 steps and its checkpoint (with optimizer state and progress)."""
    torch.manual_seed(0)
    model = build_model(Stage.PRETRAIN)
    perturb_adapters(model)
    optimizer = train_steps(model, official_rows)
    path = tmp_path_factory.mktemp("ckpt") / "stage1"
    progress = TrainingProgress(stage="pretrain", epoch=1, global_step=2, samples_seen=4, seed=0, extra={"loss": 1.5})
    save_checkpoint(model, path, progress=progress, optimizer_state=optimizer.state_dict())
    return model, optimizer, path


def test_round_trip_gives_identical_logits_and_weights(trained, official_rows):
    model, _, path = trained
    loaded = load_checkpoint(path).model
    torch.testing.assert_close(decoder_logits(loaded, official_rows[4:6]), decoder_logits(model, official_rows[4:6]),
                               rtol=0, atol=0)
    torch.testing.assert_close(loaded.special_embedding.weight, model.special_embedding.weight, rtol=0, atol=0)
    assert loaded.config == model.config and loaded.tokens == model.tokens
    assert [n for n, p in loaded.named_parameters() if p.requires_grad] == \
        [n for n, p in model.named_parameters() if p.requires_grad]  # resume: the same trainable set


def test_directory_layout_holds_no_pickle(trained):
    _, _, path = trained
    files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    assert {"config.json", "special_tokens.safetensors", "progress.json", "optimizer.safetensors", "optimizer.json",
            "adapters/encoder/adapter_model.safetensors", "adapters/encoder/adapter_config.json",
            "adapters/decoder/adapter_model.safetensors", "adapters/decoder/adapter_config.json",
            "tokenizer/tokenizer.json"} <= set(files)
    for name in files:
        assert name.endswith((".json", ".safetensors", ".jinja")), name
        assert not (path / name).read_bytes()[:2].startswith(b"\x80"), f"{name} looks like a pickle"
    meta = json.loads((path / "config.json").read_text())
    assert meta["base_model"] == "tiny" and meta["adapters"] == ["decoder", "encoder"]
    assert meta["tokens"]["mem_ids"] == [151669, 151670, 151671, 151672]
    assert meta["clara"]["model"]["lora"] == {"r": 16, "alpha": 32, "dropout": 0.1, "target_modules": "all-linear"}
    rows = load_file(path / "special_tokens.safetensors")["weight"]
    assert rows.shape == (6, 64)  # only the special rows, not a 151,936 x H matrix


def test_resume_restores_optimizer_and_progress(trained, official_rows):
    model, optimizer, path = copy.deepcopy(trained)  # the continued run; the fixture's model stays as saved
    loaded = load_checkpoint(path)
    assert loaded.progress == TrainingProgress("pretrain", 1, 2, 4, 0, {"loss": 1.5})
    restored = torch.optim.AdamW([p for p in loaded.model.parameters() if p.requires_grad], lr=1e-2)
    restored.load_state_dict(loaded.optimizer_state)
    collator = build_collator(model.tokenizer, model.tokens, model.config)
    batch = collator(official_rows[6:8])
    for m, opt in ((model, optimizer), (loaded.model, restored)):  # one more identical step on both
        m.train()
        torch.manual_seed(5)
        m(batch).loss.backward()
        opt.step()
        opt.zero_grad()
    for adapter in (Adapter.ENCODER, Adapter.DECODER):
        original, resumed = weights(model, adapter), weights(loaded.model, adapter)
        for key in original:
            torch.testing.assert_close(resumed[key], original[key])


def test_handoff_to_instruct_keeps_the_encoder_and_starts_a_fresh_decoder(trained):
    model, _, path = trained
    loaded = load_checkpoint(path, next_stage=StageConfig.for_stage(Stage.INSTRUCT)).model
    assert loaded.config.stage.stage is Stage.INSTRUCT
    for key, value in weights(model, Adapter.ENCODER).items():
        torch.testing.assert_close(weights(loaded, Adapter.ENCODER)[key], value)
    decoder = weights(loaded, Adapter.DECODER)
    assert all(v.abs().sum() == 0 for k, v in decoder.items() if "lora_B" in k)  # fresh LoRA: B = 0
    torch.testing.assert_close(loaded.special_embedding.weight, model.special_embedding.weight)
    assert not loaded.special_embedding.weight.requires_grad  # memory rows train in stage 1 only


def test_handoff_to_e2e_copies_the_encoder_into_the_query_reasoner(trained, tmp_path):
    model, _, path = trained
    keep_decoder = {Adapter.ENCODER: AdapterInit.FROM_CHECKPOINT, Adapter.DECODER: AdapterInit.FROM_CHECKPOINT}
    instruct = load_checkpoint(path, next_stage=StageConfig.for_stage(Stage.INSTRUCT, adapter_init=keep_decoder))
    save_checkpoint(instruct.model, tmp_path / "stage2")
    e2e = load_checkpoint(tmp_path / "stage2", next_stage=StageConfig.for_stage(Stage.E2E)).model
    encoder, reasoner, decoder = (weights(e2e, a) for a in (Adapter.ENCODER, Adapter.QUERY_REASONER, Adapter.DECODER))
    for key, value in weights(model, Adapter.ENCODER).items():
        torch.testing.assert_close(encoder[key], value)
        torch.testing.assert_close(reasoner[key], value)
    for key, value in weights(model, Adapter.DECODER).items():
        torch.testing.assert_close(decoder[key], value)
    assert {n.split(".lora_")[1].split(".")[1] for n, p in e2e.named_parameters() if p.requires_grad} == \
        {"query_reasoner", "decoder"}


def test_inference_load_keeps_every_trained_adapter(trained):
    model, _, path = trained
    loaded = load_checkpoint(path, for_inference=True).model
    for adapter in (Adapter.ENCODER, Adapter.DECODER):  # the original dropped a stage-2 decoder here (B2)
        for key, value in weights(model, adapter).items():
            torch.testing.assert_close(weights(loaded, adapter)[key], value)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())


def test_handoff_needing_a_missing_adapter_is_an_error(trained):
    _, _, path = trained
    stage = StageConfig.for_stage(Stage.E2E, adapter_init={Adapter.ENCODER: "checkpoint", Adapter.DECODER: "checkpoint",
                                                           Adapter.QUERY_REASONER: "checkpoint"})
    with pytest.raises(ValueError, match="query_reasoner, which it does not hold"):
        load_checkpoint(path, next_stage=stage)


def test_tampered_checkpoints_are_refused(trained, tmp_path):
    _, _, path = trained
    tampered = tmp_path / "tampered"
    shutil.copytree(path, tampered)
    weights_file = tampered / "adapters" / "encoder" / ADAPTER_FILE
    state = load_file(weights_file)
    state.pop(next(iter(state)))
    save_file(state, weights_file)
    with pytest.raises(KeyError, match="1 missing keys"):
        load_checkpoint(tampered)

    shutil.rmtree(tampered)
    shutil.copytree(path, tampered)
    meta = json.loads((tampered / "config.json").read_text())
    meta["base_fingerprint"]["hidden_size"] = 2560
    (tampered / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="trained on"):
        load_checkpoint(tampered)

    meta["format_version"] = 99
    (tampered / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format 99"):
        load_checkpoint(tampered)


def test_saving_replaces_atomically(trained, tmp_path, monkeypatch):
    model, _, _ = trained
    target = tmp_path / "ckpt"
    save_checkpoint(model, target, progress=TrainingProgress(stage="pretrain", global_step=1))
    save_checkpoint(model, target, progress=TrainingProgress(stage="pretrain", global_step=2))
    assert json.loads((target / "progress.json").read_text())["global_step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary or old directory left

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(model.tokenizer, "save_pretrained", fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, target, progress=TrainingProgress(stage="pretrain", global_step=3))
    assert json.loads((target / "progress.json").read_text())["global_step"] == 2  # the good one is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_adapter_directories_load_with_peft(trained):
    model, _, path = trained
    peft_model = PeftModel.from_pretrained(load_base_model("tiny"), str(path / "adapters" / "encoder"))
    loaded = {k.replace(".default", ""): v for k, v in peft_model.named_parameters() if "lora_" in k}
    for key, value in weights(model, Adapter.ENCODER).items():
        torch.testing.assert_close(loaded["base_model.model." + key], value)
