"""Does CLaRa learn? A synthetic fact corpus through the three stages on the tiny model, within a CPU budget.
Prints one JSON object.

    python bench/learning.py                     # ~10 minutes on 2 busy CPU cores (budget: 15)
    python bench/learning.py --steps 60 40 40    # a quick smoke run

The corpus: made-up devices ("The RS-15 gateway has a maximum pressure of 75 bar. The RS-15 gateway is made of
copper. ...": four attributes each) and one question per attribute. One question of some devices is held out of
every training file (stage 1 still reads those devices' documents, as the real pipeline does); the evaluation
asks the held-out questions. Stage-2 rows carry k = 5 documents (the device's and 4 others), stage-3 rows
N = 10 candidates, so retrieving by chance gives recall@1 = 1/N.

Each stage runs through the pipeline's launcher (`clara_pipeline.training.launch`, the real trainer underneath),
with settings sized for the tiny model: documents of at most 64 tokens compressed 8x (8 memory vectors), steps of
8 samples, a learning rate of 1e-3 in stages 1 and 2 (the paper's 1e-4 barely moves a random-init 64-wide model in
minutes). Stage 3 runs three times from the same stage-2 checkpoint (STAGE3_VARIANTS): as the paper trains it
(e2e.yaml: only the answer's loss reaches the query reasoner, through the differentiable top-k; lr 5e-6), the same
at lr 1e-3, and with this implementation's optional InfoNCE on pos_index (`stage.retrieval_loss_weight=1`). All
are reported; the headline is the paper's.

Reported: stage-1 loss reduction (mean of the first vs the last 10 steps), stage-2 EM / F1 / cover-EM on the
held-out questions (and on as many training questions, to tell "cannot answer" from "did not generalise"), the
same for the untrained model and full-text RAG, stage-3 recall@1/3/5 of each variant against chance and against
the untrained model (fresh adapters: the base model's own states, compared by cosine), wall times. Caveat: the tiny preset's output layer is a frozen random embedding of 151,936 rows, whose
logits cannot exceed about 1.3 in magnitude; its loss cannot fall far below ln(151936) = 11.9 and exact answers
are hard for it at any training length.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One thread per process: on a shared 2-core machine OpenMP's thread hand-off made steps up to 20x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clara_pipeline.training.launch import LaunchSpec, Reporter, launch  # noqa: E402
from clara_pipeline.training.metrics import read_metrics  # noqa: E402
from clara_pipeline.training.stages import CONFIG_DIR  # noqa: E402

BUDGET_S = 15 * 60
KINDS = ["valve", "pump", "sensor", "relay", "gateway", "fan", "meter", "camera", "compressor", "boiler"]
MATERIALS = ["forged brass", "cast iron", "stainless steel", "titanium", "bronze", "aluminium", "carbon fibre",
             "copper"]
CITIES = ["Trondheim", "Lyon", "Graz", "Porto", "Tampere", "Leipzig", "Bilbao", "Gdansk", "Aarhus", "Turin"]
CONSONANTS = "BCDFGHJKLMNPRSTVWXZ"
# (value maker, question, sentence) per attribute
ATTRIBUTES = [
    (lambda r: f"{r.randint(10, 99)} bar", "What is the maximum pressure of the {e}?",
     "The {e} has a maximum pressure of {v}."),
    (lambda r: r.choice(MATERIALS), "What is the {e} made of?", "The {e} is made of {v}."),
    (lambda r: f"Hall {r.choice('ABCDEFGH')}{r.randint(1, 9)}", "Where is the {e} installed?",
     "The {e} is installed in {v}."),
    (lambda r: r.choice(CITIES), "Which city is the {e} built in?", "The {e} is built in {v}."),
]
TINY_SETTINGS = ["model.doc_max_length=64", "model.compression_rate=8", "model.max_len=256"]
BATCH_SETTINGS = ["batch.global_batch_size=8", "batch.micro_batch_size=8", "train.save_every=1000"]
STEP_SETTINGS = ["optim.lr=1e-3", *BATCH_SETTINGS]
# Stage 3 from the same stage-2 checkpoint, three ways; the first is the headline.
STAGE3_VARIANTS = {
    "paper": BATCH_SETTINGS,  # e2e.yaml as shipped: answer loss only, lr 5e-6 constant
    "paper_lr_1e-3": STEP_SETTINGS,  # the same at the learning rate of stages 1 and 2 here
    "infonce": [*STEP_SETTINGS, "stage.retrieval_loss_weight=1.0"],  # + multi-positive InfoNCE on pos_index
}
STAGE3_TITLES = {
    "paper": "the paper's stage 3: only the answer's loss trains the query reasoner, lr 5e-6",
    "paper_lr_1e-3": "the same at lr 1e-3",
    "infonce": "plus InfoNCE on pos_index (stage.retrieval_loss_weight=1), lr 1e-3",
}


def build_corpus(n_devices: int, held_out_devices: int, k: int, n_candidates: int, seed: int) -> dict[str, list]:
    """Return the rows of every file: pretrain, instruction(_eval), end_to_end(_eval), and seen (training
    questions in the stage-2 format, for the memorisation check)."""
    r = random.Random(seed)
    codes: set[str] = set()
    devices = []
    while len(devices) < n_devices:
        code = f"{r.choice(CONSONANTS)}{r.choice(CONSONANTS)}-{r.randint(10, 99)}"
        if code in codes:
            continue
        codes.add(code)
        name = f"{code} {r.choice(KINDS)}"
        facts = []
        for make, question, sentence in ATTRIBUTES:
            value = make(r)
            facts.append((question.format(e=name), value, sentence.format(e=name, v=value)))
        devices.append((name, " ".join(f[2] for f in facts), facts))
    docs = [doc for _, doc, _ in devices]
    held = {i: r.randrange(len(ATTRIBUTES)) for i in r.sample(range(n_devices), held_out_devices)}

    def question_row(doc: str, question: str, answer: str, n: int) -> dict:
        others = r.sample([d for d in docs if d != doc], n - 1)
        position = r.randrange(n)
        others.insert(position, doc)
        return {"question": question, "docs": others, "answer": answer, "pos_index": [position]}

    rows: dict[str, list] = {name: [] for name in ("pretrain", "instruction", "instruction_eval", "end_to_end",
                                                    "end_to_end_eval")}
    for i, (name, doc, facts) in enumerate(devices):
        trained = [f for j, f in enumerate(facts) if held.get(i) != j]
        rows["pretrain"].append({"data_type": "qa", "question": [f[0] for f in trained],
                                 "answers": [f[1] for f in trained], "docs": [doc]})
        rows["pretrain"].append({"data_type": "paraphrase", "question": [],
                                 "answers": [" ".join(f[2] for f in reversed(facts))], "docs": [doc]})
        for j, (question, answer, _) in enumerate(facts):
            split = "_eval" if held.get(i) == j else ""
            rows[f"instruction{split}"].append(question_row(doc, question, answer, k))
            rows[f"end_to_end{split}"].append(question_row(doc, question, answer, n_candidates))
    for name in rows:
        r.shuffle(rows[name])
    return rows


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def train(stage: str, data: Path, out: Path, steps: int, overrides: list[str], init_from: Path | None = None) -> dict:
    """Run one stage through the pipeline's launcher; return its reported metadata and wall time."""
    say = lambda message: print(f"[{stage}] {message}", file=sys.stderr, flush=True)  # noqa: E731
    spec = LaunchSpec(stage=stage, data=(str(data),), output_dir=str(out), init_from=str(init_from) if init_from else None,
                      config_file=str(CONFIG_DIR / f"{stage}.yaml"), overrides=tuple(overrides), max_steps=steps,
                      resume=False, relay_every=max(1, steps // 5))
    started = time.perf_counter()
    result = launch(spec, Reporter(info=say, error=say))
    return {**result.metadata, "wall_s": round(time.perf_counter() - started, 1)}


def window_means(run_dir: Path, key: str = "loss", window: int = 10) -> tuple[float, float]:
    """Mean of `key` over the first and the last `window` steps of a run's metrics."""
    values = [r[key] for r in read_metrics(run_dir / "metrics.jsonl") if key in r]
    window = min(window, len(values) // 2)
    return sum(values[:window]) / window, sum(values[-window:]) / window


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--held-out", type=int, default=40, help="devices with one question held out")
    parser.add_argument("--candidates", type=int, default=10, help="N per stage-3 row (chance recall@1 = 1/N)")
    parser.add_argument("--steps", type=int, nargs=3, default=[250, 300, 200], metavar=("S1", "S2", "S3"),
                        help="optimizer steps of stages 1, 2 and 3 (each stage-3 variant)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "learning")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch  # after the launcher's imports: the trainer runs in its own processes

    from clara_model.evaluate import evaluate_checkpoints
    from clara_model.data import read_rows

    started = time.perf_counter()
    k = 5
    rows = build_corpus(args.devices, args.held_out, k, args.candidates, args.seed)
    data = {name: write_jsonl(args.out / "datasets" / f"{name}.jsonl", value) for name, value in rows.items()}
    s1, s2, s3 = args.steps

    stage1 = train("pretrain", data["pretrain"], args.out / "pretrain", s1,
                   ["model.base_model=tiny", *TINY_SETTINGS, *STEP_SETTINGS])
    stage2 = train("instruct", data["instruction"], args.out / "instruct", s2, STEP_SETTINGS,
                   args.out / "pretrain" / "final")
    stage3 = {name: train("e2e", data["end_to_end"], args.out / f"e2e_{name}", s3, settings,
                          args.out / "instruct" / "final")
              for name, settings in STAGE3_VARIANTS.items()}
    training_s = time.perf_counter() - started

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    held_instruct = read_rows(data["instruction_eval"], "instruct")
    held_e2e = read_rows(data["end_to_end_eval"], "e2e")
    seen = read_rows(data["instruction"], "instruct")[: len(held_instruct)]
    evaluation_started = time.perf_counter()
    common = dict(batch_size=16, max_new_tokens=12, device="cpu")
    instruct = args.out / "instruct" / "final"
    first_variant = args.out / f"e2e_{next(iter(STAGE3_VARIANTS))}" / "final"
    report = evaluate_checkpoints(instruct, first_variant, held_instruct, held_e2e,
                                  systems=["stage2", "untrained_docs", "untrained_retrieval", "full_text_rag"],
                                  **common).results
    retrieval = {name: evaluate_checkpoints(instruct, args.out / f"e2e_{name}" / "final", held_instruct, held_e2e,
                                            systems=["stage3"], **common).results["stage3"]
                 for name in STAGE3_VARIANTS}
    memorised = evaluate_checkpoints(instruct, first_variant, seen, seen, systems=["stage2"], **common)
    evaluation_s = time.perf_counter() - evaluation_started

    first, last = window_means(args.out / "pretrain")
    chance = 1 / args.candidates

    def answers(result) -> dict:
        return {"em": result.em, "f1": result.f1, "cover_em": result.cover_em,
                "prompt_tokens": round(result.prompt_tokens, 1), "decoder_tokens": round(result.decoder_tokens, 1)}

    def recall(result) -> dict:
        return {key: value for key, value in result.recall.items() if key.startswith("recall@")}

    variants = {}
    for name, settings in STAGE3_VARIANTS.items():
        result = retrieval[name]
        variants[name] = {"settings": settings, "steps": stage3[name]["steps"], "recall": recall(result),
                          "ratio_to_chance": result.recall["recall@1"] / chance,
                          "train_recall@1_first_last_10_steps": window_means(args.out / f"e2e_{name}", "recall@1"),
                          "answers": answers(result), "wall_s": stage3[name]["wall_s"]}
    headline = next(iter(STAGE3_VARIANTS))
    figure = retrieval[headline].recall["recall@1"]
    output = {
        "benchmark": "learning",
        "figure": f"stage-3 recall@1 on held-out questions ({headline}: {STAGE3_TITLES[headline]})",
        "value": figure,
        "baseline": "chance: 1 / candidates",
        "baseline_value": chance,
        "ratio": figure / chance,
        "target_ratio": 3.0,
        "target_met": figure / chance >= 3.0,
        # The same retrieval by the untrained model (fresh adapters), measured in this run: on a corpus where the
        # question names its device, cosine over the base model's own states already finds the document.
        "untrained_value": report["untrained_retrieval"].recall["recall@1"],
        "ratio_to_untrained": figure / report["untrained_retrieval"].recall["recall@1"]
        if report["untrained_retrieval"].recall["recall@1"] else None,
        "stage1": {"steps": stage1["steps"], "first_loss_mean": first, "last_loss_mean": last,
                   "loss_reduction": first - last, "relative_reduction": (first - last) / first,
                   "wall_s": stage1["wall_s"]},
        "stage2": {"steps": stage2["steps"], "held_out": answers(report["stage2"]),
                   "training_questions": answers(memorised.results["stage2"]), "wall_s": stage2["wall_s"]},
        "stage3": variants,
        "untrained": {"answers_from_k_docs": answers(report["untrained_docs"]),
                      "retrieval": recall(report["untrained_retrieval"]),
                      "retrieval_ratio_to_chance": report["untrained_retrieval"].recall["recall@1"] / chance},
        "full_text_rag": answers(report["full_text_rag"]),
        "corpus": {"devices": args.devices, "held_out_questions": len(held_instruct),
                   "training_questions": len(rows["instruction"]), "pretrain_rows": len(rows["pretrain"]),
                   "k": k, "candidates": args.candidates},
        "settings": {"model": "tiny (random-init Qwen3, hidden 64, 2 layers, real Qwen3 tokenizer)",
                     "stages_1_2": TINY_SETTINGS + STEP_SETTINGS, "threads": os.environ["OMP_NUM_THREADS"]},
        "wall_s": {"training": round(training_s, 1), "evaluation": round(evaluation_s, 1),
                   "total": round(time.perf_counter() - started, 1), "budget": BUDGET_S},
        "within_budget": time.perf_counter() - started <= BUDGET_S,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
    }
    print(json.dumps(output, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
