"""Rendering the chart with Helm's own engine and reading the objects it produces."""

from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "inferq"
CI_VALUES_DIR = CHART_DIR / "ci"
RELEASE = "inferq-test"
NAMESPACE = "inferq"
IN_CI = os.environ.get("CI") == "true"

#: "default" plus the stem of every ci/<scenario>-values.yaml file.
SCENARIOS = [
    "default",
    *sorted(p.name.removesuffix("-values.yaml") for p in CI_VALUES_DIR.glob("*-values.yaml")),
]

Manifest = dict[str, Any]


def require(found: object, what: str) -> None:
    """Skip when a tool or folder is missing on a developer's machine; fail under CI."""
    if found:
        return
    if IN_CI:
        pytest.fail(f"{what} is missing; CI must provide it")
    pytest.skip(f"{what} is missing")


def crds_dir() -> Path:
    """Where the CRDs of KEDA and the Prometheus Operator are (INFERQ_CRDS_DIR overrides)."""
    override = os.environ.get("INFERQ_CRDS_DIR")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "crds"


def tool(name: str) -> str | None:
    """A command from the active environment's bin directory, else from PATH."""
    local = Path(sys.prefix) / "bin" / name
    return str(local) if local.exists() else shutil.which(name)


def scenario_values(scenario: str) -> dict[str, Any]:
    if scenario == "default":
        return {}
    loaded = yaml.safe_load((CI_VALUES_DIR / f"{scenario}-values.yaml").read_text())
    return loaded or {}


@functools.cache
def _chart() -> Any:
    try:
        import helm_python
    except ImportError:
        require(None, "the helm-python-sdk package (Helm's engine)")
    return helm_python.Chart.load(str(CHART_DIR))


def chart() -> Any:
    """The loaded chart (helm_python.Chart), shared by every test."""
    return _chart()


def render(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Template path -> rendered text, for an install of RELEASE into NAMESPACE."""
    rendered: dict[str, str] = chart().render(
        values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True
    )
    return rendered


def objects(rendered: dict[str, str]) -> list[Manifest]:
    """Every Kubernetes object of a render, NOTES.txt left out."""
    found = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        found.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return found


@functools.cache
def _render_scenario(scenario: str) -> tuple[dict[str, str], tuple[Manifest, ...]]:
    rendered = render(scenario_values(scenario))
    return rendered, tuple(objects(rendered))


def scenario_objects(scenario: str) -> list[Manifest]:
    """The objects of one scenario, rendered once per test run."""
    return list(_render_scenario(scenario)[1])


def scenario_notes(scenario: str) -> str:
    rendered = _render_scenario(scenario)[0]
    return next(text for name, text in rendered.items() if name.endswith("NOTES.txt"))


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def named(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [m for m in of_kind(manifests, kind) if m["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def component_name(suffix: str) -> str:
    return f"{RELEASE}-{suffix}"


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[Manifest, dict[str, Any]]]:
    """(object, pod spec) of every workload and bare pod."""
    for manifest in manifests:
        if manifest["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield manifest, manifest["spec"]["template"]["spec"]
        elif manifest["kind"] == "Pod":
            yield manifest, manifest["spec"]


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod_spec.get("initContainers", [])) + list(pod_spec["containers"])


def argv(container: dict[str, Any]) -> list[str]:
    return [str(a) for a in container.get("command", []) + container.get("args", [])]


def env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Environment of a container by name: each entry as written in the manifest."""
    return {e["name"]: e for e in container.get("env", [])}


def worker_deployments(manifests: list[Manifest]) -> dict[str, Manifest]:
    """Worker Deployments by pool."""
    return {
        d["metadata"]["labels"]["inferq.io/pool"]: d
        for d in of_kind(manifests, "Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"
    }


def scaled_objects(manifests: list[Manifest]) -> dict[str, Manifest]:
    """ScaledObjects by pool."""
    return {
        s["metadata"]["labels"]["inferq.io/pool"]: s for s in of_kind(manifests, "ScaledObject")
    }


def backlog_terms(scaled_object: Manifest) -> tuple[list[tuple[str, str]], str]:
    """What a pool's ScaledObject adds up: [(trigger name, Redis key)] and the formula.

    The key is the trigger's ``listName``; KEDA's redis scaler reads its length by the
    key's type (LLEN for a list, HLEN for a hash). A live check evaluates the formula with
    each name bound to that length and compares it with the pool's real backlog.
    """
    spec = scaled_object["spec"]
    terms = [
        (trigger["name"], trigger["metadata"]["listName"])
        for trigger in spec["triggers"]
        if trigger["type"] == "redis"
    ]
    formula = spec.get("advanced", {}).get("scalingModifiers", {}).get("formula", "")
    return terms, formula


def closed_schema(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields, as the API server's strict validation does."""
    if isinstance(schema, list):
        return [closed_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: closed_schema(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


@functools.cache
def crd_validators(directory: Path) -> dict[tuple[str, str, str], jsonschema.Draft7Validator]:
    """(group, version, kind) -> a strict validator, for every CRD in ``directory``."""
    validators = {}
    for path in sorted(directory.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = closed_schema(version["schema"]["openAPIV3Schema"])
                validators[(group, version["name"], kind)] = jsonschema.Draft7Validator(schema)
    return validators
