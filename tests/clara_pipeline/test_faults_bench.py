"""bench/faults.py: its comparison, and a reduced run of the suite (the endpoint-faults scenario and one kill)."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.clara_pipeline.conftest import REPO, SAMPLE_CORPUS

SCENARIO_KEYS = {"scenario", "finished", "data_lost", "data_lost_before_recovery", "extra_paid_calls",
                 "time_to_recover_s", "details"}


def _faults_module():
    spec = importlib.util.spec_from_file_location("bench_faults", REPO / "bench" / "faults.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _artifacts(root, files):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_differences_count_rows_and_files_against_the_reference(tmp_path):
    faults = _faults_module()
    reference = faults.compared_files(_artifacts(tmp_path / "ref", {
        "datasets/pretrain.jsonl": "a\nb\nc\n", "datasets/instruction.jsonl": "x\ny\n", "synthesis/qa.jsonl": "q\n",
        "datasets/state.json": "{}"}))
    assert set(reference) == {"datasets/pretrain.jsonl", "datasets/instruction.jsonl", "synthesis/qa.jsonl"}

    same = _artifacts(tmp_path / "same", {"datasets/pretrain.jsonl": "a\nb\nc\n", "datasets/instruction.jsonl": "x\ny\n",
                                          "synthesis/qa.jsonl": "q\n", "datasets/state.json": "{\"other\": 1}"})
    assert faults.differences(reference, same) == (0, {})

    # one row lost and one changed (2 + 1), instruction missing (2 rows), a file the reference has not (1)
    worse = _artifacts(tmp_path / "worse", {"datasets/pretrain.jsonl": "a\nB\n", "synthesis/qa.jsonl": "q\n",
                                            "corpus/chunks.jsonl": "c1\n"})
    lost, details = faults.differences(reference, worse)
    assert lost == 3 + 2 + 1
    assert details["datasets/instruction.jsonl"] == "missing"
    assert details["corpus/chunks.jsonl"] == "not in the reference"
    # on a fresh folder only what was published counts: a missing file is not made yet
    assert faults.differences(reference, worse, present_only=True)[0] == 3 + 1

    reordered = _artifacts(tmp_path / "reordered", {"datasets/pretrain.jsonl": "c\nb\na\n",
                                                    "datasets/instruction.jsonl": "x\ny\n", "synthesis/qa.jsonl": "q\n"})
    assert faults.differences(reference, reordered) == (2, {"datasets/pretrain.jsonl": "same rows, 2 out of place"})


@pytest.mark.slow
def test_fault_suite_reduced_reports_every_scenario_and_loses_nothing_under_endpoint_faults(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # enough chunks for the end-to-end rows' 20 candidates
    for name in ("eg400_user_manual_en.pdf", "eg_series_troubleshooting_faq.md", "firmware_release_notes.txt",
                 "field_service_procedure.docx", "policies/travel_and_expense_policy.docx"):
        shutil.copy(SAMPLE_CORPUS / name, corpus / name.replace("/", "_"))
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "faults.py"), "--quick", "--only", "endpoint_faults,kill", "--kills", "1",
         "--corpus", str(corpus), "--keep", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=1500, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)

    assert report["benchmark"] == "faults" and report["reference"]["paid_calls"] > 0
    assert set(report["reference"]["files"]) >= {"datasets/pretrain.jsonl", "datasets/instruction.jsonl",
                                                 "datasets/end_to_end.jsonl", "synthesis/qa.jsonl"}
    by_name = {s["scenario"]: s for s in report["scenarios"]}
    assert set(by_name) == {"endpoint_faults", "kill_ingestion_1"}
    for scenario in report["scenarios"]:
        assert set(scenario) == SCENARIO_KEYS, scenario["scenario"]
        assert isinstance(scenario["finished"], bool) and isinstance(scenario["data_lost"], int)
    faults = by_name["endpoint_faults"]
    assert faults["details"]["requests"] > report["reference"]["paid_calls"]  # faults were injected and retried
    assert sum(faults["details"]["faults_injected"].values()) > 0
    assert faults["finished"] and faults["data_lost"] == 0, faults
    assert report["total_wall_s"] > 0
