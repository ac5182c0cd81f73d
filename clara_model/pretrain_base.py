"""The CPU base model: a small Qwen3 that the project pretrains itself, so that CPU numbers carry signal.

A random-init model cannot stand in for Qwen3-4B when learning is the question: its frozen tied head caps every
logit near 1.8 over 151,936 rows, so every loss sits at chance whatever the adapters learn. The CPU base is a small
`Qwen3ForCausalLM` (untied head, real Qwen3 tokenizer) built in two parts:

1. **The reading skill** (`train_skill`, shipped in `clara_model/weights/reading_skill/`): reading comprehension
   over made-up facts (clara_model.synthetic) in 1 to 3 documents, rendered with the decoder's own ANSWER and
   stage-1 QA prompts and chat template. The facts are random, so the only way to answer is to read the context.
   Copying an answer out of the context appears late (held-out exact 0.06 after 800 steps, 0.455 after 3,000),
   so this part takes about half an hour on 2 cores: it is trained once, by a command, and its weights (a few MB,
   over the ~1,100 tokens it uses) ship with the project, like a tokenizer. `skill.json` records the settings and
   code version that made them; a test fails when they no longer match the code.

       python -m clara_model.pretrain_base skill --out clara_model/weights/reading_skill

2. **The corpus continuation** (`build_base_model`, the `clara_base_model` asset, a minute or two): the skill
   continues on the user's corpus chunks as plain text (their language, their vocabulary) mixed with fresh
   reading examples, so it keeps reading while it learns the corpus's words.

       python -m clara_model.pretrain_base base --out artifacts/base_model --corpus artifacts/corpus/chunks.jsonl

Both train over the seen vocabulary only (a sampled softmax of the tokens their text uses: the full 151,936-row
head costs 40x the rest of this model per token). Rows never seen are then set to one vector pointing away from the
mean final state, so they score below the seen ones and full-vocabulary predictions match what was trained. The
result is an ordinary HF folder (config.json, model.safetensors, tokenizer files) that
`AutoModelForCausalLM.from_pretrained` and `base_model=` load like any local path.

Deterministic for the same inputs and settings on one machine and thread count (BLAS sums may differ in the last
bits with the number of threads).
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
from safetensors.torch import load_file
from transformers import PreTrainedTokenizerBase, Qwen3Config, Qwen3ForCausalLM

from clara_model.base import QWEN3_VOCAB_ROWS, load_tokenizer, qwen3_tokenizer_dir
from clara_model.config import TINY_BASE_MODEL
from clara_model.contract import clock
from clara_model.prompts import PromptKind, build_prompt, format_qa_pairs
from clara_model.synthetic import SYNTHETIC_VERSION, FactWorld

logger = logging.getLogger(__name__)

PRETRAIN_VERSION = "2"  # bump when a change here changes the model a given input produces
INFO_FILE = "clara_base.json"  # what the base folder was trained from and how well it reads
SKILL_DIR = Path(__file__).resolve().parent / "weights" / "reading_skill"
SKILL_FILE = "skill.json"  # what the reading skill was trained with, its vocabulary and how well it reads
WORLD_EXAMPLES = 4000  # reading examples drawn from one made-up world (a question's documents share one)
HELD_OUT_SEED = 10_007  # the made-up world of the held-out reading questions (never trained on)


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
class SkillSettings:
    """The reading skill (trained once, shipped): everything that decides it goes into its digest."""

    shape: BaseShape = field(default_factory=BaseShape)
    steps: int = 3000  # held-out exact reading 0.455 (0.06 after 800 steps, 0.16 after 1,000)
    batch_size: int = 16  # sequences per step
    lr: float = 5e-3
    warmup: int = 50
    weight_decay: float = 0.01
    max_docs: int = 3  # documents per ANSWER example, 1..max_docs
    questions_fraction: float = 0.5  # examples that ask every fact of one document (stage-1 style)
    answer_weight: float = 5.0  # extra weight of the answer tokens' mean CE (2.0 with 0.7 above: exact 0.415)
    max_tokens: int = 640  # longer sequences are cut
    seed: int = 0


@dataclass(frozen=True)
class PretrainSettings:
    """The corpus continuation of the skill: with the corpus text and the skill's weights, the cache key."""

    steps: int = 200  # 0: the skill as it is (also when there is no corpus text)
    batch_size: int = 16
    lr: float = 1e-3  # below the skill's: learn the corpus's words without forgetting how to read
    warmup: int = 20
    weight_decay: float = 0.01
    corpus_fraction: float = 0.5  # share of each step's sequences that are corpus chunks
    max_docs: int = 3
    questions_fraction: float = 0.5  # the skill's mix
    answer_weight: float = 5.0
    max_tokens: int = 640
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


