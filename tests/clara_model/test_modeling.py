import sys

import pytest
import torch
import torch.nn.functional as F

from clara_model import ClaraConfig, ClaraModel, Stage, StageConfig
from clara_model.adapters import adapter_parameters, enable_activation_checkpointing, use_adapter
from clara_model.collate import IGNORE_INDEX, CompressionBatch, InstructCollator, build_collator, label_positions
from clara_model.config import Adapter
from clara_model.data import QuestionRow
from clara_model import modeling, topk
from clara_model.modeling import eval_mode
from tests.clara_model.conftest import SMALL_MODEL, build_model, perturb_adapters

E2E_ROWS = [
    QuestionRow("Who edits Thrasher?", ("Jake Phelps edits Thrasher.", "Flip is a skateboard company.",
                                        "Saari rode for Flip."), "Jake Phelps", ("Jake Phelps",), (0,)),
    QuestionRow("What is Flip?", ("San Francisco is in the US.", "Flip makes skateboards.", "Fox met Geoff.",
                                  "A fourth candidate."), "A skateboard company", ("A skateboard company",), (1,)),
]
INSTRUCT_ROWS = [
    QuestionRow("Who edits Thrasher?", ("Jake Phelps edits Thrasher.", "Flip is a skateboard company."),
                "Jake Phelps", ("Jake Phelps",)),
    QuestionRow("Where?", ("In San Francisco.",), "San Francisco", ("San Francisco",)),
]


def batch_for(model, rows):
    return build_collator(model.tokenizer, model.tokens, model.config)(rows)


def rows_for(stage, official_rows):
    return {Stage.PRETRAIN: official_rows[:2], Stage.INSTRUCT: INSTRUCT_ROWS, Stage.E2E: E2E_ROWS}[stage]


def stage_model(stage, **overrides):
    if stage is Stage.E2E:
        # k=2 of 3-4 candidates; temperature 1 so the soft top-k is not saturated and its gradient is visible
        overrides = {"generation_top_k": 2, "topk_temperature": 1.0, **overrides}
    return build_model(stage, **overrides)


def test_compress_returns_the_final_states_at_the_memory_positions(frozen_pretrain_model, official_rows):
    model = frozen_pretrain_model
    batch = batch_for(model, official_rows[:2])
    with eval_mode(model):
        out = model.compress(batch.doc_ids, batch.doc_mask, Adapter.ENCODER)
        positions = (batch.doc_mask.cumsum(-1) - 1).clamp(min=0)
        with use_adapter(model.base, Adapter.ENCODER):
            states = model.base.model(inputs_embeds=model.embed(batch.doc_ids), attention_mask=batch.doc_mask,
                                      position_ids=positions).last_hidden_state
    m, h = model.tokens.n_mem, model.base.config.hidden_size
    assert out.memory.shape == (2, m, h)
    is_memory = torch.isin(batch.doc_ids, model.mem_ids)
    torch.testing.assert_close(out.memory, states[is_memory].view(2, m, h))
    # MSE: mean over D x H of (mean attended non-memory state - mean memory state)^2, in fp32.
    expected = []
    for d in range(2):
        text = batch.doc_mask[d].bool() & ~is_memory[d]
        expected.append((states[d][text].double().mean(0) - states[d][is_memory[d]].double().mean(0)).pow(2))
    torch.testing.assert_close(out.mse.double(), torch.stack(expected).mean())
    assert out.mse.dtype == torch.float32


def test_compress_ignores_padding(frozen_pretrain_model, official_rows):
    model = frozen_pretrain_model
    batch = batch_for(model, [official_rows[0], official_rows[5]])
    with eval_mode(model), torch.no_grad():
        together = model.compress(batch.doc_ids, batch.doc_mask, Adapter.ENCODER)
        single = batch_for(model, [official_rows[5]])
        alone = model.compress(single.doc_ids, single.doc_mask, Adapter.ENCODER)
    torch.testing.assert_close(together.memory[1], alone.memory[0], rtol=1e-4, atol=1e-5)


def test_decoder_inputs_overwrite_memory_slots_and_keep_sep(frozen_pretrain_model):
    model = frozen_pretrain_model
    collator = InstructCollator(model.tokenizer, model.tokens, doc_max_length=SMALL_MODEL.doc_max_length,
                                max_len=SMALL_MODEL.max_len)
    batch = collator(INSTRUCT_ROWS)  # the stage-2 layout: 2 documents, then 1
    memory = torch.randn(3, model.tokens.n_mem, model.base.config.hidden_size)
    embeds = model.decoder_inputs(batch.dec_ids, memory, batch.docs_per_row)
    is_memory = torch.isin(batch.dec_ids, model.mem_ids)
    torch.testing.assert_close(embeds[is_memory], memory.reshape(-1, memory.size(-1)))
    sep_row = model.special_embedding.weight[-1]
    is_sep = batch.dec_ids == model.tokens.sep_id
    torch.testing.assert_close(embeds[is_sep], sep_row.expand(int(is_sep.sum()), -1))
    other = ~is_memory & ~is_sep
    torch.testing.assert_close(embeds[other], model.base.get_input_embeddings()(batch.dec_ids)[other])
    with pytest.raises(ValueError, match="do not match"):
        model.decoder_inputs(batch.dec_ids, memory, torch.tensor([1, 2]))


