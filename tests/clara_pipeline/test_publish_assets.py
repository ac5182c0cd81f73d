"""Write, check, publish: a failed, empty or check-failing step never replaces the last good artifacts, and the
datasets are published as one set (real Dagster instance, offline provider or the loopback HTTP server)."""

import errno
import os

import dagster as dg
import pytest

from clara_pipeline import storage
from clara_pipeline.definitions import build_definitions
from clara_pipeline.defs.resources import LLMResource, SynthesisSettings
from clara_pipeline.llm.loopback import FaultPlan, LoopbackServer
from clara_pipeline.pipeline import failure_reason
from clara_pipeline.storage import STAGING_DIR, ArtifactStore
from tests.clara_pipeline.conftest import backdate
from tests.clara_pipeline.test_synthesis_assets import ingest_all
from tests.clara_pipeline.tmpfs import mounted_tmpfs

NOTES = "\n\n".join(
    f"## Step {i}\n\nTighten terminal X{i} to {0.4 + i / 10:.1f} N·m and check that the LED L{i} turns green within "
    f"{10 + i} seconds. If it stays red after {30 + i} seconds, replace fuse F{i} (a {i + 1} A slow-blow type)."
    for i in range(1, 13))
SMALL = dict(doc_max_length=128, chunk_overlap_tokens=16, top_k=3, candidates=5)
DATASET_ASSETS = ("pretrain_dataset", "instruction_dataset", "end_to_end_dataset")


def published(store: ArtifactStore) -> dict[str, bytes]:
    """Every file a later step reads, by its path under the root."""
    paths = [store.chunks_path, store.corpus_manifest_path, store.qa_pairs_path, store.paraphrases_path,
             store.synthesis_report_path, store.datasets_state_path]
    paths += [store.dataset_path(s) for s in storage.DATASET_FILES]
    paths += [store.dataset_eval_path(s) for s in ("instruct", "e2e")]
    return {p.relative_to(store.root).as_posix(): p.read_bytes() for p in paths}


def latest_run_ids(instance, assets) -> dict[str, str]:
    return {a: instance.get_latest_materialization_event(dg.AssetKey(a)).run_id for a in assets}


@pytest.fixture
def good_run(settings, instance):
    """A note through ingestion and the synthesis job (offline provider): the last good artifacts."""
    (settings.raw_data / "steps.md").write_text(f"# Maintenance steps\n\n{NOTES}\n")
    backdate(settings.raw_data / "steps.md")
    defs = build_definitions(settings, resources={"synthesis": SynthesisSettings(**SMALL)})
    assert all(r.success for r in ingest_all(defs, instance).values())
    result = defs.resolve_job_def("synthesize_datasets").execute_in_process(instance=instance, raise_on_error=False)
    assert result.success, failure_reason(result)
    store = defs.resources["artifacts"].store()
    files = published(store)
    assert all(files.values())
    return defs, store, files, result.run_id


def datasets_only(settings, **resources) -> dg.JobDefinition:
    defs = build_definitions(settings, resources=resources)
    return defs.get_implicit_global_asset_job_def().get_subset(asset_selection={dg.AssetKey(a) for a in DATASET_ASSETS})


def test_a_failed_synthesis_keeps_the_last_good_files_and_the_datasets_built_from_them(settings, instance, good_run):
    """The reported bug: every chunk failing left qa.jsonl and paraphrases.jsonl empty, and the datasets built
    afterwards were written with 0 rows before the step failed."""
    _, store, before, good_run_id = good_run
    with LoopbackServer(faults=FaultPlan(rates={"bad_request": 1.0})) as server:
        failing = LLMResource(base_url=server.url, api_key="sk-test", model="another-model", max_retries=0,
                              max_reasks=0)
        defs = build_definitions(settings, resources={"llm": failing, "synthesis": SynthesisSettings(**SMALL)})
        result = defs.resolve_job_def("synthesize_datasets").execute_in_process(instance=instance,
                                                                                raise_on_error=False)
    assert not result.success
    assert "chunks failed synthesis" in failure_reason(result)
    assert published(store) == before  # nothing replaced: not the synthesis, not the datasets
    assert latest_run_ids(instance, ["qa_synthesis", *DATASET_ASSETS]) == dict.fromkeys(
        ["qa_synthesis", *DATASET_ASSETS], good_run_id)

    # the datasets materialized again afterwards are built from the last good synthesis
    job = datasets_only(settings, synthesis=SynthesisSettings(**SMALL))
    assert job.execute_in_process(instance=instance).success
    assert published(store) == before
    assert not os.listdir(store.root / STAGING_DIR) or os.listdir(store.root / STAGING_DIR) == ["publish.lock"]


def test_the_datasets_are_published_as_one_set_or_not_at_all(settings, instance, good_run):
    """An empty stage-3 file fails the step before any file of the set is replaced (it used to leave new
    pretrain and instruction files beside the old end-to-end file)."""
    _, store, before, good_run_id = good_run
    other = SynthesisSettings(**{**SMALL, "seed": 7, "held_out_fraction": 0.3, "candidates": 500})
    result = datasets_only(settings, synthesis=other).execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    reason = failure_reason(result)
    assert "end_to_end_dataset has no rows" in reason and "each row needs 500 documents" in reason
    assert "nothing was published" in reason
    assert published(store) == before
    assert latest_run_ids(instance, DATASET_ASSETS) == dict.fromkeys(DATASET_ASSETS, good_run_id)

    # the same settings with a feasible candidate count publish a new, whole set
    feasible = SynthesisSettings(**{**SMALL, "seed": 7, "held_out_fraction": 0.3})
    assert datasets_only(settings, synthesis=feasible).execute_in_process(instance=instance).success
    after = published(store)
    changed = {name for name in after if after[name] != before[name]}
    assert {"datasets/instruction.jsonl", "datasets/end_to_end.jsonl", "datasets/end_to_end_eval.jsonl"} <= changed