def skill_digest(settings: SkillSettings) -> str:
    """What the shipped skill must have been trained with: the code versions and the settings."""
    h = hashlib.sha256(f"reading skill {PRETRAIN_VERSION} synthetic {SYNTHETIC_VERSION}\n".encode())
    h.update(json.dumps(asdict(settings), sort_keys=True).encode())
    return h.hexdigest()


def input_digest(texts: Sequence[str], settings: PretrainSettings, skill_weights: str = "") -> str:
    """The base's cache key: the pretraining code version, the settings, the skill's weights and the corpus text."""
    h = hashlib.sha256(f"pretrain_base {PRETRAIN_VERSION}\n{skill_weights}\n".encode())
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


def reading_examples(tokenizer: PreTrainedTokenizerBase, n: int, *, seed: int, max_docs: int,
                     questions_fraction: float) -> list[Example]:
    """`n` reading examples of the made-up world `seed` (stage-1 QA style with probability questions_fraction)."""
    r = random.Random(seed)
    examples = []
    for i in range(n):
        if i % WORLD_EXAMPLES == 0:  # a world has ~32,000 device codes: a fresh one every few thousand examples
            world = FactWorld(seed * 1_000_003 + i // WORLD_EXAMPLES)
        examples.append(questions_example(tokenizer, world, r) if r.random() < questions_fraction
                        else reading_example(tokenizer, world, r, max_docs))
    return examples


def held_out_examples(tokenizer: PreTrainedTokenizerBase, n: int = 200, max_docs: int = 3) -> list[Example]:
    """ANSWER examples about documents of a world no pretraining text comes from."""
    world, r = FactWorld(HELD_OUT_SEED), random.Random(HELD_OUT_SEED)
    return [reading_example(tokenizer, world, r, max_docs) for _ in range(n)]


def corpus_examples(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_tokens: int) -> list[Example]:
    corpus = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) >= 2:
            corpus.append(Example(ids[:max_tokens], len(ids)))
    return corpus


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
def reading_accuracy(model: Qwen3ForCausalLM, examples: Sequence[Example], pad_id: int,
                     remap: torch.Tensor | None = None) -> dict[str, float]:
    """Teacher-forced answer accuracy and CE on held-out reading examples (exact: every answer token right).

    `remap` (token id -> row) scores a compact model over its own rows; a token it lacks counts as a miss.
    """
    model.eval()
    exact, token_hits, tokens, ce_sum = 0, 0, 0, 0.0
    for start in range(0, len(examples), 16):
        chunk = examples[start:start + 16]
        ids, mask, _, _ = _batch(chunk, pad_id, 10_000)
        rows = ids if remap is None else remap[ids].clamp(min=0)
        target_rows = ids if remap is None else remap[ids]
        states = model.model(input_ids=rows, attention_mask=mask).last_hidden_state
        for i, example in enumerate(chunk):
            # the answer's tokens, end of turn included (scored at these positions only: the full head is large)
            positions = torch.arange(example.answer_start - 1, len(example.ids) - 1)
            target = target_rows[i, positions + 1]
            scores = model.lm_head(states[i, positions]).float()
            hits = scores.argmax(-1) == target
            known = target >= 0
            ce = F.cross_entropy(scores[known], target[known], reduction="sum") if known.any() else 0.0
            ce_sum += float(ce) + 30.0 * int((~known).sum())  # an unknown token: far below any trained row
            token_hits += int(hits.sum())
            tokens += len(target)
            exact += int(hits.all())
    model.train()
    return {"exact": round(exact / len(examples), 4), "token_accuracy": round(token_hits / tokens, 4),
            "answer_ce": round(ce_sum / tokens, 4)}


