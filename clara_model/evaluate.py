"""Evaluation on held-out questions: CLaRa checkpoints next to the baselines the paper compares with.

Systems, each measured the same way (greedy, batched, deterministic; the same rows, metrics and token counts):

| system | model | input |
|---|---|---|
| `stage2` | the instruction-tuned checkpoint | the row's k documents, compressed (stage-2 rows) |
| `stage3` | the end-to-end checkpoint | top-k of the row's N candidates, chosen by its query reasoner (stage-3 rows) |
| `untrained_docs` | the base LLM with fresh adapters: what CLaRa starts from | as `stage2` |
| `untrained_retrieval` | the same untrained model | as `stage3` |
| `full_text_rag` | the same base LLM, no adapter | the row's k documents as plain text in its chat template |
| `closed_book` | the stage-2 checkpoint's decoder | the question alone: the answer prompt without memory slots |

`closed_book` tells whether answers come from the documents: a stage-2 score no better than it means the decoder
learned to answer from the question (or memorised the answers), not to read the memory.

Metrics: EM, token F1 and cover-EM against every gold alias (`clara_model.metrics`), recall@1/3/5 of the
selected candidates against `pos_index` for the retrieval systems, and the number of empty and degenerate
predictions (`metrics.flag_predictions`), which score 0 like wrong answers but say the model does not answer.

Token counts, means per question:
- prompt tokens: what the user sent, the question's tokens (the same for every system on the same rows);
- decoder tokens: what the decoder reads before it writes, the whole rendered prompt: chat template + question +
  k x (M + 1) slot tokens (`<MEM0>..<MEM{M-1}><SEP>` per document) for CLaRa, + the k documents' text for
  full-text RAG, + nothing for closed book;
- answer tokens: what it wrote;
- encoder tokens: what the encoder compressed (documents, plus the question for the query reasoner; documents
  can be compressed once, offline, and reused by every question).

Full-text documents are cut to `doc_max_length` tokens, the window the compressor sees, so both read the same
text. No Dagster here: `clara_pipeline.defs.evaluation` wraps this.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from transformers import GenerationConfig

from clara_model.checkpoint import load_checkpoint
from clara_model.collate import encode_prompts
from clara_model.config import Adapter, AdapterInit, ClaraConfig, ModelConfig, Stage, StageConfig
from clara_model.data import QuestionRow, read_rows
from clara_model.inference import DEFAULT_MAX_NEW_TOKENS, answer, answer_with_retrieval
from clara_model.metrics import count_flags, flag_predictions, score_answers, score_retrieval
from clara_model.modeling import ClaraModel, eval_mode
from clara_model.prompts import PromptKind, build_prompt

logger = logging.getLogger(__name__)

RECALL_KS = (1, 3, 5)
SYSTEMS = ("stage2", "stage3", "untrained_docs", "untrained_retrieval", "full_text_rag", "closed_book")
RETRIEVAL_SYSTEMS = ("stage3", "untrained_retrieval")  # on the stage-3 rows; the others on the stage-2 rows
TITLES = {
    "stage2": "stage-2 CLaRa (k compressed docs)",
    "stage3": "stage-3 CLaRa (retrieves top-k of N)",
    "untrained_docs": "untrained (k compressed docs)",
    "untrained_retrieval": "untrained (retrieves top-k of N)",
    "full_text_rag": "full-text RAG (k docs as text)",
    "closed_book": "closed book (stage-2 decoder, question only)",
}
REPORT_FORMAT = 2  # 1: prompt_tokens was the decoder's prompt, and there were no empty / degenerate counts
_UNTRAINED_INIT = {
    Adapter.ENCODER: AdapterInit.FRESH,
    Adapter.QUERY_REASONER: AdapterInit.COPY_OF_ENCODER,
    Adapter.DECODER: AdapterInit.FRESH,
}


@dataclass
class SystemResult:
    """One system's scores on its rows, and what it produced for each question (token counts: module docstring)."""

    system: str
    rows: int
    em: float
    f1: float
    cover_em: float
    recall: dict[str, float] | None  # "recall@1", ... (retrieval systems; None otherwise)
    prompt_tokens: float | None  # mean question tokens (None in a format-1 report, which did not measure them)
    decoder_tokens: float  # mean tokens of the decoder's input: template, question, slots or documents
    answer_tokens: float  # mean tokens of the generated answer
    encoder_tokens: float  # mean tokens compressed per question (0 without compression)
    seconds: float
    empty_predictions: int = 0  # predictions with no text
    degenerate_predictions: int = 0  # predictions flagged otherwise by metrics.flag_predictions
    predictions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def all_empty(self) -> bool:
        """Whether no prediction has any text: the system wrote nothing, its scores say nothing."""
        return self.rows > 0 and self.empty_predictions == self.rows

    def to_dict(self, *, with_predictions: bool = True) -> dict[str, Any]:
        data = asdict(self)
        data["title"] = TITLES.get(self.system, self.system)
        if not with_predictions:
            data.pop("predictions")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, report_format: int = REPORT_FORMAT) -> SystemResult:
        """Rebuild a result from `to_dict` output; a format-1 result is read as that format meant it."""
        data = {k: v for k, v in data.items() if k != "title"}
        if report_format < 2:
            # Format 1 stored the decoder's prompt as prompt_tokens and prompt + answer as decoder_tokens, and
            # did not count empty predictions: recount them from the stored predictions.
            data["decoder_tokens"], data["prompt_tokens"] = data["prompt_tokens"], None
            data["predictions"] = [dict(p) for p in data.get("predictions", [])]
            flags = flag_predictions([p["prediction"] for p in data["predictions"]])
            for p, flag in zip(data["predictions"], flags):
                if flag is not None:
                    p["flag"] = flag.value
            data["empty_predictions"], data["degenerate_predictions"] = count_flags(flags)
        return cls(**data)


