"""Synthesizing QA pairs and paraphrases for every chunk of the corpus, and their artifacts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..corpus.build import CorpusChunk
from ..corpus.enrich import strip_placeholders
from ..llm import BatchResult, ChunkInput, ChunkSynthesis, LLMConfig, run_chunk_synthesis
from ..storage import ArtifactStore, write_bytes_atomic, write_json_atomic
from ..datasets.records import QAPair
from .curate import CurationReport, curate


@dataclass
class SynthesisOutcome:
    pairs: list[QAPair]  # curated: supported, self-contained, unique across the corpus
    paraphrases: dict[str, str]  # chunk id -> paraphrase
    batch: BatchResult[ChunkSynthesis]
    curation: CurationReport


def synthesize_corpus(chunks: list[CorpusChunk], *, config: LLMConfig | None, cache_path: Path | None,
                      pairs_per_chunk: int = 5, retry_failed: bool = False) -> SynthesisOutcome:
    """One LLM call per chunk (a cache hit for every chunk seen before), then curation of the pairs.

    `retry_failed` asks again for chunks parked by an earlier run (their answers never validated).

    Raises:
        EndpointUnreachable: the endpoint answered nothing; no chunk is marked as failed.
    """
    # The LLM is not asked about the placeholder of a figure without a caption (corpus/enrich.py).
    items = {c.chunk_id: ChunkInput(strip_placeholders(c.text), c.lang if c.lang in ("en", "zh") else "und",
                                    n_pairs=pairs_per_chunk, chunk_id=c.chunk_id)
             for c in chunks}
    batch = run_chunk_synthesis(items, config=config, cache_path=cache_path, retry_failed=retry_failed)
    raw = {c.chunk_id: batch.outputs[c.chunk_id].qa_pairs for c in chunks if c.chunk_id in batch.outputs}
    pairs, report = curate(raw, {c.chunk_id: c.text for c in chunks})
    # Pairs the validator dropped from replies that kept enough good ones (not counted for cached answers).
    rejected = sum(len(batch.outputs[cid].rejected_pairs) for cid in raw)
    if rejected:
        report.dropped["rejected_by_validation"] += rejected
    paraphrases = {cid: out.paraphrase for cid, out in sorted(batch.outputs.items())}
    return SynthesisOutcome(pairs, paraphrases, batch, report)


def write_synthesis(store: ArtifactStore, outcome: SynthesisOutcome) -> bytes:
    """Writes synthesis/qa.jsonl, paraphrases.jsonl and report.json; returns the bytes that version them."""
    folder = store.root / "synthesis"
    qa = "".join(json.dumps(asdict(p), ensure_ascii=False, sort_keys=True) + "\n" for p in outcome.pairs)
    para = "".join(json.dumps({"chunk_id": cid, "text": text}, ensure_ascii=False) + "\n"
                   for cid, text in outcome.paraphrases.items())
    write_bytes_atomic(folder / "qa.jsonl", qa.encode("utf-8"))
    write_bytes_atomic(folder / "paraphrases.jsonl", para.encode("utf-8"))
    write_json_atomic(folder / "report.json", {
        "kept": outcome.curation.kept, "dropped": dict(outcome.curation.dropped),
        "by_type": dict(outcome.curation.by_type), "llm": outcome.batch.metadata()})
    return (qa + para).encode("utf-8")


def read_synthesis(store: ArtifactStore) -> tuple[list[QAPair], dict[str, str]]:
    folder = store.root / "synthesis"
    pairs = [QAPair(**json.loads(line)) for line in (folder / "qa.jsonl").read_text(encoding="utf-8").splitlines() if line]
    paraphrases = {}
    for line in (folder / "paraphrases.jsonl").read_text(encoding="utf-8").splitlines():
        if line:
            row = json.loads(line)
            paraphrases[row["chunk_id"]] = row["text"]
    return pairs, paraphrases
