"""The `clara` console script, run as a real subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clara_pipeline import docgen

CLARA = [sys.executable, "-m", "clara_pipeline.cli"]


def clara(*args, env=None, cwd=None):
    return subprocess.run([*CLARA, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          cwd=cwd, timeout=600)


def test_extract_prints_the_document_as_json(tmp_path):
    path = docgen.sample_pdf(tmp_path / "guide.pdf")
    result = clara("extract", str(path), "--images-dir", str(tmp_path / "imgs"))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["format"] == "pdf" and len(doc["pages"]) == 3
    assert [set(i) >= {"id", "sha256", "width", "height", "page"} for i in doc["images"]] == [True, True]
    assert doc["warnings"][0]["code"] == "image_repeated"
    assert len(list((tmp_path / "imgs").rglob("*.*"))) == 2


@pytest.mark.parametrize("name, content, reason", [
    ("empty.pdf", b"", "the file is empty (0 bytes)"),
    ("slides.key", b"x", "unsupported file type '.key'"),
])
def test_extract_fails_with_a_one_line_reason(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    result = clara("extract", str(tmp_path / name))
    assert result.returncode == 1 and result.stdout == ""
    # named as typed, not by its base name
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"clara extract: {tmp_path / name}: {reason}")


def test_run_goes_from_the_folder_to_the_datasets_in_a_persistent_instance(tmp_path, sample_corpus):
    raw = tmp_path / "raw"
    sample_corpus.rename(raw)
    docgen.sample_docx(raw / "policy.docx")
    (raw / "broken.pdf").write_bytes(b"not a pdf")
    env = {"CLARA_RAW_DATA": "raw", "CLARA_ARTIFACTS": "out", "DAGSTER_HOME": ""}  # DAGSTER_HOME unset: ./dagster_home

    first = clara("run", "--skip-training", env=env, cwd=tmp_path)
    assert first.returncode == 3, first.stdout + first.stderr  # finished; one document failed, and says so
    assert "12 documents: 11 ingested, 1 failed in " in first.stdout
    assert "  1 document failed to ingest\n      broken_pdf-" in first.stdout
    assert "FAILED      broken_pdf-" in first.stdout and "broken.pdf: not a readable PDF" in first.stdout
    assert (tmp_path / "dagster_home" / "dagster.yaml").exists()
    assert len(list((tmp_path / "out" / "documents").glob("policy_docx-*/enriched.json"))) == 1
    for name in ("pretrain.jsonl", "instruction.jsonl", "end_to_end.jsonl"):  # the other documents went through
        assert (tmp_path / "out" / "datasets" / name).stat().st_size > 0

    (raw / "broken.pdf").unlink()
    from clara_pipeline.training.ops import pending_op_build

    op_build = pending_op_build(0)  # DeepSpeed's C++ op, when this machine has not built it yet
    second = clara("run", "--compression-rate", "64", "--max-steps", "3", env=env, cwd=tmp_path)
    # finished; the offline stand-in finds nothing to ask about the two standalone images' chunks, and says so
    assert second.returncode == 3, second.stdout + second.stderr
    assert "  2 chunks without QA pairs (left out of the datasets)\n      eg200_front_panel.jpg, chunk 1 (" in second.stdout
    assert "too little text for questions" in second.stdout and "List should have" not in second.stdout
    assert second.stdout.splitlines()[-1] == "finished, with the items above left out (exit status 3)"
    assert "11 documents; 0 new, 1 removed" in second.stdout and "up to date  policy_docx-" in second.stdout
    assert "end_to_end_dataset   rows" in second.stdout
    # ... then the three stages at one compression rate, and the evaluation
    assert "training at compression rate 64: base model clara-cpu, 3 steps per stage" in second.stdout
    # the CPU base is pretrained first (20 steps in the tests: CLARA_CPU_BASE_STEPS), and the stages train on it
    assert "clara_base_model       cpu-pretrained " in second.stdout
    # its progress as it pretrains (every 50 steps and the last), before its summary line
    progress = second.stdout.index("  base pretraining step 20/20  loss ")
    assert "ETA 0:00" in second.stdout[progress:] and progress < second.stdout.index("clara_base_model       cpu")
    assert (tmp_path / "out" / "base_model" / "model.safetensors").exists()
    # while each stage trains: a line when it starts, then its steps as they finish (the first and the last of 3)
    for stage in ("pretrain", "instruct", "e2e"):
        assert f"training {stage} at rate 64: 3 steps on CPU, 1 process" in second.stdout
        assert f"  {stage:<8} step 1/3  loss " in second.stdout and f"  {stage:<8} step 3/3  loss " in second.stdout
    assert "ETA" in second.stdout and "tok/s" in second.stdout
    assert second.stdout.index("  e2e      step 3/3") < second.stdout.index("clara_stage1_pretrain ")
    assert (op_build is not None) == ("building DeepSpeed's deepspeed_shm_comm C++ op once" in second.stdout)
    for stage in ("pretrain", "instruct", "e2e"):
        (checkpoint,) = (tmp_path / "out" / "training" / "rate-64" / stage / "runs").glob("*/final")
        assert str(checkpoint) in second.stdout and (checkpoint / "config.json").exists()
        # the trainer's log lines go to the run folder, not to the terminal (without --verbose)
        assert "INFO clara_model.train: done: 3 steps" in (checkpoint.parent / "train.log").read_text()
    assert "clara_model.train" not in second.stderr
    assert "clara_stage3_e2e       3 steps" in second.stdout
    for system in ("stage3", "full_text_rag", "closed_book"):
        assert f"| {system} " in second.stdout
    assert (tmp_path / "out" / "evaluation" / "rate-64" / "report.json").exists()

    # the runs are in the instance, where the UI will show them
    import dagster as dg

    with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        ingest = instance.get_runs(filters=dg.RunsFilter(job_name="ingest_documents"))
        synthesis = instance.get_runs(filters=dg.RunsFilter(job_name="synthesize_datasets"))
        training = instance.get_runs(filters=dg.RunsFilter(job_name="train_all_stages"))
        evaluation = instance.get_runs(filters=dg.RunsFilter(job_name="evaluate_clara"))
        assert len(ingest) == 12 and len(synthesis) == 2 and len(training) == 1 and len(evaluation) == 1
        base = instance.get_runs(filters=dg.RunsFilter(job_name="build_base_model"))
        assert len(base) == 1
        assert {r.tags["clara/launched_by"] for r in ingest + synthesis + base + training} == {"clara run"}
        assert training[0].tags["dagster/partition"] == "64"
        assert instance.get_materialized_partitions(dg.AssetKey("clara_stage3_e2e")) == {"64"}
        # every failed check of every run, warnings included, was printed in one line, and nothing else was
        failed = []
        for run in ingest + synthesis + base + training + evaluation:
            for record in instance.get_records_for_run(
                    run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records:
                check = record.event_log_entry.dagster_event.event_specific_data
                if not check.passed:
                    partition = check.partition or run.tags.get("dagster/partition")
                    failed.append(f"check {check.asset_key.to_user_string()}{f'[{partition}]' if partition else ''} "
                                  f"{check.check_name} ({check.severity.value}): ")
    lines = [line.strip() for line in (first.stdout + second.stdout).splitlines()]
    printed = [line for line in lines if line.startswith("check ")]
    assert len(printed) == len(failed), (printed, failed)
    for prefix in failed:
        assert any(line.startswith(prefix) for line in printed), (prefix, printed)


def test_run_explains_a_corpus_too_small_for_the_datasets(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "note.md").write_text("# Note\n\nThe EG-400 gateway runs on 24 V DC and draws 6 W in normal use.\n")
    result = clara("run", env={"CLARA_RAW_DATA": str(raw), "CLARA_ARTIFACTS": str(tmp_path / "out"),
                               "DAGSTER_HOME": str(tmp_path / "home")}, cwd=tmp_path)
    assert result.returncode == 1
    assert "synthesis FAILED: instruction_dataset has no rows" in result.stdout, result.stdout
    assert "each row needs 20 documents" in result.stdout and "lower the top_k / candidates" in result.stdout
    assert "dropped: not enough negatives 5)" in result.stdout and "{" not in result.stdout  # words, not a dict


def test_validate_data_accepts_the_official_sample_and_reports_bad_lines(tmp_path):
    sample = Path(__file__).resolve().parents[1] / "clara_model" / "data" / "official_stage1_sample_head200.jsonl"
    ok = clara("validate-data", str(sample), "--stage", "pretrain")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "200 rows OK for stage pretrain" in ok.stdout

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "docs": ["d"], "answer": "a", "pos_index": [3]}\nnot json\n')
    result = clara("validate-data", str(bad), "--stage", "instruct")
    assert result.returncode == 1
    assert f"{bad}:1: " in result.stdout and f"{bad}:2: " in result.stdout


def test_extract_calls_a_folder_a_folder(tmp_path):
    (tmp_path / "reports").mkdir()
    result = clara("extract", str(tmp_path / "reports"))
    assert result.returncode == 1
    assert result.stderr == f"clara extract: {tmp_path / 'reports'}: a folder, not a document file\n"


def test_run_on_an_empty_folder_explains_itself_and_removes_nothing(tmp_path):
    import dagster as dg

    from clara_pipeline.settings import ensure_dagster_home

    raw, home = tmp_path / "raw", ensure_dagster_home(tmp_path / "home")
    raw.mkdir()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("documents", ["guide_md-aaaaaaaaaaaa", "policy_docx-bbbbbbbbbbbb"])
    result = clara("run", "--skip-training", env={"CLARA_RAW_DATA": str(raw), "CLARA_ARTIFACTS": str(tmp_path / "out"),
                                                  "DAGSTER_HOME": str(home)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"the raw-data folder {raw} holds no documents" in result.stderr
    assert "no document partition was removed" in result.stderr and "mounted" in result.stderr
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert len(instance.get_dynamic_partitions("documents")) == 2


def test_run_escapes_file_names_and_counts_only_what_it_ingested(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "note.md").write_text("# Note\n\nThe EG-400 gateway runs on 24 V DC and draws 6 W in normal use.\n")
    (raw / "x\n  ok          forged_md-000000000000  markdown.md").write_bytes(b"")  # fails: empty
    (raw / "passwd.txt").symlink_to("/etc/passwd")
    env = {"CLARA_RAW_DATA": str(raw), "CLARA_ARTIFACTS": str(tmp_path / "out"), "DAGSTER_HOME": str(tmp_path / "home")}
    first = clara("run", "--skip-training", env=env)
    lines = first.stdout.splitlines()
    # the name shows escaped (on its FAILED line and in the closing summary), never as a line of its own
    assert not [line for line in lines if "forged" in line and "x\\n  ok" not in line], first.stdout
    assert not [line for line in lines if line.lstrip().startswith("ok") and "forged" in line], first.stdout
    assert "x\\n  ok          forged_md-000000000000  markdown.md: the file is empty" in first.stdout
    assert "  skipped     passwd.txt: a symbolic link, not followed" in first.stdout
    assert "2 documents: 1 ingested, 1 failed in " in first.stdout
    assert "PreviewWarning" not in first.stderr and "Traceback" not in first.stderr, first.stderr

    second = clara("run", "--skip-training", env=env)
    assert "2 documents: 0 ingested, 1 up to date, 1 failed in " in second.stdout, second.stdout
