"""Synthesizing QA pairs and paraphrases for every chunk of the corpus, and their artifacts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..corpus.build import CorpusChunk
from ..corpus.enrich import strip_placeholders
from ..llm import BatchResult, ChunkInput, ChunkSynthesis, LLMConfig, run_chunk_synthesis
from ..storage import ArtifactStore, encode_json, publish_together
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
    """Publishes synthesis/qa.jsonl, paraphrases.jsonl and report.json together; returns the bytes that version
    them. Call it only for an outcome that passed its checks: it replaces the last good synthesis.

    Raises:
        ValueError: when the outcome has no QA pairs or no paraphrases (nothing is written).
        OSError: naming the file (Errno 28 when the disk is full); nothing was published.
    """
    if not outcome.pairs or not outcome.paraphrases:
        raise ValueError(f"the synthesis has {len(outcome.pairs)} QA pairs and {len(outcome.paraphrases)} "
                         "paraphrases: nothing was published, the last good synthesis stays")
    qa = "".join(json.dumps(asdict(p), ensure_ascii=False, sort_keys=True) + "\n" for p in outcome.pairs)
    para = "".join(json.dumps({"chunk_id": cid, "text": text}, ensure_ascii=False) + "\n"
                   for cid, text in outcome.paraphrases.items())
    report = {"kept": outcome.curation.kept, "dropped": dict(outcome.curation.dropped),
              "by_type": dict(outcome.curation.by_type), "llm": outcome.batch.metadata()}
    publish_together(store.root, {store.qa_pairs_path: qa.encode("utf-8"), store.paraphrases_path: para.encode("utf-8"),
                                  store.synthesis_report_path: encode_json(report)})
    return (qa + para).encode("utf-8")


def read_synthesis(store: ArtifactStore) -> tuple[list[QAPair], dict[str, str]]:
    pairs = [QAPair(**json.loads(line)) for line in store.qa_pairs_path.read_text(encoding="utf-8").splitlines() if line]
    paraphrases = {}
    for line in store.paraphrases_path.read_text(encoding="utf-8").splitlines():
        if line:
            row = json.loads(line)
            paraphrases[row["chunk_id"]] = row["text"]
    return pairs, paraphrases
