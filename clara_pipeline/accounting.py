"""What did not make it into a run, in the user's words, and the exit status that follows.

`clara run` exits with one of `ExitStatus`:

| status | name       | when                                                                                  |
|--------|------------|---------------------------------------------------------------------------------------|
| 0      | OK         | everything is done: every document ingested, every figure captioned, every chunk has QA pairs |
| 1      | FAILED     | a step failed (synthesis, a dataset, training, evaluation, or every document): the run did not finish |
| 2      | USAGE      | nothing was run: a bad command line, or the raw-data folder is missing or holds no documents |
| 3      | INCOMPLETE | the run finished, but some items did not make it: documents that failed to ingest, figures without a caption, chunks without QA pairs (failed or parked), raw-folder entries skipped, removals held back |

Pairs and rows that curation or the dataset builders drop by rule (unsupported answers, duplicates) are
counted in the summary, but they are the filter working, not a loss: they do not change the status.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

FIRST_REASONS = 3  # reasons shown per kind of loss; the rest are in the asset metadata and the run's logs


class ExitStatus(enum.IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2  # also argparse's status for a bad command line
    INCOMPLETE = 3


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """`1 figure`, `2 figures`, `0 chunks`."""
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"


def kinds_in_words(counts: Mapping[str, int]) -> str:
    """`invalid output 2, timeout 1` for {"invalid_output": 2, "timeout": 1} (failure kinds, or drop reasons)."""
    return ", ".join(f"{kind.replace('_', ' ')} {n}" for kind, n in sorted(counts.items())) or "none"


def failure_lines(failures: Iterable[Mapping[str, Any]], label: Callable[[str], str] = str,
                  limit: int = 5) -> list[str]:
    """The first `limit` failures (ItemFailure.as_dict() records) as `<label of the item>: <message>`."""
    return [f"{label(str(f['key']))}: {f['message']}" for f in list(failures)[:limit]]


@dataclass
class Loss:
    """One kind of item that did not make it: how many, and the first reasons."""

    count: int = 0
    reasons: list[str] = field(default_factory=list)

    def add(self, count: int, reasons: Iterable[str] = ()) -> None:
        self.count += count
        self.reasons.extend(r for r in reasons if len(self.reasons) < FIRST_REASONS)


@dataclass
class RunAccount:
    """Every item a `clara run` left out, by kind, and what was dropped by rule (informational)."""

    skipped_entries: Loss = field(default_factory=Loss)  # raw-folder entries not read (links, special files)
    held_back: Loss = field(default_factory=Loss)  # documents gone from the folder whose removal was held back
    failed_documents: Loss = field(default_factory=Loss)
    uncaptioned_figures: Loss = field(default_factory=Loss)  # placeholders in the training text
    parked_figures: int = 0  # of uncaptioned_figures: not asked again (clara run --retry-failed)
    chunks_without_pairs: Loss = field(default_factory=Loss)
    parked_chunks: int = 0  # of chunks_without_pairs
    dropped: Counter = field(default_factory=Counter)  # "<what> <reason>" -> count, dropped by rule

    def losses(self) -> list[tuple[str, Loss]]:
        """(headline, loss) for each kind with at least one item, in the order a reader follows the run."""
        parked = lambda n: f", {n} of them parked" if n else ""  # noqa: E731
        kinds = [
            (plural(self.skipped_entries.count, "raw-folder entry", "raw-folder entries") + " skipped (not read)",
             self.skipped_entries),
            (plural(self.held_back.count, "document") + " gone from the raw folder but kept (removal held back)",
             self.held_back),
            (plural(self.failed_documents.count, "document") + " failed to ingest", self.failed_documents),
            (plural(self.uncaptioned_figures.count, "figure") + " without a caption (a placeholder stands in "
             "the training text" + parked(self.parked_figures) + ")", self.uncaptioned_figures),
            (plural(self.chunks_without_pairs.count, "chunk") + " without QA pairs (left out of the datasets"
             + parked(self.parked_chunks) + ")", self.chunks_without_pairs),
        ]
        return [(headline, loss) for headline, loss in kinds if loss.count]

    @property
    def parked(self) -> int:
        return self.parked_figures + self.parked_chunks

    def status(self) -> ExitStatus:
        """INCOMPLETE when any item was left out, else OK (a failed step is the caller's FAILED)."""
        return ExitStatus.INCOMPLETE if self.losses() else ExitStatus.OK

    def summary(self) -> list[str]:
        """The closing lines of `clara run`: each kind of loss with its first reasons, then what rules dropped."""
        lines = []
        losses = self.losses()
        if losses:
            lines.append("not everything made it:")
            for headline, loss in losses:
                lines.append(f"  {headline}")
                lines.extend(f"      {reason}" for reason in loss.reasons)
                if loss.count > len(loss.reasons) and loss.reasons:
                    lines.append(f"      ... and {loss.count - len(loss.reasons)} more (see above, or the runs in "
                                 "the Dagster UI)")
            if self.parked:
                lines.append(f"  {plural(self.parked, 'item')} parked: the LLM's answers for them never validated, "
                             "so they are not paid for again; `clara run --retry-failed` asks again")
        if self.dropped:
            lines.append("dropped on the way (curation and dataset rules; the counts are in the asset metadata): "
                         + ", ".join(f"{reason} {n}" for reason, n in sorted(self.dropped.items())))
        return lines
