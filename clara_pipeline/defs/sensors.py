"""`raw_data_sensor`: keeps the `documents` partitions in step with the raw folder and starts ingestion."""


import json

import dagster as dg

from ..ingest.sources import FileState, plan_partitions, scan_folder, skipped_lines
from .jobs import ingest_job
from .partitions import documents_partitions
from .resources import RawDataFolder

MAX_NEW_PER_TICK = 100
HASH_BUDGET_S = 30.0  # the sensor has 60 s; hashing more waits for the next tick


def _load_cursor(cursor: str | None) -> dict[str, FileState]:
    if not cursor:
        return {}
    return {rel: FileState(*state) for rel, state in json.loads(cursor).get("files", {}).items()}


def _dump_cursor(files: dict[str, FileState]) -> str:
    return json.dumps({"files": {rel: [s.size, s.mtime_ns, s.sha256] for rel, s in sorted(files.items())}})


@dg.sensor(job=ingest_job, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Adds a partition and requests an ingestion run for each new or changed file in the "
                       "raw folder, and removes the partitions of deleted files. Cheap: a file is hashed only "
                       "when its size or mtime changed.")
def raw_data_sensor(context: dg.SensorEvaluationContext, raw_data: RawDataFolder) -> dg.SensorResult:
    if not raw_data.root.is_dir():
        # A missing (unmounted?) folder must not delete every partition.
        return dg.SensorResult(skip_reason=f"raw-data folder {raw_data.root} does not exist", cursor=context.cursor)
    scan = scan_folder(raw_data.root, _load_cursor(context.cursor), hash_budget_s=HASH_BUDGET_S,
                       allow_links=raw_data.allow_links)
    existing = set(context.instance.get_dynamic_partitions(documents_partitions.name))
    plan = plan_partitions(scan, existing, max_new=MAX_NEW_PER_TICK, max_remove_share=raw_data.max_remove_share)
    if scan.unhashed or plan.deferred:
        context.log.info(f"{len(scan.unhashed)} file(s) not hashed yet and {plan.deferred} new partition(s) "
                         "deferred to the next tick")
    if scan.skipped:
        context.log.warning(f"{len(scan.skipped)} entr{'y' if len(scan.skipped) == 1 else 'ies'} of the raw folder "
                            "not ingested:\n" + "\n".join(skipped_lines(scan)))
    if plan.held_back:
        context.log.warning(plan.message)
    requests = []
    if plan.add:
        requests.append(documents_partitions.build_add_request(plan.add))
    if plan.delete:
        requests.append(documents_partitions.build_delete_request(plan.delete))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=k, run_key=k) for k in plan.add],
        dynamic_partitions_requests=requests,
        cursor=_dump_cursor(scan.files),
    )
