"""`clara run`'s report of a run: every failed asset check, warnings included, in one line each."""

import io

import dagster as dg

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
