import json

import pytest

from clara_model.config import (
    Adapter,
    AdapterInit,
    ClaraConfig,
    LoraSettings,
    ModelConfig,
    Stage,
    StageConfig,
)


def test_n_mem_is_doc_max_length_over_compression_rate():
    assert ModelConfig().n_mem == 8  # 256 // 32, the paper's setting
    assert ModelConfig(doc_max_length=256, compression_rate=16).n_mem == 16
    assert ModelConfig(doc_max_length=100, compression_rate=32).n_mem == 3


def test_paper_defaults_per_stage():
    pretrain = StageConfig.for_stage(Stage.PRETRAIN)
    assert pretrain.trainable_adapters == {Adapter.ENCODER, Adapter.DECODER}
    assert pretrain.train_special_tokens and pretrain.mse_weight == 0.1 and pretrain.generation_top_k == 1
    instruct = StageConfig.for_stage(Stage.INSTRUCT)
    assert instruct.adapter_init[Adapter.ENCODER] is AdapterInit.FROM_CHECKPOINT
    assert instruct.adapter_init[Adapter.DECODER] is AdapterInit.FRESH
    assert not instruct.train_special_tokens and instruct.generation_top_k == 5
    e2e = StageConfig.for_stage(Stage.E2E)
    assert e2e.adapter_init[Adapter.QUERY_REASONER] is AdapterInit.COPY_OF_ENCODER
    assert e2e.trainable_adapters == {Adapter.QUERY_REASONER, Adapter.DECODER}
    assert e2e.mse_weight == 0 and e2e.topk_temperature == 0.02
    assert (pretrain.max_len, instruct.max_len, e2e.max_len) == (None, None, 1024)  # official --max_len 2048/2048/1024
    assert LoraSettings() == LoraSettings(r=16, alpha=32, dropout=0.1, target_modules="all-linear")


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ModelConfig(doc_max_length=16, compression_rate=32), "compression_rate"),
        (lambda: ModelConfig(max_len=0), "max_len"),
        (lambda: LoraSettings(dropout=1.0), "lora.dropout"),
        (lambda: LoraSettings(r=0), "lora.r"),
        (lambda: StageConfig.for_stage(Stage.E2E, trainable_adapters={Adapter.ENCODER, Adapter.DECODER}),
         "trainable_adapters"),
        (lambda: StageConfig.for_stage(Stage.E2E, mse_weight=0.1), "mse_weight"),
        (lambda: StageConfig.for_stage(Stage.PRETRAIN, generation_top_k=5), "generation_top_k"),
        (lambda: StageConfig.for_stage(
            Stage.PRETRAIN, adapter_init={Adapter.ENCODER: AdapterInit.FROM_CHECKPOINT, Adapter.DECODER: "fresh"}),
         "adapter_init"),
        (lambda: StageConfig.for_stage(Stage.PRETRAIN, trainable_adapters={Adapter.QUERY_REASONER}),
         "trainable_adapters"),
        (lambda: StageConfig.for_stage(Stage.INSTRUCT, retrieval_loss_weight=1.0), "retrieval_loss_weight"),
        (lambda: StageConfig.for_stage(Stage.E2E, topk_temperature=0.0), "topk_temperature"),
        (lambda: StageConfig.for_stage(Stage.E2E, max_len=0), "max_len"),
        (lambda: StageConfig.for_stage(Stage.E2E, adapter_init={Adapter.ENCODER: "fresh", Adapter.DECODER: "fresh"}),
         "query_reasoner"),
    ],
)
def test_contradictions_are_rejected_naming_the_field(build, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        build()


def test_unknown_override_is_a_type_error():
    with pytest.raises(TypeError):
        StageConfig.for_stage(Stage.PRETRAIN, learning_rate=1e-4)


def test_configs_are_frozen():
    config = ModelConfig()
    with pytest.raises(AttributeError):
        config.doc_max_length = 512


def test_round_trip_through_json():
    config = ClaraConfig(
        model=ModelConfig(base_model="tiny", doc_max_length=64, compression_rate=16,
                          lora=LoraSettings(r=4, alpha=8, target_modules=("q_proj", "v_proj"))),
        stage=StageConfig.for_stage(Stage.E2E, retrieval_loss_weight=0.5, activation_checkpointing=True),
    )
    data = json.loads(json.dumps(config.to_dict()))
    assert data["stage"]["adapter_init"] == {"encoder": "checkpoint", "query_reasoner": "copy_of_encoder",
                                             "decoder": "checkpoint"}
    assert ClaraConfig.from_dict(data) == config


def test_the_decoder_length_is_the_stages_else_the_models():
    model = ModelConfig(base_model="tiny", max_len=2048)
    assert ClaraConfig(model=model, stage=StageConfig.for_stage(Stage.INSTRUCT)).decoder_max_len == 2048
    assert ClaraConfig(model=model, stage=StageConfig.for_stage(Stage.E2E)).decoder_max_len == 1024
    assert ClaraConfig(model=model, stage=StageConfig.for_stage(Stage.E2E, max_len=None)).decoder_max_len == 2048
    # a checkpoint written before stages had a max_len reads as the model's
    data = ClaraConfig(model=model, stage=StageConfig.for_stage(Stage.E2E)).to_dict()
    del data["stage"]["max_len"]
    assert ClaraConfig.from_dict(data).decoder_max_len == 2048


def test_strings_are_accepted_where_enums_are_expected():
    config = StageConfig.for_stage("instruct", trainable_adapters=["encoder", "decoder"])
    assert config.stage is Stage.INSTRUCT
    assert config.trainable_adapters == {Adapter.ENCODER, Adapter.DECODER}
    assert config.adapters == (Adapter.ENCODER, Adapter.DECODER)
