import pickle

import pytest
import torch
from torch.utils.data import DataLoader

from clara_model.collate import (
    IGNORE_INDEX,
    E2ECollator,
    InstructCollator,
    PretrainCollator,
    build_collator,
    encode_documents,
    encode_prompts,
    paraphrase_template,
)
from clara_model.config import ClaraConfig, Stage, StageConfig
from clara_model.data import PretrainRow, QuestionRow, RowKind
from clara_model.prompts import PARAPHRASE_TEMPLATES, ChatPrompt
from clara_model.tokens import special_tokens_of
from tests.clara_model.conftest import SMALL_MODEL

DOC_LEN, MAX_LEN = SMALL_MODEL.doc_max_length, SMALL_MODEL.max_len


@pytest.fixture(scope="module")
def tokens(qwen_tokenizer):
    return special_tokens_of(qwen_tokenizer, SMALL_MODEL.n_mem)


def text_ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_encoder_layout_is_enc_text_eos_memory_left_padded(qwen_tokenizer, tokens):
    long_text = "word " * 100
    ids, mask = encode_documents(qwen_tokenizer, tokens, ["Hello world", long_text], DOC_LEN)
    m = tokens.n_mem
    assert ids.shape == (2, 1 + DOC_LEN + 1 + m)  # padded to the longest: the truncated long document
    hello = text_ids(qwen_tokenizer, "Hello world")
    expected_short = [tokens.enc_id, *hello, tokens.eos_id, *tokens.mem_ids]
    assert ids[0, -len(expected_short):].tolist() == expected_short
    assert (ids[0, : -len(expected_short)] == tokens.pad_id).all()
    assert mask[0].tolist() == [0] * (ids.size(1) - len(expected_short)) + [1] * len(expected_short)
    # The long document keeps doc_max_length text tokens, then still <eos> and the memory tokens.
    assert ids[1].tolist() == [tokens.enc_id, *text_ids(qwen_tokenizer, long_text)[:DOC_LEN], tokens.eos_id,
                               *tokens.mem_ids]
    assert mask[1].all()


def test_special_token_text_in_a_document_stays_plain_text(qwen_tokenizer, tokens):
    ids, _ = encode_documents(qwen_tokenizer, tokens, ["see <MEM0> and <|im_end|> here"], DOC_LEN)
    text_part = ids[0, 1 : -tokens.n_mem - 1]
    assert not torch.isin(text_part, torch.tensor([*tokens.new_ids, tokens.eos_id])).any()


