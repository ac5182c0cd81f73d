"""End to end through a real `dagster dev` (webserver + daemon): drop a file, the sensor ingests it."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from clara_pipeline.ingest.sources import partition_key
from clara_pipeline.settings import ensure_dagster_home
from clara_pipeline.storage import sha256_file
from tests.clara_pipeline import docgen

pytestmark = pytest.mark.slow

MATERIALIZATION_QUERY = """{ assetOrError(assetKey: {path: ["extracted_document"]}) {
  ... on Asset { definition { partitionDefinition { name } }
                 assetMaterializations(limit: 1) { partition metadataEntries { label } } } } }"""
RUNS_QUERY = """{ runsOrError(filter: {pipelineName: "ingest_documents"}) {
  ... on Runs { results { runId status tags { key value } } } } }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["data"]


@contextlib.contextmanager
def dagster_dev(tmp_path, env):
    """A real `dagster dev` on a free loopback port; yields (port, process, log file) once the webserver answers."""
    port = free_port()
    log = tmp_path / "dagster_dev.log"
    with open(log, "wb") as out:
        # Own session: `dagster dev` in the background ignores SIGINT/SIGTERM otherwise, and we can signal
        # its whole process group (webserver, daemon, code server, run workers).
        proc = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-m", "clara_pipeline.definitions",
                                 "-h", "127.0.0.1", "-p", str(port)],
                                cwd=tmp_path, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5).status == 200,
                 120, "the webserver", proc, log)
        yield port, proc, log
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def wait_for(predicate, timeout: float, what: str, proc, log):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster dev exited with {proc.returncode} while waiting for {what}:\n{log.read_text()[-3000:]}")
        try:
            value = predicate()
            if value:
                return value
        except OSError:
            pass
        time.sleep(1.0)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n{log.read_text()[-3000:]}")


def test_sensor_ingests_a_dropped_file_under_dagster_dev(tmp_path):
    raw, artifacts = tmp_path / "raw", tmp_path / "artifacts"
    raw.mkdir()
    home = ensure_dagster_home(tmp_path / "home")
    env = {"DAGSTER_HOME": str(home), "CLARA_RAW_DATA": str(raw), "CLARA_ARTIFACTS": str(artifacts)}
    with dagster_dev(tmp_path, env) as (port, proc, log):
        path = docgen.sample_docx(raw / "travel_policy.docx")
        key = partition_key("travel_policy.docx", sha256_file(path))

        def finished_run():
            for run in graphql(port, RUNS_QUERY)["runsOrError"]["results"]:
                tags = {t["key"]: t["value"] for t in run["tags"]}
                if tags.get("dagster/partition") == key and run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                    return run, tags
            return None

        run, tags = wait_for(finished_run, 240, f"the sensor's run for {key}", proc, log)
        assert run["status"] == "SUCCESS", log.read_text()[-3000:]
        assert tags["dagster/sensor_name"] == "raw_data_sensor"
        stored = json.loads((artifacts / "documents" / key / "extracted.json").read_text())["document"]
        assert stored["source"] == "travel_policy.docx" and stored["text"].startswith("# Travel Policy")
        assert (artifacts / "documents" / key / "images.json").exists()

        # what the UI shows: the partitioned asset, its latest materialization and metadata
        asset = graphql(port, MATERIALIZATION_QUERY)["assetOrError"]
        assert asset["definition"]["partitionDefinition"]["name"] == "documents"
        (latest,) = asset["assetMaterializations"]
        assert latest["partition"] == key
        assert {"pages", "chars", "images", "preview", "warnings"} <= {e["label"] for e in latest["metadataEntries"]}


