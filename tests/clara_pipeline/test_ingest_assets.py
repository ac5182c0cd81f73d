"""The ingestion assets, checks and sensor against a real (temporary) Dagster instance."""

import json
import re

import dagster as dg
import pytest

from clara_pipeline.defs.sensors import raw_data_sensor
from clara_pipeline.ingest.sources import partition_key
from clara_pipeline.storage import sha256_file
from tests.clara_pipeline import docgen
from tests.clara_pipeline.conftest import backdate


def tick(defs, instance, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources)
    result = raw_data_sensor(context)
    for request in result.dynamic_partitions_requests or []:  # what the daemon does with the result
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    return result


def run(defs, instance, key):
    return defs.resolve_job_def("ingest_documents").execute_in_process(
        instance=instance, partition_key=key, raise_on_error=False)


def key_of(path, rel):
    return partition_key(rel, sha256_file(path))


def failure_message(result) -> str:
    (event,) = [e for e in result.all_events if e.is_step_failure]
    return event.step_failure_data.user_failure_data.description


def materializations(result):
    return {e.asset_key.path[-1]: e.materialization for e in result.get_asset_materialization_events()}


def test_definitions_load():
    from clara_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} >= {"extracted_document", "document_images"}
    assert defs.resolve_sensor_def("raw_data_sensor") is not None
    assert defs.resolve_job_def("ingest_documents").partitions_def.name == "documents"
    checks = {c.name for c in graph.asset_check_keys}
    assert checks >= {"markers_resolve", "text_not_empty"}


def test_sensor_tracks_new_changed_and_deleted_files(settings, defs, instance):
    raw = settings.raw_data
    (raw / "guide.md").write_text("# Guide\n\nPress the red button to start.")
    (raw / "sub").mkdir()
    docgen.sample_docx(raw / "sub" / "policy.docx")
    for p in (raw / "guide.md", raw / "sub" / "policy.docx"):
        backdate(p)
    guide_key = key_of(raw / "guide.md", "guide.md")
    policy_key = key_of(raw / "sub" / "policy.docx", "sub/policy.docx")

    first = tick(defs, instance)
    assert sorted(r.partition_key for r in first.run_requests) == sorted([guide_key, policy_key])
    assert all(r.run_key == r.partition_key for r in first.run_requests)
    assert set(instance.get_dynamic_partitions("documents")) == {guide_key, policy_key}
    assert set(json.loads(first.cursor)["files"]) == {"guide.md", "sub/policy.docx"}

    second = tick(defs, instance, first.cursor)
    assert second.run_requests == [] and not second.dynamic_partitions_requests

    (raw / "guide.md").write_text("# Guide\n\nPress the green button to start.")
    backdate(raw / "guide.md")
    new_guide = key_of(raw / "guide.md", "guide.md")
    third = tick(defs, instance, second.cursor)
    assert [r.partition_key for r in third.run_requests] == [new_guide]
    assert set(instance.get_dynamic_partitions("documents")) == {new_guide, policy_key}

    (raw / "sub" / "policy.docx").unlink()
    fourth = tick(defs, instance, third.cursor)
    assert fourth.run_requests == []
    assert set(instance.get_dynamic_partitions("documents")) == {new_guide}


def test_sensor_does_not_delete_anything_when_the_folder_is_missing(settings, defs, instance):
    (settings.raw_data / "a.md").write_text("# A\n\ntext text text")
    backdate(settings.raw_data / "a.md")
    first = tick(defs, instance)
    settings.raw_data.joinpath("a.md").unlink()
    settings.raw_data.rmdir()
    result = tick(defs, instance, first.cursor)
    assert result.run_requests == [] and not result.dynamic_partitions_requests
    assert len(instance.get_dynamic_partitions("documents")) == 1


def test_materialize_a_pdf_partition_with_metadata_checks_and_artifacts(settings, defs, instance):
    path = docgen.sample_pdf(settings.raw_data / "guide.pdf")
    key = key_of(path, "guide.pdf")
    instance.add_dynamic_partitions("documents", [key])

    result = run(defs, instance, key)
    assert result.success
    mats = materializations(result)
    meta = {k: v.value for k, v in mats["extracted_document"].metadata.items()}
    assert meta["pages"] == 3 and meta["images"] == 2 and meta["format"] == "pdf"
    assert meta["chars"] > 500 and meta["cached"] is False and "Installation Guide" in meta["preview"]
    assert meta["warnings"] == 1  # the repeated logo
    assert mats["document_images"].metadata["images"].value == 2
    assert {c.check_name: c.passed for c in result.get_asset_check_evaluations()} == \
        {"markers_resolve": True, "text_not_empty": True, "no_raw_figure_references": True}

    doc_dir = settings.artifacts / "documents" / key
    stored = json.loads((doc_dir / "extracted.json").read_text())["document"]
    manifest = json.loads((doc_dir / "images.json").read_text())["images"]
    assert [m["id"] for m in manifest] == [i["id"] for i in stored["images"]]
    assert all((settings.artifacts / m["path"]).exists() for m in manifest)
    assert "Wiring diagram" in manifest[0]["context_after"]

    again = run(defs, instance, key)  # same content, same code: served from the artifact store
    mats_again = materializations(again)
    assert mats_again["extracted_document"].metadata["cached"].value is True
    version = lambda m: m.tags["dagster/data_version"]  # noqa: E731
    assert version(mats_again["extracted_document"]) == version(mats["extracted_document"])
    assert version(mats_again["document_images"]) == version(mats["document_images"])


