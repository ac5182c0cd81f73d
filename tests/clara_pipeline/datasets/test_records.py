import json
import subprocess
import sys
from pathlib import Path

import pytest

from clara_pipeline.datasets import ChunkRecord, DatasetConfig, Paraphrase, QAPair

ROOT = Path(__file__).resolve().parents[3]


def test_records_refuse_what_the_builders_cannot_use_and_say_which():
    with pytest.raises(ValueError, match="chunk 'c1': lang must be one of"):
        ChunkRecord("c1", "doc", "raw/a.md", "fr", "text")
    with pytest.raises(ValueError, match="chunk 'c1' of document 'doc' has no text"):
        ChunkRecord("c1", "doc", "raw/a.md", "en", "  \n")
    with pytest.raises(ValueError, match="QA pair of chunk 'c1' has an empty answer"):
        QAPair("c1", "fact", "What is it?", " ")
    with pytest.raises(ValueError, match="qa_type must be one of"):
        QAPair("c1", "trivia", "What is it?", "it")
    with pytest.raises(ValueError, match="paraphrase of chunk 'c1' is empty"):
        Paraphrase("c1", "")


@pytest.mark.parametrize("field, value", [("held_out_fraction", 1.0), ("held_out_fraction", -0.1),
                                          ("near_duplicate_threshold", 0.0), ("shingle_size", 0), ("hard_pool", -1)])
def test_config_refuses_contradictions_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"DatasetConfig.{field}"):
        DatasetConfig(**{field: value})


def test_importing_the_package_loads_neither_dagster_nor_torch():
    probe = ("import json, sys; import clara_pipeline.datasets; "
             "print(json.dumps([m for m in ('dagster', 'torch', 'clara_model') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
