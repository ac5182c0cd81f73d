"""The LLM tasks: what goes in, the prompt, the validated JSON that comes out, and a version for the cache.

Two tasks, each a pydantic output model plus a prompt builder:

- `CAPTION`: one figure of a technical document -> `Caption` (title, text in the image, structure or
  flow, meaning), written in the document's language; `render_caption` turns it into the text that
  replaces the figure's marker in training documents.
- `CHUNK_SYNTHESIS`: one chunk -> `ChunkSynthesis` (3..8 typed QA pairs and a paraphrase).

Output models validate more than the JSON shape (languages, self-contained questions, no file names);
a broken rule becomes a re-ask with the rule in the message. Bump a task's PROMPT_VERSION whenever its
prompt, rules or output model change: it is part of the cache key, so old answers are not reused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Protocol, TypeVar

import pydantic
from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from ..datasets.records import QA_TYPES, QAPair
from ..storage import sha256_bytes
from .language import contains_language, written_in
from .structured import plain_validation_error
from .vision import VISION_PREP_VERSION, VisionLimits, prepare_image

I = TypeVar("I")
O = TypeVar("O", bound=BaseModel)

CAPTION_PROMPT_VERSION = "caption-v2"  # v2: per-field limits in the schema, 5000 output tokens; bump when the caption prompt, rules or Caption model change
SYNTHESIS_PROMPT_VERSION = "synthesis-v2"  # v2: qa_type, pairs validated one by one, lengths in the schema; bump when the synthesis prompt, rules or ChunkSynthesis change

LANGS = ("en", "zh", "und")
# Characters per caption field. 4,000 dense Chinese characters are about 2,560 tokens of Qwen3's tokenizer,
# and a caption at every limit about 4,520 (tests/clara_pipeline/llm/test_tasks.py measures it).
CAPTION_LIMITS = {"title": 200, "text_in_image": 4000, "structure": 2000, "meaning": 800}
_LANGUAGE_NAMES = {"en": "English", "zh": "Simplified Chinese (简体中文)"}

# -- language (see language.py) --------------------------------------------------------------------------

def other_language(lang: str) -> str:
    return {"en": "zh", "zh": "en"}[lang]


def _context(info: ValidationInfo) -> dict[str, Any]:
    return info.context if isinstance(info.context, dict) else {}


# -- the task interface ----------------------------------------------------------------------------------

class Task(Protocol[I, O]):
    """What the client needs to run one kind of call. `build_messages` may be CPU-heavy (images)."""

    name: str  # also the cache's task name and the json_schema name
    prompt_version: str
    output_model: type[O]
    max_tokens: int
    temperature: float  # unless LLMConfig.temperature overrides it
    vision: bool  # True: sent to the vision model

    def cache_input(self, item: I) -> dict[str, Any]:
        """The canonical input the cache key is made from (hashes, not bytes)."""

    def build_messages(self, item: I) -> list[dict[str, Any]]:
        """The chat messages; raises ImageRejected / LLMError for an item that cannot be sent."""

    def validation_context(self, item: I) -> dict[str, Any]:
        """The pydantic validation context for this item's output (language, requested counts...)."""


# -- captions --------------------------------------------------------------------------------------------

# What must never reach a caption: markers, image ids, file names, paths.
FILE_NAME_RE = re.compile(
    r"IMAGE_REF|\bimg-[0-9a-f]{8,}|[\w-]+\.(?:png|jpe?g|gif|bmp|webp|tiff?|emf|wmf|svg)\b"
    r"|(?:[A-Za-z]:)?[\\/](?:[\w.-]+[\\/]){2,}", re.IGNORECASE)


