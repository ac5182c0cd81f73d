"""`clara run`: the main job on one machine, through the same Dagster definitions and instance as the UI.

1. Sync the `documents` partitions with the raw folder (what `raw_data_sensor` does on a schedule).
2. Run the per-document job (extract, store and caption figures, enrich) for every document not up to date.
3. Run the synthesis job (corpus, QA synthesis, datasets) over the live documents.
4. Run `train_all_stages` (stages 1 -> 2 -> 3, each a DeepSpeed job launched through Pipes) at one compression
   rate, then `evaluate_clara` on the held-out questions. A stage whose data and settings did not change reuses
   its checkpoint; an interrupted one resumes from its last checkpoint.

Everything runs in process and lands in DAGSTER_HOME, so it shows in `clara dev` / `dagster dev` afterwards.
Each run carries its owner (pid, host, start time) in its tags; a later `clara run` or `clara dev` marks the
runs of an owner that was killed as failed (stale_runs.py). The run ends with what did not make it, and the exit
status says the same (accounting.py: 0 done, 1 a step failed, 2 nothing to run, 3 finished with items left out).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator

import dagster as dg

from .accounting import ExitStatus, RunAccount, plural
from .definitions import build_definitions
from .defs.partitions import documents_partitions
from .defs.training import TrainingSettings, ensure_gpu_pool_limit, training_assets
from .ingest.service import cache_key, load_extracted
from .ingest.rawfiles import printable
from .ingest.sources import PartitionPlan, ScanResult, plan_partitions, scan_folder, skipped_lines
from .llm.tasks import CAPTION
from .settings import Settings, ensure_dagster_home
from .stale_runs import fail_runs_of_dead_processes, owner_tags
from .training.base_model import CPU_BASE
from .training.watch import TrainingWatcher

# Failures are summarised in one line per document below; the full logs stay in the run (UI, --verbose).
_QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def scan_raw_folder(settings: Settings) -> ScanResult:
    """Every file of the raw folder hashed now (no settling time: `clara run` is started by hand)."""
    return scan_folder(settings.raw_data, hash_budget_s=float("inf"), settle_s=0.0,
                       allow_links=settings.allow_links_inside_raw)


def sync_partitions(instance: dg.DagsterInstance, settings: Settings, scan: ScanResult | None = None) -> PartitionPlan:
    """Adds and deletes `documents` partitions to match the raw folder, as `raw_data_sensor` does (removals
    are held back when too many documents are gone at once); returns the plan it applied."""
    scan = scan if scan is not None else scan_raw_folder(settings)
    existing = set(instance.get_dynamic_partitions(documents_partitions.name))
    plan = plan_partitions(scan, existing, max_new=sys.maxsize, max_remove_share=settings.max_remove_share)
    if plan.add:
        instance.add_dynamic_partitions(documents_partitions.name, plan.add)
    for key in plan.delete:
        instance.delete_dynamic_partition(documents_partitions.name, key)
    return plan


def run_main(settings: Settings, *, verbose: bool = False, out=None, train: bool = True,
             compression_rate: str = "32", max_steps: int = 30, retry_failed: bool = False) -> int:
    """Runs the pipeline on every document, then trains and evaluates at `compression_rate` (unless `train` is
    False); prints what did not make it; returns an `ExitStatus` (see accounting.py).

    `retry_failed` asks the LLM again for the figures and chunks parked by earlier runs.
    """
    out = out or sys.stdout  # read at the call: a caller may have replaced sys.stdout
    raw = printable(str(settings.raw_data))
    if not settings.raw_data.is_dir():
        print(f"clara run: the raw-data folder {raw} does not exist (set CLARA_RAW_DATA)", file=sys.stderr)
        return ExitStatus.USAGE
    scan = scan_raw_folder(settings)
    for line in skipped_lines(scan):
        print(f"  skipped     {line}", file=out)
    if not scan.files:
        # An empty folder is often an unmounted share: it must not remove every document.
        print(f"clara run: the raw-data folder {raw} holds no documents"
              + (f" ({len(scan.skipped)} entries skipped, see above)" if scan.skipped else "")
              + "; nothing to ingest, and no document partition was removed. Check that the folder (or the share "
              "it lives on) is mounted, or set CLARA_RAW_DATA.", file=sys.stderr)
        return ExitStatus.USAGE
    os.environ["DAGSTER_HOME"] = str(ensure_dagster_home(settings.dagster_home))
    # Without --verbose the trainer's log lines go to each run's train.log only, not to the terminal.
    defs = build_definitions(settings, resources=None if verbose else {
        "training": TrainingSettings.from_env(echo_trainer_output=False)})
    instance = dg.DagsterInstance.get()
    for line in fail_runs_of_dead_processes(instance, by="clara run"):  # they would hold run-queue slots
        print(f"  cleaned up  {line}", file=out)
    plan = sync_partitions(instance, settings, scan)
    account = RunAccount()
    account.skipped_entries.add(len(scan.skipped), skipped_lines(scan))
    account.held_back.add(len(plan.held_back), [plan.message] if plan.held_back else [])
    status = _run_steps(defs, instance, settings, plan, account, verbose=verbose, out=out, train=train,
                        compression_rate=compression_rate, max_steps=max_steps, retry_failed=retry_failed)
    for line in account.summary():
        print(line, file=out)
    if status is ExitStatus.OK:
        status = account.status()
    print({ExitStatus.OK: "done: everything made it (exit status 0)",
           ExitStatus.INCOMPLETE: "finished, with the items above left out (exit status 3)",
           ExitStatus.FAILED: "FAILED: a step failed, see above (exit status 1)"}[status], file=out)
    return status


def _run_steps(defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, plan: PartitionPlan,
               account: RunAccount, *, verbose: bool, out, train: bool, compression_rate: str, max_steps: int,
               retry_failed: bool) -> ExitStatus:
    """Ingestion, synthesis, then training and evaluation; counts what is left out in `account`; returns OK or
    FAILED."""
    raw = printable(str(settings.raw_data))
    # A held-back partition keeps its artifacts (and its place in the corpus) but has no file to ingest.
    keys = sorted(set(instance.get_dynamic_partitions(documents_partitions.name)) - set(plan.held_back))
    llm = defs.resources["llm"]
    print(f"raw data: {raw} ({plural(len(keys), 'document')}; {len(plan.add)} new, {len(plan.delete)} removed"
          + (f", {plural(account.skipped_entries.count, 'entry', 'entries')} skipped"
             if account.skipped_entries.count else "") + ")", file=out)
    if plan.held_back:
        print(f"  held back   {plan.message}", file=out)
    print(f"artifacts: {settings.artifacts}\nDAGSTER_HOME: {settings.dagster_home}", file=out)
    print("LLM: " + ("offline stand-in (set CLARA_LLM_BASE_URL for a real endpoint)" if llm.offline
                     else f"{llm.base_url} ({llm.model}, vision {llm.vlm_model or llm.model})"), file=out)

    run_config = None if verbose else _QUIET
    # The parked figures and chunks are asked again only when the run says so (the UI: the same run config).
    llm_run_config = {**(run_config or {}), **({"resources": {"synthesis": {"config": {"retry_failed": True}}}}
                                                if retry_failed else {})} or None
    tags = {"clara/launched_by": "clara run", **owner_tags()}
    started = time.perf_counter()
    failures = up_to_date = 0
    job = defs.resolve_job_def("ingest_documents")
    for key in keys:
        if _document_up_to_date(defs, key):
            print(f"  up to date  {key}", file=out)
            up_to_date += 1
            continue
        result = job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False,
                                        run_config=llm_run_config, tags=tags)
        failed_check = print_failed_checks(result, out, indent="              ") and result.success
        if result.success:
            document = load_extracted(defs.resources["artifacts"].store(), key)[0]
            pages = f"{document.page_count} pages, " if document.pages else ""
            captions = materialization_metadata(result, "image_captions")
            uncaptioned = captions.get("failed", 0)
            print(f"  ok          {key}  {document.format}, {pages}{len(document.text):,} chars, "
                  f"{plural(len(document.images), 'figure')}"
                  + (f" ({uncaptioned} without a caption)" if uncaptioned else "")
                  + f", {plural(len(document.warnings), 'warning')}", file=out)
            account.uncaptioned_figures.add(uncaptioned, [f"{key}: {line}" for line in
                                                          markdown_items(captions.get("first_failures", ""))])
            account.parked_figures += captions.get("parked", 0)
        else:
            print(f"  FAILED      {key}: {printable(failure_reason(result), backslash=False)}", file=out)
        if failed_check or not result.success:
            failures += 1  # a failed ERROR check that does not block the run still fails the document
            account.failed_documents.add(1, [f"{key}: {printable(failure_reason(result), backslash=False)}"])
    counts = [f"{len(keys) - up_to_date - failures} ingested"] + [f"{up_to_date} up to date"] * bool(up_to_date) \
        + [f"{failures} failed"] * bool(failures)
    print(f"{plural(len(keys), 'document')}: {', '.join(counts)} in {time.perf_counter() - started:.1f} s"
          + (" (see above, or the runs in the Dagster UI)" if failures else ""), file=out)
    if keys and failures == len(keys):
        return ExitStatus.FAILED

    started = time.perf_counter()
    result = defs.resolve_job_def("synthesize_datasets").execute_in_process(
        instance=instance, raise_on_error=False, run_config=llm_run_config, tags=tags)
    count_synthesis(result, account)
    if print_failed_checks(result, out) or not result.success:
        print(f"synthesis FAILED: {failure_reason(result)}", file=out)
        return ExitStatus.FAILED
    for event in result.get_asset_materialization_events():
        meta = event.materialization.metadata
        summary = ", ".join(f"{k} {meta[k].value}" for k in _SUMMARY.get(event.asset_key.to_user_string(), ()) if k in meta)
        print(f"  {event.asset_key.to_user_string():<20} {summary}", file=out)
    print(f"synthesis done in {time.perf_counter() - started:.1f} s", file=out)
    if train and not run_training(defs, instance, compression_rate, max_steps, run_config, tags, out):
        return ExitStatus.FAILED
    return ExitStatus.OK


def materialization_metadata(result, asset: str) -> dict:
    """The metadata values of `asset`'s materialization in a run's result ({} when it was not materialized)."""
    for event in result.get_asset_materialization_events():
        if event.asset_key.to_user_string() == asset:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    return {}


def markdown_items(text: str) -> list[str]:
    """The items of a Markdown list (`- item` lines), as asset metadata gives first failures."""
    return [line[2:] for line in str(text).splitlines() if line.startswith("- ")]


def count_synthesis(result, account: RunAccount) -> None:
    """Adds the chunks without QA pairs and what the rules dropped in a synthesis run to `account`."""
    qa = materialization_metadata(result, "qa_synthesis")
    account.chunks_without_pairs.add(qa.get("chunks_failed", 0), markdown_items(qa.get("first_failures", "")))
    account.parked_chunks += qa.get("chunks_parked", 0)
    for reason, n in (qa.get("dropped") or {}).items():
        account.dropped[f"QA pairs: {reason.replace('_', ' ')}"] += n
    for asset in ("pretrain_dataset", "instruction_dataset", "end_to_end_dataset"):
        for reason, n in (materialization_metadata(result, asset).get("rows_dropped") or {}).items():
            account.dropped[f"{asset.removesuffix('_dataset')} rows: {reason.replace('_', ' ')}"] += n


@contextlib.contextmanager
def relay_log_lines(logger_name: str, out) -> Iterator[None]:
    """Print the INFO lines of `logger_name` to `out`, indented, while the block runs."""
    handler = logging.StreamHandler(out)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    source = logging.getLogger(logger_name)
    level = source.level
    source.addHandler(handler)
    if source.getEffectiveLevel() > logging.INFO:
        source.setLevel(logging.INFO)
    try:
        yield
    finally:
        source.removeHandler(handler)
        source.setLevel(level)


def run_training(defs: dg.Definitions, instance: dg.DagsterInstance, rate: str, max_steps: int,
                 run_config: dict | None, tags: dict, out) -> bool:
    """Train the three stages at `rate`, then evaluate; print a line per stage and the results; return success."""
    ensure_gpu_pool_limit(instance)
    training = defs.resources["training"]
    print(f"training at compression rate {rate}: base model {training.base_model}, "
          + (f"{max_steps} steps per stage" if max_steps else "the stage configs' epochs")
          + ("" if training.echo_trainer_output else "; the trainer's log: <run folder>/train.log"), file=out)
    started = time.perf_counter()
    # The CPU base trains in this process for a minute or two: relay its progress lines (every 50 steps) as they come.
    with relay_log_lines("clara_model.pretrain_base", out):
        result = defs.resolve_job_def("build_base_model").execute_in_process(
            instance=instance, raise_on_error=False, tags=tags, run_config=run_config)
    if print_failed_checks(result, out) or not result.success:
        print(f"base model FAILED: {failure_reason(result)}", file=out)
        return False
    (event,) = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    print(f"  {'clara_base_model':<22} {meta['kind']} {meta['base_model']}"
          + (f", reads {meta['reading_exact']:.0%} of held-out made-up facts exactly"
             + (" (up to date: reused)" if meta.get("reused")
                else f", {meta['continuation_steps']} steps on the corpus in {meta['train_seconds']:.0f} s")
             if "reading_exact" in meta else ""), file=out)
    started = time.perf_counter()
    ops = {asset.key.to_user_string(): {"config": {"max_steps": max_steps}} for asset in training_assets}
    # A line per stage as it starts and a progress line every few steps, read from the run folders as they grow.
    with TrainingWatcher(defs.resources["artifacts"].store().root, rate, out=out):
        result = defs.resolve_job_def("train_all_stages").execute_in_process(
            instance=instance, partition_key=rate, raise_on_error=False, tags=tags,
            run_config={**(run_config or {}), "ops": ops})
    for event in result.get_asset_materialization_events():
        meta = {k: v.value for k, v in event.materialization.metadata.items()}
        print(f"  {event.asset_key.to_user_string():<22} {meta.get('steps')} steps, loss {_num(meta.get('first_loss'))}"
              f" -> {_num(meta.get('final_loss'))}, {_num(meta.get('tokens_per_s'))} tok/s"
              + (" (up to date: checkpoint reused)" if meta.get("reused") else f", {_num(meta.get('train_wall_s'))} s")
              + f"\n  {'':<22} {meta.get('checkpoint')}", file=out)
    if print_failed_checks(result, out) or not result.success:
        print(f"training FAILED: {failure_reason(result)}", file=out)
        return False
    print(f"training done in {time.perf_counter() - started:.1f} s", file=out)

    started = time.perf_counter()
    result = defs.resolve_job_def("evaluate_clara").execute_in_process(
        instance=instance, partition_key=rate, raise_on_error=False, tags=tags, run_config=run_config)
    if not result.success:
        print(f"evaluation FAILED: {failure_reason(result)}", file=out)
        return False
    (event,) = result.get_asset_materialization_events()
    meta = event.materialization.metadata
    print(f"evaluation on the held-out questions ({meta['rows'].value} answer rows, {meta['e2e_rows'].value} "
          f"retrieval rows) in {time.perf_counter() - started:.1f} s"
          + (" (up to date: report reused)" if meta.get("reused") and meta["reused"].value else "")
          + f":\n{meta['results'].value}\n"
          f"report: {meta['report'].value}", file=out)
    errors = print_failed_checks(result, out)
    if training.base_model == "tiny":
        print("(the tiny model is random-initialised and cannot learn: these scores test the pipeline, not "
              "CLaRa; set CLARA_BASE_MODEL and train on GPUs for real ones)", file=out)
    elif training.base_model == CPU_BASE:
        print("(the CPU base is a small Qwen3 with a shipped reading skill and the stages train for minutes: these "
              "scores show whether the pipeline learns, not what Qwen3-4B reaches; set CLARA_BASE_MODEL and train "
              "on GPUs for real ones)", file=out)
    return not errors


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) and abs(value) < 100 else \
        f"{value:,.0f}" if isinstance(value, (int, float)) else str(value)


_SUMMARY = {
    "corpus": ("documents", "chunks", "tokens_mean"),
    "qa_synthesis": ("qa_pairs", "paraphrases", "chunks_failed", "chunks_parked", "http_requests", "cache_hits"),
    "pretrain_dataset": ("rows", "path"),
    "instruction_dataset": ("rows", "path"),
    "end_to_end_dataset": ("rows", "path"),
}


def _document_up_to_date(defs: dg.Definitions, key: str) -> bool:
    """Extracted with the current extractor and settings, captioned by the current provider without failures,
    and enriched."""
    store = defs.resources["artifacts"].store()
    stored = load_extracted(store, key)
    if stored is None or stored[1] != cache_key(defs.resources["extraction"].config()):
        return False
    captions_path, enriched_path = store.captions_path(key), store.enriched_document_path(key)
    if not (captions_path.exists() and enriched_path.exists()):
        return False
    captions = json.loads(captions_path.read_text(encoding="utf-8"))
    llm = defs.resources["llm"]
    provider = captions.get("provider", {})
    expected = ("offline", "offline") if llm.offline else (llm.vlm_model or llm.model, CAPTION.prompt_version)
    actual = (("offline", provider.get("caption_prompt_version")) if provider.get("provider") == "offline"
              else (provider.get("vlm_model"), provider.get("caption_prompt_version")))
    return not captions["failures"] and actual == expected


def print_failed_checks(result, out, *, indent: str = "  ") -> int:
    """Print a line per failed asset check of a run, warnings included; return how many have ERROR severity.

    Line: `check <asset>[<partition>] <check_name> (<severity>): <summary>` (no brackets when unpartitioned).
    """
    errors = 0
    for check in result.get_asset_check_evaluations():
        if check.passed:
            continue
        errors += check.severity is dg.AssetCheckSeverity.ERROR
        partition = check.partition or result.dagster_run.tags.get("dagster/partition")
        print(f"{indent}check {check.asset_key.to_user_string()}{f'[{partition}]' if partition else ''} "
              f"{check.check_name} ({check.severity.value}): {printable(check_summary(check), backslash=False)}",
              file=out)
    return errors


def check_summary(check) -> str:
    """One line about a check evaluation: its details (or first problem), else its description, else its
    first few metadata values."""
    details = check.metadata.get("first_problems") or check.metadata.get("details")
    if details is not None and str(details.value).strip():
        return str(details.value).strip().splitlines()[0].lstrip("- ")
    if check.description:
        return check.description
    values = [f"{key} {value.value}" for key, value in check.metadata.items()
              if isinstance(value.value, (str, int, float, bool))]
    return ", ".join(values[:4]) or "no details"


def failure_reason(result) -> str:
    """One line: the first failed ERROR check (with its first problem), else the first failed step's message."""
    for check in result.get_asset_check_evaluations():
        if not check.passed and check.severity is dg.AssetCheckSeverity.ERROR:
            return f"check {check.check_name} of {check.asset_key.to_user_string()} failed: {check_summary(check)}"
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                return data.user_failure_data.description
            return error_line(data.error) if data.error else "step failed"
    return "run failed"


def error_line(error) -> str:
    """One line for a step's error (a SerializableErrorInfo): the error the code raised, not Dagster's wrapper
    ("DagsterExecutionStepExecutionError: Error occurred while executing op ..."), with a hint for a full disk."""
    while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    line = next((line for line in error.message.strip().splitlines() if line.strip()), error.cls_name or "error")
    if "[Errno 28]" in line:  # storage names the file it was writing
        line += " (the disk is full: free space there and run again; nothing half-written was published)"
    return line