def _vocabulary(tokenizer: PreTrainedTokenizerBase, *groups: Sequence[Example]) -> torch.Tensor:
    """The sorted token ids of the examples, the chat template's and the end-of-turn tokens."""
    seen = {t for group in groups for e in group for t in e.ids}
    seen.update(tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>", "<|im_start|>"]))
    return torch.tensor(sorted(seen))


def _remap(rows: torch.Tensor) -> torch.Tensor:
    remap = torch.full((QWEN3_VOCAB_ROWS,), -100, dtype=torch.long)
    remap[rows] = torch.arange(len(rows))
    return remap


def _train(model: Qwen3ForCausalLM, remap: torch.Tensor, draw, *, steps: int, lr: float, warmup: int,
           weight_decay: float, answer_weight: float, max_tokens: int, pad_id: int, what: str,
           log_every: int = 50, evaluate=None, eval_every: int = 0) -> list[dict]:
    """AdamW with warmup and a cosine to 0.1 x lr; `draw(step)` gives the step's examples. Returns the history
    (loss every log_every steps; `evaluate()`'s result every eval_every steps)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay)
    started = time.perf_counter()
    history = []
    for step in range(steps):
        scale = min(1.0, (step + 1) / max(1, warmup)) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for group in optimizer.param_groups:
            group["lr"] = lr * scale
        ids, mask, targets, answer = _batch(draw(step), pad_id, max_tokens)
        logits = model(input_ids=remap[ids], attention_mask=mask).logits[:, :-1]  # [B, L-1, seen]
        shifted = targets[:, 1:]
        keep = shifted != -100
        token_ce = F.cross_entropy(logits[keep], remap[shifted[keep]], reduction="none")  # [T]
        # Every token, plus the answers once more: answering from the context is what this model is for,
        # and the answer tokens are a few percent of the text.
        answer_ce = token_ce[answer[:, 1:][keep]]
        loss = token_ce.mean() + (answer_weight * answer_ce.mean() if answer_ce.numel() else 0.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        last = step == steps - 1
        due = evaluate is not None and eval_every and ((step + 1) % eval_every == 0 or last)
        if step % log_every == 0 or last or due:
            value = loss.item()
            record = {"step": step + 1, "loss": round(value, 4)}
            if due:
                record["held_out_exact"] = evaluate()["exact"]
            history.append(record)
            elapsed = time.perf_counter() - started
            eta = elapsed / (step + 1) * (steps - step - 1)
            logger.info("%s step %d/%d  loss %.3f%s  elapsed %s  ETA %s", what, step + 1, steps, value,
                        f"  held-out exact {record['held_out_exact']:.2f}" if "held_out_exact" in record else "",
                        clock(elapsed), clock(eta))
    return history


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    return tokenizer.convert_tokens_to_ids("<|endoftext|>")


# -- part 1: the reading skill (trained once, shipped) ------------------------------------------------------------


def train_skill(settings: SkillSettings, *, eval_every: int = 250) -> tuple[Qwen3ForCausalLM, torch.Tensor, dict]:
    """Pretrain the reading skill from scratch: return the compact model, its vocabulary (token ids, one per row)
    and what was measured (held-out reading along the way)."""
    tokenizer = load_tokenizer(TINY_BASE_MODEL)
    pad_id = _pad_id(tokenizer)
    started = time.perf_counter()
    reading = reading_examples(tokenizer, settings.steps * settings.batch_size, seed=settings.seed,
                               max_docs=settings.max_docs, questions_fraction=settings.questions_fraction)
    held_out = held_out_examples(tokenizer, max_docs=settings.max_docs)
    rows = _vocabulary(tokenizer, reading)
    remap = _remap(rows)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = Qwen3ForCausalLM(settings.shape.config(vocab_size=len(rows), pad_token_id=int(remap[pad_id]),
                                                       eos_token_id=None))
        order = list(range(len(reading)))
        random.Random(settings.seed).shuffle(order)
        b = settings.batch_size
        history = _train(model, remap, lambda step: [reading[i] for i in order[step * b:(step + 1) * b]],
                         steps=settings.steps, lr=settings.lr, warmup=settings.warmup,
                         weight_decay=settings.weight_decay, answer_weight=settings.answer_weight,
                         max_tokens=settings.max_tokens, pad_id=pad_id, what="reading skill",
                         evaluate=lambda: reading_accuracy(model, held_out[:100], pad_id, remap),
                         eval_every=eval_every)
    measured = {"held_out_reading": reading_accuracy(model, held_out, pad_id, remap),
                "reading_examples": len(reading), "vocabulary": len(rows),
                "train_seconds": round(time.perf_counter() - started, 1), "history": history}
    return model, rows, measured


def save_skill(folder: Path, model: Qwen3ForCausalLM, rows: torch.Tensor, settings: SkillSettings,
               measured: dict) -> dict:
    staging = folder.with_name(folder.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging)
    (staging / "generation_config.json").unlink(missing_ok=True)
    info = {"skill_digest": skill_digest(settings), "pretrain_version": PRETRAIN_VERSION,
            "synthetic_version": SYNTHETIC_VERSION, "settings": asdict(settings),
            "weights_sha256": hashlib.sha256((staging / "model.safetensors").read_bytes()).hexdigest(),
            "vocabulary_ids": rows.tolist(), **measured}
    (staging / SKILL_FILE).write_text(json.dumps(info, indent=1), encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)
    return info


def load_skill(folder: Path = SKILL_DIR) -> tuple[Qwen3ForCausalLM, torch.Tensor, dict]:
    """The shipped reading skill: compact model, vocabulary, info.

    Raises:
        FileNotFoundError: the folder lacks the skill (regenerate it with the command in the message).
    """
    info_path = folder / SKILL_FILE
    if not info_path.exists() or not (folder / "model.safetensors").exists():
        raise FileNotFoundError(f"{folder}: the CPU base's reading skill is missing; make it with "
                                f"`python -m clara_model.pretrain_base skill --out {folder}` (about half an hour "
                                "on 2 cores) or set CLARA_BASE_MODEL to real weights")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() != info.get("weights_sha256"):
        raise ValueError(f"{folder}/model.safetensors is not the file its {SKILL_FILE} describes (damaged or "
                         "replaced); restore it (git checkout) or make the skill again with "
                         "`python -m clara_model.pretrain_base skill`")
    config = Qwen3Config.from_pretrained(folder)
    model = Qwen3ForCausalLM(config)
    missing, unexpected = model.load_state_dict(load_file(folder / "model.safetensors"), strict=False)
    if missing or unexpected:
        raise ValueError(f"{folder}/model.safetensors does not fit its config.json (missing {missing}, unexpected "
                         f"{unexpected}); make the skill again with `python -m clara_model.pretrain_base skill`")
    return model, torch.tensor(info["vocabulary_ids"]), info


# -- part 2: the corpus continuation (the clara_base_model asset) -------------------------------------------------


@torch.no_grad()
def _with_rows(model: Qwen3ForCausalLM, config: Qwen3Config, positions: torch.Tensor, head_fill: torch.Tensor,
               seed: int) -> Qwen3ForCausalLM:
    """`model` over `config`'s vocabulary: its rows land at `positions`; every other input row is drawn from its
    rows' mean and spread (a realistic norm), every other head row is `head_fill`."""
    resized = Qwen3ForCausalLM(config)
    state = {k: v for k, v in model.state_dict().items() if k not in ("model.embed_tokens.weight", "lm_head.weight")}
    missing, unexpected = resized.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) == {"model.embed_tokens.weight", "lm_head.weight"}, (missing, unexpected)
    embed = model.model.embed_tokens.weight
    generator = torch.Generator().manual_seed(seed)
    full = embed.mean(0) + embed.std(0) * torch.randn(config.vocab_size, embed.size(1), generator=generator)
    full[positions] = embed
    head = head_fill.expand(config.vocab_size, -1).clone()
    head[positions] = model.lm_head.weight
    resized.model.embed_tokens.weight.copy_(full)
    resized.lm_head.weight.copy_(head)
    resized.train()
    return resized