@dataclass(frozen=True)
class CaptionInput:
    """One figure and the document text around it. `image` is the stored file's bytes or its path."""

    image: bytes | Path = field(repr=False)
    image_sha256: str = ""  # computed from `image` when empty; the cache key uses it, never the bytes
    lang: str = "und"  # the document's language: "en" | "zh" | "und"
    context_before: str = ""
    context_after: str = ""
    alt_text: str = ""

    def __post_init__(self) -> None:
        if self.lang not in LANGS:
            raise ValueError(f"CaptionInput.lang must be one of {LANGS}, got {self.lang!r}")
        if not self.image_sha256:
            object.__setattr__(self, "image_sha256", sha256_bytes(self.load()))

    @classmethod
    def from_record(cls, record: Mapping[str, Any], artifacts_root: Path) -> "CaptionInput":
        """From one entry of `documents/<key>/images.json` (its `path` is relative to the artifacts root)."""
        for name in ("path", "sha256"):
            if not record.get(name):
                raise ValueError(f"image record {record.get('id', '?')!r} has no {name!r}")
        return cls(image=Path(artifacts_root) / record["path"], image_sha256=record["sha256"],
                   lang=record.get("lang") or "und", context_before=record.get("context_before") or "",
                   context_after=record.get("context_after") or "", alt_text=record.get("alt_text") or "")

    def load(self) -> bytes:
        """The image bytes; a path is read and checked against `image_sha256`.

        Raises:
            FileNotFoundError, ValueError: the stored file is missing or does not match its hash.
        """
        if isinstance(self.image, bytes):
            return self.image
        data = Path(self.image).read_bytes()
        if self.image_sha256 and sha256_bytes(data) != self.image_sha256:
            raise ValueError(f"{self.image}: content does not match sha256 {self.image_sha256[:12]}...")
        return data


