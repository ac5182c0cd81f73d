"""`clara run`'s report of a run: every failed asset check, warnings included, in one line each; what did not
make it, and the exit status."""

import io

import dagster as dg
import pytest

from clara_pipeline.pipeline import failure_reason, print_failed_checks

letters = dg.StaticPartitionsDefinition(["a", "b"])


@dg.asset(partitions_def=letters, check_specs=[
    dg.AssetCheckSpec("loss_fell", asset="scores"), dg.AssetCheckSpec("loads", asset="scores"),
    dg.AssetCheckSpec("fine", asset="scores"), dg.AssetCheckSpec("counted", asset="scores")])
def scores() -> dg.MaterializeResult:
    return dg.MaterializeResult(check_results=[
        dg.AssetCheckResult(check_name="loss_fell", passed=False, severity=dg.AssetCheckSeverity.WARN,
                            metadata={"details": "last mean 11.2 >= first mean 11.1\nsecond line", "steps": 3}),
        dg.AssetCheckResult(check_name="loads", passed=False, metadata={"rows": 0, "expected": 2}),
        dg.AssetCheckResult(check_name="fine", passed=True),
        dg.AssetCheckResult(check_name="counted", passed=False, severity=dg.AssetCheckSeverity.WARN,
                            description="3 of 4 predictions are empty")])


def test_every_failed_check_is_printed_and_errors_are_counted():
    job = dg.define_asset_job("scores_job", selection=[scores])
    defs = dg.Definitions(assets=[scores], jobs=[job])
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("scores_job").execute_in_process(
            instance=instance, partition_key="b", raise_on_error=False)
    out = io.StringIO()
    assert print_failed_checks(result, out) == 1  # one ERROR; the warnings are printed, not counted
    assert out.getvalue().splitlines() == [
        "  check scores[b] loss_fell (WARN): last mean 11.2 >= first mean 11.1",
        "  check scores[b] loads (ERROR): rows 0, expected 2",
        "  check scores[b] counted (WARN): 3 of 4 predictions are empty",
    ]
    # the one-line reason of a failed run names the ERROR check, not the first warning
    assert failure_reason(result) == "check loads of scores failed: rows 0, expected 2"


STEPS = "\n\n".join(
    f"## Step {i}\n\nTighten terminal X{i} to {0.4 + i / 10:.1f} N·m and check that the LED L{i} turns green within "
    f"{10 + i} seconds. If it stays red after {30 + i} seconds, replace fuse F{i} (a {i + 1} A slow-blow type)."
    for i in range(1, 150))


@pytest.mark.slow
def test_a_figure_without_a_caption_is_counted_kept_visible_and_retried_only_with_the_flag(tmp_path, monkeypatch,
                                                                                         capsys):
    """A caption whose answer never validates: the document keeps a placeholder, the run says so and exits 3;
    the next run does not pay for the parked figure again; `--retry-failed` does, and then all is done (0)."""
    import json
    import logging

    from clara_pipeline import cli
    from clara_pipeline.llm.loopback import FaultPlan, LoopbackServer
    from clara_pipeline.settings import ensure_dagster_home
    from tests.clara_pipeline import docgen

    raw, artifacts = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    docgen.sample_docx(raw / "travel.docx")  # two figures
    (raw / "steps.md").write_text(f"# Maintenance steps\n\n{STEPS}\n", encoding="utf-8")
    monkeypatch.setenv("CLARA_RAW_DATA", str(raw))
    monkeypatch.setenv("CLARA_ARTIFACTS", str(artifacts))
    monkeypatch.setenv("DAGSTER_HOME", str(ensure_dagster_home(tmp_path / "home")))
    monkeypatch.setenv("CLARA_LLM_MAX_REASKS", "0")
    handlers = list(logging.getLogger("clara_pipeline").handlers)
    # the first request (a caption: ingestion comes first) gets an answer that never parses
    with LoopbackServer(faults=FaultPlan(script=["malformed"])) as server:
        monkeypatch.setenv("CLARA_LLM_BASE_URL", server.url)
        monkeypatch.setenv("CLARA_LLM_MODEL", "loopback-chat")

        def run(*flags):
            status = cli.main(["run", "--skip-training", *flags])
            return status, capsys.readouterr().out

        status, out = run()
        assert status == 3, out
        assert "travel_docx-" in out and "docx, " in out and "2 figures (1 without a caption), " in out, out
        assert "  1 figure without a caption (a placeholder stands in the training text)" in out
        assert "travel_docx-" in out.split("1 figure without a caption")[1] and "figure " in out.split(
            "1 figure without a caption")[1]
        assert "chunks without QA pairs" not in out and "exit status 3" in out.splitlines()[-1]
        (enriched,) = artifacts.glob("documents/travel_docx-*/enriched.json")
        text = json.loads(enriched.read_text(encoding="utf-8"))["text"]
        assert text.count("[Figure (caption unavailable)") == 1 and "IMAGE_REF" not in text
        captions = server.stats.by_task["caption"]
        assert captions == 2

        status, out = run()  # the parked figure is not asked again
        assert status == 3 and server.stats.by_task["caption"] == captions, out
        assert "1 figure without a caption (a placeholder stands in the training text, 1 of them parked)" in out
        assert "1 item parked" in out and "--retry-failed" in out

        status, out = run("--retry-failed")
        assert server.stats.by_task["caption"] == captions + 1
        assert status == 0, out
        assert "2 figures, " in out and "without a caption" not in out
        assert out.splitlines()[-1] == "done: everything made it (exit status 0)"
        text = json.loads(enriched.read_text(encoding="utf-8"))["text"]
        assert "caption unavailable" not in text
    for handler in set(logging.getLogger("clara_pipeline").handlers) - set(handlers):
        logging.getLogger("clara_pipeline").removeHandler(handler)