BAD_INPUTS = {
    "corrupt.pdf": (lambda p: p.write_bytes(b"%PDF-1.7 garbage " * 40), r"corrupt\.pdf: not a readable PDF"),
    "locked.pdf": (docgen.encrypted_pdf, r"locked\.pdf: the PDF is password-protected"),
    "empty.pdf": (lambda p: p.write_bytes(b""), r"empty\.pdf: the file is empty"),
    "renamed.docx": (lambda p: p.write_text("plain text"), r"renamed\.docx: not a valid \.docx"),
    "bomb.png": (lambda p: p.write_bytes(docgen.bomb_png()), r"bomb\.png: image not usable"),
    "slides.pptx": (lambda p: p.write_bytes(b"PK\x03\x04"), r"slides\.pptx: unsupported file type '\.pptx'"),
    "blob.txt": (lambda p: p.write_bytes(bytes(range(256)) * 8), r"blob\.txt: (binary data|not valid UTF-8)"),
}


def test_each_bad_input_fails_only_its_own_partition(settings, defs, instance):
    raw = settings.raw_data
    (raw / "good.md").write_text("# Returns\n\nItems can be returned within 30 days.")
    (raw / "legacy.txt").write_bytes("退货政策：自收货之日起三十天内可以无理由退货。".encode("gb18030"))
    for name, (make, _) in BAD_INPUTS.items():
        make(raw / name)
    for p in raw.iterdir():
        backdate(p)
    tick(defs, instance)
    keys = {key_of(raw / name, name): name for name in [*BAD_INPUTS, "good.md", "legacy.txt"]}
    assert set(instance.get_dynamic_partitions("documents")) == set(keys)

    outcomes = {name: run(defs, instance, key) for key, name in keys.items()}
    assert outcomes["good.md"].success
    legacy = materializations(outcomes["legacy.txt"])["extracted_document"]
    assert legacy.metadata["warnings"].value == 1 and "gb18030" in legacy.metadata["warning_details"].value
    for name, (_, pattern) in BAD_INPUTS.items():
        assert not outcomes[name].success, name
        assert re.match(pattern, failure_message(outcomes[name])), failure_message(outcomes[name])
    materialized = instance.get_materialized_partitions(dg.AssetKey("extracted_document"))
    assert {keys[k] for k in materialized} == {"good.md", "legacy.txt"}


def test_file_deleted_between_tick_and_run_fails_clearly_and_keeps_earlier_work(settings, defs, instance):
    raw = settings.raw_data
    (raw / "manual.md").write_text("# Manual\n\nHold the power button for five seconds.")
    backdate(raw / "manual.md")
    tick(defs, instance)
    (key,) = instance.get_dynamic_partitions("documents")
    assert run(defs, instance, key).success
    artifact = settings.artifacts / "documents" / key / "extracted.json"
    before = artifact.read_bytes()

    (raw / "manual.md").unlink()  # gone before the next run of the same partition
    result = run(defs, instance, key)
    assert not result.success
    assert re.match(rf"no file in .* matches partition {key}: it was deleted or renamed", failure_message(result))
    assert artifact.read_bytes() == before  # nothing extracted earlier is lost
    assert key in instance.get_materialized_partitions(dg.AssetKey("extracted_document"))


def test_scanned_pdf_is_flagged_by_the_text_check_but_still_ingested(settings, defs, instance):
    path = docgen.scanned_pdf(settings.raw_data / "scan.pdf")
    key = key_of(path, "scan.pdf")
    instance.add_dynamic_partitions("documents", [key])
    result = run(defs, instance, key)
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["text_not_empty"].passed is False
    assert checks["text_not_empty"].severity == dg.AssetCheckSeverity.WARN
    assert checks["markers_resolve"].passed is True


def test_sensor_keeps_partitions_when_the_folder_empties_and_warns_about_links(settings, defs, instance, tmp_path):
    raw = settings.raw_data
    for name in ("a.md", "b.md"):
        (raw / name).write_text(f"# {name}\n\ntext text text")
        backdate(raw / name)
    first = tick(defs, instance)
    for name in ("a.md", "b.md"):
        (raw / name).unlink()
    (raw / "passwd.txt").symlink_to("/etc/passwd")
    result = tick(defs, instance, first.cursor)
    assert not result.dynamic_partitions_requests and len(instance.get_dynamic_partitions("documents")) == 2


def test_a_chinese_file_name_keeps_its_name_in_the_key_and_ingests(settings, defs, instance):
    path = settings.raw_data / "信息安全管理制度.md"
    path.write_text("# 信息安全管理制度\n\n所有员工必须每九十天更换一次密码。")
    backdate(path)
    (request,) = tick(defs, instance).run_requests
    assert request.partition_key.startswith("信息安全管理制度_md-")
    assert run(defs, instance, request.partition_key).success
