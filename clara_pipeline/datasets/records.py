"""The inputs of the dataset builders: corpus chunks, the QA pairs and paraphrases synthesized from them.

These are plain records, checked once when built, so the builders can trust them: a chunk has an id and
text, a language the pipeline knows, and a QA pair has a type, a question and an answer that are not blank.
`QAPair` is a pydantic dataclass because it is also what the LLM is asked to write (llm/tasks.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

import pydantic
from pydantic import Field
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic.json_schema import SkipJsonSchema

Lang = Literal["en", "zh", "und"]
QAType = Literal["fact", "reasoning", "cross_lingual"]

LANGS: tuple[str, ...] = ("en", "zh", "und")
QA_TYPES: tuple[str, ...] = ("fact", "reasoning", "cross_lingual")
MAX_QA_CHARS = 600  # a question or an answer; longer is not a QA pair but a passage


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk of a document's enriched text (figure markers already replaced by captions)."""

    chunk_id: str
    document: str  # the document's partition key
    source: str  # the document's file path
    lang: Lang
    text: str

    def __post_init__(self) -> None:
        if not self.chunk_id:
            raise ValueError(f"chunk of document {self.document!r} has an empty chunk_id")
        if self.lang not in LANGS:
            raise ValueError(f"chunk {self.chunk_id!r}: lang must be one of {LANGS}, got {self.lang!r}")
        if not self.text.strip():
            raise ValueError(f"chunk {self.chunk_id!r} of document {self.document!r} has no text")


@pydantic_dataclass(frozen=True, config=pydantic.ConfigDict(extra="ignore"))
class QAPair:
    """A question about one chunk and its answer: the one QA-pair type from the LLM's reply to the datasets.

    The LLM writes `qa_type`, `question` and `answer` (the JSON schema it is given leaves `chunk_id` out, and
    carries the length limits); `ChunkSynthesis` fills `chunk_id` in, curation keeps the pairs the chunk
    supports, and the builders read them. Construction checks the type, blank texts and lengths.
    """

    chunk_id: SkipJsonSchema[str]
    qa_type: Annotated[str, Field(json_schema_extra={"enum": list(QA_TYPES)})]
    question: Annotated[str, Field(json_schema_extra={"maxLength": MAX_QA_CHARS})]
    answer: Annotated[str, Field(json_schema_extra={"maxLength": MAX_QA_CHARS})]

    def __post_init__(self) -> None:
        if self.qa_type not in QA_TYPES:
            raise ValueError(f"QA pair of chunk {self.chunk_id!r}: qa_type must be one of {QA_TYPES}, "
                             f"got {self.qa_type!r}")
        for name in ("question", "answer"):
            value = getattr(self, name)
            if not value.strip():
                raise ValueError(f"QA pair of chunk {self.chunk_id!r} has an empty {name} "
                                 f"(question {self.question[:80]!r})")
            if len(value) > MAX_QA_CHARS:
                raise ValueError(f"QA pair of chunk {self.chunk_id!r}: the {name} is {len(value)} characters "
                                 f"long; keep it under {MAX_QA_CHARS}")


@dataclass(frozen=True)
class Paraphrase:
    """A paraphrase of one chunk: the target of a stage-1 paraphrase row."""

    chunk_id: str
    text: str

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError(f"paraphrase of chunk {self.chunk_id!r} is empty")


def index_chunks(chunks: Iterable[ChunkRecord]) -> dict[str, int]:
    """Return each chunk id's position in `chunks`.

    Raises:
        ValueError: when two chunks share an id.
    """
    positions: dict[str, int] = {}
    for i, chunk in enumerate(chunks):
        if chunk.chunk_id in positions:
            raise ValueError(f"chunk id {chunk.chunk_id!r} appears twice (positions {positions[chunk.chunk_id]} "
                             f"and {i})")
        positions[chunk.chunk_id] = i
    return positions


def require_known_chunks(items: Iterable[QAPair | Paraphrase], positions: Mapping[str, int], what: str) -> None:
    """Raise ValueError naming the chunk ids in `items` that are not in the corpus (at most 5 shown)."""
    unknown = sorted({item.chunk_id for item in items if item.chunk_id not in positions})
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise ValueError(f"{len(unknown)} chunk ids of the {what} are not in the corpus: {shown}{more}")
