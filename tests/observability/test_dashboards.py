"""The Grafana dashboards: their shape, and PromQL that parses and selects real metrics."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml

EXPECTED_UIDS = {"inferq-overview.json": "inferq-overview", "inferq-model.json": "inferq-model"}
PROMETHEUS = {"type": "prometheus", "uid": "${datasource}"}

Dashboards = dict[str, dict[str, Any]]


@pytest.fixture
def dashboard(dashboards: Dashboards, dashboard_name: str) -> dict[str, Any]:
    return dashboards[dashboard_name]


@pytest.fixture
def panels(dashboard: dict[str, Any], iter_panels: Callable[..., Any]) -> list[dict[str, Any]]:
    """The dashboard's panels, rows left out."""
    return [p for p in iter_panels(dashboard) if p.get("type") != "row"]


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


@pytest.fixture(scope="module")
def parse_errors(
    promtool: str, dashboard_queries: list[Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """promtool's parse error of each dashboard expression by query id, from one run.

    promtool has no command for a bare expression, so each becomes a recording rule.
    """
    records = {f"check:q{i:04d}": query for i, query in enumerate(dashboard_queries)}
    rules = [{"record": record, "expr": query.expr} for record, query in records.items()]
    path = tmp_path_factory.mktemp("promql") / "dashboards.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", "--lint=none", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    errors = {
        records[record].id: message
        for record, message in re.findall(r'"(check:q\d+)": (.*)', output)
    }
    assert result.returncode == 0 or errors, output
    return errors


def test_the_two_dashboards_exist(dashboards: Dashboards) -> None:
    assert set(dashboards) == set(EXPECTED_UIDS)


def test_dashboard_metadata(dashboard: dict[str, Any], dashboard_name: str) -> None:
    assert dashboard["uid"] == EXPECTED_UIDS[dashboard_name]
    assert dashboard["schemaVersion"] >= 39
    assert "inferq" in dashboard["tags"]
    assert dashboard.get("id") is None, "a provisioned dashboard carries no database id"


def test_data_sources_are_variables(dashboard: dict[str, Any]) -> None:
    found = variables(dashboard)
    assert (found["datasource"]["type"], found["datasource"]["query"]) == (
        "datasource",
        "prometheus",
    )
    assert (found["tracing"]["type"], found["tracing"]["query"]) == ("datasource", "jaeger")


def test_model_dashboard_has_a_model_variable(dashboards: Dashboards) -> None:
    model = variables(dashboards["inferq-model.json"])["model"]
    assert model["type"] == "query"
    assert re.fullmatch(
        r"label_values\(inferq_tasks_submitted_total(\{[^}]*\})?, model\)", model["definition"]
    )


def test_panel_ids_are_unique(dashboard: dict[str, Any], iter_panels: Callable[..., Any]) -> None:
    ids = [p["id"] for p in iter_panels(dashboard)]
    assert len(ids) == len(set(ids))


def test_panels_fit_the_grid_without_overlap(
    dashboard: dict[str, Any], iter_panels: Callable[..., Any]
) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in iter_panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_every_panel_queries_the_prometheus_variable(panels: list[dict[str, Any]]) -> None:
    for panel in panels:
        assert panel["datasource"] == PROMETHEUS, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == PROMETHEUS, panel["title"]
            assert target["expr"].strip(), panel["title"]


#: Histograms observed with exemplars (the API's, under a sampled span). The workers'
#: histograms carry none: a panel asking for them would only cost a query.
EXEMPLAR_HISTOGRAMS = ("inferq_http_request_seconds_bucket",)
REPO = Path(__file__).resolve().parents[2]


def test_latency_panels_link_to_traces(panels: list[dict[str, Any]]) -> None:
    latency = [p for p in panels if any("_seconds_bucket" in t["expr"] for t in p["targets"])]
    assert latency
    for panel in latency:
        for target in panel["targets"]:
            exported = any(name in target["expr"] for name in EXEMPLAR_HISTOGRAMS)
            assert target["exemplar"] is exported, (panel["title"], target["refId"])
        links = panel["fieldConfig"]["defaults"].get("links", [])
        assert any("${tracing}" in link["url"] for link in links), panel["title"]


def test_trace_links_open_the_tracing_backend_k8s_installs(
    dashboard: dict[str, Any], panels: list[dict[str, Any]]
) -> None:
    stack = yaml.safe_load((REPO / "k8s" / "kube-prometheus-stack" / "values.yaml").read_text())
    installed = {d["type"] for d in stack["grafana"]["additionalDataSources"]} - {"prometheus"}
    tracing = variables(dashboard)["tracing"]
    assert tracing["type"] == "datasource"
    assert {tracing["query"]} == installed
    for panel in panels:
        for link in panel["fieldConfig"]["defaults"].get("links", []):
            if "${tracing}" not in link["url"]:
                continue
            panes = json.loads(unquote(link["url"].split("panes=", 1)[1]))
            (query,) = panes["traces"]["queries"]
            assert query["datasource"] == {"type": tracing["query"], "uid": "${tracing}"}
            # The API's service: every trace starts there, the worker's spans under it.
            assert query["service"] == "inferq-api"


def assert_promql_tests(promtool: str, tmp_path: Path, series: str,
                        cases: list[dict[str, Any]]) -> None:
    """Run ``cases`` (promtool's ``promql_expr_test``) over the input series of the test
    file ``series``; each must pass."""
    test = yaml.safe_load(series)
    test["tests"][0]["promql_expr_test"] = cases
    (tmp_path / "promql_test.yaml").write_text(yaml.safe_dump(test))
    result = subprocess.run([promtool, "test", "rules", "promql_test.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


ERROR_RATIO_TEST = """
rule_files: []
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'inferq_http_requests_total{namespace="inferq", route="/v1/models",
                  status="200", method="GET"}'
        values: '0+60x20'
      - series: 'inferq_tasks_finished_total{namespace="inferq", queue="inference",
                  model="iris", status="succeeded"}'
        values: '0+60x20'
    promql_expr_test:
"""


def test_error_ratio_reads_zero_while_nothing_fails(
    dashboards: Dashboards, iter_panels: Callable[..., Any], substitute: Callable[..., str],
    promtool: str, tmp_path: Path,
) -> None:
    """Traffic with no 5xx and no failed task: the panel shows 0 %, not "No data"."""
    (panel,) = [p for p in iter_panels(dashboards["inferq-overview.json"])
                if p["title"] == "Error ratio"]
    cases = []
    for target in panel["targets"]:
        labels = "{}" if "inferq_http" in target["expr"] else '{queue="inference"}'
        cases.append({"expr": substitute(target["expr"], {"__rate_interval": "5m"}),
                      "eval_time": "15m", "exp_samples": [{"labels": labels, "value": 0}]})
    assert_promql_tests(promtool, tmp_path, ERROR_RATIO_TEST, cases)


def test_expression_parses(dashboard_query: Any, parse_errors: dict[str, str]) -> None:
    assert dashboard_query.id not in parse_errors, parse_errors.get(dashboard_query.id)


def test_expression_selects_known_metrics(
    dashboard_query: Any, known_metric: Callable[[str], bool]
) -> None:
    names = dashboard_query.metric_names()
    assert names, "selects no metric"
    unknown = sorted(name for name in names if not known_metric(name))
    assert not unknown, f"neither exported by inferq, recorded nor kube-state-metrics: {unknown}"


def test_expression_is_well_formed(dashboard_query: Any) -> None:
    assert not dashboard_query.problems()


def test_every_panel_and_metric_is_documented(
    dashboards: Dashboards,
    iter_panels: Callable[..., Any],
    exported_metrics: frozenset[str],
    chart_files: Any,
) -> None:
    doc = chart_files.operations_doc.read_text()
    titles = {
        p["title"] for d in dashboards.values() for p in iter_panels(d) if p.get("type") != "row"
    }
    metrics = {re.sub(r"_(bucket|sum|count)$", "", name) for name in exported_metrics}
    missing = sorted(name for name in titles | metrics if name not in doc)
    assert not missing, f"docs/operations.md does not mention {missing}"


JOBS_BY_STATE_TEST = """
rule_files: []
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # Two API replicas of one release read the same records; another release runs one.
      - series: 'inferq_jobs{namespace="a", instance="api-1", kind="batch", status="queued"}'
        values: '2x10'
      - series: 'inferq_jobs{namespace="a", instance="api-2", kind="batch", status="queued"}'
        values: '2x10'
      - series: 'inferq_jobs{namespace="b", instance="api-3", kind="batch", status="queued"}'
        values: '1x10'
      - series: 'inferq_job_stalled_seconds{namespace="a", instance="api-1", kind="batch"}'
        values: '0+60x10'
      - series: 'inferq_job_stalled_seconds{namespace="a", instance="api-2", kind="batch"}'
        values: '0+60x10'
    promql_expr_test:
"""


def test_batch_job_gauges_count_each_job_once(
    dashboards: Dashboards, iter_panels: Callable[..., Any], substitute: Callable[..., str],
    promtool: str, tmp_path: Path,
) -> None:
    """Every API replica exports the job gauges: the panels show each job once, each
    release's jobs added up."""
    panels = {p["title"]: p for p in iter_panels(dashboards["inferq-overview.json"])}
    (state, _finished) = panels["Batch jobs by state"]["targets"]
    (stall,) = panels["Longest batch job stall"]["targets"]
    cases = [
        {"expr": substitute(state["expr"]), "eval_time": "5m",
         "exp_samples": [{"labels": '{status="queued"}', "value": 3}]},
        {"expr": substitute(stall["expr"]), "eval_time": "5m",
         "exp_samples": [{"labels": "{}", "value": 300}]},
    ]
    assert_promql_tests(promtool, tmp_path, JOBS_BY_STATE_TEST, cases)


#: The metrics of training jobs named by the contract, as a panel selects them.
TRAINING_METRICS = {
    "inferq_jobs", "inferq_jobs_finished_total", "inferq_job_seconds_bucket",
    "inferq_job_stalled_seconds", "inferq_training_metric",
}
#: Of those, the ones every kind of job shares: a training panel must pick kind="training".
SHARED_JOB_METRICS = TRAINING_METRICS - {"inferq_training_metric"}


def _row(dashboard: dict[str, Any], title: str) -> list[dict[str, Any]]:
    """The panels under the row ``title`` (an open row: those up to the next row)."""
    found: list[dict[str, Any]] | None = None
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            if found is not None:
                break
            if panel["title"] == title:
                found = list(panel.get("panels", []))
        elif found is not None:
            found.append(panel)
    assert found, f"no row {title!r}"
    return found


def test_training_jobs_row_reads_the_contracts_training_metrics(
    dashboards: Dashboards, dashboard_queries: list[Any]
) -> None:
    """The "Training jobs" row shows jobs by state, finished by status, duration quantiles,
    the stall and the latest metric per model, each from the contract's metric names."""
    panels = _row(dashboards["inferq-overview.json"], "Training jobs")
    queries = {q.title: q for q in dashboard_queries if q.source == "inferq-overview.json"}
    selected: dict[str, set[str]] = {}
    for panel in panels:
        for target in panel["targets"]:
            names = queries[f"{panel['title']} [{target['refId']}]"].metric_names()
            assert names and names <= TRAINING_METRICS, (panel["title"], names)
            for name in names & SHARED_JOB_METRICS:
                assert f'{name}{{namespace=~"$namespace", kind="training"}}' in target["expr"], (
                    panel["title"], target["expr"])
            selected.setdefault(panel["title"], set()).update(names)
    assert selected == {
        "Training jobs by state": {"inferq_jobs"},
        "Training jobs finished by status": {"inferq_jobs_finished_total"},
        "Training job duration": {"inferq_job_seconds_bucket"},
        "Longest training job stall": {"inferq_job_stalled_seconds"},
        "Latest training metrics by model": {"inferq_training_metric"},
    }
    (duration,) = [p for p in panels if p["title"] == "Training job duration"]
    assert [t["legendFormat"] for t in duration["targets"]] == ["p50", "p95", "p99"]
    (latest,) = [p for p in panels if p["title"] == "Latest training metrics by model"]
    assert "by (model, metric)" in latest["targets"][0]["expr"]


TRAINING_JOBS_TEST = """
rule_files: []
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # Two API replicas of one release read the same records and export the same values.
      - series: 'inferq_jobs{namespace="a", instance="1", kind="training", status="running"}'
        values: '2x70'
      - series: 'inferq_jobs{namespace="a", instance="2", kind="training", status="running"}'
        values: '2x70'
      - series: 'inferq_jobs{namespace="a", instance="1", kind="batch", status="running"}'
        values: '5x70'
      - series: 'inferq_training_metric{namespace="a", instance="1", model="m", metric="auc"}'
        values: '0.91x70'
      - series: 'inferq_training_metric{namespace="a", instance="2", model="m", metric="auc"}'
        values: '0.91x70'
      # One succeeded job and one failed in the hour, each counted by the process that ended it.
      - series: 'inferq_jobs_finished_total{namespace="a", instance="1",
                  kind="training", model="m", status="succeeded"}'
        values: '0x10 1x60'
      - series: 'inferq_jobs_finished_total{namespace="a", instance="2",
                  kind="training", model="m", status="failed"}'
        values: '0x20 1x50'
      - series: 'inferq_jobs_finished_total{namespace="a", instance="1",
                  kind="batch", model="m", status="succeeded"}'
        values: '0+1x70'
    promql_expr_test:
"""


def test_training_job_panels_count_each_job_once(
    dashboards: Dashboards, substitute: Callable[..., str], promtool: str, tmp_path: Path,
) -> None:
    """Jobs and metrics come from every API replica: the panels show each once, and the
    batch jobs beside them stay out."""
    panels = {p["title"]: p for p in _row(dashboards["inferq-overview.json"], "Training jobs")}
    (state,) = panels["Training jobs by state"]["targets"]
    (finished,) = panels["Training jobs finished by status"]["targets"]
    (latest,) = panels["Latest training metrics by model"]["targets"]
    cases = [
        {"expr": substitute(state["expr"]), "eval_time": "60m",
         "exp_samples": [{"labels": '{status="running"}', "value": 2}]},
        {"expr": substitute(finished["expr"]), "eval_time": "60m",
         "exp_samples": [{"labels": '{model="m", status="succeeded"}', "value": 1},
                         {"labels": '{model="m", status="failed"}', "value": 1}]},
        {"expr": substitute(latest["expr"]), "eval_time": "60m",
         "exp_samples": [{"labels": '{model="m", metric="auc"}', "value": 0.91}]},
    ]
    assert_promql_tests(promtool, tmp_path, TRAINING_JOBS_TEST, cases)
