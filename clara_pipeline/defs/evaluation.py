"""`clara_evaluation`: the stage-2 and stage-3 checkpoints of one compression rate on the held-out questions,
next to the untrained model, full-text RAG and closed book (clara_model.evaluate does the work), and its
`predictions_not_empty` check."""

import json

import dagster as dg

from ..storage import write_json_atomic
from ..training.runs import CurrentRun, file_digests, run_fingerprint
from ..training.stages import STAGES
from .resources import ArtifactStoreResource
from .training import GPU_POOL, compression_rates

EVALUATION_CODE_VERSION = "evaluation-v2"  # v2: closed book, empty/degenerate counts, question tokens


class EvaluationConfig(dg.Config):
    """How much to evaluate: the defaults keep a CPU run to a minute or two."""

    max_rows: int = 50  # held-out questions per system (the first ones of each file); 0: all of them
    batch_size: int = 8
    max_new_tokens: int = 64  # the paper's answer budget
    device: str = ""  # "" picks CUDA when there is one, else the CPU


@dg.asset(
    deps=[dg.AssetDep(STAGES["instruct"].asset, partition_mapping=dg.IdentityPartitionMapping()),
          dg.AssetDep(STAGES["e2e"].asset, partition_mapping=dg.IdentityPartitionMapping()),
          dg.AssetDep(STAGES["instruct"].dataset_asset), dg.AssetDep(STAGES["e2e"].dataset_asset)],
    partitions_def=compression_rates,
    group_name="evaluation",
    pool=GPU_POOL,
    code_version=EVALUATION_CODE_VERSION,
    kinds={"pytorch"},
    check_specs=[dg.AssetCheckSpec(
        "predictions_not_empty", asset="clara_evaluation",
        description="Every system wrote something for at least one question: a system whose predictions are all "
                    "empty scores 0 without having answered (a warning; its count is in the table's empty column).")],
    description="EM, F1 and cover-EM on the held-out questions for the stage-2 and stage-3 checkpoints, recall@1/3/5 "
                "for stage 3, next to the untrained model, full-text RAG and closed book; empty and degenerate "
                "predictions per system; the question, decoder and encoder tokens each used "
                "(evaluation/rate-{r}/report.json).",
)
def clara_evaluation(context: dg.AssetExecutionContext, config: EvaluationConfig,
                     artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    # torch: imported when the step runs, not when the definitions load
    from clara_model.evaluate import EvaluationReport, evaluate_files

    store = artifacts.store()
    rate = int(context.partition_key)
    checkpoints = {}
    for name in ("instruct", "e2e"):
        current = CurrentRun.read(store.training_stage_dir(rate, name))
        if current is None:
            raise dg.Failure(f"clara_evaluation[{rate}] needs {STAGES[name].asset}[{rate}]: materialize it first",
                             allow_retries=False)
        checkpoints[name] = current
    eval_files = [store.dataset_eval_path(name) for name in ("instruct", "e2e")]
    # What decides the scores: the same inputs give the same report (generation is greedy), so it is reused.
    inputs = {"code_version": EVALUATION_CODE_VERSION, "config": config.model_dump(),
              "checkpoint_data_versions": {name: current.data_version for name, current in checkpoints.items()},
              "eval_files": file_digests(eval_files)}
    path = store.evaluation_report_path(rate)
    stored = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    if stored and stored.get("inputs") == inputs:
        context.log.info(f"clara_evaluation[{rate}] is up to date: the same checkpoints, held-out rows and settings "
                         f"were evaluated already ({path})")
        report, reused = EvaluationReport.from_dict(stored), True
    else:
        report = evaluate_files(
            checkpoints["instruct"].checkpoint, checkpoints["e2e"].checkpoint, *eval_files,
            max_rows=config.max_rows or None, batch_size=config.batch_size, max_new_tokens=config.max_new_tokens,
            device=config.device or None,
        )
        write_json_atomic(path, {**report.to_dict(), "inputs": inputs})
        reused = False
    empty = report.all_empty_systems()
    if empty:
        context.log.warning(f"clara_evaluation[{rate}]: every prediction of {', '.join(empty)} is empty: "
                            "those scores measure nothing")
    return dg.MaterializeResult(metadata=report_metadata(report, path, reused),
                                data_version=dg.DataVersion(run_fingerprint(inputs)),
                                check_results=[predictions_not_empty_result(report)])


def report_metadata(report, path, reused: bool) -> dict:
    """The asset's metadata: the table, the report's path, and per system `{system}/{metric}` values."""
    metadata: dict = {"results": dg.MetadataValue.md(report.markdown_table()),
                      "report": dg.MetadataValue.path(str(path)), "reused": reused,
                      "rows": report.settings["instruct_rows"], "e2e_rows": report.settings["e2e_rows"]}
    for name, result in report.results.items():
        values = {"em": result.em, "f1": result.f1, "cover_em": result.cover_em,
                  "empty_predictions": result.empty_predictions,
                  "degenerate_predictions": result.degenerate_predictions,
                  "prompt_tokens": result.prompt_tokens, "decoder_tokens": result.decoder_tokens,
                  **{k: v for k, v in (result.recall or {}).items() if k.startswith("recall@")}}
        metadata.update({f"{name}/{key}": value for key, value in values.items() if value is not None})
    return metadata


def predictions_not_empty_result(report) -> dg.AssetCheckResult:
    """The `predictions_not_empty` check: no system's predictions are all empty (a warning, not a gate)."""
    empty = report.all_empty_systems()
    return dg.AssetCheckResult(
        check_name="predictions_not_empty", passed=not empty, severity=dg.AssetCheckSeverity.WARN,
        metadata={"details": (f"every prediction of {', '.join(empty)} is empty" if empty
                              else "every system wrote something"),
                  "systems_all_empty": len(empty), "expected": 0,
                  "empty_predictions": dg.MetadataValue.json(
                      {name: f"{r.empty_predictions}/{r.rows}" for name, r in report.results.items()})})


evaluation_job = dg.define_asset_job(
    "evaluate_clara", selection=dg.AssetSelection.assets(clara_evaluation),
    executor_def=dg.in_process_executor,
    description="Evaluate the stage-2 and stage-3 checkpoints of one compression rate against the baselines.",
)
