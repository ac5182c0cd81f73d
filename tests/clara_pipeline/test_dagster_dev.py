"""End to end through a real `dagster dev` (webserver + daemon): drop a file, the sensor ingests it."""

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


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["data"]


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
    port = free_port()
    log = tmp_path / "dagster_dev.log"
    env = {**os.environ, "DAGSTER_HOME": str(home), "CLARA_RAW_DATA": str(raw), "CLARA_ARTIFACTS": str(artifacts)}
    with open(log, "wb") as out:
        # Own session: `dagster dev` in the background ignores SIGINT/SIGTERM otherwise, and we can signal
        # its whole process group (webserver, daemon, code server, run workers).
        proc = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-m", "clara_pipeline.definitions",
                                 "-h", "127.0.0.1", "-p", str(port)],
                                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5).status == 200,
                 120, "the webserver", proc, log)

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
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
