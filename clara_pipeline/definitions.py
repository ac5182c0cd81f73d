"""The Dagster code location: `dagster dev` (workspace.yaml) and `clara run` load `defs` from here."""

from __future__ import annotations

import dagster as dg

from .defs.base_model import base_model_job, clara_base_model
from .defs.captions import enriched_document, image_captions, no_raw_figure_references
from .defs.datasets import dataset_checks, training_datasets
from .defs.evaluation import clara_evaluation, evaluation_job
from .defs.ingest import ingest_document, markers_resolve, text_not_empty
from .defs.jobs import ingest_job, synthesis_job
from .defs.resources import build_resources
from .defs.schedules import nightly_resynthesis
from .defs.sensors import raw_data_sensor
from .defs.synthesis import corpus, qa_synthesis
from .defs.training import training_assets, training_checks, training_jobs, training_resources
from .settings import Settings


def build_definitions(settings: Settings | None = None, *, resources: dict | None = None) -> dg.Definitions:
    """The code location for `settings` (default: from the environment); `resources` replaces defaults by key."""
    settings = settings or Settings.from_env()
    return dg.Definitions(
        assets=[ingest_document, image_captions, enriched_document, corpus, qa_synthesis, training_datasets,
                clara_base_model, *training_assets, clara_evaluation],
        asset_checks=[markers_resolve, text_not_empty, no_raw_figure_references, *dataset_checks, *training_checks],
        jobs=[ingest_job, synthesis_job, base_model_job, *training_jobs, evaluation_job],
        sensors=[raw_data_sensor],
        schedules=[nightly_resynthesis],
        resources={**build_resources(settings), **training_resources(), **(resources or {})},
    )


defs = build_definitions()
