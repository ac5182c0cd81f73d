"""Does CLaRa learn what the paper says it learns? Every system on documents no model has ever seen. One JSON object.

    python bench/learning.py            # the full benchmark (budget: 15 minutes on 2 CPU cores, base included)
    python bench/learning.py --quick    # a smoke run of every step (a few minutes; its numbers mean little)

The documents are made-up equipment (clara_model.synthetic.FactWorld: a code, a kind, four to six random facts,
in English or Chinese), so a question about one can only be answered by reading it. Three disjoint worlds of
documents, from other seeds than the CPU base's own pretraining text and with their device codes kept apart:

- training documents: stage 1 reads them (a QA row and a paraphrase row each), stage 2 and the text baselines
  train on questions about them, with k documents per question;
- held-out documents: every evaluation question is about one of them, among k - 1 other held-out documents.
  No training file holds them or their devices, and the base's pretraining text (another seed) could hold one
  of their facts only by chance: every value is drawn at random;
- retrieval documents (Chinese) for stage 3, whose questions are in English and name the device by its colour,
  material, kind and city, never by its code: "What is the power draw of the red titanium pump made in Lyon?"
  against "…泵的外壳是红色的。…的材料是钛合金。…的制造城市是里昂。…的功率为350瓦。". The question and its
  document share no word (no token longer than one character; a lone letter such as the D of "Dalian" and of a
  hall "D1" may recur), so lexical overlap cannot retrieve it (the untrained model's recall@1 is measured and
  must stay within 2x chance), while the mapping (48 words and their translations) can be learned and carries
  over to held-out devices.

Systems, all on the same CPU base (`clara_model.pretrain_base`, cached in --out) and the same held-out rows:

| system | what |
|---|---|
| `untrained` | the base with fresh CLaRa adapters, reading the k compressed documents |
| `closed_book` | a LoRA decoder adapter trained on the training questions without documents |
| `full_text_base` | the base itself (no adapter) reading the k documents as plain text |
| `full_text_rag` | a LoRA decoder adapter trained with the k documents as plain text |
| `clara_stage2_r{4,16}` | CLaRa stages 1 + 2 at compression rates 4 and 16 (+ 32 with --rate 32) |
| `clara_stage3_*` | stage 3 from the rate-4 stage-2 checkpoint: the paper's recipe (answer loss only, tau 0.02), tau 0.2, and tau 0.02 + the InfoNCE term on pos_index |

Stage 1 is reported as the document-conditioned gain on held-out documents: the answer CE of the stage-1 QA rows
with another row's memory vectors minus the CE with the row's own (nats; > 0 means the answer comes through the
memory). Stages run through the pipeline's launcher (the real trainer, one process each, two at a time); the text
adapters train in this process with peft, on the same prompts (the decoder's ANSWER prompt).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One thread per process: two trainers run side by side on the 2 cores (OpenMP's hand-off between busy cores
# made steps up to 20x slower).
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clara_model.synthetic import FactWorld  # noqa: E402
from clara_pipeline.training.metrics import read_metrics  # noqa: E402
from clara_pipeline.training.stages import CONFIG_DIR  # noqa: E402

BUDGET_S = 15 * 60
DOC_MAX_LENGTH = 96  # every FactWorld document fits (English at most ~97 tokens, Chinese ~90)
RETRIEVAL_ATTRIBUTES = ("colour", "material", "city")  # how a stage-3 question names its device
RETRIEVAL_ASKED = ("pressure", "power", "year", "location")  # what it asks about it
ASKED_EN = {"pressure": "maximum pressure", "power": "power draw", "year": "service year", "location": "location"}


@dataclass(frozen=True)
class Sizes:
    """How much of everything: the full benchmark and the smoke run."""

    train_docs: int = 1600
    held_docs: int = 160
    k: int = 3  # documents per stage-2 question
    retrieval_train: int = 800
    retrieval_held: int = 160
    candidates: int = 8  # N per stage-3 row: chance recall@1 = 1/N
    top_k: int = 2  # documents the stage-3 decoder reads
    batch: int = 16
    stage1_steps: int = 150
    stage2_steps: int = 200
    stage3_steps: int = 100
    text_steps: int = 200


QUICK = Sizes(train_docs=160, held_docs=40, retrieval_train=64, retrieval_held=40, stage1_steps=12, stage2_steps=12,
              stage3_steps=8, text_steps=12)
STEP_SETTINGS = ["optim.lr=1e-3", "train.save_every=100000", "log.every=10"]
STAGE3_VARIANTS = {  # from the same stage-2 checkpoint; the first is the paper's recipe (recipes/e2e_paper.yaml)
    "paper": ["stage.topk_temperature=0.02", "stage.retrieval_loss_weight=0"],
    "tau_0.2": ["stage.topk_temperature=0.2", "stage.retrieval_loss_weight=0"],
    "infonce": ["stage.topk_temperature=0.02", "stage.retrieval_loss_weight=1.0"],  # e2e.yaml's default
}
STAGE3_TITLES = {
    "paper": "the paper's recipe: only the answer's loss trains the query reasoner, through the top-k (tau 0.02)",
    "tau_0.2": "the same with the top-k softmax at tau 0.2",
    "infonce": "tau 0.02 plus the multi-positive InfoNCE on pos_index (stage.retrieval_loss_weight=1; e2e.yaml)",
}


# -- data --------------------------------------------------------------------------------------------------------


def _worlds(seed: int, sizes: Sizes) -> dict[str, list]:
    """The documents of the three worlds, with device codes distinct across all of them."""
    held = FactWorld(seed * 1000 + 202)
    held_docs = held.documents(sizes.held_docs)
    train = FactWorld(seed * 1000 + 101, reserved_codes=held.codes)
    train_docs = train.documents(sizes.train_docs)
    asked = lambda r: [*RETRIEVAL_ATTRIBUTES, r]  # noqa: E731
    r = random.Random(seed)
    retrieval = FactWorld(seed * 1000 + 303, reserved_codes=held.codes | train.codes)
    retrieval_train = [retrieval.document("zh", attributes=asked(r.choice(RETRIEVAL_ASKED)))
                       for _ in range(sizes.retrieval_train)]
    retrieval_held = [retrieval.document("zh", attributes=asked(r.choice(RETRIEVAL_ASKED)))
                      for _ in range(sizes.retrieval_held)]
    return {"train": train_docs, "held": held_docs, "retrieval_train": retrieval_train,
            "retrieval_held": retrieval_held}


def _question_row(doc, fact, pool: Sequence, n: int, r: random.Random, question: str | None = None) -> dict:
    """A stage-2/3 row: the question, its document among n - 1 others of `pool` at a random place."""
    others = [d.text for d in r.sample([d for d in pool if d is not doc], n - 1)]
    position = r.randrange(n)
    others.insert(position, doc.text)
    return {"question": question or fact.question, "docs": others, "answer": fact.answer, "pos_index": [position]}


def retrieval_question(doc) -> tuple[str, object]:
    """The English question about a Chinese retrieval document, naming it by colour, material, kind and city."""
    by_name = {f.attribute: f for f in doc.facts}
    asked = by_name[next(name for name in by_name if name not in RETRIEVAL_ATTRIBUTES)]
    question = (f"What is the {ASKED_EN[asked.attribute]} of the {by_name['colour'].value_en} "
                f"{by_name['material'].value_en} {doc.kind[0]} made in {by_name['city'].value_en}?")
    return question, asked


def build_rows(seed: int, sizes: Sizes) -> dict[str, list]:
    """Every file's rows: pretrain (stage 1), instruct / instruct_eval (stage 2 and the text baselines),
    e2e / e2e_eval (stage 3), pretrain_eval (the stage-1 gain: QA rows of held-out documents)."""
    worlds = _worlds(seed, sizes)
    r = random.Random(seed)
    rows: dict[str, list] = {name: [] for name in ("pretrain", "pretrain_eval", "instruct", "instruct_eval", "e2e",
                                                    "e2e_eval")}
    for doc in worlds["train"]:
        rows["pretrain"].append({"data_type": "qa", "question": [f.question for f in doc.facts],
                                 "answers": [f.answer for f in doc.facts], "docs": [doc.text]})
        facts = list(doc.facts)
        r.shuffle(facts)
        restated = (" " if doc.lang == "en" else "").join(f.sentence for f in facts)
        rows["pretrain"].append({"data_type": "paraphrase", "question": [], "answers": [restated], "docs": [doc.text]})
        for fact in r.sample(doc.facts, 2):
            rows["instruct"].append(_question_row(doc, fact, worlds["train"], sizes.k, r))
    for doc in worlds["held"]:
        rows["pretrain_eval"].append({"data_type": "qa", "question": [f.question for f in doc.facts],
                                      "answers": [f.answer for f in doc.facts], "docs": [doc.text]})
        rows["instruct_eval"].append(_question_row(doc, r.choice(doc.facts), worlds["held"], sizes.k, r))
    for split, name in (("retrieval_train", "e2e"), ("retrieval_held", "e2e_eval")):
        for doc in worlds[split]:
            question, fact = retrieval_question(doc)
            rows[name].append(_question_row(doc, fact, worlds[split], sizes.candidates, r, question=question))
    for name in ("pretrain", "instruct", "e2e"):
        r.shuffle(rows[name])
    return rows


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


# -- CLaRa stages, through the pipeline's launcher ----------------------------------------------------------------

_PORTS = iter(range(29611, 29700))
_PORT_LOCK = threading.Lock()


def train_stage(stage: str, data: Path, out: Path, steps: int, overrides: Sequence[str],
                init_from: Path | None = None) -> dict:
    """Run one stage through the pipeline's launcher (standalone, in its own process, so that two can run at once:
    the launcher forwards signals, which only a main thread can do); return its steps, wall time and loss curve.

    Raises:
        RuntimeError: when the stage fails, with the end of its log.
    """
    with _PORT_LOCK:
        port = next(_PORTS)
    command = [sys.executable, "-m", "clara_pipeline.training.launch", "--stage", stage, "--data", str(data),
               "--output", str(out), "--config", str(CONFIG_DIR / f"{stage}.yaml"), "--max-steps", str(steps),
               "--no-resume", "--master-port", str(port), "--relay-every", str(max(1, steps // 4))]
    if init_from:
        command += ["--init-from", str(init_from)]
    for override in overrides:
        command += ["--set", override]
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{out.name}.launch.log", "w", encoding="utf-8") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if done.returncode:
        tail = (out.parent / f"{out.name}.launch.log").read_text(encoding="utf-8").splitlines()[-15:]
        raise RuntimeError(f"{stage} in {out} failed ({done.returncode}):\n" + "\n".join(tail))
    records = [r for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    print(f"[{out.parent.name}/{out.name}] {len(records)} steps in {time.perf_counter() - started:.0f} s",
          file=sys.stderr, flush=True)
    return {"steps": len(records), "wall_s": round(time.perf_counter() - started, 1), "loss_curve": loss_curve(out)}


def loss_curve(run_dir: Path) -> list[list[float]]:
    """A run's loss curve from its metrics.jsonl (see `binned`)."""
    return binned([(r["step"], r["loss"]) for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r])


