"""The CPU base model: a small Qwen3 that the project pretrains itself, so that CPU numbers carry signal.

A random-init model cannot stand in for Qwen3-4B when learning is the question: its frozen tied head caps every
logit near 1.8 over 151,936 rows, so every loss sits at chance whatever the adapters learn. This module trains,
in a few minutes on 2 CPU cores, a small `Qwen3ForCausalLM` (untied head, real Qwen3 tokenizer) on

- reading comprehension: made-up facts (clara_model.synthetic) in 1 to 5 documents, a question about one of
  them, the answer, rendered with the decoder's own ANSWER prompt and chat template. The facts are random, so
  the model learns to answer from its context, not from memory;
- the user's corpus chunks as plain text (their language, their vocabulary).

Only the rows of tokens that occur in that text are scored while training (a sampled-softmax of the seen
vocabulary; the full 151,936-row head costs 40x the rest of this model per token). Rows never seen are then set
to one vector pointing away from the mean final state, so they score below the seen ones and full-vocabulary
predictions match what was trained. The result is an ordinary HF folder (config.json, model.safetensors,
tokenizer files) that `AutoModelForCausalLM.from_pretrained` and `base_model=` load like any local path.

    python -m clara_model.pretrain_base --out artifacts/base_model --corpus artifacts/corpus/chunks.jsonl

Deterministic for the same inputs and settings (one thread order aside: see `train_base`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import random
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase, Qwen3Config, Qwen3ForCausalLM

from clara_model.base import QWEN3_VOCAB_ROWS, load_tokenizer, qwen3_tokenizer_dir
from clara_model.config import TINY_BASE_MODEL
from clara_model.contract import clock
from clara_model.prompts import PromptKind, build_prompt, format_qa_pairs
from clara_model.synthetic import FactWorld

logger = logging.getLogger(__name__)

PRETRAIN_VERSION = "1"  # bump when a change here changes the model a given input produces
INFO_FILE = "clara_base.json"  # what the folder was trained from and how well it reads


@dataclass(frozen=True)
class BaseShape:
    """The small Qwen3's dimensions (Qwen3-4B: hidden 2560, 36 layers, 32 heads / 8 KV heads)."""

    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2  # grouped-query attention, as Qwen3-4B
    head_dim: int = 32

    def config(self, *, vocab_size: int = QWEN3_VOCAB_ROWS, pad_token_id: int = 151643,
               eos_token_id: int | None = 151645) -> Qwen3Config:
        return Qwen3Config(
            vocab_size=vocab_size, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads, head_dim=self.head_dim, max_position_embeddings=4096,
            rope_theta=1_000_000.0, tie_word_embeddings=False,  # an untied head can be confident
            bos_token_id=None, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
        )


@dataclass(frozen=True)
class PretrainSettings:
    """What decides the model, besides the corpus text: all of it goes into the cache key."""

    shape: BaseShape = field(default_factory=BaseShape)
    steps: int = 800  # copying an answer out of the context appears after ~500 steps (loss 1.6 -> 0.9)
    batch_size: int = 16  # sequences per step
    lr: float = 5e-3
    warmup: int = 50
    weight_decay: float = 0.01
    reading_examples: int = 12_800  # reading-comprehension examples drawn (each used about once)
    max_docs: int = 3  # documents per ANSWER example, 1..max_docs
    corpus_fraction: float = 0.25  # share of steps' sequences that are corpus chunks (when there are any)
    max_tokens: int = 640  # longer sequences are cut
    questions_fraction: float = 0.7  # reading examples that ask every fact of one document (stage-1 style)
    answer_weight: float = 2.0  # extra weight of the answer tokens' mean CE
    seed: int = 0


