"""The pipeline against a real HTTP endpoint: the loopback OpenAI-compatible server and the real openai client."""

import io
import json

import dagster as dg
import docx
from docx.shared import Inches
import pytest

from clara_pipeline.defs.resources import LLMResource, SynthesisSettings
from clara_pipeline.definitions import build_definitions
from clara_pipeline.llm.loopback import LoopbackServer
from tests.clara_pipeline import docgen
from tests.clara_pipeline.conftest import backdate
from tests.clara_pipeline.test_synthesis_assets import ingest_all

NOTES = "\n\n".join(
    f"## Step {i}\n\nTighten terminal X{i} to {0.4 + i / 10:.1f} N·m and check that the LED L{i} turns green within "
    f"{10 + i} seconds. If it stays red after {30 + i} seconds, replace fuse F{i} (a {i + 1} A slow-blow type)."
    for i in range(1, 9))


def test_llm_calls_are_paid_once_and_only_for_new_documents(settings, instance, monkeypatch):
    docgen.sample_docx(settings.raw_data / "travel.docx")  # two figures
    (settings.raw_data / "steps.md").write_text(f"# Maintenance steps\n\n{NOTES}\n")
    for path in settings.raw_data.iterdir():
        backdate(path)
    with LoopbackServer(api_key="sk-loopback") as server:
        monkeypatch.setenv("CLARA_LLM_BASE_URL", server.url)
        monkeypatch.setenv("CLARA_LLM_API_KEY", "sk-loopback")
        monkeypatch.setenv("CLARA_LLM_MODEL", "loopback-chat")
        small = SynthesisSettings(doc_max_length=128, chunk_overlap_tokens=16, top_k=3, candidates=5)
        defs = build_definitions(settings, resources={"llm": LLMResource.from_env(), "synthesis": small})
        synthesis_job = defs.resolve_job_def("synthesize_datasets")

        first = ingest_all(defs, instance)
        assert all(r.success for r in first.values())
        assert synthesis_job.execute_in_process(instance=instance).success
        captions, chunks = server.stats.by_task["caption"], server.stats.by_task["chunk_synthesis"]
        manifest = json.loads((settings.artifacts / "corpus" / "manifest.json").read_text())
        assert captions == 2 and chunks == manifest["chunks"] and chunks > 5
        assert server.stats.auth_failures == 0

        # everything again: every answer comes from the cache
        job = defs.resolve_job_def("ingest_documents")
        for key in first:
            assert job.execute_in_process(instance=instance, partition_key=key).success
        assert synthesis_job.execute_in_process(instance=instance).success
        assert server.stats.by_task["caption"] == captions and server.stats.by_task["chunk_synthesis"] == chunks

        # one new document: calls for its figure and its chunks only
        note = docx.Document()
        note.add_heading("Fuse replacement", level=1)
        note.add_paragraph("Open the cover of the EG-400 before replacing fuse F3. Switch off the 24 V supply first.")
        note.add_paragraph().add_run().add_picture(io.BytesIO(docgen.png(label="fuse F3")), width=Inches(2))
        note.add_paragraph("Use only a 4 A slow-blow fuse of size 5 x 20 mm. Close the cover, switch the supply on "
                           "and check that the PWR LED lights green within 10 seconds.")
        note.save(settings.raw_data / "fuse_note.docx")
        backdate(settings.raw_data / "fuse_note.docx")
        added = ingest_all(defs, instance)
        assert len(added) == 1 and all(r.success for r in added.values())
        assert synthesis_job.execute_in_process(instance=instance).success
        manifest_after = json.loads((settings.artifacts / "corpus" / "manifest.json").read_text())
        new_chunks = manifest_after["chunks"] - manifest["chunks"]
        assert server.stats.by_task["caption"] - captions == 1
        assert server.stats.by_task["chunk_synthesis"] - chunks == new_chunks > 0

    qa = _latest_metadata(instance, "qa_synthesis")
    assert qa["provider"] == "openai-compatible" and qa["chunks_failed"] == 0
    assert qa["cache_hits"] == manifest["chunks"] and qa["http_requests"] == new_chunks


def _latest_metadata(instance, asset):
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}
