"""Descriptions render as Markdown in the Dagster UI, where `<r>` or `<key>` is an HTML tag and disappears
("evaluation/rate-<r>/report.json" showed as "rate-/report.json")."""

import re

from clara_pipeline.definitions import build_definitions

TAG = re.compile(r"</?[A-Za-z][^<>]*>")


def test_no_description_holds_something_the_ui_reads_as_an_html_tag(settings):
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    described = {}
    for key in graph.get_all_asset_keys():
        described[f"asset {key.to_user_string()}"] = graph.get(key).description
    for check_key in graph.asset_check_keys:
        described[f"check {check_key.name}"] = graph.get_check_spec(check_key).description
    for job in defs.resolve_all_job_defs():
        described[f"job {job.name}"] = job.description
    for schedule in defs.schedules or []:
        described[f"schedule {schedule.name}"] = schedule.description
    for sensor in defs.sensors or []:
        described[f"sensor {sensor.name}"] = sensor.description
    assert "asset clara_evaluation" in described and len(described) > 20
    assert "rate-{r}/report.json" in described["asset clara_evaluation"]
    tags = {name: TAG.findall(text) for name, text in described.items() if text and TAG.search(text)}
    assert tags == {}
