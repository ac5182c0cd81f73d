import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from clara_pipeline.definitions import build_definitions
from clara_pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SAMPLE_CORPUS = REPO / "raw_data"


def backdate(path: Path, seconds: float = 10) -> None:
    """Makes a freshly written file look settled, so the sensor hashes it on this tick."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


@pytest.fixture
def settings(tmp_path) -> Settings:
    raw = tmp_path / "raw"
    raw.mkdir()
    return Settings(raw_data=raw, artifacts=tmp_path / "artifacts", dagster_home=tmp_path / "dagster_home")


@pytest.fixture
def defs(settings) -> dg.Definitions:
    return build_definitions(settings)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def sample_corpus(tmp_path) -> Path:
    """A private copy of the shipped raw_data/ corpus."""
    dst = tmp_path / "sample_raw"
    shutil.copytree(SAMPLE_CORPUS, dst)
    return dst