def test_a_prompt_without_documents_keeps_its_embeddings(frozen_pretrain_model):
    model = frozen_pretrain_model
    ids = torch.tensor([[1, 2, 3]])  # no memory slot: a closed-book prompt
    embeds = model.decoder_inputs(ids, torch.zeros(0, model.tokens.n_mem, 64), torch.tensor([0]))
    torch.testing.assert_close(embeds, model.embed(ids))


def test_decoder_loss_equals_the_causal_lm_loss_on_answer_tokens(frozen_pretrain_model, official_rows):
    model = frozen_pretrain_model
    batch = batch_for(model, official_rows[2:4])
    memory = torch.randn(2, model.tokens.n_mem, model.base.config.hidden_size)
    with eval_mode(model):
        ce = model.decoder_loss(batch.dec_ids, batch.dec_mask, batch.labels, memory, batch.docs_per_row)
        embeds = model.decoder_inputs(batch.dec_ids, memory, batch.docs_per_row)
        with use_adapter(model.base, Adapter.DECODER):
            reference = model.base(inputs_embeds=embeds, attention_mask=batch.dec_mask, labels=batch.labels,
                                   position_ids=(batch.dec_mask.cumsum(-1) - 1).clamp(min=0)).loss
    torch.testing.assert_close(ce, reference)


def test_a_batch_whose_answers_were_all_truncated_is_an_error(frozen_pretrain_model, official_rows):
    model = frozen_pretrain_model
    batch = batch_for(model, official_rows[:2])
    batch.labels[:] = IGNORE_INDEX
    batch.label_index = label_positions(batch.labels)  # what a collator makes of such labels: no position
    with pytest.raises(ValueError, match="truncated away"):
        model(batch)
    with pytest.raises(ValueError, match="truncated away"):  # found from the labels when not given
        model.decoder_loss(batch.dec_ids, batch.dec_mask, batch.labels, torch.zeros(2, 4, 64), batch.docs_per_row)


def test_the_loss_reads_no_value_of_the_device_on_the_host(official_rows):
    """Every check and selection of a training step is tensor arithmetic (see clara_model.asserts): on a
    non-CPU tensor, a check queues a device assert instead of reading the value."""
    model = stage_model(Stage.E2E, retrieval_loss_weight=1.0)
    batch = batch_for(model, rows_for(Stage.E2E, official_rows))
    reads = []

    def spy(real):
        def read(self, *args):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.startswith("clara_model"):  # transformers' own mask code reads the attention mask once
                reads.append(f"{caller}: {real.__name__}")
            return real(self, *args)
        return read

    def queued_check(condition, message):  # what an accelerator does: an asynchronous device assert
        torch._assert_async(condition.all())

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(modeling, "check", queued_check)
        mp.setattr(topk, "check", queued_check)
        for name in ("__bool__", "__int__", "__float__", "item", "tolist"):
            mp.setattr(torch.Tensor, name, spy(getattr(torch.Tensor, name)))
        out = model(batch)
        out.loss.backward()
    assert torch.isfinite(out.loss) and reads == []


@pytest.mark.parametrize("stage", list(Stage))
def test_each_stage_has_the_expected_shapes(stage, official_rows):
    model = stage_model(stage)
    model.train()
    batch = batch_for(model, rows_for(stage, official_rows))
    out = model(batch)
    assert out.loss.shape == out.ce.shape == out.mse.shape == ()
    assert torch.isfinite(out.loss)
    if stage is Stage.E2E:
        assert out.topk_indices.shape == (2, 2)
        # mse only logged; the InfoNCE term on pos_index is on by default (weight 1)
        torch.testing.assert_close(out.loss, out.ce + out.retrieval_loss)
    else:
        torch.testing.assert_close(out.loss, out.ce + 0.1 * out.mse)


@pytest.mark.parametrize("stage", list(Stage))
def test_gradients_reach_exactly_the_parameters_the_stage_trains(stage, official_rows):
    model = stage_model(stage)
    perturb_adapters(model)
    model.train()
    model(batch_for(model, rows_for(stage, official_rows))).loss.backward()

    expected = {f"{a.value}:{k}" for a in model.config.stage.trainable_adapters
                for k in adapter_parameters(model.base, a)}
    got, by_id = set(), {id(p): n for n, p in model.named_parameters()}
    for adapter in model.config.stage.adapters:
        for key, param in adapter_parameters(model.base, adapter).items():
            if param.grad is not None and param.grad.abs().sum() > 0:
                got.add(f"{adapter.value}:{key}")
            by_id.pop(id(param))
    assert got == expected
    assert len(model.trainable_parameters()) == len(expected) + model.config.stage.train_special_tokens
    special = model.special_embedding.weight
    assert (special.grad is not None and special.grad.abs().sum() > 0) == model.config.stage.train_special_tokens
    by_id.pop(id(special))
    assert [n for n, p in model.named_parameters() if id(p) in by_id and p.grad is not None] == []


