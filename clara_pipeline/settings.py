"""Where things live, from the environment, with defaults that work from a fresh clone.

| variable          | default          | what                                                        |
|-------------------|------------------|-------------------------------------------------------------|
| `CLARA_RAW_DATA`  | `./raw_data`     | the folder of documents to ingest (scanned recursively)    |
| `CLARA_ARTIFACTS` | `./artifacts`    | everything the pipeline writes                              |
| `DAGSTER_HOME`    | `./dagster_home` | the Dagster instance (runs, events, sensor cursors); SQLite |
| `CLARA_ALLOW_LINKS_INSIDE_RAW` | `0` | `1`: read symbolic links whose target lies inside the raw folder (others are always skipped) |
| `CLARA_MAX_FILE_MB`    | `200`  | a PDF, DOCX or image larger than this is not read                      |
| `CLARA_MAX_TEXT_MB`    | `32`   | a .txt or .md file larger than this is not read                        |
| `CLARA_MAX_ARCHIVE_MB` | `1024` | memory a DOCX may take once inflated and parsed (zip-bomb guard)       |
| `CLARA_MAX_REMOVE_SHARE` | `0.5` | documents gone from the raw folder beyond this share are not removed in one pass |

Relative paths are resolved against the current directory once, when the settings are read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from .ingest.rawfiles import RawFilePolicy

DAGSTER_YAML = """\
# Written by clara on first use; edit freely, it is never overwritten.
telemetry:
  enabled: false
run_monitoring:
  # The daemon (clara dev) fails a run stuck STARTING or CANCELING, and a run past its dagster/max_runtime tag
  # (ingest_documents: 3 h). It cannot see a dead run worker or an in-process run whose `clara run` was killed:
  # `clara run` and `clara dev` fail the runs of dead processes when they start.
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  poll_interval_seconds: 60
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
    allow_links_inside_raw: bool = False
    max_file_mb: float = 200.0
    max_text_mb: float = 32.0
    max_archive_mb: float = 1024.0
    max_remove_share: float = 0.5

    def __post_init__(self) -> None:
        for name in ("max_file_mb", "max_text_mb", "max_archive_mb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{_ENV[name]} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.max_remove_share <= 1:
            raise ValueError(f"CLARA_MAX_REMOVE_SHARE must be in 0..1, got {self.max_remove_share}")

    def raw_file_policy(self) -> "RawFilePolicy":
        from .ingest.rawfiles import MB, RawFilePolicy  # not at import: the ingest package loads PyMuPDF

        return RawFilePolicy(allow_links=self.allow_links_inside_raw, max_file_bytes=int(self.max_file_mb * MB),
                             max_text_bytes=int(self.max_text_mb * MB),
                             max_archive_memory_bytes=int(self.max_archive_mb * MB))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        base = Path(cwd) if cwd is not None else Path.cwd()

        def path(name: str, default: str) -> Path:
            value = env.get(name) or default
            return (base / Path(value).expanduser()).resolve()

        def number(field: str) -> float:
            value = env.get(_ENV[field]) or ""
            if not value:
                return getattr(cls, field)
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"{_ENV[field]} must be a number, got {value!r}") from None

        links = env.get("CLARA_ALLOW_LINKS_INSIDE_RAW", "").strip().lower()
        if links not in ("", "0", "1", "false", "true", "no", "yes"):
            raise ValueError(f"CLARA_ALLOW_LINKS_INSIDE_RAW must be 1 or 0, got {links!r}")
        return cls(
            raw_data=path("CLARA_RAW_DATA", "raw_data"),
            artifacts=path("CLARA_ARTIFACTS", "artifacts"),
            dagster_home=path("DAGSTER_HOME", "dagster_home"),
            allow_links_inside_raw=links in ("1", "true", "yes"),
            **{field: number(field) for field in ("max_file_mb", "max_text_mb", "max_archive_mb", "max_remove_share")},
        )


_ENV = {"max_file_mb": "CLARA_MAX_FILE_MB", "max_text_mb": "CLARA_MAX_TEXT_MB",
        "max_archive_mb": "CLARA_MAX_ARCHIVE_MB", "max_remove_share": "CLARA_MAX_REMOVE_SHARE"}


STORAGE_READY = ".clara-storage-ready"  # in DAGSTER_HOME: the instance's storage exists and is migrated


def ensure_dagster_home(home: Path) -> Path:
    """Creates the instance folder with our dagster.yaml and its storage, once; returns `home`.

    Two processes that create a new instance's SQLite storage at the same moment both run its migrations and
    leave two alembic heads behind, after which no process can open it ("Version table 'alembic_version' has more
    than one head"): two `clara run` started together on a new folder did. So the first process creates the
    storage under an exclusive lock, and the others wait for it and then find it ready.
    """
    import fcntl

    home.mkdir(parents=True, exist_ok=True)
    if (home / STORAGE_READY).exists():
        return home
    with open(home / ".clara-init.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        config = home / "dagster.yaml"
        if not config.exists():
            staged = home / ".dagster.yaml.tmp"
            staged.write_text(DAGSTER_YAML, encoding="utf-8")
            staged.replace(config)
        if not (home / STORAGE_READY).exists():
            import dagster as dg

            with dg.DagsterInstance.from_config(str(home)) as instance:
                instance.get_runs(limit=1)  # creates and migrates the run, event and schedule storage
            (home / STORAGE_READY).write_text("", encoding="utf-8")
    return home
