from clara_pipeline.corpus.build import EnrichedDocument, build_corpus, token_counter
from clara_pipeline.corpus.chunking import ChunkingConfig


def doc(key, text, lang="en"):
    return EnrichedDocument(key=key, source=f"{key}.md", source_sha256="0" * 64, lang=lang, title=key, text=text,
                            captioned=0, uncaptioned=[])


BODY = "\n\n".join(f"Paragraph {i}: the controller logs {i} events per minute to its buffer." for i in range(40))


def test_corpus_chunks_dedups_and_versions_by_content():
    count = token_counter("tiny")
    config = ChunkingConfig(max_tokens=96, overlap_tokens=16)
    a = build_corpus([doc("b-1", BODY), doc("a-1", "Short note about the EG-400 relay outputs.")], count,
                     tokenizer="tiny", config=config)
    assert [d["key"] for d in a.documents] == ["a-1", "b-1"]  # key order, whatever the input order
    assert all(c.tokens <= 96 for c in a.chunks) and len({c.chunk_id for c in a.chunks}) == len(a.chunks)

    copy = build_corpus([doc("b-1", BODY), doc("c-1", BODY), doc("a-1", "Short note about the EG-400 relay outputs.")],
                        count, tokenizer="tiny", config=config)
    assert len(copy.chunks) == len(a.chunks) and copy.duplicate_chunks == len(a.documents[1]["chunks"])
    assert copy.data_version != a.data_version  # a document was added

    again = build_corpus([doc("a-1", "Short note about the EG-400 relay outputs."), doc("b-1", BODY)], count,
                         tokenizer="tiny", config=config)
    assert again.data_version == a.data_version
    assert build_corpus([doc("a-1", "x y z")], count, tokenizer="tiny").data_version != \
        build_corpus([doc("a-1", "x y z")], count, tokenizer="tiny", config=config).data_version


def test_chunk_language_is_detected_per_chunk():
    count = token_counter("tiny")
    english = "English paragraph about the gateway power supply, its voltage range and its typical consumption. " * 2
    corpus = build_corpus([doc("m-1", english + "\n\n" +
                               "中文段落：网关的供电电压为二十四伏直流电，功耗六瓦。" * 3)], count, tokenizer="tiny",
                          config=ChunkingConfig(max_tokens=48, overlap_tokens=0))
    assert [c.lang for c in corpus.chunks][:1] == ["en"] and "zh" in [c.lang for c in corpus.chunks]


def test_a_chunk_of_placeholders_alone_is_not_content():
    count = token_counter("tiny")
    text = "Power notes for the EG-400 relay outputs and the 24 V supply.\n\n" + "[Figure (caption unavailable)]\n\n" * 30
    corpus = build_corpus([doc("p-1", text)], count, tokenizer="tiny", config=ChunkingConfig(max_tokens=32, overlap_tokens=0))
    assert [c.text.startswith("Power notes") for c in corpus.chunks] == [True]
    assert corpus.documents[0]["chunks"] == [corpus.chunks[0].chunk_id]
