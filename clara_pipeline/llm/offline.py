"""The offline provider: a deterministic, network-free STAND-IN for a real LLM.

Used when no endpoint is configured, so the whole pipeline runs from a clean clone. What it produces is
plumbing-grade data, not what a model would write:

- Captions come from image properties (orientation, size, dominant colours, format) and the text around
  the figure. Nothing in the image is read: `text_in_image` is always empty.
- QA pairs are cloze questions built from the chunk's own sentences: a number with its unit, a code or a
  key term is blanked out and is the answer, so every answer is literally a substring of the chunk. The
  "reasoning" question gives one sentence as a premise and blanks a span of the next one; the
  "cross-lingual" question wraps a cloze in a fixed template of the other language (EN <-> ZH).
- The paraphrase is the chunk's sentences in a rotated order with fixed wordy phrases shortened.

Same inputs, same outputs, on every machine. Outputs pass the same validation as a real model's.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pydantic
from PIL import Image

from .batch import BatchResult, run_batch
from .client import EmbeddingsUnavailable
from .errors import FailureKind, LLMError
from .structured import describe_validation_error
from .tasks import (CAPTION, CHUNK_SYNTHESIS, FILE_NAME_RE, MAX_PAIRS, MIN_PAIRS, SELF_REFERENCE_RE, Caption, CaptionInput,
                    ChunkInput, ChunkSynthesis, written_in)
from .usage import UsageStats

OFFLINE_NOTE = ("offline stand-in for a real LLM: captions from image properties and surrounding text, "
                "QA pairs as cloze questions cut from the chunk's own sentences, paraphrases by reordering; "
                "set CLARA_LLM_BASE_URL for real synthesis")

# -- sentences and spans ---------------------------------------------------------------------------------

# A sentence ends at ., ! or ? followed by a space (not "3.5", not "e.g.x"), at a Chinese terminator, or
# at a line break (list items, headings and table rows are lines).
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])[\"')\]]*\s+|(?<=[。！？；!?;])|\n+")
_LINE_PREFIX_RE = re.compile(r"(?:#{1,6}\s+|[-*+]\s+|\d{1,3}[.)]\s+|>\s+)")  # used with .match(text, pos)
_TABLE_RULE_RE = re.compile(r"^\|?[\s:|-]+\|?$")
_HEADING_RE = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.MULTILINE)

_UNITS = (r"%|°C|°F|℃|kWh|MWh|[kMG]?Hz|[kMG]?W|mA|mV|kV|V|A|Ah|mAh|mm|cm|km|m²|m³|m|kg|mg|g|ml|mL|L|"
          r"ms|s|min|h|hours?|days?|weeks?|months?|years?|minutes?|seconds?|bar|psi|[kM]?Pa|Nm|rpm|dB|px|"
          r"[KMGT]B|pcs|units?|times|USD|EUR|RMB|CNY|"
          r"元|个月|个|周年|天|小时|分钟|秒|年|月|周|次|台|件|人|名|项|步|米|公里|千克|公斤|克|度|倍|毫米|厘米|伏|安|瓦")
_NUMBER_UNIT_RE = re.compile(rf"(?<![\w.])\d+(?:[.,]\d+)*\s?(?:{_UNITS})(?![A-Za-z])")
_CODE_RE = re.compile(r"(?<![\w-])(?:[A-Z]{2,}[A-Z0-9]*(?:[-/][A-Z0-9]+)*|[A-Z]+[-]?\d+[A-Z0-9-]*)(?![\w-])")
_TITLE_TERM_RE = re.compile(
    r"\b(?!(?:The|A|An|This|These|That|Each|Every|If|When|In|On|For|To|After|Before)\b)[A-Z][a-z]+(?:\s+[A-Z][a-z]+)+\b")
_QUOTED_RE = re.compile(r"[「“《\"]([^」”》\"\n]{2,20})[」”》\"]")
_NUMBER_RE = re.compile(r"(?<![\w.])\d{2,}(?:[.,]\d+)*(?![\w])")
_CJK_RUN_RE = re.compile(r"[\u4e00-\u9fff]{2,}")
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z-]{5,}")
_STOPWORDS = set("""about above after again against because before being below between during further
having itself other should through under until which while where there their these those would could
within without whether however therefore""".split())
_ZH_FUNCTION_CHARS = set("的了和与及或在是为对将把被从向于以而并且也都就要会可能这那其此该每各所")


@dataclass(frozen=True)
class Sentence:
    start: int  # offsets into the chunk: chunk[start:end] is the sentence, exactly
    end: int
    text: str


@dataclass(frozen=True)
class Blank:
    sentence: int  # index into the sentence list
    start: int  # offsets into the chunk
    end: int
    answer: str


def split_sentences(text: str) -> list[Sentence]:
    """The sentences of `text` with exact offsets; list markers and heading hashes are left out."""
    out = []
    position = 0
    for match in [*_SENTENCE_END_RE.finditer(text), None]:
        end = match.start() if match else len(text)
        piece = text[position:end]
        stripped_start = position + len(piece) - len(piece.lstrip())
        prefix = _LINE_PREFIX_RE.match(text, stripped_start, end)
        start = prefix.end() if prefix else stripped_start
        stop = position + len(piece.rstrip())
        sentence = text[start:stop]
        if sentence and not _TABLE_RULE_RE.match(sentence):
            out.append(Sentence(start, stop, sentence))
        position = match.end() if match else len(text)
    return out


# What this provider writes into captions; never turned into questions (it says nothing about the document).
_OFFLINE_MARK_RE = re.compile(r"offline description|离线描述|offline stand-in")
# The lines of a rendered caption (render_caption): "Figure: ...", "Structure: ...", "图：..." and so on.
_CAPTION_LINE_RE = re.compile(r"^(?:Figure|Structure|Text in the figure|图|结构|图中文字)(?::|：).*$", re.MULTILINE)
_FIGURE_LINE_RE = re.compile(r"^\s*(?:Figure|Fig\.|图)\s*\d+\s*[:：.]\s*(.{3,120}?)\s*$", re.MULTILINE)


def _substantial(sentence: str) -> bool:
    """Long enough to be a statement worth a question: 4+ words, or 6+ Chinese characters; never one of the
    offline captions' own property descriptions."""
    if _OFFLINE_MARK_RE.search(sentence):
        return False
    words = len(re.findall(r"[A-Za-z0-9]+", sentence))
    cjk = sum(len(run) for run in _CJK_RUN_RE.findall(sentence))
    return words >= 4 or cjk >= 6