def corpus_texts(chunks_file: Path | None) -> list[str]:
    """Return the `text` of every chunk in a corpus chunks.jsonl (none without a file)."""
    if chunks_file is None:
        return []
    texts = []
    with open(chunks_file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                row = json.loads(line)
                if not isinstance(row.get("text"), str):
                    raise ValueError(f"{chunks_file}:{number}: a corpus chunk needs a string 'text'")
                texts.append(row["text"])
    return texts


def input_digest(texts: Sequence[str], settings: PretrainSettings) -> str:
    """The cache key: the pretraining code version, the settings and the corpus text."""
    h = hashlib.sha256(f"pretrain_base {PRETRAIN_VERSION}\n".encode())
    h.update(json.dumps(asdict(settings), sort_keys=True).encode())
    for text in texts:
        h.update(hashlib.sha256(text.encode()).digest())
    return h.hexdigest()


@dataclass
class Example:
    ids: list[int]
    answer_start: int  # positions >= this are the answer (for reading accuracy); len(ids) for plain text


def reading_example(tokenizer: PreTrainedTokenizerBase, world: FactWorld, r: random.Random, max_docs: int) -> Example:
    """One ANSWER-prompt example over 1..max_docs made-up documents (the asked one at a random position)."""
    docs = world.documents(r.randint(1, max_docs))
    doc = r.choice(docs)
    fact = r.choice(doc.facts)
    prompt = build_prompt(tokenizer, PromptKind.ANSWER, slots="\n".join(d.text for d in docs),
                          question=fact.question, answer=fact.answer)
    prompt_ids = tokenizer(prompt.prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(prompt.answer, add_special_tokens=False)["input_ids"]
    return Example(prompt_ids + answer_ids, len(prompt_ids))


def questions_example(tokenizer: PreTrainedTokenizerBase, world: FactWorld, r: random.Random) -> Example:
    """One stage-1 style example: a made-up document, then every fact of it asked and answered (dense copying)."""
    doc = world.document()
    facts = list(doc.facts)
    r.shuffle(facts)
    answer = format_qa_pairs([f.question for f in facts], [f.answer for f in facts])
    prompt = build_prompt(tokenizer, PromptKind.PRETRAIN_QA, slots=doc.text, answer=answer)
    prompt_ids = tokenizer(prompt.prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(prompt.answer, add_special_tokens=False)["input_ids"]
    return Example(prompt_ids + answer_ids, len(prompt_ids))


def build_examples(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], settings: PretrainSettings,
                   *, seed: int, n_reading: int) -> tuple[list[Example], list[Example]]:
    """Return (reading examples, corpus examples); the reading world is seeded by `seed`."""
    r = random.Random(seed)
    world = FactWorld(seed)
    reading = [questions_example(tokenizer, world, r) if r.random() < settings.questions_fraction
               else reading_example(tokenizer, world, r, settings.max_docs) for _ in range(n_reading)]
    corpus = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) >= 2:
            corpus.append(Example(ids[: settings.max_tokens], len(ids)))
    return reading, corpus


def _batch(examples: Sequence[Example], pad_id: int, max_tokens: int
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids [B, L], attention mask, targets (-100 on padding) and the answer positions' mask."""
    rows = [e.ids[:max_tokens] for e in examples]
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    answer = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (row, example) in enumerate(zip(rows, examples)):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        answer[i, example.answer_start : len(row)] = True
    targets = ids.masked_fill(mask == 0, -100)
    return ids, mask, targets, answer


@torch.no_grad()
def reading_accuracy(model: Qwen3ForCausalLM, examples: Sequence[Example], pad_id: int) -> dict[str, float]:
    """Teacher-forced answer accuracy and CE over the full vocabulary on held-out reading examples (exact: every
    answer token right)."""
    model.eval()
    exact, token_hits, tokens, ce_sum = 0, 0, 0, 0.0
    for start in range(0, len(examples), 16):
        chunk = examples[start:start + 16]
        ids, mask, _, _ = _batch(chunk, pad_id, 10_000)
        states = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        for i, example in enumerate(chunk):
            # the answer's content tokens (the end-of-turn tokens after them are template)
            positions = torch.arange(example.answer_start - 1, len(example.ids) - 1)
            target = ids[i, positions + 1]
            logits = states[i, positions] @ model.lm_head.weight.T
            predicted = logits.argmax(-1)
            ce_sum += float(F.cross_entropy(logits.float(), target, reduction="sum"))
            hits = predicted == target
            token_hits += int(hits.sum())
            tokens += len(target)
            exact += int(hits.all())
    model.train()
    return {"exact": exact / len(examples), "token_accuracy": token_hits / tokens, "answer_ce": ce_sum / tokens}


def train_base(texts: Sequence[str], settings: PretrainSettings, *, log_every: int = 50) -> tuple[Qwen3ForCausalLM, dict]:
    """Pretrain the small Qwen3 on reading examples and `texts`; return it and what was measured."""
    tokenizer = load_tokenizer(TINY_BASE_MODEL)
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    started = time.perf_counter()
    n_corpus_steps = settings.corpus_fraction if texts else 0.0
    # Each reading example is used about once: never draw more than the steps can read.
    n_reading = min(settings.reading_examples, settings.steps * settings.batch_size)
    reading, corpus = build_examples(tokenizer, texts, settings, seed=settings.seed, n_reading=n_reading)
    # Held out: other made-up facts, never trained on.
    held_out_world, held_r = FactWorld(settings.seed + 10_007), random.Random(settings.seed + 10_007)
    held_out = [reading_example(tokenizer, held_out_world, held_r, settings.max_docs) for _ in range(200)]

    # The seen vocabulary: every token of the training text, the chat template and the end-of-turn tokens.
    seen = {t for e in (*reading, *corpus, *held_out) for t in e.ids}
    seen.update(tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>", "<|im_start|>"]))
    rows = torch.tensor(sorted(seen))
    remap = torch.full((QWEN3_VOCAB_ROWS,), -100, dtype=torch.long)
    remap[rows] = torch.arange(len(rows))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        # Trained over the seen vocabulary only (a few thousand rows, not 151,936): the embedding, the head and
        # Adam's state over the full rows cost more per step than the whole transformer at this size.
        compact = Qwen3ForCausalLM(settings.shape.config(vocab_size=len(rows), pad_token_id=int(remap[pad_id]),
                                                         eos_token_id=None))
        compact.train()
        optimizer = torch.optim.AdamW(compact.parameters(), lr=settings.lr, betas=(0.9, 0.95),
                                      weight_decay=settings.weight_decay)
        r = random.Random(settings.seed)
        order = list(range(len(reading)))
        r.shuffle(order)
        cursor = 0
        history = []
        for step in range(settings.steps):
            lr = settings.lr * min(1.0, (step + 1) / settings.warmup) * (
                0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / settings.steps)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            n_corpus = round(settings.batch_size * n_corpus_steps) if corpus else 0
            batch = [corpus[r.randrange(len(corpus))] for _ in range(n_corpus)]
            for _ in range(settings.batch_size - n_corpus):
                batch.append(reading[order[cursor % len(order)]])
                cursor += 1
            ids, mask, targets, answer = _batch(batch, pad_id, settings.max_tokens)
            logits = compact(input_ids=remap[ids], attention_mask=mask).logits[:, :-1]  # [B, L-1, seen]
            shifted = targets[:, 1:]
            keep = shifted != -100
            token_ce = F.cross_entropy(logits[keep], remap[shifted[keep]], reduction="none")  # [T]
            # Every token, plus the answers once more: answering from the context is what this model is for,
            # and the answer tokens are a few percent of the text.
            loss = token_ce.mean() + settings.answer_weight * token_ce[answer[:, 1:][keep]].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(compact.parameters(), 1.0)
            optimizer.step()
            if step % log_every == 0 or step == settings.steps - 1:
                value = loss.item()
                history.append({"step": step, "loss": round(value, 4)})
                elapsed = time.perf_counter() - started
                eta = elapsed / (step + 1) * (settings.steps - step - 1)
                logger.info("base pretraining step %d/%d  loss %.3f  elapsed %s  ETA %s", step + 1, settings.steps,
                            value, clock(elapsed), clock(eta))
        model = _expand_vocabulary(compact, settings.shape.config(), rows, remap, corpus or reading, pad_id)

    measured = {
        "seen_vocabulary": len(rows),
        "reading_examples": len(reading), "corpus_chunks": len(corpus),
        "held_out_reading": reading_accuracy(model, held_out, pad_id),
        "train_seconds": round(time.perf_counter() - started, 1),
        "loss_history": history,
    }
    return model, measured


@torch.no_grad()
def _expand_vocabulary(compact: Qwen3ForCausalLM, config: Qwen3Config, rows: torch.Tensor, remap: torch.Tensor,
                       examples: Sequence[Example], pad_id: int) -> Qwen3ForCausalLM:
    """The compact model with Qwen3's 151,936 rows: seen rows as trained; unseen input rows drawn from the seen
    rows' mean and spread (a realistic norm, should a user's text bring one); unseen head rows all one vector
    pointing away from the mean final state, at the seen rows' mean norm, so that none of them can win."""
    model = Qwen3ForCausalLM(config)
    state = {k: v for k, v in compact.state_dict().items() if k not in ("model.embed_tokens.weight", "lm_head.weight")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) == {"model.embed_tokens.weight", "lm_head.weight"}, (missing, unexpected)
    generator = torch.Generator().manual_seed(0)
    embed = compact.model.embed_tokens.weight
    full = embed.mean(0) + embed.std(0) * torch.randn(config.vocab_size, embed.size(1), generator=generator)
    full[rows] = embed
    model.model.embed_tokens.weight.copy_(full)

    compact.eval()
    ids, mask, _, _ = _batch(list(examples[:64]), pad_id, 512)
    states = compact.model(input_ids=remap[ids], attention_mask=mask).last_hidden_state[mask.bool()]
    direction = F.normalize(states.mean(0), dim=0)
    head = compact.lm_head.weight
    full_head = (-direction * head.norm(dim=1).mean()).expand(config.vocab_size, -1).clone()
    full_head[rows] = head
    model.lm_head.weight.copy_(full_head)
    model.train()
    return model


def build_base_model(out: Path, texts: Sequence[str], settings: PretrainSettings | None = None) -> dict:
    """Pretrain into `out` (staging folder, then rename) unless it already holds the model of these inputs.

    Returns the folder's info (INFO_FILE): the input digest, settings, measurements, weights digest.
    """
    settings = settings or PretrainSettings()
    digest = input_digest(texts, settings)
    info_path = out / INFO_FILE
    if info_path.exists():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if info.get("input_digest") == digest:
            logger.info("base model in %s is up to date", out)
            return {**info, "reused": True}
    model, measured = train_base(texts, settings)
    staging = out.with_name(out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.generation_config.do_sample = False
    model.save_pretrained(staging)  # config.json, generation_config.json, model.safetensors
    for source in qwen3_tokenizer_dir().iterdir():  # the real Qwen3 tokenizer, so the folder is self-contained
        if source.is_file():
            shutil.copy2(source, staging / source.name)
    weights = hashlib.sha256((staging / "model.safetensors").read_bytes()).hexdigest()
    info = {"input_digest": digest, "weights_sha256": weights, "pretrain_version": PRETRAIN_VERSION,
            "settings": asdict(settings), **measured}
    (staging / INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return {**info, "reused": False}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, help="corpus chunks.jsonl (text field) to read as plain text")
    parser.add_argument("--steps", type=int, default=PretrainSettings.steps)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    info = build_base_model(args.out, corpus_texts(args.corpus), PretrainSettings(steps=args.steps))
    print(json.dumps({k: v for k, v in info.items() if k != "loss_history"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
