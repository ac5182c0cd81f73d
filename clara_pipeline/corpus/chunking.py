"""Token-aware chunking: pieces of at most `max_tokens` tokens of the base model's tokenizer, cut at paragraph,
then sentence, then token boundaries, with a small sentence overlap between neighbours.

The reference cut every 1000 characters, so a chunk of Chinese text overflowed CLaRa's 256-token document
window several times over (and the encoder silently truncated it); here a chunk always fits. A Markdown table
too long for one chunk is split by rows, each piece repeating the header, so no row loses its column names.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

TokenCounter = Callable[[str], int]

# Sentence ends: Latin punctuation followed by space, or CJK full stops (no space follows those).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|(?<=[。！？；])")
_TABLE_ROW = re.compile(r"^\|.*\|\s*$")


@dataclass(frozen=True)
class ChunkingConfig:
    max_tokens: int = 256  # CLaRa's doc_max_length: what the encoder keeps of a document
    overlap_tokens: int = 32  # sentences of the previous chunk repeated at the start of the next, at most this many tokens
    min_tokens: int = 8  # a trailing piece smaller than this is merged into its predecessor when it fits

    def __post_init__(self) -> None:
        if self.max_tokens < 16:
            raise ValueError(f"ChunkingConfig.max_tokens must be >= 16, got {self.max_tokens}")
        if not 0 <= self.overlap_tokens < self.max_tokens // 2:
            raise ValueError(f"ChunkingConfig.overlap_tokens must be in [0, max_tokens/2), got {self.overlap_tokens}")


def chunk_id(text: str) -> str:
    """A stable id from content alone: the same text keeps its id across runs and documents (so a re-extracted
    or copied document re-uses its chunks' cached QA, and identical chunks are recognised as duplicates)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def chunk_text(text: str, count_tokens: TokenCounter, config: ChunkingConfig = ChunkingConfig()) -> list[str]:
    """Returns `text` cut into chunks of at most `config.max_tokens` tokens each (by `count_tokens`)."""
    units = [u for block in _blocks(text) for u in _units(block, count_tokens, config.max_tokens)]
    chunks: list[list[str]] = []
    current: list[str] = []
    for unit in units:
        candidate = current + [unit]
        if current and count_tokens(_join(candidate)) > config.max_tokens:
            chunks.append(current)
            current = _overlap(current, count_tokens, config) + [unit]
            if count_tokens(_join(current)) > config.max_tokens:  # the overlap does not fit next to this unit
                current = [unit]
        else:
            current = candidate
    if current:
        if chunks and count_tokens(_join(current)) < config.min_tokens and \
                count_tokens(_join(chunks[-1] + current)) <= config.max_tokens:
            chunks[-1] = chunks[-1] + current
        elif not chunks or current != chunks[-1][-len(current):]:
            chunks.append(current)
    return [_join(c) for c in chunks]


def _join(units: list[str]) -> str:
    out = ""
    for unit in units:
        if not out:
            out = unit
        elif unit.startswith("\n\n"):
            out += unit
        else:
            out += " " + unit if not _cjk_boundary(out, unit) else unit
    return out.strip()


def _cjk_boundary(left: str, right: str) -> bool:
    return bool(re.match(r"[\u3000-\u9fff\uff00-\uffef]", left[-1:]) or re.match(r"[\u3000-\u9fff\uff00-\uffef]", right[:1]))


def _blocks(text: str) -> list[str]:
    return [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]


def _units(block: str, count_tokens: TokenCounter, max_tokens: int) -> list[str]:
    """A block as packing units: whole if it fits, else sentences (tables: row groups), else token windows.
    The first unit of a block carries a paragraph break marker so blocks stay separated by a blank line."""
    if count_tokens(block) <= max_tokens:
        pieces = [block]
    elif all(_TABLE_ROW.match(line) for line in block.splitlines()):
        pieces = _table_pieces(block, count_tokens, max_tokens)
    else:
        pieces = []
        for sentence in (s.strip() for s in _SENTENCE_END.split(block) if s and s.strip()):
            if count_tokens(sentence) <= max_tokens:
                pieces.append(sentence)
            else:
                pieces.extend(_token_windows(sentence, count_tokens, max_tokens))
    return ["\n\n" + pieces[0]] + pieces[1:]


def _table_pieces(table: str, count_tokens: TokenCounter, max_tokens: int) -> list[str]:
    lines = table.splitlines()
    header = lines[:2] if len(lines) > 1 and set(lines[1].replace("|", "").strip()) <= set("-: ") else lines[:1]
    pieces, current = [], list(header)
    for row in lines[len(header):]:
        if len(current) > len(header) and count_tokens("\n".join(current + [row])) > max_tokens:
            pieces.append("\n".join(current))
            current = list(header)
        current.append(row)
    pieces.append("\n".join(current))
    out = []
    for piece in pieces:  # a single row longer than a chunk: cut it too
        out.extend([piece] if count_tokens(piece) <= max_tokens else _token_windows(piece, count_tokens, max_tokens))
    return out


def _token_windows(text: str, count_tokens: TokenCounter, max_tokens: int) -> list[str]:
    """Cuts text with no usable boundary by binary search on the character length that fits."""
    out = []
    rest = text
    while rest:
        if count_tokens(rest) <= max_tokens:
            out.append(rest)
            break
        lo, hi = 1, len(rest)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count_tokens(rest[:mid]) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        cut = rest.rfind(" ", 0, lo)
        cut = cut if cut > lo // 2 else lo
        out.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    return out


def _overlap(units: list[str], count_tokens: TokenCounter, config: ChunkingConfig) -> list[str]:
    """The trailing sentences of a chunk (at most overlap_tokens) that start the next one."""
    if not config.overlap_tokens:
        return []
    tail: list[str] = []
    for unit in reversed(units):
        if _TABLE_ROW.match(unit.strip().splitlines()[0]):
            break  # never repeat table pieces: a row would be counted twice
        candidate = [unit] + tail
        if count_tokens(_join(candidate)) > config.overlap_tokens:
            break
        tail = candidate
    return tail