def _widen(skill: Qwen3ForCausalLM, skill_rows: torch.Tensor, rows: torch.Tensor, pad_id: int,
           seed: int) -> Qwen3ForCausalLM:
    """The skill over a larger compact vocabulary `rows` (a superset of skill_rows): new head rows at the skill
    head's mean, so no new token is favoured before training."""
    config = Qwen3Config.from_dict({**skill.config.to_dict(), "vocab_size": len(rows),
                                    "pad_token_id": int(torch.searchsorted(rows, pad_id))})
    return _with_rows(skill, config, torch.searchsorted(rows, skill_rows), skill.lm_head.weight.detach().mean(0), seed)


def train_base(texts: Sequence[str], settings: PretrainSettings, *, skill_dir: Path = SKILL_DIR,
               log_every: int = 50) -> tuple[Qwen3ForCausalLM, dict]:
    """The shipped reading skill continued on `texts` (with fresh reading examples) and expanded to Qwen3's
    151,936 rows; return it and what was measured."""
    tokenizer = load_tokenizer(TINY_BASE_MODEL)
    pad_id = _pad_id(tokenizer)
    started = time.perf_counter()
    skill, skill_rows, skill_info = load_skill(skill_dir)
    corpus = corpus_examples(tokenizer, texts, settings.max_tokens)
    steps = settings.steps if corpus else 0
    n_corpus = round(settings.batch_size * settings.corpus_fraction)
    n_reading = settings.batch_size - n_corpus
    # Another made-up world than the skill's (seed + 1), so the continuation reads new facts.
    reading = reading_examples(tokenizer, steps * n_reading, seed=skill_info["settings"]["seed"] + settings.seed + 1,
                               max_docs=settings.max_docs, questions_fraction=settings.questions_fraction)
    held_out = held_out_examples(tokenizer)
    rows = _vocabulary(tokenizer, [Example(skill_rows.tolist(), 0)], reading, corpus)
    remap = _remap(rows)
    history = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        compact = _widen(skill, skill_rows, rows, pad_id, settings.seed)
        if steps:
            r = random.Random(settings.seed)

            def draw(step: int) -> list[Example]:
                return ([corpus[r.randrange(len(corpus))] for _ in range(n_corpus)]
                        + reading[step * n_reading:(step + 1) * n_reading])

            history = _train(compact, remap, draw, steps=steps, lr=settings.lr, warmup=settings.warmup,
                             weight_decay=settings.weight_decay, answer_weight=settings.answer_weight,
                             max_tokens=settings.max_tokens, pad_id=pad_id, what="base pretraining",
                             log_every=log_every)
        model = _expand_vocabulary(compact, skill.config, rows, remap, corpus or reading or held_out, pad_id)
    measured = {
        "seen_vocabulary": len(rows), "reading_examples": len(reading), "corpus_chunks": len(corpus),
        "continuation_steps": steps,
        "skill": {"steps": skill_info["settings"]["steps"], "weights_sha256": skill_info["weights_sha256"],
                  "held_out_reading": skill_info["held_out_reading"]},
        "held_out_reading": reading_accuracy(model, held_out, pad_id),
        "train_seconds": round(time.perf_counter() - started, 1),
        "loss_history": history,
    }
    return model, measured