def _repeated_zh_terms(text: str) -> list[str]:
    """2-4 character CJK terms that occur in two or more places: the chunk's recurring subjects."""
    counts: Counter[str] = Counter()
    for run in _CJK_RUN_RE.findall(text):
        for size in (4, 3, 2):
            for i in range(len(run) - size + 1):
                term = run[i:i + size]
                if not (set(term) & _ZH_FUNCTION_CHARS):
                    counts[term] += 1
    return [t for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], -len(kv[0]), kv[0])) if n >= 2]


def find_blanks(text: str, sentences: Sequence[Sentence], lang: str) -> list[list[Blank]]:
    """For each sentence, the spans worth blanking, best first: numbers with units, codes and acronyms,
    quoted terms, multi-word names, recurring Chinese terms, other numbers, long words."""
    zh_terms = _repeated_zh_terms(text) if lang == "zh" else []
    per_sentence = []
    for index, sentence in enumerate(sentences):
        found: list[Blank] = []
        taken: list[tuple[int, int]] = []

        def add(start: int, end: int) -> None:
            start, end = sentence.start + start, sentence.start + end
            answer = text[start:end].strip()
            start = text.index(answer, start) if answer else start  # the span without surrounding spaces
            end = start + len(answer)
            if not answer or len(answer) > 0.6 * len(sentence.text):
                return
            if any(start < e and s < end for s, e in taken):
                return
            if written_in(answer) not in (None, lang) and lang in ("en", "zh"):
                return  # a long phrase in the other language is not an answer in the chunk's language
            taken.append((start, end))
            found.append(Blank(index, start, end, answer))

        if not _substantial(sentence.text):
            per_sentence.append(found)
            continue
        for regex in (_NUMBER_UNIT_RE, _CODE_RE, _QUOTED_RE, _TITLE_TERM_RE):
            for m in regex.finditer(sentence.text):
                group = 1 if regex is _QUOTED_RE else 0
                add(m.start(group), m.end(group))
        for term in zh_terms[:20]:
            at = sentence.text.find(term)
            if at >= 0:
                add(at, at + len(term))
        for regex in (_NUMBER_RE, _WORD_RE):
            for m in regex.finditer(sentence.text):
                if regex is _WORD_RE and m.group(0).lower() in _STOPWORDS:
                    continue
                add(m.start(), m.end())
        per_sentence.append(found)
    return per_sentence


