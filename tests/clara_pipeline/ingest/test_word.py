import pytest
from PIL import Image

from clara_pipeline.ingest import MARKER_RE, ExtractionError, extract_document
from clara_pipeline.storage import ImageStore
from tests.clara_pipeline import docgen


@pytest.fixture
def word_doc(tmp_path):
    store = ImageStore(tmp_path / "images")
    return extract_document(docgen.sample_docx(tmp_path / "travel.docx"), sink=store.put), store


def test_body_in_document_order_as_markdown(word_doc):
    doc, _ = word_doc
    expected_start = (
        "# Travel Policy\n\n"
        "This policy applies to all employees.\n\n"
        "## Booking\n\n"
        "1. Book through the portal\n"
        "2. Attach the approval\n"
        "- Economy class only\n"
        "  - Nested detail\n\n"
        "The approval flow is shown here: [IMAGE_REF: "
    )
    assert doc.text.startswith(expected_start)
    assert doc.text.endswith("Receipts are due within 30 days.")
    assert doc.title == "Travel Policy" and doc.format == "docx" and doc.pages == []


def test_table_in_place_with_pipes_escaped_and_image_in_cell(word_doc):
    doc, _ = word_doc
    lines = doc.text.split("\n")
    header = lines.index("| Grade | Hotel limit | Photo |")
    assert lines[header + 1] == "|---|---|---|"
    assert MARKER_RE.fullmatch(lines[header + 2].split(" | ")[-1].rstrip(" |")), lines[header + 2]
    assert lines[header + 2].startswith("| Staff | 150 EUR \\| night | [IMAGE_REF: ")
    assert lines[header + 3] == "| Manager | 200 EUR |  |"
    assert doc.text.index("Figure 1: Approval flow") < doc.text.index("| Grade |") < doc.text.index("Receipts")


def test_inline_images_stored_and_resolvable(word_doc):
    doc, store = word_doc
    assert [(i.format, i.width, i.height) for i in doc.images] == [("png", 320, 200), ("jpeg", 320, 200)]
    for image in doc.images:
        assert store.verify(image.sha256, image.format) is None
    assert [m for m in MARKER_RE.findall(doc.text)] == [i.id for i in doc.images]
    with Image.open(store.path_for(doc.images[0].sha256, "png")) as im:
        assert im.mode == "RGBA"


def test_emf_image_is_skipped_with_a_warning_not_silently(tmp_path):
    src = docgen.single_image_docx(tmp_path / "src.docx", docgen.png())
    path = docgen.docx_with_replaced_media(src, tmp_path / "emf.docx", docgen.EMF_BYTES)
    doc = extract_document(path)
    assert doc.images == [] and "IMAGE_REF" not in doc.text
    assert [w.code for w in doc.warnings] == ["image_undecodable"]
    assert "EMF" in doc.warnings[0].message and "word/media/" in doc.warnings[0].message
    assert doc.text == "Diagram below.\n\nEnd of document."


def test_icon_is_skipped_with_a_warning(tmp_path):
    path = docgen.single_image_docx(tmp_path / "icon.docx", docgen.png(size=(24, 24)))
    doc = extract_document(path)
    assert doc.images == [] and [w.code for w in doc.warnings] == ["image_icon"]


def test_same_picture_in_two_documents_is_stored_once(tmp_path):
    store = ImageStore(tmp_path / "images")
    picture = docgen.png(label="shared")
    a = extract_document(docgen.single_image_docx(tmp_path / "a.docx", picture), sink=store.put)
    b = extract_document(docgen.single_image_docx(tmp_path / "b.docx", picture), sink=store.put)
    assert a.images[0].id == b.images[0].id
    assert len(list((tmp_path / "images").rglob("*.png"))) == 1


def test_docx_that_is_not_a_zip_fails_with_the_cause(tmp_path):
    path = tmp_path / "report.docx"
    path.write_text("just some text renamed to .docx")
    with pytest.raises(ExtractionError, match=r"^report\.docx: not a valid \.docx: the file is not a ZIP package"):
        extract_document(path)


def test_encrypted_office_file_is_recognised(tmp_path):
    path = tmp_path / "locked.docx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)
    with pytest.raises(ExtractionError, match=r"^locked\.docx: .*password-protected"):
        extract_document(path)


def test_zip_without_word_document_fails(tmp_path):
    import zipfile

    path = tmp_path / "other.docx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "not a word document")
    with pytest.raises(ExtractionError, match=r"^other\.docx: not a valid \.docx"):
        extract_document(path)


def test_a_zip_bomb_is_refused_from_its_directory_before_anything_is_inflated(tmp_path):
    from tests.clara_pipeline.ingest.bombs import MB, docx_bomb, peak_memory

    path = docx_bomb(tmp_path / "bomb.docx", 1024 * MB)  # about 3.6 MB on disk
    with pytest.raises(ExtractionError, match=r"^bomb\.docx: the package inflates to 1,025 MB of XML .* about "
                                              r"25,6\d\d MB in memory once parsed, over the 1,024 MB limit"):
        extract_document(path)
    # Before the XML was counted at its tree size, this took more than 9 GB; now the process hardly grows.
    probe = peak_memory(path, limit_mb=4096)
    assert probe["outcome"].startswith("refused") and probe["peak_mb"] - probe["baseline_mb"] < 50, probe


def test_a_bomb_under_the_old_inflated_size_limit_is_refused_too(tmp_path):
    from tests.clara_pipeline.ingest.bombs import MB, docx_bomb

    path = docx_bomb(tmp_path / "bomb.docx", 100 * MB)  # 0.4 MB on disk; 1.7 GB in memory if parsed
    with pytest.raises(ExtractionError, match="about 2,5\\d\\d MB in memory once parsed"):
        extract_document(path)
