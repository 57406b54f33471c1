"""The chart's rules and dashboards for the tests in this folder, and every PromQL in them.

A test gets the expressions by naming an argument, one case per expression:
``rule_query`` (every alerting and recording rule), ``dashboard_query`` (every panel target
and every variable's series selector) or ``promql_query`` (both). Each is a :class:`Query`
whose ``expr`` is ready to send to Prometheus: Grafana's variables are filled in with
:data:`GRAFANA_VARIABLES`. ``raw`` keeps them, for the ``substitute`` fixture.
Test modules cannot import this file (``conftest`` names the suite's top one): they use
the fixtures and the :class:`Query` methods.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ChartFiles:
    """Where the observability files live."""

    prometheus_dir: Path = ROOT / "charts" / "inferq" / "files" / "prometheus"
    dashboards_dir: Path = ROOT / "charts" / "inferq" / "files" / "dashboards"
    operations_doc: Path = ROOT / "docs" / "operations.md"

    @property
    def rules(self) -> Path:
        return self.prometheus_dir / "rules.yaml"

    @property
    def rules_test(self) -> Path:
        return self.prometheus_dir / "rules_test.yaml"


FILES = ChartFiles()

#: Plausible values for a Prometheus that scrapes a local inferq: every namespace, the
#: demo model "iris", a rate window that spans several scrapes.
GRAFANA_VARIABLES: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "datasource": "prometheus",
    "tracing": "jaeger",
    "namespace": ".*",
    "model": "iris",
}

# $name, ${name} and ${name:format}, and the deprecated [[name]]; not label_replace's $1.
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$([A-Za-z_]\w*)|\[\[(\w+)\]\]")


def substitute(expr: str, variables: Mapping[str, str] | None = None) -> str:
    """``expr`` with each Grafana variable replaced; an unknown variable is an error."""
    values = {**GRAFANA_VARIABLES, **(variables or {})}

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise KeyError(f"no value for Grafana variable {name!r} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(value, expr)


_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(\s*\()?")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
    "atan2",
}


@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it comes from."""

    source: str  # file name: "inferq-overview.json", "rules.yaml"
    kind: str  # "panel", "variable", "alert" or "record"
    title: str  # panel title and refId, variable name, alert or record name
    raw: str  # as written, Grafana variables included
    expr: str  # Grafana variables filled in

    @property
    def id(self) -> str:
        return f"{self.source}:{self.title}"

    def metric_names(self) -> set[str]:
        """Metric names the expression selects (functions, labels and keywords left out)."""
        text = _STRING.sub('""', self.expr)
        text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
        text = _GROUPING.sub(" ", text)
        return {
            name for name, call in _NAME.findall(text) if not call and name.lower() not in _KEYWORDS
        }

    def problems(self) -> list[str]:
        """Mistakes that parse but graph or alert wrong."""
        expr, found = self.expr, []
        for function, name in re.findall(r"\b(rate|irate|increase)\(\s*([a-zA-Z_:][\w:]*)", expr):
            if not name.endswith(("_total", "_bucket", "_sum", "_count")):
                found.append(f"{function}() of {name}, which is no counter")
        if "histogram_quantile" in expr and not re.search(r"\bby\s*\([^)]*\ble\b", expr):
            found.append("histogram_quantile() over buckets aggregated without le")
        # Every API replica exports the same queue gauges: a sum counts each queue twice.
        if re.search(r"\bsum\b[^()]*\(\s*inferq_queue_(?:waiting|inflight)\b", expr):
            found.append("queue gauges summed over API replicas instead of max")
        # So are the job gauges, read from the same job records.
        if re.search(r"\bsum\b[^()]*\(\s*inferq_(?:jobs|job_stalled_seconds)\b", expr):
            found.append("job gauges summed over API replicas instead of max")
        return found


def load_rules() -> dict[str, Any]:
    return yaml.safe_load(FILES.rules.read_text())


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(FILES.dashboards_dir.glob("*.json"))}


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and the panels of collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def label_values_selector(variable: Mapping[str, Any]) -> str:
    """The series selector of a ``label_values(<selector>, <label>)`` variable, else ""."""
    query = variable.get("query", "")
    text = query.get("query", "") if isinstance(query, dict) else str(query)
    match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", text, flags=re.S)
    return match.group(1) if match else ""


