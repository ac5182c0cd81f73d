import re

import pytest

from clara_model.base import load_tokenizer
from clara_pipeline.corpus.chunking import ChunkingConfig, chunk_id, chunk_text


@pytest.fixture(scope="module")
def count():
    tokenizer = load_tokenizer("tiny")  # the real Qwen3 tokenizer
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))


EN = "\n\n".join(
    f"## Section {s}\n\n" + " ".join(f"Sentence {s}.{i} says the relay carries {i} A at {20 + i} degrees." for i in range(12))
    for s in range(6))
ZH = "\n\n".join("## 第%d节\n\n" % s + "".join(f"第{s}.{i}句：继电器在{20 + i}摄氏度时可承载{i}安培电流。" for i in range(15))
                 for s in range(5))


@pytest.mark.parametrize("text", [EN, ZH], ids=["en", "zh"])
def test_chunks_fit_the_token_budget_and_cover_every_sentence(text, count):
    config = ChunkingConfig(max_tokens=128, overlap_tokens=24)
    chunks = chunk_text(text, count, config)
    assert len(chunks) > 3
    assert max(count(c) for c in chunks) <= 128
    sentences = re.findall(r"Sentence \d+\.\d+[^.]*\.|第\d+\.\d+句：[^。]*。", text)
    joined = "\n".join(chunks)
    assert all(s in joined for s in sentences)


def test_neighbouring_chunks_overlap_by_whole_sentences(count):
    chunks = chunk_text(EN, count, ChunkingConfig(max_tokens=128, overlap_tokens=40))
    overlaps = 0
    for left, right in zip(chunks, chunks[1:]):
        first = re.match(r"(?:## Section \d+\s+)?(Sentence \d+\.\d+[^.]*\.)", right)
        if first and first.group(1) in left:
            overlaps += 1
    assert overlaps >= len(chunks) // 2


def test_no_overlap_when_disabled(count):
    chunks = chunk_text(EN, count, ChunkingConfig(max_tokens=128, overlap_tokens=0))
    sentences = re.findall(r"Sentence \d+\.\d+", "\n".join(chunks))
    assert len(sentences) == len(set(sentences)) == 72


def test_paragraph_breaks_and_headings_are_kept(count):
    chunks = chunk_text(EN, count, ChunkingConfig(max_tokens=200, overlap_tokens=0))
    assert chunks[0].startswith("## Section 0\n\nSentence 0.0")
    assert all(not c.startswith("\n") and "  " not in c for c in chunks)
    assert any("\n\n## Section" in c for c in chunks)


def test_long_table_is_split_by_rows_with_its_header(count):
    header = "| Parameter | Value |\n|---|---|"
    table = header + "\n" + "\n".join(f"| Parameter number {i} | {i * 3} volts DC nominal |" for i in range(60))
    chunks = chunk_text("Intro line.\n\n" + table, count, ChunkingConfig(max_tokens=96, overlap_tokens=16))
    table_chunks = [c for c in chunks if "| Parameter number" in c]
    assert len(table_chunks) > 2
    assert all(header in c for c in table_chunks)
    rows = [line for c in table_chunks for line in c.splitlines() if line.startswith("| Parameter number")]
    assert len(rows) == 60 and len(set(rows)) == 60  # no row lost, none repeated by the overlap


def test_a_sentence_longer_than_a_chunk_is_cut_by_tokens(count):
    text = "word " * 1000
    chunks = chunk_text(text, count, ChunkingConfig(max_tokens=64, overlap_tokens=0))
    assert max(count(c) for c in chunks) <= 64 and sum(c.count("word") for c in chunks) == 1000


def test_chunking_is_deterministic_and_ids_are_stable(count):
    assert chunk_text(ZH, count) == chunk_text(ZH, count)
    assert chunk_id("some text") == chunk_id("some text") != chunk_id("some text.")
    assert re.fullmatch(r"[0-9a-f]{16}", chunk_id("some text"))


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="overlap_tokens"):
        ChunkingConfig(max_tokens=64, overlap_tokens=40)
