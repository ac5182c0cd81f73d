"""`clara`: the command line.

    clara extract FILE [--images-dir DIR]   print one document's extraction as JSON
    clara run [--retry-failed] [--skip-training]   run the whole graph on the embedded defaults
    clara dev [-p PORT]                     start the Dagster UI and daemon on this project (stops within
                                            10 s of Ctrl-C or SIGTERM, with every process it started)
    clara validate-data FILE --stage S      check a training JSONL file (S: pretrain, instruct, e2e)

Paths come from CLARA_RAW_DATA (./raw_data), CLARA_ARTIFACTS (./artifacts) and DAGSTER_HOME
(./dagster_home), so `clara run` and `clara dev` share one instance: runs made by one show in the other.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .accounting import ExitStatus
from .settings import Settings, ensure_dagster_home
from .training.stages import COMPRESSION_RATES

RUN_EPILOG = f"""\
exit status:
  {ExitStatus.OK:d}  everything is done
  {ExitStatus.FAILED:d}  a step failed (synthesis, a dataset, training, evaluation, or every document)
  {ExitStatus.USAGE:d}  nothing was run: a bad command line, or the raw-data folder is missing or empty
  {ExitStatus.INCOMPLETE:d}  finished, but items were left out: documents that failed to ingest, figures without a
     caption, chunks without QA pairs (failed or parked), raw-folder entries skipped, removals held back;
     the summary at the end lists them with their first reasons
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clara", description="CLaRa document-to-model pipeline")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("extract", help="extract one document and print it as JSON")
    p.add_argument("file", type=Path)
    p.add_argument("--images-dir", type=Path, help="also store the figures in this content-addressed folder")
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser("run", help="run the whole graph on the embedded defaults: ingest the raw-data folder, "
                                   "synthesize the datasets, train the three stages at one compression rate, evaluate",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RUN_EPILOG)
    p.add_argument("--verbose", action="store_true", help="show Dagster's step logs")
    p.add_argument("--compression-rate", default="32", choices=list(COMPRESSION_RATES),
                   help="the partition of the training stages and the evaluation (default 32)")
    p.add_argument("--max-steps", type=int, default=30,
                   help="optimizer steps per training stage (default 30; 0 trains for the stage configs' epochs)")
    p.add_argument("--skip-training", action="store_true", help="stop after the datasets")
    p.add_argument("--retry-failed", action="store_true",
                   help="ask the LLM again for the figures and chunks parked by earlier runs (their answers never "
                        "validated, so by default they are not paid for again)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("dev", help="start the Dagster UI (webserver + daemon) for this project")
    p.add_argument("-p", "--port", type=int, default=3000)
    p.add_argument("--host", default="127.0.0.1")
    p.set_defaults(func=_cmd_dev)

    p = sub.add_parser("validate-data", help="check a training JSONL file; bad lines are reported as file:line: reason")
    p.add_argument("file")
    p.add_argument("--stage", required=True, choices=["pretrain", "instruct", "e2e"])
    p.set_defaults(func=_cmd_validate_data)

    args = parser.parse_args(argv)
    return args.func(args)


def _cmd_extract(args: argparse.Namespace) -> int:
    from .ingest import ExtractionError, extract_document
    from .storage import ImageStore, hash_only_sink

    from .ingest.rawfiles import printable

    sink = ImageStore(args.images_dir).put if args.images_dir else hash_only_sink
    # The file named on the command line is read where it is, through a link if it is one (the user chose it);
    # its folder is the root that Markdown images may not leave.
    path = Path(os.path.realpath(args.file)) if os.path.islink(args.file) else Path(os.path.abspath(args.file))
    try:
        document = extract_document(path, sink=sink)
    except ExtractionError as exc:  # named as the user typed it, not by its base name
        print(f"clara extract: {printable(str(args.file))}: {exc.reason}", file=sys.stderr)
        return 1
    json.dump(document.to_dict(), sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    _quiet_dagster_previews()
    from .pipeline import run_main

    settings = Settings.from_env()
    if not args.verbose:  # the summary speaks for each item once; --verbose shows the library's warnings too
        import logging

        quiet = logging.StreamHandler()
        quiet.setLevel(logging.ERROR)
        logging.getLogger("clara_pipeline").addHandler(quiet)
    return run_main(settings, verbose=args.verbose, train=not args.skip_training,
                    compression_rate=args.compression_rate, max_steps=args.max_steps, retry_failed=args.retry_failed)


def _cmd_validate_data(args: argparse.Namespace) -> int:
    from clara_model.data import validate_data_main

    return validate_data_main(args.file, args.stage)


def _cmd_dev(args: argparse.Namespace) -> int:
    from .devserver import run_process_group

    settings = Settings.from_env()
    env = {**os.environ, "DAGSTER_HOME": str(ensure_dagster_home(settings.dagster_home)),
           "CLARA_RAW_DATA": str(settings.raw_data), "CLARA_ARTIFACTS": str(settings.artifacts)}
    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    _limit_gpu_pool()
    _fail_stale_runs()
    command = [sys.executable, "-m", "dagster", "dev", "-m", "clara_pipeline.definitions",
               "-h", args.host, "-p", str(args.port)]
    print(f"DAGSTER_HOME={env['DAGSTER_HOME']}\nraw data: {settings.raw_data}\nUI: http://{args.host}:{args.port}",
          flush=True)
    return run_process_group(command, env)


def _quiet_dagster_previews() -> None:
    """Dagster warns, with a source line, that partitioned asset checks are a preview feature, once per check:
    noise in a command's output that the user can do nothing about."""
    import warnings

    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def _fail_stale_runs() -> None:
    """Runs left in progress by a killed `clara run` or `dagster dev` would hold run-queue slots for ever."""
    import dagster as dg

    from .stale_runs import fail_runs_of_dead_processes

    with dg.DagsterInstance.get() as instance:
        for line in fail_runs_of_dead_processes(instance, by="clara dev"):
            print(f"cleaned up: {line}", flush=True)


def _limit_gpu_pool() -> None:
    """One training or evaluation step at a time across runs, unless a limit was set already."""
    import dagster as dg

    from .defs.training import ensure_gpu_pool_limit

    with dg.DagsterInstance.get() as instance:
        ensure_gpu_pool_limit(instance)


if __name__ == "__main__":
    sys.exit(main())