def _blanked(text: str, sentence: Sentence, blank: Blank) -> str:
    return (text[sentence.start:blank.start] + "____" + text[blank.end:sentence.end]).strip()


def chunk_topic(text: str, lang: str) -> str | None:
    """What the chunk is about, to make questions self-contained: its first heading, else a recurring term."""
    heading = _HEADING_RE.search(text)
    if heading and len(heading.group(1)) <= 60:
        return heading.group(1).strip()
    if lang == "zh":
        terms = _repeated_zh_terms(text)
        return terms[0] if terms else None
    counts = Counter(m.group(0) for m in _TITLE_TERM_RE.finditer(text))
    counts.update(m.group(0) for m in _CODE_RE.finditer(text))
    return counts.most_common(1)[0][0] if counts else None


# -- chunk synthesis -------------------------------------------------------------------------------------

_TEMPLATES = {
    # (chunk language, question type) -> template; {about} is "" or the topic phrase.
    ("en", "fact"): "{about}Complete the statement: “{cloze}”",
    ("en", "reasoning"): "{about}Given that “{premise}”, what completes the statement “{cloze}”?",
    ("en", "cross_lingual"): "{about}请用英文补全下面这句话中的空白处：“{cloze}”",
    ("zh", "fact"): "{about}请补全这句话：“{cloze}”",
    ("zh", "reasoning"): "{about}已知“{premise}”，请补全：“{cloze}”",
    ("zh", "cross_lingual"): "{about}Fill in the blank in the following statement, answering in Chinese: “{cloze}”",
}
_ABOUT = {("en", "en"): "Regarding {topic}: ", ("en", "zh"): "关于“{topic}”：",
          ("zh", "zh"): "关于{topic}：", ("zh", "en"): "Regarding “{topic}”: "}
_EN_SHORTER = [
    (r"\bin order to\b", "to"), (r"\bis able to\b", "can"), (r"\bare able to\b", "can"),
    (r"\bdue to the fact that\b", "because"), (r"\bprior to\b", "before"), (r"\bin the event that\b", "if"),
    (r"\bwith regard to\b", "about"), (r"\ba number of\b", "several"), (r"\bat this point in time\b", "now"),
    (r"\b[Pp]lease note that\s+", ""), (r"\bmake sure that\b", "ensure"), (r"\butili[sz]e\b", "use"),
]
_ZH_SHORTER = [("需要", "须"), ("的时候", "时"), ("如果", "若"), ("但是", "但"), ("因为", "因"), ("以及", "及"),
               ("已经", "已"), ("能够", "能"), ("之前", "前"), ("之后", "后")]


