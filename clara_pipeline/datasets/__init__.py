"""Training datasets from the corpus and its QA synthesis: pure functions, no Dagster.

Chunks, QA pairs and paraphrases go in (`records`); the three stage datasets come out as rows
(`builders`), with hard negatives (`negatives`, over `ranking` and `bm25`), near-duplicate groups
(`duplicates`), a held-out split (`split`), JSONL files (`jsonl`) and the validator behind the checks
(`validate`).
"""

from .bm25 import BM25Index, tokenize
from .builders import BuiltRows, DatasetReport, build_pretrain_rows, build_question_rows
from .config import DEFAULT_E2E_DOCS, DEFAULT_INSTRUCT_DOCS, DatasetConfig
from .duplicates import jaccard, near_duplicate_groups, shingles
from .jsonl import WrittenFile, encode_jsonl, read_jsonl, write_jsonl
from .negatives import SKIP_REASONS, NegativeChoice, NegativePicker
from .ranking import BM25Ranker, EmbeddingRanker, Ranker
from .records import ChunkRecord, Paraphrase, QAPair
from .split import QuestionSplit, is_held_out, split_pairs
from .text import AnswerMatcher, contains_answer
from .validate import PROBLEM_KINDS, Problem, count_problem_kinds, find_problems, validate_rows

__all__ = [
    "BM25Index", "BM25Ranker", "BuiltRows", "ChunkRecord", "DEFAULT_E2E_DOCS", "DEFAULT_INSTRUCT_DOCS",
    "DatasetConfig", "DatasetReport", "EmbeddingRanker", "NegativeChoice", "NegativePicker", "PROBLEM_KINDS",
    "Paraphrase", "Problem", "QAPair", "QuestionSplit", "Ranker", "SKIP_REASONS", "WrittenFile", "AnswerMatcher",
    "build_pretrain_rows", "build_question_rows", "contains_answer", "count_problem_kinds", "encode_jsonl",
    "find_problems", "is_held_out", "jaccard", "near_duplicate_groups", "read_jsonl", "shingles", "split_pairs",
    "tokenize", "validate_rows", "write_jsonl",
]
