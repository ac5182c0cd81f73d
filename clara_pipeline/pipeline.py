"""`clara run`: the main job on one machine, through the same Dagster definitions and instance as the UI.

It syncs the `documents` partitions with the raw folder (what `raw_data_sensor` does on a schedule), then
materializes every partition that is not up to date, in process, and prints one line per document.
Runs land in DAGSTER_HOME, so they show in `clara dev` / `dagster dev` afterwards.
"""

from __future__ import annotations

import os
import sys
import time

import dagster as dg

from .definitions import build_definitions
from .defs.partitions import documents_partitions
from .ingest.service import cache_key, load_extracted
from .ingest.sources import plan_partitions, scan_folder
from .settings import Settings, ensure_dagster_home

# Failures are summarised in one line per document below; the full logs stay in the run (UI, --verbose).
_QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def sync_partitions(instance: dg.DagsterInstance, settings: Settings) -> tuple[list[str], list[str]]:
    """Adds and deletes `documents` partitions to match the raw folder; returns (added, deleted)."""
    scan = scan_folder(settings.raw_data, hash_budget_s=float("inf"), settle_s=0.0)
    existing = set(instance.get_dynamic_partitions(documents_partitions.name))
    plan = plan_partitions(scan, existing, max_new=sys.maxsize)
    if plan.add:
        instance.add_dynamic_partitions(documents_partitions.name, plan.add)
    for key in plan.delete:
        instance.delete_dynamic_partition(documents_partitions.name, key)
    return plan.add, plan.delete


def run_main(settings: Settings, *, verbose: bool = False, out=sys.stdout) -> int:
    """Runs ingestion for every document; returns 0 when all succeeded, 1 when any failed."""
    if not settings.raw_data.is_dir():
        print(f"clara run: the raw-data folder {settings.raw_data} does not exist (set CLARA_RAW_DATA)", file=sys.stderr)
        return 2
    os.environ["DAGSTER_HOME"] = str(ensure_dagster_home(settings.dagster_home))
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.get()
    added, deleted = sync_partitions(instance, settings)
    keys = sorted(instance.get_dynamic_partitions(documents_partitions.name))
    print(f"raw data: {settings.raw_data} ({len(keys)} documents; {len(added)} new, {len(deleted)} removed)", file=out)
    print(f"artifacts: {settings.artifacts}\nDAGSTER_HOME: {settings.dagster_home}", file=out)

    job = defs.resolve_job_def("ingest_documents")
    config = defs.resources["extraction"].config()
    store = defs.resources["artifacts"].store()
    done = instance.get_materialized_partitions(dg.AssetKey("document_images"))
    failures = 0
    started = time.perf_counter()
    for key in keys:
        stored = load_extracted(store, key)
        if key in done and stored is not None and stored[1] == cache_key(config):
            print(f"  up to date  {key}", file=out)
            continue
        result = job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False,
                                        run_config=None if verbose else _QUIET, tags={"clara/launched_by": "clara run"})
        if result.success:
            document = load_extracted(store, key)[0]
            pages = f"{document.page_count} pages, " if document.pages else ""
            print(f"  ok          {key}  {document.format}, {pages}{len(document.text):,} chars, "
                  f"{len(document.images)} images, {len(document.warnings)} warnings", file=out)
        else:
            failures += 1
            print(f"  FAILED      {key}: {_failure_reason(result)}", file=out)
    print(f"{len(keys) - failures}/{len(keys)} documents ingested in {time.perf_counter() - started:.1f} s"
          + (f"; {failures} failed (see above, or the runs in the Dagster UI)" if failures else ""), file=out)
    return 1 if failures else 0


def _failure_reason(result) -> str:
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                return data.user_failure_data.description
            return data.error.message.strip().splitlines()[-1] if data.error else "step failed"
    return "run failed"