def offline_synthesis(item: ChunkInput) -> ChunkSynthesis:
    """Cloze QA pairs and a reordered paraphrase for `item`, validated like a model's answer.

    Raises:
        LLMError(INSUFFICIENT_CONTENT): too few sentences or blankable spans for three questions of the
            required types (a heading-only or very short chunk).
    """
    # Offline captions describe only an image's size and colours: blank them out (offsets kept) so no
    # question is ever asked about them.
    text, lang = _CAPTION_LINE_RE.sub(lambda m: " " * len(m.group()), item.text), item.lang
    base = "zh" if lang == "zh" else "en"  # "und" chunks get English templates and no cross-lingual type
    sentences = split_sentences(text)
    blanks = find_blanks(text, sentences, lang)
    topic = chunk_topic(text, lang)
    used: set[tuple[int, int]] = set()

    def take(need_premise: bool) -> Blank | None:
        # Breadth first: the best span of each sentence, then the second best, ... so pairs cover the chunk.
        for rank in range(max((len(b) for b in blanks), default=0)):
            for index, options in enumerate(blanks):
                if rank < len(options) and (options[rank].start, options[rank].end) not in used:
                    if need_premise and index == 0:
                        continue
                    used.add((options[rank].start, options[rank].end))
                    return options[rank]
        return None

    if lang in ("en", "zh"):
        plan = ["fact", "reasoning", "cross_lingual", "fact", "reasoning", "cross_lingual", "fact", "fact"]
    else:
        plan = ["fact", "reasoning", "fact", "reasoning", "fact", "reasoning", "fact", "fact"]
    def question(kind: str, blank: Blank) -> str:
        sentence = sentences[blank.sentence]
        question_lang = {"en": "zh", "zh": "en"}[base] if kind == "cross_lingual" else base
        about = _ABOUT[(base, question_lang)].format(topic=topic) if topic and topic not in sentence.text else ""
        premise = sentences[blank.sentence - 1].text if kind == "reasoning" else ""
        return _TEMPLATES[(base, kind)].format(about=about, cloze=_blanked(text, sentence, blank), premise=premise)

    pairs = []
    for kind in plan[:min(item.n_pairs, MAX_PAIRS)]:
        while (blank := take(need_premise=kind == "reasoning")) is not None:
            asked = question(kind, blank)
            # A quoted sentence that itself says "this document" would make the question lean on it.
            if not SELF_REFERENCE_RE.search(asked):
                pairs.append({"qa_type": kind, "question": asked, "answer": blank.answer})
                break
    if len(pairs) < MIN_PAIRS:
        sentences_said = f"{len(sentences)} sentence{'s' if len(sentences) != 1 else ''}"
        raise LLMError(FailureKind.INSUFFICIENT_CONTENT, f"too little text for questions: the offline stand-in "
                       f"found {len(pairs)} to ask in {sentences_said}, and a chunk needs {MIN_PAIRS}")
    data = {"qa_pairs": pairs, "paraphrase": offline_paraphrase(text, sentences, lang)}
    try:
        return ChunkSynthesis.model_validate(data, context=CHUNK_SYNTHESIS.validation_context(item))
    except pydantic.ValidationError as exc:
        raise LLMError(FailureKind.INSUFFICIENT_CONTENT, f"too little text for questions: "
                       f"{describe_validation_error(exc)}") from None


def offline_paraphrase(text: str, sentences: Sequence[Sentence], lang: str) -> str:
    """The sentences rotated by one (the first goes last) with wordy phrases shortened; all content kept."""
    parts = [s.text for s in sentences] or [text.strip()]
    if len(parts) > 1:
        parts = parts[1:] + parts[:1]
    shortened = []
    for part in parts:
        if lang == "zh":
            for long, short in _ZH_SHORTER:
                part = part.replace(long, short)
        else:
            for pattern, short in _EN_SHORTER:
                part = re.sub(pattern, short, part)
        shortened.append(part)
    if lang == "zh":
        result = "".join(p if p.endswith(("。", "！", "？", "；", ".", "!", "?")) else p + "。" for p in shortened)
    else:
        result = " ".join(p if p.endswith((".", "!", "?", ":", "。")) else p + "." for p in shortened)
    if " ".join(result.split()) == " ".join(text.split()):
        result = ("概括：" if lang == "zh" else "In short: ") + result
    return result