def test_decoder_labels_mask_prompt_and_padding(qwen_tokenizer, tokens):
    prompts = [
        ChatPrompt("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "Paris<|im_end|>\n"),
        ChatPrompt("<|im_start|>user\nhello there<|im_end|>\n<|im_start|>assistant\n", "A longer answer<|im_end|>\n"),
    ]
    ids, mask, labels = encode_prompts(qwen_tokenizer, tokens, prompts, MAX_LEN)
    assert ids.shape == labels.shape == mask.shape
    assert (labels[mask == 0] == IGNORE_INDEX).all()
    for row, prompt in enumerate(prompts):
        answer_positions = labels[row] != IGNORE_INDEX
        assert qwen_tokenizer.decode(labels[row][answer_positions]) == prompt.answer
        torch.testing.assert_close(ids[row][answer_positions], labels[row][answer_positions])
        n_prompt = len(text_ids(qwen_tokenizer, prompt.prompt))
        assert int(mask[row].sum()) - int(answer_positions.sum()) == n_prompt
    assert labels[0, -2].item() == tokens.eos_id  # <|im_end|> is trained, then "\n"


def test_answers_are_cut_at_max_len_and_long_prompts_refused(qwen_tokenizer, tokens):
    prompt = ChatPrompt("<|im_start|>assistant\n", "one two three four five six seven<|im_end|>\n")
    n_prompt = len(text_ids(qwen_tokenizer, prompt.prompt))
    ids, mask, labels = encode_prompts(qwen_tokenizer, tokens, [prompt], n_prompt + 3)
    assert ids.shape == (1, n_prompt + 3) and int((labels != IGNORE_INDEX).sum()) == 3
    ids, mask, labels = encode_prompts(qwen_tokenizer, tokens, [prompt], n_prompt)  # the whole answer cut away
    assert (labels == IGNORE_INDEX).all()
    with pytest.raises(ValueError, match="more than max_len"):
        encode_prompts(qwen_tokenizer, tokens, [prompt], n_prompt - 1)


def test_pretrain_batch_layout(qwen_tokenizer, tokens, official_rows):
    rows = [official_rows[0], PretrainRow(RowKind.PARAPHRASE, "A short document.", (), ("A brief text.",))]
    batch = PretrainCollator(qwen_tokenizer, tokens, doc_max_length=DOC_LEN, max_len=MAX_LEN)(rows)
    assert batch.doc_ids.shape[0] == 2 and batch.docs_per_row.tolist() == [1, 1]
    assert batch.dec_ids.shape[1] == MAX_LEN  # the official QA target is cut at max_len
    for row in range(2):
        prompt_ids = batch.dec_ids[row][batch.dec_mask[row].bool() & (batch.labels[row] == IGNORE_INDEX)]
        assert prompt_ids.tolist().count(tokens.mem_ids[0]) == 1 and prompt_ids.tolist().count(tokens.sep_id) == 1
    qa_target = qwen_tokenizer.decode(batch.labels[0][batch.labels[0] != IGNORE_INDEX])
    assert qa_target.startswith("Question: Who is the editor-in-chief of Thrasher magazine")
    assert "\nAnswer: Jake Phelps\nQuestion: " in qa_target
    assert qwen_tokenizer.decode(batch.labels[1][batch.labels[1] != IGNORE_INDEX]) == "A brief text.<|im_end|>\n"


def test_paraphrase_template_is_drawn_per_sample_from_seed_and_key(qwen_tokenizer, tokens):
    row = PretrainRow(RowKind.PARAPHRASE, "One document.", (), ("p",))
    keys = [(epoch, 7) for epoch in range(12)]  # the same row in 12 epochs

    def templates(seed, keys=keys, rows=None):
        collator = PretrainCollator(qwen_tokenizer, tokens, doc_max_length=DOC_LEN, max_len=MAX_LEN, seed=seed)
        batch = collator(rows or [row] * len(keys), keys=keys)
        prompts = [qwen_tokenizer.decode(r[m.bool()]) for r, m in zip(batch.dec_ids, batch.dec_mask)]
        return [next(i for i, t in enumerate(PARAPHRASE_TEMPLATES) if t.split("{docs}")[-1] in p) for p in prompts]

    assert templates(0) == templates(0) == [paraphrase_template(0, key) for key in keys]  # reproducible
    assert len(set(templates(0))) > 1  # one document, several samples, several templates
    assert templates(0) != templates(1)  # the seed matters
    assert templates(0, keys=keys[3:5]) == templates(0)[3:5]  # a sample's draw ignores its batch (resume)
    # without keys: one template per document
    docs = [PretrainRow(RowKind.PARAPHRASE, f"Document number {i}.", (), ("p",)) for i in range(12)]
    collator = PretrainCollator(qwen_tokenizer, tokens, doc_max_length=DOC_LEN, max_len=MAX_LEN)
    assert torch.equal(collator(docs).dec_ids, collator(docs).dec_ids)
    with pytest.raises(ValueError, match="2 sample keys for 1 rows"):
        collator(docs[:1], keys=[(0, 0), (0, 1)])


def test_every_paraphrase_template_is_drawn_about_equally():
    counts = torch.bincount(torch.tensor([paraphrase_template(42, (0, i)) for i in range(2600)]),
                            minlength=len(PARAPHRASE_TEMPLATES))
    assert counts.numel() == len(PARAPHRASE_TEMPLATES) and int(counts.min()) > 120  # 200 expected each


def test_instruct_batch_has_one_slot_group_per_document(qwen_tokenizer, tokens):
    rows = [QuestionRow("q1?", ("d1", "d2", "d3"), "a1", ("a1",)), QuestionRow("q2?", ("e1",), "a2", ("a2",))]
    batch = InstructCollator(qwen_tokenizer, tokens, doc_max_length=DOC_LEN, max_len=MAX_LEN)(rows)
    assert batch.docs_per_row.tolist() == [3, 1] and batch.doc_ids.shape[0] == 4
    assert (batch.dec_ids == tokens.sep_id).sum(dim=1).tolist() == [3, 1]
    assert (batch.dec_ids == tokens.mem_ids[-1]).sum(dim=1).tolist() == [3, 1]
    second_doc = text_ids(qwen_tokenizer, "d2")
    assert batch.doc_ids[1, -tokens.n_mem - 1 - len(second_doc) : -tokens.n_mem - 1].tolist() == second_doc


def test_e2e_batch_masks_candidates_and_positives(qwen_tokenizer, tokens):
    rows = [QuestionRow("q1?", ("a", "b", "c", "d"), "x", ("x",), (2,)), QuestionRow("q2?", ("e", "f"), "y", ("y",))]
    collator = E2ECollator(qwen_tokenizer, tokens, doc_max_length=DOC_LEN, max_len=MAX_LEN, top_k=2)
    batch = collator(rows)
    assert batch.candidate_mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert batch.pos_mask.tolist() == [[False, False, True, False], [False] * 4]
    assert batch.doc_ids.shape[0] == 6 and batch.query_ids.shape[0] == 2
    assert (batch.query_ids[:, -tokens.n_mem:] == torch.tensor(tokens.mem_ids)).all()
    assert (batch.dec_ids == tokens.sep_id).sum(dim=1).tolist() == [2, 2]  # k slot groups, whatever N
    with pytest.raises(ValueError, match="fewer than top_k=3"):
        E2ECollator(qwen_tokenizer, tokens, doc_max_length=DOC_LEN, max_len=MAX_LEN, top_k=3)(rows)


def test_build_collator_cuts_the_decoder_at_the_stages_length(qwen_tokenizer, tokens):
    stage = StageConfig.for_stage(Stage.E2E, max_len=100)
    collator = build_collator(qwen_tokenizer, tokens, ClaraConfig(model=SMALL_MODEL, stage=stage))
    assert collator.max_len == 100 and SMALL_MODEL.max_len != 100
    rows = [QuestionRow("q?", ("a", "b", "c", "d", "e"), "word " * 100, ("x",))]
    assert collator(rows).dec_ids.shape[1] == 100  # the answer is cut to fit


def test_collators_pickle_and_run_in_dataloader_workers(qwen_tokenizer, tokens, official_rows):
    collator = PretrainCollator(qwen_tokenizer, tokens, doc_max_length=DOC_LEN, max_len=MAX_LEN)
    direct = collator(official_rows[:2])
    clone = pickle.loads(pickle.dumps(collator))
    torch.testing.assert_close(clone(official_rows[:2]).dec_ids, direct.dec_ids)
    loader = DataLoader(official_rows[:2], batch_size=2, collate_fn=collator, num_workers=1)
    (batch,) = list(loader)
    torch.testing.assert_close(batch.labels, direct.labels)
    torch.testing.assert_close(batch.doc_ids, direct.doc_ids)


def test_collator_refuses_a_tokenizer_with_other_ids(tokens):
    from clara_model.base import load_tokenizer
    from clara_model.tokens import add_special_tokens

    other = load_tokenizer("tiny")
    add_special_tokens(other, 1)  # <MEM0>, <ENC>, <SEP> get other ids than with 4 memory tokens
    add_special_tokens(other, 4)
    with pytest.raises(ValueError, match="differ"):
        PretrainCollator(other, tokens, doc_max_length=DOC_LEN, max_len=MAX_LEN)
