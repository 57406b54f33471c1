"""The Prometheus rules: promtool's checks and unit tests, and what every alert carries."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import yaml

RUNBOOK_URL = re.compile(r"^https://\S+/docs/operations\.md#(?P<anchor>[a-z0-9-]+)$")
SEVERITIES = {"critical", "warning"}


def run_promtool(promtool: str, *args: str, cwd: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown document."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", markdown, flags=re.M):
        text = re.sub(r"[`*_]", "", heading).strip().lower()
        anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text)))
    return anchors


@pytest.fixture(scope="module")
def unit_tests(chart_files: Any) -> dict[str, Any]:
    return yaml.safe_load(chart_files.rules_test.read_text())


def test_promtool_check_rules(promtool: str, chart_files: Any) -> None:
    result = run_promtool(promtool, "check", "rules", "rules.yaml", cwd=chart_files.prometheus_dir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests(promtool: str, chart_files: Any) -> None:
    result = run_promtool(
        promtool, "test", "rules", "rules_test.yaml", cwd=chart_files.prometheus_dir
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_file_is_plain_prometheus(chart_files: Any, rules: dict[str, Any]) -> None:
    """The chart embeds the file with .Files.Get: Helm would not render templates in it."""
    assert list(rules) == ["groups"]
    text = chart_files.rules.read_text()
    assert not re.search(r"\{\{-?\s*(\.Values|\.Release|\.Chart|include|template)\b", text)


def test_every_alert_is_unit_tested_firing_and_silent(
    rules: dict[str, Any], unit_tests: dict[str, Any]
) -> None:
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    cases = [case for test in unit_tests["tests"] for case in test.get("alert_rule_test", [])]
    fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
    silent = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert alerts - fires == set(), "alerts with no firing case"
    assert alerts - silent == set(), "alerts with no silent case"


def test_alert_carries_severity_and_annotations(alerting_rule: dict[str, Any]) -> None:
    assert alerting_rule["labels"]["severity"] in SEVERITIES
    annotations = alerting_rule["annotations"]
    assert {"summary", "description", "runbook_url"} <= set(annotations)
    match = RUNBOOK_URL.match(annotations["runbook_url"])
    assert match, annotations["runbook_url"]
    assert match["anchor"] == alerting_rule["alert"].lower()


def test_runbook_section_exists(alerting_rule: dict[str, Any], chart_files: Any) -> None:
    anchors = github_anchors(chart_files.operations_doc.read_text())
    assert alerting_rule["alert"].lower() in anchors


def test_expression_selects_known_metrics(
    rule_query: Any, known_metric: Callable[[str], bool]
) -> None:
    unknown = sorted(name for name in rule_query.metric_names() if not known_metric(name))
    assert not unknown, f"neither exported by inferq, recorded nor kube-state-metrics: {unknown}"


def test_expression_is_well_formed(rule_query: Any) -> None:
    assert not rule_query.problems()


#: A promtool test of a PrometheusRule rendered with THRESHOLD_VALUES: inference tasks of
#: 10 to 30 s (p99 29.8 s), batch chunks that waited 1 to 2 hours, training jobs of 6 to
#: 12 hours.
THRESHOLD_VALUES: dict[str, Any] = {
    "monitoring": {"prometheusRule": {"enabled": True, "kinds": {
        "inference": {"taskLatencySeconds": 30},
        "batch": {"taskLatencySeconds": 0, "noProgressSeconds": 0},
    }}},
    # Training runs end within an hour here: its derived threshold is 2 hours.
    "workers": {"pools": {"training": {"timeLimits": {"soft": 3000, "hard": 3600}}}},
}
THRESHOLD_TEST = r"""
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'inferq_task_e2e_seconds_bucket{queue="inference", kind="inference", le="10"}'
        values: '0x30'
      - series: 'inferq_task_e2e_seconds_bucket{queue="inference", kind="inference", le="30"}'
        values: '0+60x30'
      - series: 'inferq_task_e2e_seconds_bucket{queue="inference", kind="inference", le="+Inf"}'
        values: '0+60x30'
      - series: 'inferq_task_e2e_seconds_bucket{queue="batch", kind="batch", le="3600"}'
        values: '0x30'
      - series: 'inferq_task_e2e_seconds_bucket{queue="batch", kind="batch", le="7200"}'
        values: '0+4x30'
      - series: 'inferq_task_e2e_seconds_bucket{queue="batch", kind="batch", le="+Inf"}'
        values: '0+4x30'
      - series: 'inferq_task_e2e_seconds_bucket{queue="training", kind="training", le="21600"}'
        values: '0x30'
      - series: 'inferq_task_e2e_seconds_bucket{queue="training", kind="training", le="43200"}'
        values: '0+1x30'
      - series: 'inferq_task_e2e_seconds_bucket{queue="training", kind="training", le="+Inf"}'
        values: '0+1x30'
    alert_rule_test:
      - eval_time: 20m
        alertname: InferqTaskLatencyHigh
        exp_alerts:
          - exp_labels: {severity: warning, queue: training, kind: training}
            exp_annotations:
              summary: p99 end-to-end latency of queue training is 11h 56m 24s
              description: >-
                The 99th percentile of the time from submit to stored result on queue
                training (pool kind training) has been above 2 hours for 10 minutes (now
                11h 56m 24s).
              runbook_url: https://github.com/inferq/inferq/blob/main/docs/operations.md#inferqtasklatencyhigh