# -- captions --------------------------------------------------------------------------------------------

_COLOURS = {  # name -> (RGB, Chinese name)
    "white": ((245, 245, 245), "白色"), "black": ((20, 20, 20), "黑色"), "grey": ((128, 128, 128), "灰色"),
    "light grey": ((200, 200, 200), "浅灰色"), "red": ((200, 40, 40), "红色"), "orange": ((240, 140, 30), "橙色"),
    "yellow": ((235, 215, 50), "黄色"), "green": ((50, 160, 70), "绿色"), "blue": ((40, 90, 200), "蓝色"),
    "light blue": ((140, 190, 235), "浅蓝色"), "purple": ((130, 60, 170), "紫色"), "brown": ((130, 85, 45), "棕色"),
}


@dataclass(frozen=True)
class ImageProperties:
    width: int
    height: int
    format: str
    colours: tuple[str, ...]  # dominant named colours, largest share first

    @property
    def orientation(self) -> str:
        if self.width > 1.15 * self.height:
            return "landscape"
        if self.height > 1.15 * self.width:
            return "portrait"
        return "square"


def image_properties(data: bytes) -> ImageProperties:
    """Size, format and dominant colours (named, each covering at least 10% of the image)."""
    with Image.open(io.BytesIO(data)) as image:
        fmt = (image.format or "unknown").lower()
        width, height = image.size
        image.draft("RGB", (64, 64))  # JPEG: decode at 1/2..1/8 scale; 32x32 colours need no more
        rgba = image.convert("RGBA").resize((32, 32), Image.Resampling.BILINEAR)
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    pixels = np.asarray(Image.alpha_composite(canvas, rgba).convert("RGB"), dtype=np.float32).reshape(-1, 3)
    names = list(_COLOURS)
    palette = np.array([_COLOURS[n][0] for n in names], dtype=np.float32)
    nearest = np.argmin(((pixels[:, None, :] - palette[None, :, :]) ** 2).sum(axis=2), axis=1)
    counts = np.bincount(nearest, minlength=len(names))
    ranked = [names[i] for i in np.argsort(-counts, kind="stable") if counts[i] >= 0.1 * len(pixels)]
    return ImageProperties(width, height, fmt, tuple(ranked[:3]))


def _clean_context(text: str) -> str:
    return " ".join(FILE_NAME_RE.sub(" ", text).split())


def _near_sentence(before: str, after: str) -> str:
    """The sentence just before the figure, else the one just after it."""
    for text, pick in ((before, -1), (after, 0)):
        sentences = [s.text for s in split_sentences(_clean_context(text)) if _substantial(s.text)]
        if sentences:
            return sentences[pick][:300]
    return ""