class Caption(BaseModel):
    """A figure described for a reader who cannot see it."""

    model_config = pydantic.ConfigDict(extra="ignore")

    title: str = Field(description="A short title naming what the figure shows.",
                       json_schema_extra={"maxLength": CAPTION_LIMITS["title"]})
    text_in_image: str = Field(json_schema_extra={"maxLength": CAPTION_LIMITS["text_in_image"]},
                               description="All legible text in the figure, transcribed in reading order; "
                                           "empty if there is none.")
    structure: str = Field(json_schema_extra={"maxLength": CAPTION_LIMITS["structure"]},
                           description="Steps, actors, decisions and flow direction, or parts and their "
                                       "connections; empty if the figure has no structure.")
    meaning: str = Field(description="What the figure tells the reader, in 1-3 sentences.",
                         json_schema_extra={"maxLength": CAPTION_LIMITS["meaning"]})

    @field_validator("title", "text_in_image", "structure", "meaning")
    @classmethod
    def _clean(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        limit = CAPTION_LIMITS[info.field_name]
        if len(value) > limit:
            raise ValueError(f"is {len(value)} characters long; keep it under {limit}")
        if info.field_name in ("title", "meaning") and not value:
            raise ValueError("must not be empty")
        if FILE_NAME_RE.search(value):
            raise ValueError("mentions a file name, path or image id; describe the content only")
        return value

    @model_validator(mode="after")
    def _language(self, info: ValidationInfo) -> "Caption":
        lang = _context(info).get("lang")
        written = written_in(f"{self.title} {self.meaning}")
        if lang in _LANGUAGE_NAMES and written is not None and written != lang:
            raise ValueError(f"title and meaning must be written in {_LANGUAGE_NAMES[lang]}, the document's "
                             f"language (transcribed text stays as it is)")
        return self


def render_caption(caption: Caption, lang: str) -> str:
    """The text that replaces the figure's marker in training documents (no marker, path or file name)."""
    labels = ({"figure": "图", "structure": "结构", "text": "图中文字", "stop": "。"} if lang == "zh"
              else {"figure": "Figure", "structure": "Structure", "text": "Text in the figure", "stop": "."})
    colon = "：" if lang == "zh" else ": "
    title = caption.title.rstrip(" .。:：")
    lines = [f"{labels['figure']}{colon}{title}{labels['stop']} {caption.meaning}".strip()]
    if caption.structure:
        lines.append(f"{labels['structure']}{colon}{caption.structure}")
    if caption.text_in_image:
        lines.append(f"{labels['text']}{colon}{caption.text_in_image}")
    return "\n".join(lines)


def _language_rule(lang: str) -> str:
    if lang in _LANGUAGE_NAMES:
        return f"Write every field in {_LANGUAGE_NAMES[lang]}, the document's language"
    return "Write every field in the language of the surrounding text (English if there is none)"


CAPTION_SYSTEM_PROMPT = """\
You describe figures from company technical documents (manuals, specifications, process and system \
descriptions) so that a reader who cannot see the figure learns everything it shows. Your description \
replaces the figure in the text a question-answering model is trained on.

Return one JSON object with exactly these string fields:
- "title": a short title naming what the figure shows (a noun phrase, at most 12 words).
- "text_in_image": every piece of legible text in the figure, transcribed exactly and in reading order, \
separated by " | " (labels, values with their units, table cells, button names). "" if there is none.
- "structure": how the figure is organised. For a flowchart or process: the steps in order, who performs \
each (actors, swimlanes), each decision point and its outcomes, and the direction of flow. For a diagram: \
the parts and how they connect. For a chart: the axes, series and trend. For a table: its columns. For a \
screenshot: the screen and its main controls. "" if the figure has no structure (a photo).
- "meaning": 1-3 sentences on what the figure tells the reader: the rule, procedure, function or result it \
shows, tied to the surrounding text.

Rules:
- {language_rule}. Transcribed text keeps its original language.
- State plain facts that the figure shows or the surrounding text gives. Do not guess unreadable text; \
no opinions, no filler such as "this image shows".
- Never mention file names, paths, image ids, image formats or resolutions.
- Output only the JSON object."""


@dataclass(frozen=True)
class CaptionTask:
    """Figure -> Caption, on the vision model."""

    limits: VisionLimits = VisionLimits()
    name: str = "caption"
    prompt_version: str = CAPTION_PROMPT_VERSION
    output_model: type[Caption] = Caption
    max_tokens: int = 5000  # a caption at every limit, in dense Chinese, with room for the JSON (was 1500)
    temperature: float = 0.2  # low: a caption describes the figure, it should not vary from run to run
    vision: bool = True
    context_chars: int = 1200  # of text before/after the figure put in the prompt

    def cache_input(self, item: CaptionInput) -> dict[str, Any]:
        limits = self.limits
        return {"image_sha256": item.image_sha256, "lang": item.lang, "alt_text": item.alt_text,
                "context_before": item.context_before[-self.context_chars:],
                "context_after": item.context_after[:self.context_chars],
                "vision": f"{VISION_PREP_VERSION}:{limits.max_side}:{limits.max_bytes}:{limits.jpeg_quality}"}

    def build_messages(self, item: CaptionInput) -> list[dict[str, Any]]:
        prepared = prepare_image(item.load(), self.limits)
        context = (f"<document_language>{item.lang}</document_language>\n"
                   f"<alt_text>{item.alt_text.strip()}</alt_text>\n"
                   f"<text_before>{item.context_before[-self.context_chars:].strip()}</text_before>\n"
                   f"<text_after>{item.context_after[:self.context_chars].strip()}</text_after>\n"
                   "Describe the figure below as the JSON object specified.")
        return [
            {"role": "system", "content": CAPTION_SYSTEM_PROMPT.format(language_rule=_language_rule(item.lang))},
            {"role": "user", "content": [
                {"type": "text", "text": context},
                {"type": "image_url", "image_url": {"url": prepared.data_url, "detail": "high"}},
            ]},
        ]

    def validation_context(self, item: CaptionInput) -> dict[str, Any]:
        return {"lang": item.lang}


# -- chunk synthesis -------------------------------------------------------------------------------------

MIN_PAIRS, MAX_PAIRS = 3, 8
MAX_PARAPHRASE_CHARS = 6000  # a chunk is at most doc_max_length tokens; its paraphrase is no longer

# Questions that lean on a passage the reader of a training row never sees.
SELF_REFERENCE_RE = re.compile(
    r"\b(?:according to|based on|as (?:stated|described|mentioned|given) in|mentioned in) (?:the |this )?"
    r"(?:text|passage|chunk|excerpt|context|document|article|paragraph)\b"
    r"|\b(?:in|from) (?:the|this) (?:text|passage|excerpt|chunk)\b|\bthe (?:text|passage) (?:above|says|states)\b"
    r"|根据(?:上文|本文|原文|文本|文中|段落|材料|文章|以上)|上文(?:中|提到|所述)|文中(?:提到|所述|指出)|本文|这段文字",
    re.IGNORECASE)


@dataclass(frozen=True)
class ChunkInput:
    """One chunk of an enriched document, its language and how many QA pairs to ask for.

    `n_pairs` is what the prompt asks for; an answer with any count in 3..8 is accepted (models miss a
    requested count by one often enough that refusing it would cost a re-ask for nothing).
    """

    text: str
    lang: str = "und"  # "en" | "zh" | "und"
    n_pairs: int = 5
    chunk_id: str = ""  # put on the pairs of the answer; not part of the cache key (the text is)

    def __post_init__(self) -> None:
        if self.lang not in LANGS:
            raise ValueError(f"ChunkInput.lang must be one of {LANGS}, got {self.lang!r}")
        if not MIN_PAIRS <= self.n_pairs <= MAX_PAIRS:
            raise ValueError(f"ChunkInput.n_pairs must be in {MIN_PAIRS}..{MAX_PAIRS}, got {self.n_pairs}")
        if not self.text.strip():
            raise ValueError("ChunkInput.text is empty")


def pair_problem(pair: QAPair, lang: str | None) -> str | None:
    """What is wrong with one QA pair for a chunk in `lang` (self-reference, language), or None."""
    if SELF_REFERENCE_RE.search(pair.question):
        return "the question refers to 'the text/passage/document'; name the subject so it stands on its own"
    if lang not in _LANGUAGE_NAMES:
        return None
    if pair.qa_type == "cross_lingual":
        if not contains_language(pair.question, other_language(lang)):
            return f"the question (cross_lingual) must be written in {_LANGUAGE_NAMES[other_language(lang)]}"
    elif written_in(pair.question) not in (None, lang):
        return f"the question ({pair.qa_type}) must be written in {_LANGUAGE_NAMES[lang]}"
    if written_in(pair.answer) not in (None, lang):
        return f"the answer must be written in {_LANGUAGE_NAMES[lang]}, the passage's language"
    return None


class ChunkSynthesis(BaseModel):
    """QA pairs and a paraphrase for one chunk.

    Pairs are validated one by one: a pair that breaks a rule is dropped (listed in `rejected_pairs`, not
    stored), and the reply stands as long as `MIN_PAIRS` good ones remain; only then is it re-asked, with
    every dropped pair's problem in the message. Pairs past `MAX_PAIRS` are dropped the same way.
    """

    model_config = pydantic.ConfigDict(extra="ignore")

    qa_pairs: list[QAPair] = Field(min_length=MIN_PAIRS, max_length=MAX_PAIRS)
    paraphrase: str = Field(json_schema_extra={"maxLength": MAX_PARAPHRASE_CHARS})
    _rejected: list[str] = pydantic.PrivateAttr(default_factory=list)

    @property
    def rejected_pairs(self) -> list[str]:
        """"pair <n>: <problem>" for each pair of the reply that was dropped (empty for a cached answer)."""
        return list(self._rejected)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_good_pairs(cls, data: Any, handler: pydantic.ValidatorFunctionWrapHandler,
                         info: ValidationInfo) -> "ChunkSynthesis":
        if not isinstance(data, dict) or not isinstance(data.get("qa_pairs"), list):
            return handler(data)
        context = _context(info)
        lang, chunk_id = context.get("lang"), context.get("chunk_id", "")
        kept: list[QAPair] = []
        rejected: list[str] = []
        seen: set[str] = set()
        for i, raw in enumerate(data["qa_pairs"], start=1):
            try:
                fields = {k: v.strip() if isinstance(v, str) else v for k, v in raw.items()} \
                    if isinstance(raw, dict) else raw
                pair = _PAIR.validate_python({**fields, "chunk_id": chunk_id} if isinstance(fields, dict) else fields)
            except pydantic.ValidationError as exc:
                rejected.append(f"pair {i}: {plain_validation_error(exc)}")
                continue
            normal = " ".join(pair.question.casefold().split())
            problem = pair_problem(pair, lang) or ("it repeats an earlier question" if normal in seen else None)
            if problem is None and len(kept) == MAX_PAIRS:
                problem = f"more than {MAX_PAIRS} pairs"
            if problem is not None:
                rejected.append(f"pair {i}: {problem}")
                continue
            seen.add(normal)
            kept.append(pair)
        if len(kept) < MIN_PAIRS:
            reasons = f": {'; '.join(rejected)}" if rejected else ""
            raise ValueError(f"only {len(kept)} of {len(data['qa_pairs'])} question-answer pairs are usable and "
                             f"at least {MIN_PAIRS} are needed{reasons}")
        result = handler({**data, "qa_pairs": kept})
        result._rejected = rejected
        return result

    @field_validator("paraphrase")
    @classmethod
    def _paraphrase(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("the paraphrase is empty")
        return value

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> "ChunkSynthesis":
        chunk = _context(info).get("chunk")
        if chunk is not None:
            if " ".join(self.paraphrase.split()) == " ".join(chunk.split()):
                raise ValueError("the paraphrase repeats the passage word for word; reword it")
            if len(self.paraphrase) > 1.5 * len(chunk) + 50:
                raise ValueError("the paraphrase is much longer than the passage; keep it as long or shorter")
        return self


_PAIR = pydantic.TypeAdapter(QAPair)


def _synthesis_language_rules(lang: str) -> str:
    if lang in _LANGUAGE_NAMES:
        own, other = _LANGUAGE_NAMES[lang], _LANGUAGE_NAMES[other_language(lang)]
        return (f'- Include at least one "fact", one "reasoning" and one "cross_lingual" question.\n'
                f'- "fact" and "reasoning" questions are written in {own}. A "cross_lingual" question is '
                f"written in {other}, and its answer stays in {own}.\n"
                f"- Every answer is written in {own}, the passage's language.")
    return ('- Include at least one "fact" and one "reasoning" question; write questions and answers in the '
            "passage's language.")


SYNTHESIS_SYSTEM_PROMPT = """\
You create training data for a bilingual (English and Chinese) retrieval and question-answering model \
from passages of company documents.

For the passage you are given, return one JSON object:
{{"qa_pairs": [{{"qa_type": "fact" | "reasoning" | "cross_lingual", "question": "...", "answer": "..."}}], \
"paraphrase": "..."}}

Rules for qa_pairs:
- Write the number of pairs asked for (between 3 and 8).
- A "fact" question asks for one detail the passage states. A "reasoning" question needs two or more \
statements of the passage combined, or a cause, consequence or comparison drawn from them.
{language_rules}
- Every question is self-contained: it names the product, process or subject it is about, so it can be \
understood without the passage. Never write "according to the text", "in the passage", "the document" \
or similar (nor 根据上文, 文中, 本文).
- Every answer is stated in the passage or follows directly from it: short (a phrase or one sentence), \
reusing the passage's wording for names, numbers and units. No outside knowledge.
- Ask about the content (features, steps, requirements, values, responsibilities), never about file \
names, paths, image ids or formatting. Figure descriptions in the passage are content.
- No two questions ask the same thing.

Rules for paraphrase:
- Rewrite the whole passage in its own language with different wording and sentence order, keeping every \
key fact, name, number and unit; as long as the passage or shorter.

Output only the JSON object."""


@dataclass(frozen=True)
class ChunkSynthesisTask:
    """Chunk -> ChunkSynthesis, on the chat model."""

    name: str = "chunk_synthesis"
    prompt_version: str = SYNTHESIS_PROMPT_VERSION
    output_model: type[ChunkSynthesis] = ChunkSynthesis
    max_tokens: int = 3000
    temperature: float = 0.7  # as the reference pipeline: varied questions across chunks and runs
    vision: bool = False

    def cache_input(self, item: ChunkInput) -> dict[str, Any]:
        return {"text": item.text, "lang": item.lang, "n_pairs": item.n_pairs}

    def build_messages(self, item: ChunkInput) -> list[dict[str, Any]]:
        user = (f'<passage language="{item.lang}" pairs="{item.n_pairs}">\n{item.text.strip()}\n</passage>\n'
                f"Write {item.n_pairs} question-answer pairs and one paraphrase, as the JSON object specified.")
        return [
            {"role": "system",
             "content": SYNTHESIS_SYSTEM_PROMPT.format(language_rules=_synthesis_language_rules(item.lang))},
            {"role": "user", "content": user},
        ]

    def validation_context(self, item: ChunkInput) -> dict[str, Any]:
        return {"lang": item.lang, "n_pairs": item.n_pairs, "chunk": item.text, "chunk_id": item.chunk_id}


CAPTION = CaptionTask()
CHUNK_SYNTHESIS = ChunkSynthesisTask()
