"""Runs whose process was killed are marked as failed at start-up, so they never hold a slot of the run queue."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from clara_pipeline.settings import ensure_dagster_home
from clara_pipeline.stale_runs import PID_TAG, fail_runs_of_dead_processes

SLEEPY = '''
import sys, time
import dagster as dg

@dg.op
def wait() -> None:
    time.sleep(600)

@dg.job
def sleepy():
    wait()

if __name__ == "__main__":
    from clara_pipeline.stale_runs import owner_tags

    with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
        sleepy.execute_in_process(instance=instance, tags=owner_tags() if sys.argv[2] == "tagged" else {})
'''


def new_instance(home: Path) -> Path:
    """An instance whose storage exists before several processes open it (two creating it at once collide)."""
    ensure_dagster_home(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
    return home


def wait_for_started_runs(home: Path, count: int, timeout: float = 120, job: str | None = None) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED], job_name=job))
            # started, and its in-process executor has reported its pid
            if len(runs) >= count and all(instance.get_records_for_run(
                    r.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records for r in runs):
                return runs
        time.sleep(0.5)
    pytest.fail(f"no {count} started runs after {timeout} s")


@pytest.mark.parametrize("tagged", [True, False], ids=["owner tags", "engine event pid"])
def test_only_the_runs_of_dead_processes_are_failed(tmp_path, tagged):
    home = new_instance(tmp_path / "home")
    script = tmp_path / "sleepy.py"
    script.write_text(SLEEPY)
    mode = "tagged" if tagged else "plain"
    killed = subprocess.Popen([sys.executable, str(script), str(home), mode])
    wait_for_started_runs(home, 1)
    live = subprocess.Popen([sys.executable, str(script), str(home), mode])
    try:
        runs = wait_for_started_runs(home, 2)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=10)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            first = min(runs, key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp)
            assert (PID_TAG in first.tags) == tagged
            # the killed run held the gpu pool's one slot in a step (as a run killed while training does)
            storage = instance.event_log_storage
            storage.set_concurrency_slots("gpu", 1)
            storage.claim_concurrency_slot("gpu", first.run_id, "wait")
            assert storage.get_concurrency_info("gpu").active_run_ids == {first.run_id}
            lines = fail_runs_of_dead_processes(instance, by="a test")
            assert storage.get_concurrency_info("gpu").active_slot_count == 0  # freed: later runs do not wait
            assert len(lines) == 1 and lines[0].startswith(f"run {first.run_id[:8]} of sleepy was left STARTED: ")
            assert lines[0].endswith("is gone (killed, or the machine restarted); marked as failed")
            statuses = {r.run_id: instance.get_run_by_id(r.run_id).status for r in runs}
            assert statuses.pop(first.run_id) == dg.DagsterRunStatus.FAILURE
            assert list(statuses.values()) == [dg.DagsterRunStatus.STARTED]  # its process still runs
            assert fail_runs_of_dead_processes(instance, by="a test") == []  # nothing more to do
    finally:
        live.kill()
        live.wait(timeout=10)


@pytest.mark.slow
def test_a_killed_clara_run_leaves_no_run_started_after_the_next_one(tmp_path):
    from clara_pipeline.llm.loopback import LoopbackServer
    from tests.clara_pipeline import docgen

    raw, home = tmp_path / "raw", new_instance(tmp_path / "home")
    raw.mkdir()
    docgen.sample_docx(raw / "travel.docx")  # two figures: the captions wait on the slow endpoint
    env = {**os.environ, "CLARA_RAW_DATA": str(raw), "CLARA_ARTIFACTS": str(tmp_path / "out"),
           "DAGSTER_HOME": str(home)}
    with LoopbackServer(latency_s=120) as server:
        first = subprocess.Popen([sys.executable, "-m", "clara_pipeline.cli", "run", "--skip-training"],
                                 env={**env, "CLARA_LLM_BASE_URL": server.url}, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            (run,) = wait_for_started_runs(home, 1, job="ingest_documents")
        finally:
            os.killpg(first.pid, signal.SIGKILL)  # the whole `clara run` process group, as the fault suite does
            first.wait(timeout=10)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED  # nobody is left to end it

    second = subprocess.run([sys.executable, "-m", "clara_pipeline.cli", "run", "--skip-training"], env=env,
                            capture_output=True, text=True, timeout=600)
    line = next((line for line in second.stdout.splitlines() if line.startswith("  cleaned up  ")), "")
    assert line.startswith(f"  cleaned up  run {run.run_id[:8]} of ingest_documents[travel_docx-"), second.stdout
    assert f"was left STARTED: the process that ran it (clara run {first.pid}) is gone" in line
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        in_progress = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED,
                                                                         dg.DagsterRunStatus.STARTING,
                                                                         dg.DagsterRunStatus.QUEUED]))
        assert in_progress == []
