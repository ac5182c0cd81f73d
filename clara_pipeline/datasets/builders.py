"""The three training datasets, as rows in the formats of DESIGN.md section 3, with a report of what was done.

- `build_pretrain_rows`: stage 1. Per chunk, one QA row holding its training pairs and one paraphrase row.
  The reference wrote a summary under a fake question instead and no paraphrase rows (W-11).
- `build_question_rows`: stages 2 and 3. Per training pair, one row of exactly `n_docs` documents: the
  positive chunk and `n_docs - 1` negatives (see `negatives`), in a seeded order with the positive's position
  in `pos_index`. A pair that cannot get `n_docs` distinct documents is dropped and counted, never written
  short (the reference wrote short rows, W-5, and never wrote `pos_index`, W-10). Held-out pairs become
  evaluation rows of the same shape, returned apart from the training rows.

Rows come out in corpus order (chunks in the order given, pairs in the order given within a chunk) and every
random choice is seeded by the row's identity (`config`), so the same inputs give the same rows.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import DatasetConfig
from .negatives import NegativePicker
from .ranking import Ranker
from .records import ChunkRecord, Paraphrase, QAPair, index_chunks, require_known_chunks
from .split import is_held_out, question_key, split_pairs
from .text import squash

logger = logging.getLogger(__name__)


@dataclass
class DatasetReport:
    """What one build did, for the asset's metadata (`to_metadata`)."""

    dataset: str  # "pretrain", or the name the caller gave a question dataset ("instruct", "e2e")
    n_docs: int | None = None  # documents per row (question rows only)
    negatives_source: str | None = None  # the ranker's name (question rows only)
    pairs_in: int = 0
    pairs_held_out: int = 0
    rows_written: int = 0  # training rows
    held_out_rows_written: int = 0  # evaluation rows (question rows only)
    row_kinds: Counter = field(default_factory=Counter)  # pretrain: "qa" / "paraphrase" rows written
    pairs_written: int = 0  # QA pairs in the written training rows
    rows_dropped: Counter = field(default_factory=Counter)  # reason -> rows (or pairs) not written
    negatives_skipped: Counter = field(default_factory=Counter)  # reason -> candidates skipped (held-out rows too)
    negatives_hard: int = 0  # negatives from the ranker, in written rows
    negatives_random: int = 0  # negatives from the seeded random fill, in written rows
    near_duplicate_chunks: int = 0  # corpus chunks that have a near-duplicate (question rows only)
    qa_types: Counter = field(default_factory=Counter)  # qa_type -> training pairs written
    langs: Counter = field(default_factory=Counter)  # chunk language -> training rows written

    def to_metadata(self) -> dict[str, Any]:
        """A flat JSON-able dict; counters become {key: count} dicts in sorted key order."""
        out: dict[str, Any] = {}
        for name, value in vars(self).items():
            if isinstance(value, Counter):
                out[name] = {key: value[key] for key in sorted(value)}
            elif value is not None:
                out[name] = value
        return out


@dataclass(frozen=True)
class BuiltRows:
    """Rows ready for `jsonl.write_jsonl`: training rows, evaluation rows of held-out questions, the report."""

    rows: list[dict[str, Any]]
    held_out: list[dict[str, Any]]
    report: DatasetReport


def build_pretrain_rows(chunks: Sequence[ChunkRecord], pairs: Iterable[QAPair], paraphrases: Iterable[Paraphrase],
                        *, config: DatasetConfig = DatasetConfig()) -> BuiltRows:
    """Stage-1 rows: per chunk, a QA row with its training pairs, then a row per distinct paraphrase.

    A chunk whose pairs are all held out (or that has none) gets no QA row; a repeated question within a
    chunk, or a repeated paraphrase, is written once. Each is counted in `report.rows_dropped`. A held-out
    question leaves its chunk's text in training (as a document and a paraphrase target): evaluation asks
    about documents the model has seen, with questions it was never trained on.

    Raises:
        ValueError: two chunks with one id, or a pair or paraphrase of a chunk that is not in `chunks`.
    """
    pairs, paraphrases = list(pairs), list(paraphrases)
    positions = index_chunks(chunks)
    require_known_chunks(pairs, positions, "QA pairs")
    require_known_chunks(paraphrases, positions, "paraphrases")
    split = split_pairs(pairs, fraction=config.held_out_fraction, seed=config.seed)
    report = DatasetReport("pretrain", pairs_in=len(pairs), pairs_held_out=len(split.held_out))

    pairs_of: dict[str, list[QAPair]] = defaultdict(list)
    seen_questions: set[tuple[str, str]] = set()
    for pair in split.train:
        key = (pair.chunk_id, question_key(pair.question))
        if key in seen_questions:
            report.rows_dropped["duplicate_question_in_chunk"] += 1
            continue
        seen_questions.add(key)
        pairs_of[pair.chunk_id].append(pair)
    paraphrases_of: dict[str, list[str]] = defaultdict(list)
    seen_paraphrases: set[tuple[str, str]] = set()
    for paraphrase in paraphrases:
        key = (paraphrase.chunk_id, squash(paraphrase.text))
        if key in seen_paraphrases:
            report.rows_dropped["duplicate_paraphrase"] += 1
            continue
        seen_paraphrases.add(key)
        paraphrases_of[paraphrase.chunk_id].append(paraphrase.text)
    held_out_chunks = {pair.chunk_id for pair in split.held_out}

    rows: list[dict[str, Any]] = []
    for chunk in chunks:
        extra = {"chunk_id": chunk.chunk_id, "source": chunk.source, "lang": chunk.lang}
        qa = pairs_of.get(chunk.chunk_id, [])
        if qa:
            rows.append({"data_type": "qa", "question": [p.question for p in qa], "answers": [p.answer for p in qa],
                         "docs": [chunk.text], **extra})
            report.row_kinds["qa"] += 1
            report.pairs_written += len(qa)
            report.qa_types.update(p.qa_type for p in qa)
            report.langs[chunk.lang] += 1
        elif chunk.chunk_id in held_out_chunks:
            report.rows_dropped["qa_row_all_pairs_held_out"] += 1
        else:
            report.rows_dropped["qa_row_no_pairs"] += 1
        texts = paraphrases_of.get(chunk.chunk_id, [])
        if not texts:
            report.rows_dropped["paraphrase_row_no_paraphrase"] += 1
        for text in texts:
            rows.append({"data_type": "paraphrase", "question": [], "answers": [text], "docs": [chunk.text], **extra})
            report.row_kinds["paraphrase"] += 1
            report.langs[chunk.lang] += 1
    report.rows_written = len(rows)
    _log(report)
    return BuiltRows(rows, [], report)


