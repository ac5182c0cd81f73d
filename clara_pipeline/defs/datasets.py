"""The three training datasets and the checks that gate training on them."""

from collections.abc import Iterator

import dagster as dg

from ..corpus.store import read_chunks, read_manifest
from ..datasets import (
    ChunkRecord,
    NegativePicker,
    Paraphrase,
    build_pretrain_rows,
    build_question_rows,
    count_problem_kinds,
    find_problems,
    split_pairs,
    write_jsonl,
)
from ..datasets.ranking import EmbeddingRanker
from ..llm import run_embeddings
from ..storage import write_json_atomic
from ..synthesis.run import read_synthesis
from .resources import ArtifactStoreResource, LLMResource, RawDataFolder, SynthesisSettings

DATASETS_CODE_VERSION = "datasets-v1"
# asset -> (stage for the trainer's reader, file name, resource field giving the exact document count)
DATASETS = {
    "pretrain_dataset": ("pretrain", "pretrain.jsonl", None),
    "instruction_dataset": ("instruct", "instruction.jsonl", "top_k"),
    "end_to_end_dataset": ("e2e", "end_to_end.jsonl", "candidates"),
}
_DESCRIPTIONS = {
    "pretrain_dataset": "Stage 1: per chunk a QA row (its training pairs) and a paraphrase row (datasets/pretrain.jsonl).",
    "instruction_dataset": "Stage 2: per question exactly k documents (the positive and k-1 hard negatives, none "
                           "containing the answer), the positive's position in pos_index (datasets/instruction.jsonl; "
                           "held-out questions in instruction_eval.jsonl).",
    "end_to_end_dataset": "Stage 3: per question exactly N candidates with pos_index (datasets/end_to_end.jsonl; "
                          "held-out questions in end_to_end_eval.jsonl).",
}


@dg.multi_asset(
    name="training_datasets",
    specs=[dg.AssetSpec(name, deps=["corpus", "qa_synthesis"], group_name="datasets", code_version=DATASETS_CODE_VERSION,
                        description=_DESCRIPTIONS[name]) for name in DATASETS],
)
def training_datasets(context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource, llm: LLMResource,
                      synthesis: SynthesisSettings) -> Iterator[dg.MaterializeResult]:
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
        _, filename, count_field = DATASETS[name]
        written = write_jsonl(store.datasets_dir / filename, rows.rows)
        if not rows.rows:
            needs = f"each row needs {getattr(synthesis, count_field)} documents; " if count_field else ""
            empty.append(f"{name} has no rows ({len(pairs)} QA pairs over {len(chunks)} chunks; {needs}"
                         f"dropped: {rows.report.to_metadata().get('rows_dropped') or 'none'})")
            continue
        metadata = {"rows": written.rows, "path": dg.MetadataValue.path(str(written.path)),
                    "bytes": written.bytes, **rows.report.to_metadata()}
        if name != "pretrain_dataset":
            held = write_jsonl(store.datasets_dir / filename.replace(".jsonl", "_eval.jsonl"), rows.held_out)
            metadata["held_out_rows"] = held.rows
        if rows.rows:
            metadata["first_row"] = dg.MetadataValue.json(_preview(rows.rows[0]))
        yield dg.MaterializeResult(asset_key=name, data_version=dg.DataVersion(written.sha256), metadata=metadata)
    if empty:
        raise dg.Failure(description="; ".join(empty) + ". Add documents, or lower the top_k / candidates "
                                     "settings of the synthesis resource.")
    # Which corpus state these datasets were built from (the nightly schedule compares against it).
    manifest = read_manifest(store) or {}
    write_json_atomic(store.datasets_dir / "state.json", {"corpus_fingerprint": manifest.get("inputs_fingerprint"),
                                                          "corpus_data_version": manifest.get("data_version")})


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
    stage, filename, count_field = DATASETS[asset]

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
        path = store.datasets_dir / filename
        n_docs = getattr(synthesis, count_field) if count_field else None
        problems = find_problems(path, stage, n_docs, held_out_questions=held_out,
                                 forbidden_paths=[str(store.root), str(raw_data.root)])
        counts = count_problem_kinds(problems)
        for check, kinds in CHECKS.items():
            mine = [p for p in problems if p.kind in kinds]
            yield dg.AssetCheckResult(
                asset_key=asset, check_name=check, passed=not mine,
                metadata={"observed": len(mine), "expected": 0, **{k: counts[k] for k in kinds},
                          "first_problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in mine[:10]) or "none")})

    return checks


dataset_checks = [_dataset_checks(asset) for asset in DATASETS]
