import copy

import pytest

from clara_model.prompts import (
    PARAPHRASE_TEMPLATES,
    SYSTEM_PROMPTS,
    PromptKind,
    build_prompt,
    format_qa_pairs,
)

SLOT = "<MEM0><MEM1><MEM2><MEM3><SEP>"
QWEN_ASSISTANT = "<|im_start|>assistant\n<think>\n\n</think>\n\n"  # hybrid Qwen3 template, enable_thinking=False


def test_answer_prompt_renders_with_the_qwen3_chat_template(qwen_tokenizer):
    rendered = build_prompt(qwen_tokenizer, PromptKind.ANSWER, slots=SLOT * 2, question="Who wrote it?",
                            answer="Jake Phelps")
    assert rendered.prompt == (
        "<|im_start|>system\nYou are a helpful assistant. Your task is to extract relevant information from provided "
        "documents and to answer to questions as briefly as possible.<|im_end|>\n"
        f"<|im_start|>user\nBackground:\n{SLOT}{SLOT}\n\nQuestion:Who wrote it?<|im_end|>\n" + QWEN_ASSISTANT
    )
    assert rendered.answer == "Jake Phelps<|im_end|>\n"


def test_pretrain_qa_prompt_and_target(qwen_tokenizer):
    answer = format_qa_pairs(["Q1?", "Q2?"], ["A1", "A2"])
    assert answer == "Question: Q1?\nAnswer: A1\nQuestion: Q2?\nAnswer: A2"
    rendered = build_prompt(qwen_tokenizer, PromptKind.PRETRAIN_QA, slots=SLOT, answer=answer)
    assert f"<|im_start|>user\nBackground:\n{SLOT}<|im_end|>\n" in rendered.prompt
    assert SYSTEM_PROMPTS[PromptKind.PRETRAIN_QA] in rendered.prompt
    assert rendered.answer == answer + "<|im_end|>\n"


def test_paraphrase_templates(qwen_tokenizer):
    assert len(PARAPHRASE_TEMPLATES) == 13
    assert all(t.count("{docs}") == 1 for t in PARAPHRASE_TEMPLATES)
    rendered = build_prompt(qwen_tokenizer, PromptKind.PARAPHRASE, slots=SLOT, answer="same", template_index=3)
    assert f"These two expressions are equivalent in essence:\n(1) {SLOT}\n(2)<|im_end|>" in rendered.prompt
    assert build_prompt(qwen_tokenizer, PromptKind.PARAPHRASE, slots=SLOT, template_index=16).prompt == \
        build_prompt(qwen_tokenizer, PromptKind.PARAPHRASE, slots=SLOT, template_index=3).prompt


def test_prompt_without_answer_is_the_generation_prompt(qwen_tokenizer):
    rendered = build_prompt(qwen_tokenizer, PromptKind.ANSWER, slots=SLOT, question="q")
    assert rendered.answer is None and rendered.prompt.endswith(QWEN_ASSISTANT)


def test_templates_without_a_system_role_get_it_in_the_user_turn(qwen_tokenizer):
    tokenizer = copy.deepcopy(qwen_tokenizer)
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    rendered = build_prompt(tokenizer, PromptKind.ANSWER, slots=SLOT, question="q", answer="a")
    assert rendered.prompt == f"[user]{SYSTEM_PROMPTS[PromptKind.ANSWER]}\nBackground:\n{SLOT}\n\nQuestion:q[assistant]"
    assert rendered.answer == "a"


def test_a_template_that_moves_the_prompt_is_refused(qwen_tokenizer):
    tokenizer = copy.deepcopy(qwen_tokenizer)
    tokenizer.chat_template = (  # like a thinking model: the generation prompt opens a block the answer turn lacks
        "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}[assistant]<think>{% endif %}"
    )
    with pytest.raises(ValueError, match="label mask"):
        build_prompt(tokenizer, PromptKind.ANSWER, slots=SLOT, question="q", answer="a")
