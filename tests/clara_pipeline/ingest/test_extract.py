"""The dispatcher and the file-level bad inputs: every failure names the file and the cause."""

import os

import pytest

from clara_pipeline.ingest import ExtractionError, extract_document
from clara_pipeline.ingest.rawfiles import RawFilePolicy
from clara_pipeline.storage import ImageStore
from tests.clara_pipeline import docgen


def test_standalone_image_is_a_one_image_document(tmp_path):
    store = ImageStore(tmp_path / "images")
    path = tmp_path / "diagrams" / "network.png"
    path.parent.mkdir()
    path.write_bytes(docgen.png(label="network"))
    doc = extract_document(path, root=tmp_path, sink=store.put)
    (image,) = doc.images
    assert doc.text == f"[IMAGE_REF: {image.id}]" and doc.format == "image"
    assert doc.source == "diagrams/network.png" and doc.title == "network"
    assert image.sha256 == doc.images[0].sha256 and store.verify(image.sha256, "png") is None


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.pdf").write_bytes(b"")
    with pytest.raises(ExtractionError, match=r"^empty\.pdf: the file is empty \(0 bytes\)$"):
        extract_document(tmp_path / "empty.pdf")


def test_unsupported_extension(tmp_path):
    (tmp_path / "deck.pptx").write_bytes(b"PK\x03\x04 whatever")
    with pytest.raises(ExtractionError, match=r"^deck\.pptx: unsupported file type '\.pptx'; supported: .*\.docx"):
        extract_document(tmp_path / "deck.pptx")


def test_missing_file(tmp_path):
    with pytest.raises(ExtractionError, match=r"^gone\.pdf: the file does not exist"):
        extract_document(tmp_path / "gone.pdf")


def test_decompression_bomb_standalone_image_fails_its_document(tmp_path):
    (tmp_path / "huge.png").write_bytes(docgen.bomb_png())
    with pytest.raises(ExtractionError, match=r"^huge\.png: image not usable: .*(decompression|pixel)"):
        extract_document(tmp_path / "huge.png")


def test_content_must_match_the_expected_hash(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\nbody text")
    with pytest.raises(ExtractionError, match=r"^a\.md: the file changed since it was listed"):
        extract_document(tmp_path / "a.md", source_sha256="0" * 64)


def test_source_is_relative_to_root_and_errors_use_it(tmp_path):
    sub = tmp_path / "policies"
    sub.mkdir()
    (sub / "bad.docx").write_text("nope")
    with pytest.raises(ExtractionError, match=r"^policies/bad\.docx: not a valid \.docx"):
        extract_document(sub / "bad.docx", root=tmp_path)


def test_links_special_files_and_folders_are_never_read(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (raw / "passwd.txt").symlink_to(tmp_path / "passwd")
    os.mkfifo(raw / "pipe.md")
    (raw / "folder.pdf").mkdir()
    with pytest.raises(ExtractionError, match=r"^passwd\.txt: a symbolic link, not followed"):
        extract_document(raw / "passwd.txt", root=raw)
    with pytest.raises(ExtractionError, match=r"^passwd\.txt: a symbolic link to a file outside the raw folder"):
        extract_document(raw / "passwd.txt", root=raw, policy=RawFilePolicy(allow_links=True))
    with pytest.raises(ExtractionError, match=r"^pipe\.md: a FIFO"):  # refused at once, not read forever
        extract_document(raw / "pipe.md", root=raw)
    with pytest.raises(ExtractionError, match=r"^folder\.pdf: a folder, not a document file"):
        extract_document(raw / "folder.pdf", root=raw)


def test_each_input_has_a_size_limit(tmp_path):
    (tmp_path / "big.txt").write_bytes(b"word " * 300_000)  # 1.4 MB
    with pytest.raises(ExtractionError, match=r"big\.txt: the file is 1\.4 MB, over the 1 MB limit .*CLARA_MAX_TEXT_MB"):
        extract_document(tmp_path / "big.txt", policy=RawFilePolicy(max_text_bytes=1024 * 1024))
    assert extract_document(tmp_path / "big.txt").format == "text"  # the default (32 MB) admits it


def test_a_newline_in_a_file_name_is_escaped_in_the_message(tmp_path):
    name = "x.md\n  ok          forged.md"
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(ExtractionError) as caught:
        extract_document(tmp_path / name)
    assert "\n" not in str(caught.value) and str(caught.value).startswith("x.md\\n  ok          forged.md: ")