@dataclass
class EvaluationReport:
    """The results of every system evaluated, in `SYSTEMS` order."""

    results: dict[str, SystemResult]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"format": REPORT_FORMAT, "settings": self.settings,
                "systems": {k: r.to_dict() for k, r in self.results.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationReport:
        """Rebuild a report from `to_dict` output (a stored report.json, of this format or format 1)."""
        report_format = data.get("format", 1)
        results = {name: SystemResult.from_dict(value, report_format=report_format)
                   for name, value in data["systems"].items()}
        ordered = [s for s in SYSTEMS if s in results] + [s for s in results if s not in SYSTEMS]
        return cls(results={s: results[s] for s in ordered}, settings=data["settings"])

    def all_empty_systems(self) -> list[str]:
        """Return the systems that wrote nothing for any question (see `SystemResult.all_empty`)."""
        return [name for name, result in self.results.items() if result.all_empty]

    def table(self) -> pd.DataFrame:
        """Return one row per system: rows, scores, recall@1/3/5 (None where not measured), empty and degenerate
        predictions, and mean prompt, decoder and encoder tokens; column names short enough for the asset page."""
        records = []
        for name, r in self.results.items():
            recall = r.recall or {}
            records.append({
                "system": name, "n": r.rows, "EM": r.em, "F1": r.f1, "cover": r.cover_em,
                **{f"R@{k}": recall.get(f"recall@{k}") for k in RECALL_KS},
                "empty": r.empty_predictions, "degen": r.degenerate_predictions,
                "prompt": r.prompt_tokens, "decoder": r.decoder_tokens, "encoder": r.encoder_tokens,
            })
        frame = pd.DataFrame.from_records(records, columns=_TABLE_FORMATS)
        return frame.astype(object).where(frame.notna(), None)  # None, not NaN: Markdown shows it as "-"

    def markdown_table(self, *, legend: bool = True) -> str:
        """Return `table()` as Markdown (scores to 3 decimals, tokens to 1), with a legend under it."""
        text = self.table().to_markdown(index=False, floatfmt=tuple(_TABLE_FORMATS.values()), missingval="-")
        return f"{text}\n\n{TABLE_LEGEND}" if legend else text


_TABLE_FORMATS = {"system": "", "n": "", "EM": ".3f", "F1": ".3f", "cover": ".3f",
                  **{f"R@{k}": ".3f" for k in RECALL_KS}, "empty": "", "degen": "",
                  "prompt": ".1f", "decoder": ".1f", "encoder": ".1f"}
TABLE_LEGEND = (
    "n: questions; cover: cover-EM; R@k: recall@k of the selected candidates; empty, degen: predictions with no "
    "text, or degenerate (no words, one unit repeated, or one answer to most questions). Mean tokens per question: "
    "prompt: the question; decoder: what the decoder reads (chat template + question + k x (M+1) memory slots for "
    "CLaRa, + the k documents' text for full-text RAG, + nothing for closed book); encoder: what was compressed.\n"
    "Systems: " + "; ".join(f"{name}: {title}" for name, title in TITLES.items()) + "."
)


# -- one system ------------------------------------------------------------------------------------------------


def evaluate_with_documents(
    model: ClaraModel, rows: Sequence[QuestionRow], *, system: str = "stage2", batch_size: int = 8,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> SystemResult:
    """Score `model` answering each question from all of its row's documents, compressed (stage-2 style)."""
    started = time.perf_counter()
    predictions = _batched(rows, batch_size, lambda batch: answer(
        model, [r.question for r in batch], [list(r.docs) for r in batch], max_new_tokens=max_new_tokens))
    decoder = [_slot_prompt_tokens(model, r.question, slots=len(r.docs)) for r in rows]
    encoder = [sum(_encoder_tokens(model, doc) for doc in r.docs) for r in rows]
    return _result(system, model, rows, predictions, None, decoder, encoder, time.perf_counter() - started)


def evaluate_with_retrieval(
    model: ClaraModel, rows: Sequence[QuestionRow], *, system: str = "stage3", k: int | None = None,
    batch_size: int = 8, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> SystemResult:
    """Score `model` retrieving the top-k of each row's candidates and answering from them (stage-3 style).

    Raises:
        ValueError: when a row has fewer than k candidates.
    """
    k = k or model.config.stage.generation_top_k
    started = time.perf_counter()
    selected: list[list[int]] = []

    def run(batch: Sequence[QuestionRow]) -> list[str]:
        out = answer_with_retrieval(model, [r.question for r in batch], [list(r.docs) for r in batch], k,
                                    max_new_tokens=max_new_tokens)
        selected.extend(out.selected)
        return out.answers

    predictions = _batched(rows, batch_size, run)
    decoder = [_slot_prompt_tokens(model, r.question, slots=k) for r in rows]
    encoder = [_encoder_tokens(model, r.question) + sum(_encoder_tokens(model, d) for d in r.docs) for r in rows]
    return _result(system, model, rows, predictions, selected, decoder, encoder, time.perf_counter() - started)


@torch.no_grad()
def evaluate_full_text(
    model: ClaraModel, rows: Sequence[QuestionRow], *, system: str = "full_text_rag", batch_size: int = 8,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> SystemResult:
    """Score the base LLM of `model` (no adapter active) answering from the row's documents as plain text.

    The prompt is CLaRa's answer prompt with the documents' text where the memory slots would be.
    """
    started = time.perf_counter()
    prompts = [_full_text_prompt(model, r) for r in rows]
    predictions = _batched(list(range(len(rows))), batch_size,
                           lambda batch: _generate_text(model, [prompts[i] for i in batch], max_new_tokens))
    decoder = [len(_tokens(model, p)) for p in prompts]
    return _result(system, model, rows, predictions, None, decoder, [0] * len(rows), time.perf_counter() - started)


@torch.no_grad()
def evaluate_closed_book(
    model: ClaraModel, rows: Sequence[QuestionRow], *, system: str = "closed_book", batch_size: int = 8,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> SystemResult:
    """Score `model`'s decoder answering from the question alone: the answer prompt with no memory slot.

    The prompt is the one CLaRa was trained on with an empty background, read through the decoder adapter as in
    `stage2`, so the only difference from it is the k documents' memory.
    """
    started = time.perf_counter()
    prompts = [build_prompt(model.tokenizer, PromptKind.ANSWER, slots="", question=r.question) for r in rows]
    hidden = model.base.get_input_embeddings().embedding_dim
    memory = torch.empty(0, model.tokens.n_mem, hidden, device=model.device)  # [0, M, H]: nothing to place

    def run(batch: Sequence[int]) -> list[str]:
        ids, mask, _ = encode_prompts(model.tokenizer, model.tokens, [prompts[i] for i in batch],
                                      model.config.model.max_len)
        slots = torch.zeros(len(batch), dtype=torch.long)  # no document in any row
        texts = model.generate(ids.to(model.device), mask.to(model.device), memory, slots,
                               max_new_tokens=max_new_tokens)
        return [text.strip() for text in texts]

    predictions = _batched(list(range(len(rows))), batch_size, run)
    decoder = [len(_tokens(model, p.prompt)) for p in prompts]
    return _result(system, model, rows, predictions, None, decoder, [0] * len(rows), time.perf_counter() - started)


# -- models and the whole report ----------------------------------------------------------------------------------


def untrained_model(model_config: ModelConfig, *, device: torch.device | str | None = None) -> ClaraModel:
    """Return what CLaRa training starts from: the base LLM with fresh encoder, query reasoner and decoder."""
    stage = StageConfig.for_stage(Stage.E2E, adapter_init=_UNTRAINED_INIT)
    model = ClaraModel.from_config(ClaraConfig(model=model_config, stage=stage), device=device)
    model.requires_grad_(False)
    return model.eval()


def evaluate_checkpoints(
    instruct_checkpoint: str | Path,
    e2e_checkpoint: str | Path,
    instruct_rows: Sequence[QuestionRow],
    e2e_rows: Sequence[QuestionRow],
    *,
    max_rows: int | None = None,
    batch_size: int = 8,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    device: torch.device | str | None = None,
    systems: Sequence[str] = SYSTEMS,
) -> EvaluationReport:
    """Evaluate the stage-2 and stage-3 checkpoints and the baselines on the held-out rows.

    Stage-2 rows (k documents each) serve `stage2`, `untrained_docs`, `full_text_rag` and `closed_book`; stage-3
    rows (N candidates with pos_index) serve `stage3` and `untrained_retrieval`. `max_rows` keeps the first rows of
    each.

    Raises:
        ValueError: on an unknown system name, no rows for a requested system, or checkpoints of different base
            models or compression rates.
    """
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        raise ValueError(f"unknown systems {unknown}; known: {list(SYSTEMS)}")
    instruct_rows, e2e_rows = list(instruct_rows)[:max_rows], list(e2e_rows)[:max_rows]
    for name in systems:
        rows = e2e_rows if name in RETRIEVAL_SYSTEMS else instruct_rows
        if not rows:
            raise ValueError(f"no held-out rows to evaluate {name} on")
    kwargs = dict(batch_size=batch_size, max_new_tokens=max_new_tokens)
    results: dict[str, SystemResult] = {}
    model_config: ModelConfig | None = None

    if "stage2" in systems or "closed_book" in systems:
        model = load_checkpoint(instruct_checkpoint, for_inference=True, device=device).model
        model_config = model.config.model
        if "stage2" in systems:
            results["stage2"] = evaluate_with_documents(model, instruct_rows, system="stage2", **kwargs)
        if "closed_book" in systems:
            results["closed_book"] = evaluate_closed_book(model, instruct_rows, **kwargs)
        del model
    if "stage3" in systems or any(s.startswith("untrained") or s == "full_text_rag" for s in systems):
        model = load_checkpoint(e2e_checkpoint, for_inference=True, device=device).model
        if model_config is not None and model_config != model.config.model:
            raise ValueError(f"{instruct_checkpoint} and {e2e_checkpoint} were trained with different model "
                             f"settings: {model_config} vs {model.config.model}")
        model_config = model.config.model
        k = model.config.stage.generation_top_k
        if "stage3" in systems:
            results["stage3"] = evaluate_with_retrieval(model, e2e_rows, system="stage3", k=k, **kwargs)
        del model
        baseline = untrained_model(model_config, device=device)
        if "untrained_docs" in systems:
            results["untrained_docs"] = evaluate_with_documents(baseline, instruct_rows, system="untrained_docs",
                                                                **kwargs)
        if "untrained_retrieval" in systems:
            results["untrained_retrieval"] = evaluate_with_retrieval(
                baseline, e2e_rows, system="untrained_retrieval", k=k, **kwargs)
        if "full_text_rag" in systems:
            results["full_text_rag"] = evaluate_full_text(baseline, instruct_rows, **kwargs)
    settings = {
        "instruct_checkpoint": str(instruct_checkpoint), "e2e_checkpoint": str(e2e_checkpoint),
        "instruct_rows": len(instruct_rows), "e2e_rows": len(e2e_rows), "batch_size": batch_size,
        "max_new_tokens": max_new_tokens, "base_model": model_config.base_model if model_config else None,
        "compression_rate": model_config.compression_rate if model_config else None,
        "n_mem": model_config.n_mem if model_config else None,
        "doc_max_length": model_config.doc_max_length if model_config else None,
    }
    return EvaluationReport(results={s: results[s] for s in SYSTEMS if s in results}, settings=settings)


def evaluate_files(
    instruct_checkpoint: str | Path, e2e_checkpoint: str | Path, instruct_eval: str | Path, e2e_eval: str | Path,
    **kwargs: Any,
) -> EvaluationReport:
    """`evaluate_checkpoints` on held-out JSONL files (the stage-2 and stage-3 formats)."""
    return evaluate_checkpoints(instruct_checkpoint, e2e_checkpoint, read_rows(instruct_eval, Stage.INSTRUCT),
                                read_rows(e2e_eval, Stage.E2E), **kwargs)


# -- helpers ----------------------------------------------------------------------------------------------------


def _batched(items: Sequence[Any], size: int, run: Callable[[Sequence[Any]], list[str]]) -> list[str]:
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {size}")
    out: list[str] = []
    for start in range(0, len(items), size):
        out.extend(run(items[start : start + size]))
    return out


def _tokens(model: ClaraModel, text: str) -> list[int]:
    return model.tokenizer(text, add_special_tokens=False)["input_ids"]


def _question_tokens(model: ClaraModel, question: str) -> int:
    """Tokens of the question as the user typed it (text that looks like a special token is plain text)."""
    return len(model.tokenizer(question, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def _slot_prompt_tokens(model: ClaraModel, question: str, *, slots: int) -> int:
    """Tokens of a CLaRa answer prompt: template + question + `slots` x (M + 1) slot tokens."""
    prompt = build_prompt(model.tokenizer, PromptKind.ANSWER, slots=model.tokens.slot_text() * slots,
                          question=question)
    return len(_tokens(model, prompt.prompt))


def _encoder_tokens(model: ClaraModel, text: str) -> int:
    """Tokens of one encoder input: `<ENC> text[:doc_max_length] <eos> <MEM0..M-1>`."""
    text_ids = model.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    return min(len(text_ids), model.config.model.doc_max_length) + 2 + model.tokens.n_mem


def _full_text_prompt(model: ClaraModel, row: QuestionRow) -> str:
    limit = model.config.model.doc_max_length
    docs = []
    for doc in row.docs:
        ids = model.tokenizer(doc, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        docs.append(model.tokenizer.decode(ids[:limit]) if len(ids) > limit else doc)
    return build_prompt(model.tokenizer, PromptKind.ANSWER, slots="\n".join(docs), question=row.question).prompt


def _generate_text(model: ClaraModel, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
    """Greedy continuations of plain-text prompts by the base LLM (no adapter is active outside use_adapter)."""
    tokenizer = model.tokenizer
    ids = [_tokens(model, p) for p in prompts]
    width = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), width), model.tokens.pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):  # left padding: every prompt ends where generation starts
        input_ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    eos = {model.tokens.eos_id}
    model_eos = model.base.generation_config.eos_token_id
    eos.update(model_eos if isinstance(model_eos, list) else [model_eos] if model_eos is not None else [])
    config = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=sorted(eos),
                              pad_token_id=model.tokens.pad_id, suppress_tokens=list(model.tokens.new_ids))
    with eval_mode(model.base):
        out = model.base.generate(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device),
                                  generation_config=config)
    return [text.strip() for text in tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)]


def _result(
    system: str, model: ClaraModel, rows: Sequence[QuestionRow], predictions: list[str],
    selected: list[list[int]] | None, decoder: list[int], encoder: list[int], seconds: float,
) -> SystemResult:
    golds = [list(r.gold_answers) for r in rows]
    scores = score_answers(predictions, golds)
    recall = None
    if selected is not None:
        # recall@k over the k selected candidates: reported for k up to the number selected
        ks = [k for k in RECALL_KS if k <= min(len(s) for s in selected)]
        retrieval = score_retrieval(selected, [list(r.pos_index) for r in rows], ks)
        recall = {key: value for key, value in retrieval.items() if key.startswith("recall@")}
        recall["rows_with_pos_index"] = retrieval["n"]
    answer_tokens = [len(_tokens(model, p)) for p in predictions]
    prompt = [_question_tokens(model, r.question) for r in rows]
    flags = flag_predictions(predictions)
    empty, degenerate = count_flags(flags)
    n = len(rows)
    logger.info("%s: em %.3f f1 %.3f cover_em %.3f on %d rows in %.1f s; %d empty, %d degenerate predictions",
                system, scores["em"], scores["f1"], scores["cover_em"], n, seconds, empty, degenerate)
    return SystemResult(
        system=system, rows=n, em=scores["em"], f1=scores["f1"], cover_em=scores["cover_em"], recall=recall,
        prompt_tokens=sum(prompt) / n, decoder_tokens=sum(decoder) / n, answer_tokens=sum(answer_tokens) / n,
        encoder_tokens=sum(encoder) / n, seconds=round(seconds, 2), empty_predictions=empty,
        degenerate_predictions=degenerate,
        predictions=[{"question": r.question, "gold": list(r.gold_answers), "prediction": p,
                      **({"flag": flags[i].value} if flags[i] is not None else {}),
                      **({"selected": selected[i], "pos_index": list(r.pos_index)} if selected is not None else {})}
                     for i, (r, p) in enumerate(zip(rows, predictions))],
    )