def test_e2e_encodes_documents_without_gradient(official_rows):
    model = stage_model(Stage.E2E)
    perturb_adapters(model)
    for param in adapter_parameters(model.base, Adapter.ENCODER).values():
        param.requires_grad_(True)  # even if it could train, no gradient path reaches it
    model.train()
    model(batch_for(model, E2E_ROWS)).loss.backward()
    assert all(p.grad is None for p in adapter_parameters(model.base, Adapter.ENCODER).values())
    assert model.base.training  # the frozen encoder ran in eval mode and the train mode came back


def test_e2e_selects_the_top_k_candidates_into_the_prompt(official_rows):
    model = stage_model(Stage.E2E)
    perturb_adapters(model)
    batch = batch_for(model, E2E_ROWS)
    with eval_mode(model):
        out = model(batch)
        docs = model.compress(batch.doc_ids, batch.doc_mask, Adapter.ENCODER).memory  # [7, M, H]
        query = model.compress(batch.query_ids, batch.query_mask, Adapter.QUERY_REASONER).memory.flatten(1)
        per_row = [docs[:3], docs[3:]]
        indices, selected = [], []
        for b in range(2):
            cosines = F.cosine_similarity(query[b].unsqueeze(0), per_row[b].flatten(1), dim=-1)
            top = cosines.topk(2).indices
            indices.append(top)
            selected.append(per_row[b][top])
        ce = model.decoder_loss(batch.dec_ids, batch.dec_mask, batch.labels, torch.cat(selected), torch.tensor([2, 2]))
    torch.testing.assert_close(out.topk_indices, torch.stack(indices))
    torch.testing.assert_close(out.ce, ce)


def test_query_reasoner_starts_as_a_copy_of_the_encoder():
    model = stage_model(Stage.E2E)
    encoder = adapter_parameters(model.base, Adapter.ENCODER)
    reasoner = adapter_parameters(model.base, Adapter.QUERY_REASONER)
    assert encoder.keys() == reasoner.keys()
    for key in encoder:
        torch.testing.assert_close(reasoner[key], encoder[key])
        assert reasoner[key].data_ptr() != encoder[key].data_ptr()


def test_retrieval_loss_adds_infonce_on_pos_index(official_rows):
    model = stage_model(Stage.E2E, retrieval_loss_weight=0.5)
    out = model(batch_for(model, E2E_ROWS))
    assert out.retrieval_loss is not None and out.retrieval_loss > 0
    torch.testing.assert_close(out.loss, out.ce + 0.5 * out.retrieval_loss)


@pytest.mark.parametrize("stage", list(Stage))
def test_activation_checkpointing_gives_identical_gradients(stage, official_rows):
    model = stage_model(stage)
    perturb_adapters(model)
    model.train()
    batch = batch_for(model, rows_for(stage, official_rows))
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def gradients():
        torch.manual_seed(7)  # the same LoRA dropout masks in both runs
        loss = model(batch).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in trainable}
        model.zero_grad(set_to_none=True)
        return loss.detach(), grads

    loss, plain = gradients()
    enable_activation_checkpointing(model.base)
    loss_checkpointed, checkpointed = gradients()
    torch.testing.assert_close(loss_checkpointed, loss)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)
    assert sum(g.abs().sum() for g in plain.values()) > 0


def test_forward_refuses_a_batch_of_another_stage(official_rows):
    model = stage_model(Stage.E2E)
    pretrain_batch = build_collator(model.tokenizer, model.tokens, ClaraConfig(model=SMALL_MODEL))(official_rows[:1])
    assert isinstance(pretrain_batch, CompressionBatch)
    with pytest.raises(TypeError, match="stage e2e cannot train on a CompressionBatch"):
        model(pretrain_batch)


def test_from_config_refuses_a_handoff_it_cannot_do():
    with pytest.raises(ValueError, match="load_checkpoint"):
        ClaraModel.from_config(ClaraConfig(model=SMALL_MODEL, stage=StageConfig.for_stage(Stage.INSTRUCT)))


def test_bf16_model_keeps_the_mse_in_fp32(official_rows):
    model = ClaraModel.from_config(ClaraConfig(model=SMALL_MODEL), dtype=torch.bfloat16)
    batch = batch_for(model, official_rows[:1])
    out = model.compress(batch.doc_ids, batch.doc_mask, Adapter.ENCODER)
    assert out.memory.dtype == torch.bfloat16 and out.mse.dtype == torch.float32
