"""Every decoder prompt CLaRa uses, and the one builder that renders them with the model's chat template.

The texts are the original's, verbatim (reference §2.4), so that checkpoints trained with either read the same
prompts. Documents appear in a prompt only as memory slot groups (`<MEM0>..<MEM{n-1}><SEP>`, one per document),
whose embeddings the model overwrites with the compressed vectors.

A prompt is rendered twice with the same template: without the answer (`add_generation_prompt=True`) and with
the assistant turn appended. The second must start with the first; that is what makes the label mask exact
(everything before the answer is prompt). Templates that break it (e.g. Qwen3 *Thinking* models, which open a
`<think>` block the answer turn closes differently) are refused rather than trained on misaligned labels.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from jinja2.exceptions import TemplateError
from transformers import PreTrainedTokenizerBase


class PromptKind(str, enum.Enum):
    """The three uses of the decoder."""

    PRETRAIN_QA = "pretrain_qa"  # stage 1, data_type "qa": ask and answer questions about one document
    PARAPHRASE = "paraphrase"  # stage 1, data_type "paraphrase": restate one document
    ANSWER = "answer"  # stages 2 and 3, and inference: answer a question from k documents


SYSTEM_PROMPTS = {
    PromptKind.PRETRAIN_QA: (
        "You are a helpful assistant. Given a document, your task is to generate some single questions to cover "
        "all key information of the document and answer them sequentially."
    ),
    PromptKind.PARAPHRASE: (
        "You are a helpful assistant. Your task is follow the instructions to paraphrase the background information."
    ),
    PromptKind.ANSWER: (
        "You are a helpful assistant. Your task is to extract relevant information from provided documents and to "
        "answer to questions as briefly as possible."
    ),
}

# `{docs}` is replaced by the memory slot group(s).
PARAPHRASE_TEMPLATES = (
    "Background: {docs} means the same as",
    "Background: {docs} Can you put the above sentences in your own terms?",
    "Background: {docs} Please provide a reinterpretation of the preceding background text.",
    "These two expressions are equivalent in essence:\n(1) {docs}\n(2)",
    "Background: {docs} is a paraphrase of what?",
    "Background: {docs} Could you give me a different version of the background sentences above?",
    "In other words, background: {docs} is just another way of saying:",
    "You're getting across the same point whether you say background: {docs} or",
    "Background: {docs} After unpacking the ideas in the background information above, we got:",
    "Background: {docs} Please offer a restatement of the background sentences I've just read.",
    "Background: {docs}, which also means:",
    "Strip away the mystery, and you'll find background: {docs} is simply another rendition of:",
    "The essence of background: {docs} is captured again in the following statement:",
)


@dataclass(frozen=True)
class ChatPrompt:
    """A rendered prompt: `prompt` ends where the model starts writing; `answer` is the target text after it
    (the assistant content plus the template's end-of-turn, e.g. `...<|im_end|>\\n`), or None at inference."""

    prompt: str
    answer: str | None


def format_qa_pairs(questions: Sequence[str], answers: Sequence[str]) -> str:
    """Return the stage-1 QA target: `Question: q1\\nAnswer: a1\\nQuestion: q2\\nAnswer: a2...`."""
    return "\n".join(f"Question: {q}\nAnswer: {a}" for q, a in zip(questions, answers, strict=True))


def build_prompt(
    tokenizer: PreTrainedTokenizerBase,
    kind: PromptKind,
    *,
    slots: str,
    question: str = "",
    answer: str | None = None,
    template_index: int = 0,
) -> ChatPrompt:
    """Render the decoder prompt of `kind` around `slots` (one memory slot group per document).

    `question` is used by ANSWER only; `template_index` by PARAPHRASE only. `answer` is the assistant content
    to train on (for PRETRAIN_QA, already formatted by `format_qa_pairs`), or None to render the prompt alone.

    Raises:
        ValueError: when the chat template renders the prompt differently once the answer is appended.
    """
    if kind is PromptKind.PRETRAIN_QA:
        user = f"Background:\n{slots}"
    elif kind is PromptKind.PARAPHRASE:
        user = PARAPHRASE_TEMPLATES[template_index % len(PARAPHRASE_TEMPLATES)].format(docs=slots)
    else:
        user = f"Background:\n{slots}\n\nQuestion:{question}"  # no space after the colon, as trained originally
    messages = _messages(tokenizer, SYSTEM_PROMPTS[kind], user)
    prompt = _render(tokenizer, messages, add_generation_prompt=True)
    if answer is None:
        return ChatPrompt(prompt=prompt, answer=None)
    full = _render(tokenizer, messages + [{"role": "assistant", "content": answer}], add_generation_prompt=False)
    if not full.startswith(prompt):
        raise ValueError(
            f"the chat template of {tokenizer.name_or_path!r} renders the prompt differently once the answer is "
            "appended, so the label mask cannot be built (a thinking-only model?)"
        )
    return ChatPrompt(prompt=prompt, answer=full[len(prompt) :])


def _messages(tokenizer: PreTrainedTokenizerBase, system: str, user: str) -> list[dict[str, str]]:
    try:
        _render(tokenizer, [{"role": "system", "content": system}, {"role": "user", "content": user}], True)
    except TemplateError as error:
        if "System role not supported" not in str(error):
            raise
        # Templates without a system role (Mistral, Gemma): the system text opens the user turn, as originally.
        return [{"role": "user", "content": f"{system}\n{user}"}]
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    # enable_thinking=False: hybrid Qwen3 templates then render an empty <think></think> in both strings;
    # templates without the switch ignore the extra variable.
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt, enable_thinking=False
    )
