"""Dataset rows as JSONL: one object per line, UTF-8, keys in one fixed order, written atomically.

The key order is the trainer's fields first, in the order DESIGN.md lists them, then our extra fields
alphabetically; it depends on nothing but the keys present, so a row built twice is the same bytes twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..storage import sha256_bytes, write_bytes_atomic

KEY_ORDER = ("data_type", "question", "answers", "answer", "docs", "pos_index")


@dataclass(frozen=True)
class WrittenFile:
    """What `write_jsonl` wrote: for the asset's metadata."""

    path: Path
    rows: int
    bytes: int
    sha256: str


def encode_row(row: Mapping[str, Any]) -> str:
    """One row as a JSON line (no newline).

    Raises:
        ValueError: for a NaN or infinite number (not JSON); TypeError for a value JSON cannot hold.
    """
    ordered = {key: row[key] for key in KEY_ORDER if key in row}
    ordered.update((key, row[key]) for key in sorted(row) if key not in ordered)
    return json.dumps(ordered, ensure_ascii=False, allow_nan=False)


def encode_jsonl(rows: Iterable[Mapping[str, Any]]) -> bytes:
    """The rows as JSONL bytes: each row's line ends with a newline; no rows is an empty file."""
    return "".join(encode_row(row) + "\n" for row in rows).encode("utf-8")


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> WrittenFile:
    """Write `rows` to `path` atomically (a reader sees the old file or the new one, never half of one)."""
    data = encode_jsonl(rows)
    write_bytes_atomic(Path(path), data)
    return WrittenFile(Path(path), data.count(b"\n"), len(data), sha256_bytes(data))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every non-blank line of a JSONL file, decoded.

    Raises:
        ValueError: `file:line: invalid JSON ...` for the first line that is not a JSON object.
        FileNotFoundError: when the file does not exist.
    """
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_no}: invalid JSON ({error.msg} at column {error.colno})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows
