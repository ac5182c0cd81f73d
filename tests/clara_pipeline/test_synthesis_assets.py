"""Captions, enrichment, corpus, QA synthesis and datasets through a real Dagster instance (offline provider)."""

import datetime as dt
import json

import dagster as dg
import pytest

from clara_pipeline.datasets import read_jsonl
from clara_pipeline.defs.datasets import dataset_checks
from clara_pipeline.defs.schedules import nightly_resynthesis
from clara_pipeline.defs.sensors import raw_data_sensor
from clara_pipeline.settings import Settings
from clara_pipeline.definitions import build_definitions
from tests.clara_pipeline.conftest import backdate


def ingest_all(defs, instance):
    context = dg.build_sensor_context(instance=instance, resources=defs.resources)
    result = raw_data_sensor(context)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    job = defs.resolve_job_def("ingest_documents")
    return {r.partition_key: job.execute_in_process(instance=instance, partition_key=r.partition_key,
                                                    raise_on_error=False) for r in result.run_requests}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The shipped sample corpus through ingestion and synthesis, once for the module."""
    import shutil
    from tests.clara_pipeline.conftest import SAMPLE_CORPUS

    root = tmp_path_factory.mktemp("pipeline")
    shutil.copytree(SAMPLE_CORPUS, root / "raw")
    for path in (root / "raw").rglob("*"):
        if path.is_file():
            backdate(path)
    settings = Settings(raw_data=root / "raw", artifacts=root / "artifacts", dagster_home=root / "home")
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        ingested = ingest_all(defs, instance)
        synthesis = defs.resolve_job_def("synthesize_datasets").execute_in_process(instance=instance,
                                                                                   raise_on_error=False)
        yield settings, defs, instance, ingested, synthesis


def test_every_document_is_captioned_and_enriched(pipeline):
    settings, _, _, ingested, _ = pipeline
    assert ingested and all(r.success for r in ingested.values())
    for key, result in ingested.items():
        checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        assert checks["no_raw_figure_references"] is True, key
        enriched = json.loads((settings.artifacts / "documents" / key / "enriched.json").read_text())
        assert "IMAGE_REF" not in enriched["text"] and enriched["uncaptioned"] == []
    manual = next(k for k in ingested if k.startswith("eg400_user_manual_en"))
    captions = json.loads((settings.artifacts / "documents" / manual / "captions.json").read_text())
    assert len(captions["captions"]) == 2 and captions["failures"] == []
    assert captions["provider"]["provider"] == "offline"


def test_synthesis_writes_three_valid_datasets(pipeline):
    settings, _, _, _, synthesis = pipeline
    assert synthesis.success
    mats = {e.asset_key.to_user_string(): e.materialization.metadata for e in synthesis.get_asset_materialization_events()}
    assert set(mats) == {"corpus", "qa_synthesis", "pretrain_dataset", "instruction_dataset", "end_to_end_dataset"}
    assert mats["corpus"]["documents"].value == 10 and mats["corpus"]["tokens_max"].value <= 256
    assert mats["qa_synthesis"]["qa_pairs"].value > 100
    checks = synthesis.get_asset_check_evaluations()
    assert len(checks) == 21 and all(c.passed for c in checks), [c.check_name for c in checks if not c.passed]

    folder = settings.artifacts / "datasets"
    pretrain = read_jsonl(folder / "pretrain.jsonl")
    assert {r["data_type"] for r in pretrain} == {"qa", "paraphrase"}
    for name, n in (("instruction", 5), ("end_to_end", 20)):
        rows = read_jsonl(folder / f"{name}.jsonl")
        held = read_jsonl(folder / f"{name}_eval.jsonl")
        assert rows and held and all(len(r["docs"]) == n for r in rows + held)
        assert {r["question"] for r in rows}.isdisjoint({r["question"] for r in held})
        assert len({r["pos_index"][0] for r in rows}) > 1  # the positive's position is shuffled
    training_questions = {q for r in pretrain for q in r["question"]}
    assert training_questions.isdisjoint({r["question"] for r in read_jsonl(folder / "end_to_end_eval.jsonl")})


def test_dataset_checks_fail_on_hand_broken_files(pipeline, tmp_path):
    settings, defs, _, _, _ = pipeline
    path = settings.artifacts / "datasets" / "instruction.jsonl"
    original = path.read_bytes()
    rows = read_jsonl(path)
    rows[0]["pos_index"] = [7]
    rows[1]["docs"] = rows[1]["docs"][:4]
    rows[2]["docs"][1] = rows[2]["docs"][0]
    rows[3]["answer"] = ""
    rows[4]["docs"][2] += " [IMAGE_REF: img-0123456789abcdef]"
    try:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + "not json\n")
        check = next(c for c in dataset_checks if "instruction_dataset" in c.node_def.name)
        results = {r.check_name: r for r in check(artifacts=defs.resources["artifacts"],
                                                   raw_data=defs.resources["raw_data"],
                                                   synthesis=defs.resources["synthesis"])}
    finally:
        path.write_bytes(original)
    failed = {name for name, r in results.items() if not r.passed}
    assert failed == {"schema", "pos_index_in_range", "exact_document_count", "no_duplicate_documents",
                      "no_empty_text", "no_raw_figure_references"}
    assert results["pos_index_in_range"].metadata["observed"].value == 1


def test_nightly_schedule_runs_only_when_the_corpus_changed(pipeline):
    settings, defs, instance, _, _ = pipeline
    when = dt.datetime(2026, 11, 29, 2, 0, tzinfo=dt.timezone.utc)
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when, resources=defs.resources)
    assert isinstance(nightly_resynthesis(context), dg.SkipReason)

    (settings.raw_data / "new_note.md").write_text("# Spare parts\n\nThe EG-400 fuse is a 2 A slow-blow type.")
    backdate(settings.raw_data / "new_note.md")
    ingested = ingest_all(defs, instance)
    assert list(ingested) and all(r.success for r in ingested.values())
    request = nightly_resynthesis(dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                                            resources=defs.resources))
    assert isinstance(request, dg.RunRequest) and request.run_key.endswith("-20261129")