@torch.no_grad()
def _expand_vocabulary(compact: Qwen3ForCausalLM, config: Qwen3Config, rows: torch.Tensor, remap: torch.Tensor,
                       examples: Sequence[Example], pad_id: int) -> Qwen3ForCausalLM:
    """The compact model with Qwen3's 151,936 rows: seen rows as trained; unseen head rows all one vector pointing
    away from the mean final state, at the seen rows' mean norm, so that none of them can win."""
    config = Qwen3Config.from_dict({**config.to_dict(), "vocab_size": QWEN3_VOCAB_ROWS, "pad_token_id": pad_id,
                                    "eos_token_id": 151645})
    compact.eval()
    ids, mask, _, _ = _batch(list(examples[:64]), pad_id, 512)
    states = compact.model(input_ids=remap[ids], attention_mask=mask).last_hidden_state[mask.bool()]
    away = -F.normalize(states.mean(0), dim=0) * compact.lm_head.weight.norm(dim=1).mean()
    return _with_rows(compact, config, rows, away, seed=0)


def build_base_model(out: Path, texts: Sequence[str], settings: PretrainSettings | None = None, *,
                     skill_dir: Path = SKILL_DIR) -> dict:
    """Continue the reading skill on `texts` into `out` (staging folder, then rename) unless it already holds the
    model of these inputs. Returns the folder's info (INFO_FILE): the input digest, settings, measurements, weights
    digest."""
    settings = settings or PretrainSettings()
    skill_info_path = skill_dir / SKILL_FILE
    skill_weights = (json.loads(skill_info_path.read_text(encoding="utf-8"))["weights_sha256"]
                     if skill_info_path.exists() else "")
    digest = input_digest(texts, settings, skill_weights)
    info_path = out / INFO_FILE
    if info_path.exists():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if info.get("input_digest") == digest:
            logger.info("base model in %s is up to date", out)
            return {**info, "reused": True}
    model, measured = train_base(texts, settings, skill_dir=skill_dir)
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
    commands = parser.add_subparsers(dest="command", required=True)
    skill = commands.add_parser("skill", help="train the reading skill from scratch (about half an hour)")
    skill.add_argument("--out", type=Path, default=SKILL_DIR)
    skill.add_argument("--steps", type=int, default=SkillSettings.steps)
    base = commands.add_parser("base", help="continue the reading skill on a corpus into a base model folder")
    base.add_argument("--out", type=Path, required=True)
    base.add_argument("--corpus", type=Path, help="corpus chunks.jsonl (text field) to read as plain text")
    base.add_argument("--steps", type=int, default=PretrainSettings.steps)
    base.add_argument("--skill", type=Path, default=SKILL_DIR, help="the reading skill's folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "skill":
        settings = SkillSettings(steps=args.steps)
        model, rows, measured = train_skill(settings)
        info = save_skill(args.out, model, rows, settings, measured)
        info.pop("vocabulary_ids")
    else:
        info = build_base_model(args.out, corpus_texts(args.corpus), PretrainSettings(steps=args.steps),
                                skill_dir=args.skill)
        info.pop("loss_history")
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
