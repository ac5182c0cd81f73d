"""The three training datasets and the checks that gate training on them.

Written, checked, published: the three files, their held-out `_eval` files and `state.json` are staged, the
blocking checks run on the staged files, and only then is the whole set published over the last good one
(storage.Publication). An empty or check-failing dataset fails the step and publishes nothing.
"""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from ..accounting import kinds_in_words
from ..corpus.store import read_chunks, read_manifest
from ..datasets import (
    ChunkRecord,
    NegativePicker,
    Paraphrase,
    build_pretrain_rows,
    build_question_rows,
    count_problem_kinds,
    encode_jsonl,
    find_problems,
    split_pairs,
)
from ..datasets.ranking import EmbeddingRanker
from ..datasets.validate import Problem
from ..llm import run_embeddings
from ..storage import ArtifactStore, sha256_bytes
from ..synthesis.run import read_synthesis
from .resources import ArtifactStoreResource, LLMResource, RawDataFolder, SynthesisSettings

DATASETS_CODE_VERSION = "datasets-v1"
# asset -> (stage for the trainer's reader, resource field giving the exact document count)
DATASETS = {
    "pretrain_dataset": ("pretrain", None),
    "instruction_dataset": ("instruct", "top_k"),
    "end_to_end_dataset": ("e2e", "candidates"),
}
_DESCRIPTIONS = {
    "pretrain_dataset": "Stage 1: per chunk a QA row (its training pairs) and a paraphrase row (datasets/pretrain.jsonl).",
    "instruction_dataset": "Stage 2: per question exactly k documents (the positive and k-1 hard negatives, none "
                           "containing the answer), the positive's position in pos_index (datasets/instruction.jsonl; "
                           "held-out questions in instruction_eval.jsonl).",
    "end_to_end_dataset": "Stage 3: per question exactly N candidates with pos_index (datasets/end_to_end.jsonl; "
                          "held-out questions in end_to_end_eval.jsonl).",
}
_KEPT = "nothing was published: the last good datasets stay"


@dg.multi_asset(
    name="training_datasets",
    specs=[dg.AssetSpec(name, deps=["corpus", "qa_synthesis"], group_name="datasets", code_version=DATASETS_CODE_VERSION,
                        description=_DESCRIPTIONS[name]) for name in DATASETS],
)
def training_datasets(context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource, llm: LLMResource,
                      raw_data: RawDataFolder, synthesis: SynthesisSettings) -> Iterator[dg.MaterializeResult]:
    store = artifacts.store()
    chunks = [ChunkRecord(c.chunk_id, c.document, c.source, c.lang, c.text) for c in read_chunks(store)]
    pairs, paraphrases = read_synthesis(store)
    config = synthesis.dataset_config()
    ranker = _embedding_ranker(chunks, pairs, llm, store.llm_cache_path) if llm.embedding_model else None
    picker = NegativePicker(chunks, ranker, config=config)  # one BM25 index / embedding matrix for both stages
    built = {
        "pretrain_dataset": build_pretrain_rows(chunks, pairs, [Paraphrase(c, t) for c, t in paraphrases.items()],
                                                config=config),
        "instruction_dataset": build_question_rows(pairs, chunks, synthesis.top_k, config=config, picker=picker,
                                                   dataset="instruct"),
        "end_to_end_dataset": build_question_rows(pairs, chunks, synthesis.candidates, config=config, picker=picker,
                                                  dataset="e2e"),
    }
    empty = []
    for name, rows in built.items():
        count_field = DATASETS[name][1]
        if not rows.rows:
            needs = f"each row needs {getattr(synthesis, count_field)} documents; " if count_field else ""
            empty.append(f"{name} has no rows ({len(pairs)} QA pairs over {len(chunks)} chunks; {needs}"
                         f"dropped: {kinds_in_words(rows.report.rows_dropped)})")
    if empty:
        raise dg.Failure(description="; ".join(empty) + f". Add documents, or lower the top_k / candidates "
                                     f"settings of the synthesis resource; {_KEPT}.", allow_retries=False)
    held_out = split_pairs(pairs, fraction=config.held_out_fraction, seed=config.seed).held_out_questions
    manifest = read_manifest(store) or {}
    written: dict[str, dict] = {}
    with store.publication() as pub:
        failed = []
        for name, rows in built.items():
            stage, count_field = DATASETS[name]
            n_docs = getattr(synthesis, count_field) if count_field else None
            files = {store.dataset_path(stage): (rows.rows, held_out)}
            if name != "pretrain_dataset":
                files[store.dataset_eval_path(stage)] = (rows.held_out, ())
            for dest, (file_rows, must_not_hold) in files.items():
                data = encode_jsonl(file_rows)
                staged = pub.write_bytes(dest, data)
                problems = dataset_problems(staged, stage, n_docs, store, raw_data, must_not_hold, shown_as=dest)
                if dest != store.dataset_path(stage):  # held-out rows: few or none is fine
                    problems = [p for p in problems if p.kind != "no_rows"]
                failed += [f"{check} of {name} failed on the new {dest.name}: {mine[0]}"
                           + (f" (and {len(mine) - 1} more)" if len(mine) > 1 else "")
                           for check, mine in problems_by_check(problems).items()]
                written.setdefault(name, {})[dest] = data
        if failed:
            raise dg.Failure(description=f"check {'; check '.join(failed)}; {_KEPT}", allow_retries=False)
        # Which corpus state these datasets were built from (the nightly schedule compares against it).
        pub.write_json(store.datasets_state_path, {"corpus_fingerprint": manifest.get("inputs_fingerprint"),
                                                   "corpus_data_version": manifest.get("data_version")})
        pub.commit()
    for name, rows in built.items():
        stage = DATASETS[name][0]
        data = written[name][store.dataset_path(stage)]
        metadata = {"rows": len(rows.rows), "path": dg.MetadataValue.path(str(store.dataset_path(stage))),
                    "bytes": len(data), **rows.report.to_metadata()}
        if name != "pretrain_dataset":
            metadata["held_out_rows"] = len(rows.held_out)
        metadata["first_row"] = dg.MetadataValue.json(_preview(rows.rows[0]))
        yield dg.MaterializeResult(asset_key=name, data_version=dg.DataVersion(sha256_bytes(data)), metadata=metadata)