"""


def test_thresholds_set_or_turned_off_in_values_take_effect(
    promtool: str, tmp_path: Any
) -> None:
    from chart.manifests import objects, of_kind, render

    (rule,) = of_kind(objects(render(THRESHOLD_VALUES)), "PrometheusRule")
    kinds = next(g for g in rule["spec"]["groups"] if g["name"] == "inferq.kinds")
    alerts = {(r["alert"], r["expr"].split('kind="')[1].split('"')[0]) for r in kinds["rules"]}
    assert ("InferqBacklogNoProgress", "batch") not in alerts
    assert ("InferqTaskLatencyHigh", "batch") not in alerts
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    (tmp_path / "rules_test.yaml").write_text(THRESHOLD_TEST)
    result = run_promtool(promtool, "test", "rules", "rules_test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("kind", "config", "hard", "expected"), [
    ("batch", {}, None, (1800, "30 minutes")),  # The batch pool's default hard time limit.
    ("batch", {}, 600, (900, "15 minutes")),  # Never below 15 minutes.
    ("batch", {"jobStalledSeconds": 600}, None, (600, "10 minutes")),
    ("batch", {"jobStalledSeconds": 0}, None, None),
    ("training", {}, None, (10800, "3 hours")),  # The training pool's default hard limit.
    ("training", {}, 21600, (21600, "6 hours")),
    ("training", {}, 300, (900, "15 minutes")),
    ("training", {"jobStalledSeconds": 7200}, None, (7200, "2 hours")),
    ("training", {"jobStalledSeconds": 0}, None, None),
])
def test_job_stalled_threshold_follows_values(
    kind: str, config: dict[str, Any], hard: int | None, expected: tuple[int, str] | None
) -> None:
    from chart.manifests import objects, of_kind, render

    values: dict[str, Any] = {
        "monitoring": {"prometheusRule": {"enabled": True, "kinds": {kind: config}}}}
    if hard:
        values["workers"] = {"pools": {kind: {"timeLimits": {"soft": hard // 2, "hard": hard}}}}
    (rule,) = of_kind(objects(render(values)), "PrometheusRule")
    kinds = next(g for g in rule["spec"]["groups"] if g["name"] == "inferq.kinds")
    stalled = [r for r in kinds["rules"]
               if r["alert"] == "InferqJobStalled" and f'kind="{kind}"' in r["expr"]]
    if expected is None:
        assert stalled == []
        return
    (alert,) = stalled
    seconds, human = expected
    assert alert["expr"] == (
        f'max by (namespace, kind) (inferq_job_stalled_seconds{{kind="{kind}"}}) > {seconds}')
    assert f"more than {human}" in alert["annotations"]["description"]
    assert alert["annotations"]["summary"].startswith(f"A running {kind} job")