def iter_dashboard_queries(variables: Mapping[str, str] | None = None) -> Iterator[Query]:
    for source, dashboard in load_dashboards().items():
        for variable in dashboard.get("templating", {}).get("list", []):
            if selector := label_values_selector(variable):
                yield Query(
                    source, "variable", variable["name"], selector, substitute(selector, variables)
                )
        for panel in iter_panels(dashboard):
            for target in panel.get("targets", []):
                raw = target.get("expr", "")
                title = f"{panel['title']} [{target.get('refId', '?')}]"
                yield Query(source, "panel", title, raw, substitute(raw, variables))


def iter_rules() -> Iterator[dict[str, Any]]:
    for group in load_rules()["groups"]:
        yield from group["rules"]


def iter_rule_queries() -> Iterator[Query]:
    """Each rule's expression; an alert name that repeats gets a "#2" suffix."""
    seen: dict[str, int] = {}
    for rule in iter_rules():
        kind = "alert" if "alert" in rule else "record"
        name = rule[kind]
        seen[name] = seen.get(name, 0) + 1
        title = name if seen[name] == 1 else f"{name} #{seen[name]}"
        yield Query(FILES.rules.name, kind, title, rule["expr"], rule["expr"])


@functools.cache
def exported_metric_names() -> frozenset[str]:
    """Every series name inferq's code exports (``_total``, ``_bucket``... included)."""
    from prometheus_client.metrics import MetricWrapperBase

    from services.api import metrics as api_metrics
    from services.common import metrics

    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    return frozenset(
        family.name + suffix
        for module in (metrics, api_metrics)
        for value in vars(module).values()
        if isinstance(value, MetricWrapperBase)
        for family in value.describe()
        for suffix in suffixes[family.type]
    )


@functools.cache
def recorded_names() -> frozenset[str]:
    return frozenset(rule["record"] for rule in iter_rules() if "record" in rule)


def is_known_metric(name: str) -> bool:
    """inferq's own series, its recording rules, kube-state-metrics' and ``up``."""
    return (
        name in exported_metric_names()
        or name in recorded_names()
        or name == "up"
        or name.startswith("kube_")
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    sources: dict[str, Callable[[], list[Any]]] = {
        "rule_query": lambda: list(iter_rule_queries()),
        "dashboard_query": lambda: list(iter_dashboard_queries()),
        "promql_query": lambda: [*iter_rule_queries(), *iter_dashboard_queries()],
    }
    for argument, queries in sources.items():
        if argument in metafunc.fixturenames:
            cases = queries()
            metafunc.parametrize(argument, cases, ids=[q.id for q in cases])
    if "alerting_rule" in metafunc.fixturenames:
        alerts = [rule for rule in iter_rules() if "alert" in rule]
        ids = [f"{rule['alert']}-{rule['labels']['severity']}" for rule in alerts]
        metafunc.parametrize("alerting_rule", alerts, ids=ids)
    if "dashboard_name" in metafunc.fixturenames:
        metafunc.parametrize("dashboard_name", sorted(load_dashboards()))


@pytest.fixture(scope="session")
def chart_files() -> ChartFiles:
    return FILES


@pytest.fixture(scope="session")
def dashboards() -> dict[str, dict[str, Any]]:
    return load_dashboards()


@pytest.fixture(scope="session")
def rules() -> dict[str, Any]:
    return load_rules()


@pytest.fixture(scope="session")
def dashboard_queries() -> list[Query]:
    """All of ``dashboard_query`` at once, e.g. to send them in one batch."""
    return list(iter_dashboard_queries())


@pytest.fixture(scope="session")
def rule_queries() -> list[Query]:
    """All of ``rule_query`` at once."""
    return list(iter_rule_queries())


@pytest.fixture(scope="session")
def known_metric() -> Callable[[str], bool]:
    """:func:`is_known_metric`."""
    return is_known_metric


@pytest.fixture(scope="session")
def exported_metrics() -> frozenset[str]:
    """:func:`exported_metric_names`."""
    return exported_metric_names()


@pytest.fixture(name="substitute", scope="session")
def substitute_fixture() -> Callable[..., str]:
    """:func:`substitute`, for tests that fill in variables of their own (``query.raw``)."""
    return substitute


@pytest.fixture(name="iter_panels", scope="session")
def iter_panels_fixture() -> Callable[[Mapping[str, Any]], Iterator[dict[str, Any]]]:
    """:func:`iter_panels`."""
    return iter_panels


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool; a skip when it is missing, a failure in CI."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is not installed; .ci/run must install it (Debian: prometheus)")
        pytest.skip("promtool is not installed")
    return path