def test_a_dataset_that_fails_its_checks_is_not_published(settings, instance, good_run):
    """The blocking checks run on the staged files: a raw-data path in the training text fails the step by name."""
    _, store, before, good_run_id = good_run
    (settings.raw_data / "paths.md").write_text(
        f"# Where files go\n\nThe gateway's manuals are kept in {settings.raw_data}/manuals on the file server. "
        "Copy the PDF to a USB stick of at least 2 GB before the maintenance window starts.\n")
    backdate(settings.raw_data / "paths.md")
    defs = build_definitions(settings, resources={"synthesis": SynthesisSettings(**SMALL)})
    assert all(r.success for r in ingest_all(defs, instance).values())
    result = defs.resolve_job_def("synthesize_datasets").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    reason = failure_reason(result)
    assert "no_raw_figure_references" in reason and str(settings.raw_data) in reason
    after = published(store)
    assert {k: v for k, v in after.items() if k.startswith("datasets/")} == \
        {k: v for k, v in before.items() if k.startswith("datasets/")}
    assert after["synthesis/qa.jsonl"] != before["synthesis/qa.jsonl"]  # the synthesis itself passed and moved on
    assert latest_run_ids(instance, DATASET_ASSETS) == dict.fromkeys(DATASET_ASSETS, good_run_id)



def fill_the_disk_under_datasets(monkeypatch) -> None:
    """Every write of a file under a `datasets` folder fails with ENOSPC, as on a full disk."""
    real = storage._write_all

    def full_disk(handle, data):
        if f"{os.sep}datasets{os.sep}" in str(handle.name):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(handle, data)

    monkeypatch.setattr(storage, "_write_all", full_disk)


def test_disk_full_names_errno_28_and_the_file_and_keeps_the_last_good_set(settings, instance, good_run,
                                                                           monkeypatch):
    _, store, before, _ = good_run
    fill_the_disk_under_datasets(monkeypatch)
    other = SynthesisSettings(**{**SMALL, "seed": 7})
    result = datasets_only(settings, synthesis=other).execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    reason = failure_reason(result)
    assert "[Errno 28] No space left on device" in reason and str(store.datasets_dir) in reason, reason
    assert "DagsterExecutionStepExecutionError" not in reason
    assert published(store) == before


@pytest.fixture
def tmpfs_settings(settings, tmp_path):
    """The settings with the artifacts on a real 8 MiB tmpfs (needs root and a container that lets it mount)."""
    with mounted_tmpfs(tmp_path / "tmpfs", "8m") as mount:
        yield type(settings)(raw_data=settings.raw_data, artifacts=mount / "artifacts",
                             dagster_home=settings.dagster_home)


def test_a_real_full_disk_fails_the_datasets_with_errno_28_and_keeps_the_last_good_set(tmpfs_settings, instance):
    settings = tmpfs_settings
    (settings.raw_data / "steps.md").write_text(f"# Maintenance steps\n\n{NOTES}\n")
    backdate(settings.raw_data / "steps.md")
    defs = build_definitions(settings, resources={"synthesis": SynthesisSettings(**SMALL)})
    assert all(r.success for r in ingest_all(defs, instance).values())
    assert defs.resolve_job_def("synthesize_datasets").execute_in_process(instance=instance).success
    store = defs.resources["artifacts"].store()
    before = published(store)
    # fill the disk but for a few KiB: less than the new dataset files need
    stat = os.statvfs(store.root)
    (store.root / "filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 8 * 1024))
    other = SynthesisSettings(**{**SMALL, "seed": 7})
    result = datasets_only(settings, synthesis=other).execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    reason = failure_reason(result)
    assert "[Errno 28] No space left on device" in reason and str(store.datasets_dir) in reason, reason
    assert published(store) == before
    assert os.listdir(store.root / STAGING_DIR) == ["publish.lock"]


def test_clara_run_prints_the_disk_full_cause_in_one_line(settings, monkeypatch):
    from clara_pipeline.pipeline import run_main
    import io

    for part in range(8):  # enough chunks for the default 20 candidates per stage-3 row
        steps = "\n\n".join(
            f"## Step {i}\n\nTighten terminal X{i} to {0.4 + i / 10:.1f} N·m and check that the LED L{i} turns green "
            f"within {10 + i} seconds. If it stays red after {30 + i} seconds, replace fuse F{i} (a {i + 1} A type)."
            for i in range(part * 12, part * 12 + 12))
        (settings.raw_data / f"steps_{part}.md").write_text(f"# Maintenance steps, part {part}\n\n{steps}\n")
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))  # run_main sets it; restored afterwards
    fill_the_disk_under_datasets(monkeypatch)
    out = io.StringIO()
    assert run_main(settings, train=False, out=out) == 1
    line = next((line for line in out.getvalue().splitlines() if line.startswith("synthesis FAILED")), out.getvalue())
    assert "[Errno 28] No space left on device" in line and str(settings.artifacts / "datasets") in line, line
    assert "the disk is full" in line and "Dagster" not in line