def build_question_rows(pairs: Iterable[QAPair], chunks: Sequence[ChunkRecord], n_docs: int, *,
                        config: DatasetConfig = DatasetConfig(), ranker: Ranker | None = None,
                        picker: NegativePicker | None = None, dataset: str = "questions") -> BuiltRows:
    """Stage-2 (`n_docs` = k, default 5) or stage-3 (`n_docs` = N, default 20) rows, one per distinct question.

    Args:
        ranker: orders candidates for hard negatives; BM25 over `chunks` when None.
        picker: a `NegativePicker` already built over `chunks` (reuse one for both stages in one process);
            `ranker` is ignored when it is given.
        dataset: the name in the report, e.g. "instruct" or "e2e".

    Raises:
        ValueError: `n_docs` < 1, two chunks with one id, a pair of a chunk not in `chunks`, or a picker built
            over other chunks.
    """
    if n_docs < 1:
        raise ValueError(f"n_docs must be >= 1, got {n_docs}")
    pairs, chunks = list(pairs), list(chunks)
    positions = index_chunks(chunks)
    require_known_chunks(pairs, positions, "QA pairs")
    if picker is None:
        picker = NegativePicker(chunks, ranker, config=config)
    elif [c.chunk_id for c in picker.chunks] != [c.chunk_id for c in chunks]:
        raise ValueError("the NegativePicker was built over other chunks than the ones given")
    split = split_pairs(pairs, fraction=config.held_out_fraction, seed=config.seed)
    report = DatasetReport(dataset, n_docs=n_docs,
                           negatives_source=picker.ranker.name, pairs_in=len(pairs),
                           pairs_held_out=len(split.held_out), near_duplicate_chunks=picker.near_duplicate_chunks)

    rows: list[dict[str, Any]] = []
    eval_rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for pair in sorted(pairs, key=lambda p: positions[p.chunk_id]):  # stable: pair order kept within a chunk
        key = question_key(pair.question)
        if key in seen:
            report.rows_dropped["duplicate_question"] += 1
            continue
        seen.add(key)
        positive = positions[pair.chunk_id]
        choice = picker.pick(positive, pair.question, pair.answer, n_docs - 1)
        report.negatives_skipped.update(choice.skipped)
        if len(choice.chunks) < n_docs - 1:
            report.rows_dropped["not_enough_negatives"] += 1
            continue
        row = _question_row(pair, chunks, positive, choice.chunks, config)
        if is_held_out(pair.question, fraction=config.held_out_fraction, seed=config.seed):
            eval_rows.append(row)
            continue
        rows.append(row)
        report.negatives_hard += choice.hard
        report.negatives_random += choice.random
        report.qa_types[pair.qa_type] += 1
        report.langs[chunks[positive].lang] += 1
    report.rows_written = report.pairs_written = len(rows)
    report.held_out_rows_written = len(eval_rows)
    _log(report)
    return BuiltRows(rows, eval_rows, report)


def _question_row(pair: QAPair, chunks: Sequence[ChunkRecord], positive: int, negatives: Sequence[int],
                  config: DatasetConfig) -> dict[str, Any]:
    """The row for `pair`: its documents in an order seeded by the row's identity, the positive's index."""
    order = [positive, *negatives]
    config.rng("layout", len(order), pair.chunk_id, pair.question).shuffle(order)
    chunk = chunks[positive]
    return {
        "question": pair.question,
        "docs": [chunks[i].text for i in order],
        "answer": pair.answer,
        "pos_index": [order.index(positive)],
        "qa_type": pair.qa_type,
        "chunk_id": chunk.chunk_id,
        "doc_chunk_ids": [chunks[i].chunk_id for i in order],
        "source": chunk.source,
        "lang": chunk.lang,
    }


def _log(report: DatasetReport) -> None:
    dropped = ", ".join(f"{reason} {n}" for reason, n in sorted(report.rows_dropped.items())) or "none"
    logger.info("%s: %d rows written, %d held-out rows, %d of %d pairs held out; dropped: %s", report.dataset,
                report.rows_written, report.held_out_rows_written, report.pairs_held_out, report.pairs_in, dropped)
