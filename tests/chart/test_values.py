"""values.yaml is documented key by key and values.schema.json refuses what it should."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from chart.manifests import CHART_DIR, chart, render

# Objects whose content is a Kubernetes type (validated by the API server), left open.
KUBERNETES_TYPES = {
    "nodeAffinity",
    "podAffinity",
    "podAntiAffinity",
    "valueFrom",
    "topologySpreadConstraints[]",
    "extraVolumes[]",
    "extraRedisClients[]",
    "global",
}


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text())
    return schema


def _open_objects(node: Any, path: str = "") -> list[str]:
    """Paths of object schemas that accept keys nobody declared."""
    if isinstance(node, list):
        return [p for item in node for p in _open_objects(item, path)]
    if not isinstance(node, dict):
        return []
    found = []
    name = path.rsplit(".", 1)[-1]
    if node.get("type") == "object" and name not in KUBERNETES_TYPES:
        extra = node.get("additionalProperties")
        if extra is None or extra is True:
            found.append(path or "<top>")
    for key, value in node.items():
        if key in ("properties", "definitions"):
            found += [p for k, v in value.items() for p in _open_objects(v, f"{path}.{k}")]
        elif key == "items":
            found += _open_objects(value, f"{path}[]")
        elif key == "additionalProperties" and isinstance(value, dict):
            found += _open_objects(value, f"{path}.*")
    return found


def test_schema_is_closed_at_every_level() -> None:
    assert _open_objects(_schema()) == []


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": 3}, "replicaCount"),
        ({"workers": {"pools": {"inference": {"concurency": 4}}}}, "concurency"),
        ({"workers": {"pools": {"gpu": {"concurrency": 1}}}}, "/workers/pools/gpu"),
        ({"workers": {"pools": {"gpu": {"kind": "gpu"}}}}, "/workers/pools/gpu/kind"),
        ({"workers": {"pools": {"GPU_pool": {"kind": "training"}}}}, "GPU_pool"),
        ({"workers": {"pools": {"batch": {"queue": "Batch Jobs"}}}}, "/workers/pools/batch/queue"),
        ({"api": {"replicas": -1}}, "/api/replicas"),
        ({"workers": {"pools": {"batch": {"replicas": -2}}}}, "/workers/pools/batch/replicas"),
        ({"workers": {"pools": {"batch": {"concurrency": 0}}}}, "concurrency"),
        ({"workers": {"pools": {"batch": {"concurrency": "four"}}}}, "concurrency"),
        ({"redis": {"external": {"url": "redis://:secret@redis:6379/0"}}}, "url"),
        ({"api": {"image": {"pullPolicy": "Sometimes"}}}, "pullPolicy"),
    ],
)
def test_schema_refuses_bad_values(values: dict[str, Any], complaint: str) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmValuesError, match=re.escape(complaint)):
        chart().validate_schema(chart().merge_values(values))
    with pytest.raises(helm_python.HelmValuesError):
        render(values)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (
            {"workers": {"pools": {"batch": {"timeLimits": {"soft": 1800, "hard": 1800}}}}},
            "workers.pools.batch.timeLimits",
        ),
        (
            {"workers": {"pools": {"training": {"autoscaling": {"minReplicas": 5}}}}},
            "workers.pools.training.autoscaling",
        ),
        ({"redis": {"auth": {"password": "p", "existingSecret": "s"}}}, "redis.auth"),
        (
            {"workers": {"pools": {"gpu": {"kind": "training", "queue": "training"}}}},
            'workers.pools.training.queue: pool gpu consumes queue "training" already',
        ),
        (
            {"workers": {"pools": {"batch": {"models": ["iris"]}}}},
            "workers.pools.batch.models: only a pool of kind inference",
        ),
        (
            {"workers": {"pools": {"a": {"kind": "inference", "models": ["iris"]},
                                   "b": {"kind": "inference", "models": ["iris"]}}}},
            'workers.pools.b.models: model "iris" is served by pool a already',
        ),
        (
            {"workers": {"pools": {"training": None, "gpu": {"kind": "training"}}}},
            "workers.pools.gpu: set concurrency, timeLimits and autoscaling",
        ),
        # Its tasks, and twice that (its latency threshold), must fit the last bucket.
        (
            {"workers": {"pools": {"training": {"timeLimits": {"soft": 43000, "hard": 43201}}}}},
            "workers.pools.training.timeLimits.hard: 43201 s is more than half the last task "
            "latency bucket (86400 s)",
        ),
        # KEDA would never wake the pool for one or two tasks.
        (
            {"workers": {"pools": {"inference": {"autoscaling": {
                "minReplicas": 0, "activationListLength": 2}}}}},
            "workers.pools.inference.autoscaling: with minReplicas 0, KEDA wakes the pool only "
            "when its backlog exceeds activationListLength (2)",
        ),
        (
            {"api": {"preStopSleepSeconds": 30}},
            "api.preStopSleepSeconds (30) must be below api.terminationGracePeriodSeconds (30)",
        ),
        # The Role would go to every pod of the namespace that has no account of its own.
        (
            {"api": {"serviceAccount": {"create": False}}},
            "api.serviceAccount: with create false and no name, api.rbac.create would grant "
            "its Role to the namespace's default ServiceAccount",
        ),
    ],
)
def test_render_refuses_inconsistent_values(values: dict[str, Any], complaint: str) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmError, match=re.escape(complaint)):
        render(values)


def _undocumented_keys(lines: list[str]) -> list[str]:
    """Keys of values.yaml that lack a `# --` comment, helm-docs style.

    A key needs one when its value is on its line or is a list; a key holding a map
    needs none (its children do), and everything under a documented key is covered.
    """
    missing = []
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z0-9_.\"/-]+):(.*)$", line)
        if not match or line.lstrip().startswith("#"):
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3).strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        above = number - 1
        while above >= 0 and lines[above].strip().startswith("#"):
            above -= 1
        comment = [c.strip() for c in lines[above + 1 : number]]
        documented = bool(comment) and comment[0].startswith("# --")
        covered = any(doc for _, doc in stack)
        following = next((n for n in lines[number + 1 :] if n.strip()), "")
        holds_list = following.strip().startswith("- ")
        is_leaf = (rest and not rest.startswith("#")) or holds_list
        if is_leaf and not documented and not covered:
            missing.append(f"line {number + 1}: {key}")
        stack.append((indent, documented or covered))
    return missing


def test_every_value_is_documented() -> None:
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    assert _undocumented_keys(lines) == []
