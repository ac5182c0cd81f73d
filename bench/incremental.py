"""Incremental synthesis: a 100-document corpus through the pipeline, then one more document.

    python bench/incremental.py [--documents 100 --latency 0.05]

Every LLM call goes over HTTP to the loopback OpenAI-compatible server (in a child process, with the given
latency), through the same Dagster jobs as `clara run`: per document `ingest_documents` (extract, caption,
enrich), then `synthesize_datasets` (corpus, QA synthesis, datasets). Then one document is added and the same
jobs run again. Prints one JSON object: the calls of each run by task, the calls the new document needed
(its figures and its chunks), and the wall times. Target: the second run's calls are exactly the new
document's.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import docx
from docx.shared import Inches
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import dagster as dg  # noqa: E402

from clara_pipeline.defs.resources import LLMResource  # noqa: E402
from clara_pipeline.definitions import build_definitions  # noqa: E402
from clara_pipeline.llm.loopback import LoopbackProcess  # noqa: E402
from clara_pipeline.pipeline import sync_partitions  # noqa: E402
from clara_pipeline.settings import Settings  # noqa: E402

PARTS = "controller sensor relay fuse terminal gateway cable valve pump filter display module".split()


def write_document(raw: Path, i: int, rng: random.Random) -> None:
    """A maintenance note (DOCX) with a few facts and one figure of its own, inline."""
    part = rng.choice(PARTS)
    image = Image.new("RGB", (360, 220), (250, 250, 245))
    draw = ImageDraw.Draw(image)
    draw.rectangle([20, 20, 200, 120], outline=(0, 0, 0), fill=(rng.randint(0, 255), 140, 200))
    draw.text((30, 60), f"{part} {i}", fill=(0, 0, 0))
    picture = io.BytesIO()
    image.save(picture, "PNG")
    document = docx.Document()
    document.add_heading(f"Maintenance note {i}: {part}", level=1)
    document.add_paragraph(f"The {part} of unit {i} must be inspected every {rng.randint(2, 24)} months by a "
                           "certified technician.")
    document.add_paragraph(f"Replace the {part} when its resistance exceeds {rng.randint(5, 90)} ohms or after "
                           f"{rng.randint(1, 9)} thousand operating hours. Record the serial number K{i:04d} in the "
                           "service log before removal.")
    document.add_paragraph().add_run().add_picture(io.BytesIO(picture.getvalue()), width=Inches(3))
    document.add_paragraph(f"Figure {i}: location of the {part} in cabinet {rng.choice('ABCDEF')}{rng.randint(1, 9)}.")
    document.add_paragraph(f"After replacement, run the self-test for {rng.randint(10, 60)} seconds and check that "
                           f"the status LED turns green. Report a red LED to support line {rng.randint(100, 999)} "
                           "within one working day.")
    document.save(raw / f"note_{i:03}.docx")


def run_pipeline(defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings) -> tuple[float, list[str]]:
    """Per-document runs for new partitions, then the synthesis job; returns (seconds, new partition keys)."""
    started = time.perf_counter()
    added = sync_partitions(instance, settings).add
    job = defs.resolve_job_def("ingest_documents")
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    for key in added:
        assert job.execute_in_process(instance=instance, partition_key=key, run_config=quiet).success, key
    result = defs.resolve_job_def("synthesize_datasets").execute_in_process(instance=instance, run_config=quiet)
    assert result.success
    return time.perf_counter() - started, added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="clara-incremental-") as tmp, LoopbackProcess(latency_s=args.latency) as server:
        root = Path(tmp)
        raw = root / "raw"
        raw.mkdir()
        for i in range(args.documents):
            write_document(raw, i, rng)
        settings = Settings(raw_data=raw, artifacts=root / "artifacts", dagster_home=root / "home")
        os.environ.update({"CLARA_LLM_BASE_URL": server.url, "CLARA_LLM_MODEL": "loopback-chat"})
        defs = build_definitions(settings, resources={"llm": LLMResource.from_env()})
        with dg.instance_for_test() as instance:
            full_s, _ = run_pipeline(defs, instance, settings)
            full_calls = server.stats()
            manifest = json.loads((settings.artifacts / "corpus" / "manifest.json").read_text())

            write_document(raw, args.documents, rng)
            incremental_s, added = run_pipeline(defs, instance, settings)
            after = server.stats()
            manifest_after = json.loads((settings.artifacts / "corpus" / "manifest.json").read_text())

    new_calls = {task: after["by_task"].get(task, 0) - full_calls["by_task"].get(task, 0)
                 for task in ("caption", "chunk_synthesis")}
    new_doc = next(d for d in manifest_after["documents"] if d["key"] in added)
    expected = {"caption": 1, "chunk_synthesis": manifest_after["chunks"] - manifest["chunks"]}
    print(json.dumps({
        "benchmark": "incremental",
        "documents": args.documents,
        "latency_s": args.latency,
        "full_run": {"wall_s": round(full_s, 2), "calls": full_calls["by_task"], "chunks": manifest["chunks"]},
        "incremental_run": {"wall_s": round(incremental_s, 2), "calls": new_calls,
                            "new_document_needs": expected, "new_document_chunks": len(new_doc["chunks"])},
        "calls_equal_new_document_needs": new_calls == expected,
        "ratio_incremental_over_full_wall": round(incremental_s / full_s, 3),
    }))


if __name__ == "__main__":
    main()