def binned(points: Sequence[tuple[int, float]], bins: int = 8) -> list[list[float]]:
    """[last step, mean loss] of `bins` consecutive runs of (step, loss) points."""
    size = max(1, math.ceil(len(points) / bins))
    return [[points[min(i + size, len(points)) - 1][0],
             round(sum(loss for _, loss in points[i:i + size]) / len(points[i:i + size]), 4)]
            for i in range(0, len(points), size)]


# -- text baselines: a LoRA decoder adapter on plain-text prompts, in this process ----------------------------------


def text_prompts(tokenizer, rows: Sequence[dict], *, with_docs: bool, doc_max_length: int = DOC_MAX_LENGTH
                 ) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, answer ids) per row: the decoder's ANSWER prompt with the documents' text, or with none."""
    from clara_model.prompts import PromptKind, build_prompt

    out = []
    for row in rows:
        docs = []
        for doc in row["docs"] if with_docs else []:
            ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
            docs.append(tokenizer.decode(ids[:doc_max_length]))  # the window the compressor sees
        prompt = build_prompt(tokenizer, PromptKind.ANSWER, slots="\n".join(docs), question=row["question"],
                              answer=row["answer"])
        out.append((tokenizer(prompt.prompt, add_special_tokens=False)["input_ids"],
                    tokenizer(prompt.answer, add_special_tokens=False)["input_ids"]))
    return out


def train_text_adapter(base: Path, rows: Sequence[dict], *, with_docs: bool, steps: int, batch: int, seed: int):
    """A LoRA adapter (r 16 on every linear layer, as CLaRa's) trained on answer tokens; return (model,
    tokenizer, loss curve, seconds). The same learning rate and steps as the CLaRa stages."""
    import torch
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from clara_model.base import load_tokenizer
    from clara_model.head import SharedRowHead

    started = time.perf_counter()
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(str(base))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                           LoraConfig(r=16, lora_alpha=32, lora_dropout=0.1, target_modules="all-linear"))
    examples = text_prompts(tokenizer, rows, with_docs=with_docs)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, betas=(0.9, 0.95),
                                  weight_decay=0.0)
    r = random.Random(seed)
    order = list(range(len(examples)))
    r.shuffle(order)
    pad = tokenizer.pad_token_id
    backbone, head = model.get_base_model().model, model.get_base_model().lm_head
    shared = SharedRowHead.detect(head)
    losses = []
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:  # the stages' schedule: 3% warmup, cosine to 10%
            warm = max(1, round(0.03 * steps))
            group["lr"] = 1e-3 * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        chunk = [examples[order[(step * batch + i) % len(order)]] for i in range(batch)]
        width = max(len(p) + len(a) for p, a in chunk)
        ids = torch.full((batch, width), pad, dtype=torch.long)
        labels = torch.full((batch, width), -100, dtype=torch.long)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for i, (p, a) in enumerate(chunk):
            ids[i, : len(p) + len(a)] = torch.tensor(p + a)
            labels[i, len(p): len(p) + len(a)] = torch.tensor(a)
            mask[i, : len(p) + len(a)] = 1
        # The backbone's states (LoRA active), then the loss at the answer positions only: full-vocabulary logits
        # at every position would cost more than the whole step (the CPU base's head is 151,936 x 128).
        states = backbone(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]  # [B, L-1, H]
        targets = labels[:, 1:]
        keep = targets != -100
        loss = (shared.cross_entropy(states[keep], targets[keep]) if shared is not None
                else F.cross_entropy(head(states[keep]).float(), targets[keep]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    curve = binned(list(enumerate(losses, 1)))
    return model.eval(), tokenizer, curve, round(time.perf_counter() - started, 1)


def evaluate_text(model, tokenizer, rows: Sequence[dict], *, with_docs: bool, batch: int = 16,
                  max_new_tokens: int = 16) -> dict:
    """Greedy answers of a text model (peft or plain) to the rows; scored like every CLaRa system."""
    import torch

    from clara_model.metrics import count_flags, flag_predictions, score_answers

    prompts = [p for p, _ in text_prompts(tokenizer, rows, with_docs=with_docs)]
    eos = sorted({tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")})
    predictions = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch):
            chunk = prompts[start:start + batch]
            width = max(len(p) for p in chunk)
            ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, p in enumerate(chunk):  # left padding: generation starts where every prompt ends
                ids[i, width - len(p):] = torch.tensor(p)
                mask[i, width - len(p):] = 1
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                                 eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
            predictions += [t.strip() for t in tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)]
    scores = score_answers(predictions, [[row["answer"]] for row in rows])
    empty, degenerate = count_flags(flag_predictions(predictions))
    return {"em": scores["em"], "f1": scores["f1"], "cover_em": scores["cover_em"],
            "decoder_tokens": round(sum(len(p) for p in prompts) / len(prompts), 1),
            "empty_predictions": empty, "degenerate_predictions": degenerate,
            "examples": [{"question": row["question"], "gold": row["answer"], "prediction": p}
                         for row, p in zip(rows[:3], predictions[:3])]}


# -- CLaRa evaluation ----------------------------------------------------------------------------------------------


def document_conditioned_gain(checkpoint: Path, rows: Sequence[dict], batch: int = 16) -> dict:
    """Stage 1 on held-out documents: answer CE of the QA rows with another row's memory minus with their own."""
    import torch

    from clara_model.checkpoint import load_checkpoint
    from clara_model.collate import PretrainCollator
    from clara_model.config import Adapter
    from clara_model.data import PretrainRow, RowKind

    model = load_checkpoint(checkpoint, for_inference=True).model
    collate = PretrainCollator(model.tokenizer, model.tokens, doc_max_length=model.config.model.doc_max_length,
                               max_len=model.config.model.max_len)
    own, other, n = 0.0, 0.0, 0
    with torch.no_grad():
        for start in range(0, len(rows), batch):
            chunk = [PretrainRow(RowKind.QA, row["docs"][0], tuple(row["question"]), tuple(row["answers"]))
                     for row in rows[start:start + batch]]
            if len(chunk) < 2:
                break
            b = collate(chunk)
            memory = model.compress(b.doc_ids, b.doc_mask, Adapter.ENCODER).memory
            own += float(model.decoder_loss(b.dec_ids, b.dec_mask, b.labels, memory, b.docs_per_row, b.label_index))
            other += float(model.decoder_loss(b.dec_ids, b.dec_mask, b.labels, memory.roll(1, 0), b.docs_per_row,
                                              b.label_index))
            n += 1
    return {"ce_own_memory": round(own / n, 4), "ce_other_memory": round(other / n, 4),
            "gain_nats": round((other - own) / n, 4), "rows": n * batch}


