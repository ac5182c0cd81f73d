"""Where things live, from the environment, with defaults that work from a fresh clone.

| variable          | default          | what                                                        |
|-------------------|------------------|-------------------------------------------------------------|
| `CLARA_RAW_DATA`  | `./raw_data`     | the folder of documents to ingest (scanned recursively)    |
| `CLARA_ARTIFACTS` | `./artifacts`    | everything the pipeline writes                              |
| `DAGSTER_HOME`    | `./dagster_home` | the Dagster instance (runs, events, sensor cursors); SQLite |

Relative paths are resolved against the current directory once, when the settings are read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

DAGSTER_YAML = """\
# Written by clara on first use; edit freely, it is never overwritten.
telemetry:
  enabled: false
run_monitoring:
  enabled: true
  # A cancelled or crashed run gives its pool slots back after this long.
  free_slots_after_run_end_seconds: 120
concurrency:
  runs:
    # Ingestion runs are one per document; a few at a time keeps a laptop responsive.
    max_concurrent_runs: 4
  pools:
    # Steps that call the LLM (pool "llm_api") across all runs; each step bounds its own requests too
    # (CLARA_LLM_MAX_CONCURRENCY). Change a pool's limit: `dagster instance concurrency set llm_api 4`.
    default_limit: 2
"""


@dataclass(frozen=True)
class Settings:
    raw_data: Path
    artifacts: Path
    dagster_home: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        base = Path(cwd) if cwd is not None else Path.cwd()

        def path(name: str, default: str) -> Path:
            value = env.get(name) or default
            return (base / Path(value).expanduser()).resolve()

        return cls(
            raw_data=path("CLARA_RAW_DATA", "raw_data"),
            artifacts=path("CLARA_ARTIFACTS", "artifacts"),
            dagster_home=path("DAGSTER_HOME", "dagster_home"),
        )


def ensure_dagster_home(home: Path) -> Path:
    """Creates the instance folder with our dagster.yaml if it has none; returns `home`."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML, encoding="utf-8")
    return home