def offline_caption(item: CaptionInput) -> Caption:
    """A caption from the image's properties and the surrounding text, validated like a model's answer.

    Raises:
        LLMError(INVALID_INPUT): the image cannot be decoded.
    """
    try:
        props = image_properties(item.load())
    except (OSError, ValueError) as exc:
        raise LLMError(FailureKind.INVALID_INPUT, f"offline caption: cannot read the image ({exc})") from None
    zh = item.lang == "zh"

    def fits(text: str) -> bool:  # a caption is written in the document's language; skip text that is not
        return item.lang not in ("en", "zh") or written_in(text) in (None, item.lang)

    context = _near_sentence(item.context_before, item.context_after)
    context = context if fits(context) else ""
    heading = _HEADING_RE.findall(item.context_before)
    # The document's own figure caption ("Figure 2: Wiring ...", just after or before the figure) names it best.
    figure_lines = _FIGURE_LINE_RE.findall(item.context_after[:300]) or _FIGURE_LINE_RE.findall(item.context_before[-300:])
    figure_line = figure_lines[0] if _FIGURE_LINE_RE.findall(item.context_after[:300]) else (figure_lines[-1] if figure_lines else "")
    section = _clean_context(heading[-1])[:80] if heading else ""
    candidates = [_clean_context(figure_line)[:100], _clean_context(item.alt_text)[:80], section, context[:60]]
    title = next((c for c in candidates if c and fits(c)), "")
    section = section if section and fits(section) and section != title else ""
    if zh:
        orientation = {"landscape": "横向", "portrait": "纵向", "square": "方形"}[props.orientation]
        colours = "、".join(_COLOURS[c][1] for c in props.colours) or "多种颜色"
        data = {
            "title": title or "文档插图",
            "text_in_image": "",
            "structure": f"{orientation}{props.format.upper()}图像，{props.width}×{props.height}像素，主要颜色为"
                         f"{colours}（离线描述，未识别图中内容）。",
            "meaning": f"“{section}”一节中的插图。" if section else "文档中的插图。",
        }
    else:
        colours = ", ".join(props.colours) or "mixed colours"
        data = {
            "title": title or "Document figure",
            "text_in_image": "",
            "structure": f"A {props.orientation} {props.format.upper()} image of {props.width}x{props.height} px, "
                         f"mostly {colours} (offline description, the content was not analysed).",
            "meaning": f"A figure of the section “{section}”." if section else "A figure of the document.",
        }
    try:
        return Caption.model_validate(data, context=CAPTION.validation_context(item))
    except pydantic.ValidationError as exc:
        raise LLMError(FailureKind.INVALID_OUTPUT, f"offline caption: {describe_validation_error(exc)}") from None


# -- embeddings (for the loopback server) ----------------------------------------------------------------

def hashed_embedding(text: str, dim: int = 256) -> list[float]:
    """A unit vector of hashed word and CJK-bigram counts: lexical similarity, deterministic everywhere."""
    vector = np.zeros(dim, dtype=np.float64)
    tokens = re.findall(r"[a-z0-9]+", text.lower())
    for run in _CJK_RUN_RE.findall(text):
        tokens.extend(run[i:i + 2] for i in range(len(run) - 1))
    for token in tokens:
        digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        vector[value % dim] += 1.0 if (value >> 32) & 1 else -1.0
    norm = np.linalg.norm(vector)
    return (vector / norm if norm else vector).tolist()


# -- the provider ----------------------------------------------------------------------------------------

class OfflineProvider:
    """The provider interface without a network: see the module docstring for what it really produces."""

    kind = "offline"
    can_embed = False  # hard negatives fall back to BM25

    def __init__(self) -> None:
        self.usage = UsageStats()

    def describe(self) -> dict[str, Any]:
        return {"provider": self.kind, "note": OFFLINE_NOTE, "caption_prompt_version": "offline",
                "synthesis_prompt_version": "offline"}

    async def caption(self, item: CaptionInput) -> Caption:
        return await asyncio.to_thread(offline_caption, item)

    async def synthesize(self, item: ChunkInput) -> ChunkSynthesis:
        return offline_synthesis(item)

    async def caption_batch(self, items: Mapping[str, CaptionInput]) -> BatchResult[Caption]:
        return await run_batch(items, self.caption, task=CAPTION.name, usage=self.usage, window=8,
                               provider=self.describe())

    async def synthesize_batch(self, items: Mapping[str, ChunkInput]) -> BatchResult[ChunkSynthesis]:
        return await run_batch(items, self.synthesize, task=CHUNK_SYNTHESIS.name, usage=self.usage, window=64,
                               provider=self.describe())

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise EmbeddingsUnavailable("the offline provider has no embeddings; use BM25 negatives")

    async def aclose(self) -> None:
        return None
