import pytest

from clara_pipeline.ingest import ExtractionError, extract_document
from clara_pipeline.storage import ImageStore
from tests.clara_pipeline import docgen

ZH = "# 退货政策\n\n自收货之日起三十天内可以无理由退货。退货时请保留原包装和发票。\n"


def test_markdown_utf8_kept_as_markdown(tmp_path):
    (tmp_path / "faq.md").write_text("# FAQ\n\n## Reset\n\nHold the button for 5 s.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    doc = extract_document(tmp_path / "faq.md")
    assert doc.text == "# FAQ\n\n## Reset\n\nHold the button for 5 s.\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    assert doc.title == "FAQ" and doc.format == "markdown" and doc.warnings == []


def test_utf8_bom_and_crlf(tmp_path):
    (tmp_path / "notes.txt").write_bytes("\ufeffline one\r\nline two\r\n".encode("utf-8"))
    doc = extract_document(tmp_path / "notes.txt")
    assert doc.text == "line one\nline two" and doc.warnings == []


@pytest.mark.parametrize("encoding", ["gb18030", "utf-16"])
def test_non_utf8_chinese_is_decoded(tmp_path, encoding):
    (tmp_path / "policy.md").write_bytes(ZH.encode(encoding))
    doc = extract_document(tmp_path / "policy.md")
    assert doc.text == ZH.strip() and doc.lang == "zh" and doc.title == "退货政策"
    if encoding == "gb18030":  # a BOM-less legacy encoding is decoded, and said so
        assert [w.code for w in doc.warnings] == ["text_encoding"]


def test_latin1_text_is_decoded_with_a_warning(tmp_path):
    text = "Café menu: crème brûlée, pâté, naïve façade. Prices in € are final. " * 3
    (tmp_path / "menu.txt").write_bytes(text.encode("cp1252"))
    doc = extract_document(tmp_path / "menu.txt")
    assert doc.text == text.strip() and [w.code for w in doc.warnings] == ["text_encoding"]


def test_binary_garbage_is_refused(tmp_path):
    (tmp_path / "blob.txt").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ExtractionError, match=r"^blob\.txt: (binary data|not valid UTF-8)"):
        extract_document(tmp_path / "blob.txt")


def test_markdown_local_images_become_markers_and_others_keep_alt_text(tmp_path):
    store = ImageStore(tmp_path / "images")
    (tmp_path / "figs").mkdir()
    (tmp_path / "figs" / "flow.png").write_bytes(docgen.png(label="flow"))
    (tmp_path / "doc.md").write_text(
        "Intro.\n\n![Approval flow](figs/flow.png)\n\n![remote](https://example.com/x.png) and "
        "![escape](../../etc/passwd) and ![missing](figs/none.png)\n")
    doc = extract_document(tmp_path / "doc.md", root=tmp_path, sink=store.put)
    (image,) = doc.images
    assert doc.text == f"Intro.\n\n[IMAGE_REF: {image.id}]\n\nremote and escape and missing"
    assert image.alt_text == "Approval flow"
    assert [w.code for w in doc.warnings] == ["image_remote", "image_outside_root", "image_missing"]


def test_a_markdown_image_reached_through_a_link_is_not_read(tmp_path):
    from tests.clara_pipeline import docgen

    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "real.png").write_bytes(docgen.png())
    (tmp_path / "figures" / "alias.png").symlink_to("real.png")
    (tmp_path / "doc.md").write_text("# Doc\n\n![a](figures/alias.png)\n\n![b](figures/real.png)\n")
    doc = extract_document(tmp_path / "doc.md", root=tmp_path)
    assert len(doc.images) == 1 and [w.code for w in doc.warnings] == ["image_refused"]
    assert "symbolic link" in doc.warnings[0].message