def answers(result) -> dict:
    out = {"em": result.em, "f1": result.f1, "cover_em": result.cover_em,
           "decoder_tokens": round(result.decoder_tokens, 1), "empty_predictions": result.empty_predictions,
           "degenerate_predictions": result.degenerate_predictions,
           "examples": [{k: p[k] for k in ("question", "gold", "prediction")} for p in result.predictions[:3]]}
    if result.recall:
        out["recall"] = {k: v for k, v in result.recall.items() if k.startswith("recall@")}
    return out


# -- the benchmark -------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run of every step (small sizes)")
    parser.add_argument("--rate", type=int, action="append", help="compression rates of stage 2 (default 4 16)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "learning")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # Libraries' chatter on stdout (DeepSpeed's "Setting accelerator to CPU" line) goes to stderr: stdout is the
    # JSON object alone.
    with contextlib.redirect_stdout(sys.stderr):
        output = measure(args)
    print(json.dumps(output, indent=2, ensure_ascii=False))
    return 0


def measure(args: argparse.Namespace) -> dict:
    """Train and evaluate every system; return the benchmark's JSON object."""
    sizes = QUICK if args.quick else Sizes()
    rates = args.rate or [4, 16]

    import torch

    from clara_model.data import read_rows
    from clara_model.evaluate import evaluate_checkpoints
    from clara_model.pretrain_base import build_base_model

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    load_at_start = os.getloadavg()[0]  # another job on the 2 cores makes every time here longer
    started = time.perf_counter()
    say = lambda message: print(f"[learning {time.perf_counter() - started:6.0f} s] {message}",  # noqa: E731
                                file=sys.stderr, flush=True)

    # The base: the CPU base without a user corpus, i.e. the shipped reading skill over Qwen3's full vocabulary.
    base_dir = args.out / "base"
    say(f"CPU base (the shipped reading skill; cached in {base_dir})")
    base_info = build_base_model(base_dir, [])
    base_s = time.perf_counter() - started

    rows = build_rows(args.seed, sizes)
    data = {name: write_jsonl(args.out / "datasets" / f"{name}.jsonl", value) for name, value in rows.items()}
    model_settings = [f"model.base_model={base_dir}", f"model.doc_max_length={DOC_MAX_LENGTH}", "model.max_len=512"]
    batch = [f"batch.global_batch_size={sizes.batch}", f"batch.micro_batch_size={sizes.batch}"]
    stage3_batch = [f"batch.global_batch_size={sizes.batch // 2}", f"batch.micro_batch_size={sizes.batch // 2}",
                    f"stage.generation_top_k={sizes.top_k}"]

    def stages_1_2(rate: int) -> dict:
        folder = args.out / f"r{rate}"
        s1 = train_stage("pretrain", data["pretrain"], folder / "pretrain", sizes.stage1_steps,
                         [*model_settings, f"model.compression_rate={rate}", *batch, *STEP_SETTINGS])
        s2 = train_stage("instruct", data["instruct"], folder / "instruct", sizes.stage2_steps,
                         [*batch, *STEP_SETTINGS], folder / "pretrain" / "final")
        return {"stage1": s1, "stage2": s2}

    def stage3(name: str) -> dict:
        return train_stage("e2e", data["e2e"], args.out / f"e2e_{name}", sizes.stage3_steps,
                           [*stage3_batch, *STEP_SETTINGS, *STAGE3_VARIANTS[name]],
                           args.out / f"r{rates[0]}" / "instruct" / "final")

    def text_baselines() -> dict:
        out, started_at = {}, time.perf_counter()
        for name, with_docs in (("closed_book", False), ("full_text_rag", True)):
            model, tokenizer, curve, seconds = train_text_adapter(base_dir, rows["instruct"], with_docs=with_docs,
                                                                  steps=sizes.text_steps, batch=sizes.batch,
                                                                  seed=args.seed)
            out[name] = {**evaluate_text(model, tokenizer, rows["instruct_eval"], with_docs=with_docs),
                         "train_s": seconds, "loss_curve": curve}
        from transformers import AutoModelForCausalLM
        plain = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
        out["full_text_base"] = evaluate_text(plain, tokenizer, rows["instruct_eval"], with_docs=True)
        say(f"text baselines done in {time.perf_counter() - started_at:.0f} s")
        return out

    # Two workers, one core each: A trains rate 4 (stages 1, 2) then two stage-3 variants; B trains the other
    # rates, the text baselines, then the last variant (by then A's stage 2 is long done).
    say(f"training: stages 1 and 2 at rates {rates}, stage 3 ({', '.join(STAGE3_VARIANTS)}) at rate {rates[0]}, "
        "the text baselines")
    training_started = time.perf_counter()
    names = list(STAGE3_VARIANTS)
    trained, trained_e2e, results = {}, {}, {}
    first_ready = threading.Event()

    def worker_a() -> None:
        trained[rates[0]] = stages_1_2(rates[0])
        first_ready.set()
        for name in names[:-1]:
            trained_e2e[name] = stage3(name)

    def worker_b() -> None:
        for rate in rates[1:]:
            trained[rate] = stages_1_2(rate)
        results["text"] = text_baselines()
        first_ready.wait()
        if rates[0] in trained:
            trained_e2e[names[-1]] = stage3(names[-1])

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(worker_a), pool.submit(worker_b)]
        try:
            for future in futures:
                future.result()
        finally:
            first_ready.set()  # a failed worker A must not leave B waiting
    text = results["text"]
    training_s = time.perf_counter() - training_started
    torch.set_num_threads(2)  # evaluation alone: both cores

    say("evaluating the CLaRa checkpoints on the held-out rows")
    evaluation_started = time.perf_counter()
    held_instruct = read_rows(data["instruct_eval"], "instruct")
    held_e2e = read_rows(data["e2e_eval"], "e2e")
    common = dict(batch_size=32, max_new_tokens=16)
    first_e2e = args.out / f"e2e_{next(iter(STAGE3_VARIANTS))}" / "final"
    clara = {}
    gains = {}
    for rate in rates:
        instruct = args.out / f"r{rate}" / "instruct" / "final"
        systems = ["stage2", "closed_book"] + (["untrained_docs", "untrained_retrieval"] if rate == rates[0] else [])
        report = evaluate_checkpoints(instruct, first_e2e, held_instruct, held_e2e, systems=systems, **common).results
        clara[f"clara_stage2_r{rate}"] = {**answers(report["stage2"]), "train": trained[rate]["stage2"]}
        clara[f"clara_stage2_r{rate}"]["closed_book_same_decoder"] = report["closed_book"].em
        if rate == rates[0]:
            clara["untrained"] = answers(report["untrained_docs"])
            clara["untrained_retrieval"] = answers(report["untrained_retrieval"])
        gains[f"r{rate}"] = {**document_conditioned_gain(args.out / f"r{rate}" / "pretrain" / "final",
                                                         rows["pretrain_eval"]),
                             "train": trained[rate]["stage1"]}
    for name in STAGE3_VARIANTS:
        result = evaluate_checkpoints(args.out / f"r{rates[0]}" / "instruct" / "final",
                                      args.out / f"e2e_{name}" / "final", held_instruct, held_e2e,
                                      systems=["stage3"], **common).results["stage3"]
        clara[f"clara_stage3_{name}"] = {**answers(result), "settings": STAGE3_VARIANTS[name],
                                         "title": STAGE3_TITLES[name], "train": trained_e2e[name]}
    evaluation_s = time.perf_counter() - evaluation_started

    chance = 1 / sizes.candidates
    untrained_r1 = clara["untrained_retrieval"]["recall"]["recall@1"]
    stage2 = clara[f"clara_stage2_r{rates[0]}"]["em"]
    rag = text["full_text_rag"]["em"]
    best3 = max(STAGE3_VARIANTS, key=lambda n: clara[f"clara_stage3_{n}"]["recall"]["recall@1"])
    best3_r1 = clara[f"clara_stage3_{best3}"]["recall"]["recall@1"]
    gain = gains[f"r{rates[0]}"]["gain_nats"]
    total = time.perf_counter() - started
    targets = {
        f"stage2_em_r{rates[0]} >= 0.5": {"value": stage2, "met": stage2 >= 0.5},
        "stage2_em >= 0.7 x full_text_rag": {"value": round(stage2 / rag, 3) if rag else None,
                                             "met": bool(rag) and stage2 >= 0.7 * rag},
        "closed_book_em <= 0.1": {"value": text["closed_book"]["em"], "met": text["closed_book"]["em"] <= 0.1},
        "stage1_gain >= 1 nat": {"value": gain, "met": gain >= 1.0},
        "stage3_recall@1 >= 3 x untrained": {"value": round(best3_r1 / untrained_r1, 2) if untrained_r1 else None,
                                             "variant": best3, "met": best3_r1 >= 3 * untrained_r1},
        "untrained_recall@1 <= 2 x chance": {"value": round(untrained_r1 / chance, 2), "met": untrained_r1 <= 2 * chance},
        "within 15 minutes": {"value": round(total), "met": total <= BUDGET_S},
    }
    notes = []
    closed = text["closed_book"]["em"]
    if text["full_text_base"]["em"] <= closed + 0.05 and rag <= closed + 0.05:
        notes.append(f"the base does not read: with the k documents as plain text it scores EM "
                     f"{text['full_text_base']['em']:.3f} (with a trained adapter {rag:.3f}), no better than closed book "
                     f"({closed:.3f}); its own held-out reading is exact "
                     f"{(base_info.get('held_out_reading') or {}).get('exact')}. No system built on it can answer "
                     "from documents, so the answering targets measure the base, not CLaRa")
    if stage2 <= closed + 0.05:
        notes.append(f"stage 2 (EM {stage2:.3f}) is no better than closed book ({closed:.3f}): its answers do not "
                     "come from the documents")
    if gain < 0.2:
        notes.append(f"stage 1's document-conditioned gain is {gain:.3f} nats: the decoder barely uses the memory")
    for name in STAGE3_VARIANTS:
        r1 = clara[f"clara_stage3_{name}"]["recall"]["recall@1"]
        if r1 <= 1.5 * chance:
            notes.append(f"stage 3 '{name}' retrieves at chance level (recall@1 {r1:.3f}, chance {chance:.3f})")
    if total > BUDGET_S:
        notes.append(f"over the {BUDGET_S} s budget ({total:.0f} s): was the machine busy?")
    output = {
        "benchmark": "learning",
        "notes": notes,
        "figure": f"held-out EM of CLaRa stage 2 at rate {rates[0]} (k = {sizes.k} compressed documents)",
        "value": stage2,
        "baseline": "full-text RAG: a LoRA adapter on the same base reading the k documents as text",
        "baseline_value": rag,
        "ratio": round(stage2 / rag, 3) if rag else None,
        "targets": targets,
        "systems": {**text, **clara},
        "stage1_document_conditioned_gain": gains,
        "retrieval": {"chance_recall@1": chance, "untrained_recall@1": untrained_r1, "best_variant": best3},
        "data": {"train_documents": sizes.train_docs, "held_out_documents": sizes.held_docs, "k": sizes.k,
                 "stage1_rows": len(rows["pretrain"]), "stage2_rows": len(rows["instruct"]),
                 "held_out_questions": len(rows["instruct_eval"]), "stage3_rows": len(rows["e2e"]),
                 "stage3_held_out": len(rows["e2e_eval"]), "candidates": sizes.candidates, "top_k": sizes.top_k},
        "settings": {"quick": args.quick, "rates": rates, "batch": sizes.batch, "lr": 1e-3,
                     "steps": {"stage1": sizes.stage1_steps, "stage2": sizes.stage2_steps,
                               "stage3": sizes.stage3_steps, "text_adapters": sizes.text_steps},
                     "doc_max_length": DOC_MAX_LENGTH, "threads_per_process": os.environ["OMP_NUM_THREADS"]},
        "base": {"folder": str(base_dir), "reused": base_info["reused"], "skill": base_info.get("skill"),
                 "held_out_reading": base_info.get("held_out_reading"),
                 "train_seconds": base_info.get("train_seconds")},
        "wall_s": {"base": round(base_s, 1), "training": round(training_s, 1),
                   "evaluation": round(evaluation_s, 1), "total": round(total, 1), "budget": BUDGET_S},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "load_average_1min": {"start": round(load_at_start, 2), "end": round(os.getloadavg()[0], 2)}},
    }
    return output


if __name__ == "__main__":
    sys.exit(main())