BACKFILL_MUTATION = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL_QUERY = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status } } }"""
BACKFILL_RUNS_QUERY = """query($id: String!) { runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
  ... on Runs { results { status stepStats { stepKey startTime endTime } } } } }"""
STAGE1_QUERY = """{ assetOrError(assetKey: {path: ["clara_stage1_pretrain"]}) {
  ... on Asset { definition { partitionDefinition { name } }
                 assetMaterializations(limit: 5) { partition metadataEntries { label } } } } }"""


def test_a_backfill_trains_stage_1_at_two_compression_rates_one_at_a_time(tmp_path):
    """What a user does in the UI: backfill a training stage over two partitions; the runs queue behind the gpu
    pool, and each partition shows its metadata."""
    import dagster as dg

    from clara_pipeline.defs.training import GPU_POOL, ensure_gpu_pool_limit
    from tests.clara_pipeline.training.conftest import write_tiny_datasets

    artifacts = tmp_path / "artifacts"
    write_tiny_datasets(artifacts / "datasets")
    (tmp_path / "raw").mkdir()
    home = ensure_dagster_home(tmp_path / "home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert ensure_gpu_pool_limit(instance)  # what `clara dev` does before it starts dagster dev
    env = {"DAGSTER_HOME": str(home), "CLARA_RAW_DATA": str(tmp_path / "raw"), "CLARA_ARTIFACTS": str(artifacts),
           "OMP_NUM_THREADS": "1", "CLARA_BASE_MODEL": "tiny"}  # the backfill, not the base, is under test
    with dagster_dev(tmp_path, env) as (port, proc, log):
        params = {"partitionNames": ["4", "16"], "assetSelection": [{"path": ["clara_stage1_pretrain"]}],
                  "fromFailure": False}
        launched = graphql(port, BACKFILL_MUTATION, {"params": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill = launched["backfillId"]

        def finished():
            status = graphql(port, BACKFILL_QUERY, {"id": backfill})["partitionBackfillOrError"]["status"]
            return status if status not in ("REQUESTED",) else None

        status = wait_for(finished, 420, f"backfill {backfill}", proc, log)
        runs = graphql(port, BACKFILL_RUNS_QUERY, {"id": backfill})["runsOrError"]["results"]
        assert status == "COMPLETED_SUCCESS" and [r["status"] for r in runs] == ["SUCCESS", "SUCCESS"], \
            (status, runs, log.read_text()[-3000:])
        asset = graphql(port, STAGE1_QUERY)["assetOrError"]
    # the gpu pool let one training step run at a time: the two runs' steps do not overlap
    steps = sorted((step["startTime"], step["endTime"]) for run in runs for step in run["stepStats"]
                   if step["stepKey"] == "clara_stage1_pretrain")
    assert len(steps) == 2 and steps[0][1] <= steps[1][0], steps
    assert asset["definition"]["partitionDefinition"] is not None
    materializations = {m["partition"]: {e["label"] for e in m["metadataEntries"]} for m in asset["assetMaterializations"]}
    assert set(materializations) == {"4", "16"}
    for labels in materializations.values():
        assert {"final_loss", "best_loss", "steps", "tokens_per_s", "loss_curve", "checkpoint", "checkpoint_bytes",
                "train_wall_s"} <= labels
    for rate in (4, 16):
        assert (artifacts / "training" / f"rate-{rate}" / "pretrain" / "current.json").exists()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.event_log_storage.get_concurrency_info(GPU_POOL).slot_count == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clara_dev_stops_with_all_its_processes_within_10_s(tmp_path, sig):
    """SIGTERM from a process manager, or Ctrl-C's SIGINT: the webserver, daemon and code servers go too."""
    import psutil

    (tmp_path / "raw").mkdir()
    port = free_port()
    log = tmp_path / "clara_dev.log"
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "CLARA_RAW_DATA": str(tmp_path / "raw"),
           "CLARA_ARTIFACTS": str(tmp_path / "artifacts")}
    with open(log, "wb") as out:
        # In the background of a script, as a process manager or `clara dev &` starts it: its own session, and
        # SIGINT ignored (what a non-interactive shell does to background jobs; dagster dev then never stopped).
        proc = subprocess.Popen([sys.executable, "-m", "clara_pipeline.cli", "dev", "-p", str(port)], cwd=tmp_path,
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    tree = []
    try:
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5).status == 200,
                 180, "the webserver", proc, log)
        tree[:] = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        assert len(tree) >= 4, [p.cmdline() for p in tree]  # clara dev, dagster dev, webserver, daemon (+ code servers)
        started = time.monotonic()
        proc.send_signal(sig)

        def running(process) -> bool:  # a zombie has stopped: it only waits for its parent (or init) to reap it
            with contextlib.suppress(psutil.NoSuchProcess):
                return process.status() != psutil.STATUS_ZOMBIE
            return False

        while any(running(p) for p in tree) and time.monotonic() - started < 10:
            time.sleep(0.1)
        assert not [p for p in tree if running(p)], [(p.pid, p.cmdline()) for p in tree if running(p)]
        assert proc.wait(timeout=1) == 0
    finally:
        for process in tree:  # whatever is left when the test failed
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
