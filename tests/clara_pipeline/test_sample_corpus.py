"""The shipped raw_data/ corpus: made by its committed script, and fully ingestible."""

import subprocess
import sys
from collections import Counter

import pytest
from PIL import Image

from clara_pipeline.ingest import MARKER_RE, extract_document
from clara_pipeline.ingest.sources import list_files
from clara_pipeline.storage import ImageStore, sha256_file
from tests.clara_pipeline.conftest import REPO, SAMPLE_CORPUS


def test_corpus_is_what_the_committed_script_makes(tmp_path):
    out = tmp_path / "regenerated"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_sample_corpus.py"), "--out", str(out)],
                   check=True, capture_output=True, timeout=300)
    committed = {rel: sha256_file(SAMPLE_CORPUS / rel) for rel in list_files(SAMPLE_CORPUS)}
    regenerated = {rel: sha256_file(out / rel) for rel in list_files(out)}
    assert regenerated == committed


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    store = ImageStore(tmp_path_factory.mktemp("images"))
    docs = {rel: extract_document(SAMPLE_CORPUS / rel, root=SAMPLE_CORPUS, sink=store.put)
            for rel in list_files(SAMPLE_CORPUS)}
    return docs, store


def test_every_document_extracts_with_text_or_a_figure(extracted):
    docs, store = extracted
    assert len(docs) >= 8
    for rel, doc in docs.items():
        assert doc.text.strip(), rel
        assert set(MARKER_RE.findall(doc.text)) == {i.id for i in doc.images}, rel
        assert all(store.verify(i.sha256, i.format) is None for i in doc.images), rel


def test_corpus_covers_the_formats_and_languages(extracted):
    docs, store = extracted
    formats = Counter(d.format for d in docs.values())
    assert formats["pdf"] >= 2 and formats["docx"] >= 2 and formats["image"] >= 2 and formats["markdown"] >= 1
    assert {d.lang for d in docs.values()} >= {"en", "zh"}
    pdfs = [d for d in docs.values() if d.format == "pdf"]
    assert all(len(d.pages) >= 2 and "|---|" in d.text for d in pdfs)  # multi-page, with tables
    kinds = set()
    for d in docs.values():
        for image in d.images:
            with Image.open(store.path_for(image.sha256, image.format)) as im:
                kinds.add((d.format, image.format, "A" in im.mode))
    assert ("pdf", "png", True) in kinds and ("pdf", "jpeg", False) in kinds
    assert ("docx", "png", True) in kinds and ("docx", "jpeg", False) in kinds
    docx = [d for d in docs.values() if d.format == "docx"]
    assert all("\n- " in d.text and "\n1. " in d.text and "|---|" in d.text for d in docx)
    assert any("[IMAGE_REF:" in line for d in docx for line in d.text.splitlines() if line.startswith("| "))