def dataset_problems(path: Path, stage: str, n_docs: int | None, store: ArtifactStore, raw_data: RawDataFolder,
                     held_out_questions, *, shown_as: Path | None = None) -> list[Problem]:
    """Every problem of one dataset file (what the blocking checks look for); `shown_as` names a staged file by
    its destination in the problems' `where`."""
    problems = find_problems(path, stage, n_docs, held_out_questions=held_out_questions,
                             forbidden_paths=[str(store.root), str(raw_data.root)])
    if shown_as is None:
        return problems
    return [Problem(p.where.replace(str(path), str(shown_as), 1), p.kind, p.reason) for p in problems]


def problems_by_check(problems: list[Problem]) -> dict[str, list[Problem]]:
    """The problems under the name of the check that reports them (CHECKS), checks without problems left out."""
    return {check: mine for check, kinds in CHECKS.items() if (mine := [p for p in problems if p.kind in kinds])}


def _embedding_ranker(chunks, pairs, llm: LLMResource, cache_path) -> EmbeddingRanker:
    """Hard negatives by embedding similarity, when the endpoint has an embedding model."""
    config = llm.config()
    questions = sorted({p.question for p in pairs})
    vectors = run_embeddings([c.text for c in chunks] + questions, config=config, cache_path=cache_path)
    return EmbeddingRanker(chunks, dict(zip((c.chunk_id for c in chunks), vectors)),
                           dict(zip(questions, vectors[len(chunks):])))


def _preview(row: dict) -> dict:
    """A row with long texts cut, for the UI."""
    cut = lambda value: value[:160] + "..." if isinstance(value, str) and len(value) > 160 else value  # noqa: E731
    return {k: [cut(v) for v in value] if isinstance(value, list) else cut(value) for k, value in row.items()}


# -- checks ------------------------------------------------------------------------------------------------

CHECKS = {  # check name -> problem kinds it covers (clara_pipeline.datasets.validate.PROBLEM_KINDS)
    "schema": ("invalid_json", "schema", "no_rows"),
    "pos_index_in_range": ("pos_index",),
    "exact_document_count": ("doc_count",),
    "no_raw_figure_references": ("image_marker", "file_path"),
    "no_empty_text": ("empty_text",),
    "no_duplicate_documents": ("duplicate_doc",),
    "no_held_out_questions": ("held_out_question",),
}


def _dataset_checks(asset: str) -> dg.AssetChecksDefinition:
    stage, count_field = DATASETS[asset]

    @dg.multi_asset_check(
        name=f"{asset}_checks",
        specs=[dg.AssetCheckSpec(check, asset=asset, blocking=True,
                                 description=f"{asset}: no problems of kind {', '.join(kinds)}")
               for check, kinds in CHECKS.items()],
    )
    def checks(artifacts: ArtifactStoreResource, raw_data: RawDataFolder,
               synthesis: SynthesisSettings) -> Iterator[dg.AssetCheckResult]:
        store = artifacts.store()
        pairs, _ = read_synthesis(store)
        config = synthesis.dataset_config()
        held_out = split_pairs(pairs, fraction=config.held_out_fraction, seed=config.seed).held_out_questions
        n_docs = getattr(synthesis, count_field) if count_field else None
        problems = dataset_problems(store.dataset_path(stage), stage, n_docs, store, raw_data, held_out)
        counts = count_problem_kinds(problems)
        for check, kinds in CHECKS.items():
            mine = [p for p in problems if p.kind in kinds]
            yield dg.AssetCheckResult(
                asset_key=asset, check_name=check, passed=not mine,
                metadata={"observed": len(mine), "expected": 0, **{k: counts[k] for k in kinds},
                          "first_problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in mine[:10]) or "none")})

    return checks


dataset_checks = [_dataset_checks(asset) for asset in DATASETS]
