"""Nightly re-synthesis, only when the corpus would change."""

import dagster as dg

import json

from ..corpus.store import inputs_fingerprint
from .jobs import synthesis_job
from .partitions import documents_partitions
from .resources import ArtifactStoreResource


@dg.schedule(job=synthesis_job, cron_schedule="0 2 * * *", default_status=dg.DefaultScheduleStatus.RUNNING,
             description="At 02:00, re-synthesize the datasets if documents were added, changed or removed since "
                         "the last corpus (the per-document runs the sensor started have finished by then).")
def nightly_resynthesis(context: dg.ScheduleEvaluationContext, artifacts: ArtifactStoreResource):
    store = artifacts.store()
    keys = context.instance.get_dynamic_partitions(documents_partitions.name)
    if not keys:
        return dg.SkipReason("no documents yet")
    fingerprint = inputs_fingerprint(store, keys)
    state = store.datasets_state_path
    built_from = json.loads(state.read_text(encoding="utf-8")).get("corpus_fingerprint") if state.exists() else None
    if built_from == fingerprint:
        return dg.SkipReason(f"the datasets are up to date with the corpus ({len(keys)} documents)")
    # One run per corpus state and night: a failed run is tried again the next night.
    day = context.scheduled_execution_time.strftime("%Y%m%d")
    return dg.RunRequest(run_key=f"corpus-{fingerprint[:16]}-{day}", tags={"clara/corpus_fingerprint": fingerprint})
