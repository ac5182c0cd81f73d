import json

from clara_pipeline.ingest.service import image_manifest, ingest_file, load_extracted, text_chars, unresolved_markers
from clara_pipeline.storage import ArtifactStore, sha256_file
from tests.clara_pipeline import docgen


def ingest(tmp_path, path):
    store = ArtifactStore(tmp_path / "artifacts")
    return ingest_file(path, root=path.parent, key="k-000000000000", sha256=sha256_file(path), store=store), store


def test_second_ingest_is_served_from_the_store(tmp_path, monkeypatch):
    path = docgen.sample_docx(tmp_path / "p.docx")
    first, store = ingest(tmp_path, path)
    import clara_pipeline.ingest.service as service

    monkeypatch.setattr(service, "extract_document", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-extracted")))
    second, _ = ingest(tmp_path, path)
    assert not first.cached and second.cached and second.data_version == first.data_version


def test_a_missing_image_file_is_detected_and_healed_by_the_next_ingest(tmp_path):
    path = docgen.sample_docx(tmp_path / "p.docx")
    outcome, store = ingest(tmp_path, path)
    image = outcome.document.images[0]
    store.images.path_for(image.sha256, image.format).unlink()
    assert unresolved_markers(outcome.document, store) == [
        f"image {image.id}: {store.images.path_for(image.sha256, image.format)} is missing"]
    healed, _ = ingest(tmp_path, path)
    assert not healed.cached and unresolved_markers(healed.document, store) == []


def test_unresolved_markers_reports_orphans_both_ways(tmp_path):
    path = docgen.sample_docx(tmp_path / "p.docx")
    outcome, store = ingest(tmp_path, path)
    doc = outcome.document
    broken = type(doc).from_dict({**doc.to_dict(), "text": doc.text.replace(doc.images[0].id, "img-0000000000000000")})
    problems = unresolved_markers(broken, store)
    assert "marker img-0000000000000000 has no image record" in problems
    assert f"image {doc.images[0].id} is recorded but no marker places it" in problems


def test_manifest_carries_context_for_captioning(tmp_path):
    path = docgen.sample_docx(tmp_path / "p.docx")
    outcome, store = ingest(tmp_path, path)
    first = image_manifest(outcome.document, store)[0]
    assert first["context_before"].endswith("The approval flow is shown here:")
    assert first["context_after"].startswith("and continues below.\nFigure 1: Approval flow\n| Grade")
    assert first["path"].startswith("images/") and (store.root / first["path"]).exists()
    stored = json.loads(store.extracted_document_path("k-000000000000").read_text())
    assert stored["document"]["source_sha256"] == sha256_file(path)
    assert load_extracted(store, "k-000000000000")[0] == outcome.document


def test_text_chars_ignores_markers_and_whitespace(tmp_path):
    (tmp_path / "x.md").write_text("ab  c\n\n![f](f.png)")
    (tmp_path / "f.png").write_bytes(docgen.png())
    outcome, _ = ingest(tmp_path, tmp_path / "x.md")
    assert "[IMAGE_REF:" in outcome.document.text and text_chars(outcome.document) == 3
