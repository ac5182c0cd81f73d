"""The rows a run trains on: read and checked up front, then served to a DataLoader with their indices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from clara_model.config import Stage
from clara_model.data import DataError, QuestionRow, RowError, iter_rows


def read_training_data(paths: Sequence[Path], stage: Stage, top_k: int) -> tuple[list[Any], list[int]]:
    """Return every row of the data files, in order, and each file's row count.

    Raises:
        DataError: listing every bad line as `file:line: reason` (stage e2e: also rows with fewer candidates
            than top_k, which could not fill the prompt), or `file: no rows` for a file without any.
        FileNotFoundError: when a file does not exist.
    """
    rows: list[Any] = []
    counts, problems = [], []
    for path in paths:
        before, bad_before = len(rows), len(problems)
        for line_no, item in iter_rows(path, stage):
            if isinstance(item, RowError):
                problems.append(f"{path}:{line_no}: {item}")
            elif stage is Stage.E2E and isinstance(item, QuestionRow) and len(item.docs) < top_k:
                problems.append(f"{path}:{line_no}: {len(item.docs)} candidates, fewer than "
                                f"stage.generation_top_k={top_k}")
            else:
                rows.append(item)
        if len(rows) == before and len(problems) == bad_before:
            problems.append(f"{path}: no rows")
        counts.append(len(rows) - before)
    if problems:
        raise DataError(problems)
    return rows, counts


class IndexedRows(Dataset):
    """Rows with their indices, so a rank can say which rows it trained on."""

    def __init__(self, rows: Sequence[Any]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.rows[index]


class CollateWithIndices:
    """A stage collator that also returns the indices of the rows it collated (picklable for workers).

    Each sample's key, (epoch, row index), seeds what the collator draws for it (the paraphrase template), so a
    resumed run draws the same as an uninterrupted one. A row appears once per epoch, except in a dataset smaller
    than one global batch, whose repeats share their draw.
    """

    def __init__(self, collator: Any, epoch: int = 0) -> None:
        self.collator, self.epoch = collator, epoch

    def __call__(self, items: Sequence[tuple[int, Any]]) -> tuple[list[int], Any]:
        indices = [i for i, _ in items]
        return indices, self.collator([row for _, row in items], keys=[(self.epoch, i) for i in indices])
