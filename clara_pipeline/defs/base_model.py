"""`clara_base_model`: the base LLM every training stage stands on, at the head of the training group.

Real weights (a hub id or a folder in `CLARA_BASE_MODEL`) are recorded, not trained: id, revision or folder,
config and a content hash, which is the asset's data version, so changing the base marks every stage stale. On the
CPU defaults it continues the project's small Qwen3 reading skill (shipped, clara_model.pretrain_base) on the corpus
and fresh made-up reading text, cached by those inputs: a second materialization with the same corpus trains nothing.
"""

import dagster as dg

from ..training.base_model import CPU_BASE, build_cpu_base, describe_base, write_record
from .resources import ArtifactStoreResource
from .training import GPU_POOL, TrainingSettings

BASE_CODE_VERSION = "base-model-v2"


@dg.asset(
    deps=[dg.AssetDep("corpus")],
    group_name="training",
    pool=GPU_POOL,
    code_version=BASE_CODE_VERSION,
    kinds={"pytorch"},
    description="The base LLM of every stage: real weights recorded by content hash, or on CPU a small Qwen3 "
                "(real tokenizer, untied head): a shipped reading skill continued on the corpus.",
)
def clara_base_model(context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource,
                     training: TrainingSettings) -> dg.MaterializeResult:
    store = artifacts.store()
    if training.base_model == CPU_BASE:
        chunks = store.chunks_path
        context.log.info("continuing the CPU base's reading skill on the corpus (a minute or two on 2 cores; cached by "
                         "corpus and settings)")
        record, info = build_cpu_base(store.root, chunks if chunks.exists() else None,
                                      steps=training.cpu_base_steps or None)
        reading = info["held_out_reading"]
        metadata = {"reused": info.get("reused", False), "train_seconds": info["train_seconds"],
                    "seen_vocabulary": info["seen_vocabulary"], "corpus_chunks": info["corpus_chunks"],
                    "continuation_steps": info["continuation_steps"],
                    "skill_reading_exact": info["skill"]["held_out_reading"]["exact"],
                    "reading_exact": reading["exact"], "reading_token_accuracy": reading["token_accuracy"],
                    "reading_answer_ce": reading["answer_ce"]}
        if reading["exact"] < 0.2:
            context.log.warning(f"the CPU base answers only {reading['exact']:.0%} of held-out reading questions "
                                "exactly: stage scores on this base test the pipeline more than CLaRa")
    else:
        try:
            record = describe_base(training.base_model)
        except FileNotFoundError as error:
            raise dg.Failure(str(error), allow_retries=False) from error
        metadata = {}
    path = write_record(store.root, record)
    return dg.MaterializeResult(
        metadata={**metadata, "base_model": record.name_or_path, "kind": record.kind, "revision": record.revision or "",
                  "digest": record.digest, "record": dg.MetadataValue.path(str(path)),
                  "config": dg.MetadataValue.json(record.config or {})},
        data_version=dg.DataVersion(record.digest[:16]),
    )


base_model_job = dg.define_asset_job("build_base_model", selection=dg.AssetSelection.assets(clara_base_model),
                                     executor_def=dg.in_process_executor,
                                     description="Record the base model, or pretrain the CPU base.")
