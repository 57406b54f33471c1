"""Every scenario renders, lints clean, and each object passes its Kubernetes or CRD schema."""

from __future__ import annotations

import pytest
from chart.manifests import (
    CHART_DIR,
    NAMESPACE,
    SCENARIOS,
    chart,
    crd_validators,
    crds_dir,
    objects,
    render,
    require,
    scenario_objects,
    scenario_values,
)

CRD_KINDS = {
    ("keda.sh", "ScaledObject"),
    ("keda.sh", "TriggerAuthentication"),
    ("monitoring.coreos.com", "ServiceMonitor"),
    ("monitoring.coreos.com", "PodMonitor"),
    ("monitoring.coreos.com", "PrometheusRule"),
}
#: Validated in test_gateway_api.py (their CRDs are not in the CRD folder).
GATEWAY_API_KINDS = {("gateway.networking.k8s.io", "HTTPRoute")}
RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_is_clean(scenario: str) -> None:
    import helm_python

    report = helm_python.lint(str(CHART_DIR), scenario_values(scenario), namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_passes_the_values_schema(scenario: str) -> None:
    chart().validate_schema(chart().merge_values(scenario_values(scenario)))


def test_every_ci_scenario_says_what_it_exercises() -> None:
    for path in sorted((CHART_DIR / "ci").glob("*-values.yaml")):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# Exercises "), f"{path.name} should open with what it exercises"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_objects_are_namespaced_and_labelled(scenario: str) -> None:
    for manifest in scenario_objects(scenario):
        metadata = manifest["metadata"]
        assert metadata["namespace"] == NAMESPACE, metadata["name"]
        for label in RECOMMENDED_LABELS:
            assert label in metadata.get("labels", {}), f"{metadata['name']} lacks {label}"


def _kubernetes_version() -> str:
    from kubernetes_validate import utils

    return utils.latest_version()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_builtin_objects_pass_the_kubernetes_schema_strictly(scenario: str) -> None:
    import kubernetes_validate

    version = _kubernetes_version()
    for manifest in scenario_objects(scenario):
        group = manifest["apiVersion"].rpartition("/")[0]
        if (group, manifest["kind"]) in CRD_KINDS | GATEWAY_API_KINDS:
            continue
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{manifest['kind']}/{manifest['metadata']['name']}: {error.message}")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_custom_resources_pass_their_crd_schema(scenario: str) -> None:
    directory = crds_dir()
    require(directory.is_dir() and any(directory.glob("*.yaml")), f"CRD folder {directory}")
    validators = crd_validators(directory)
    for manifest in scenario_objects(scenario):
        group, _, version = manifest["apiVersion"].rpartition("/")
        if (group, manifest["kind"]) not in CRD_KINDS:
            continue
        validator = validators.get((group, version, manifest["kind"]))
        assert validator is not None, f"no CRD for {manifest['apiVersion']} {manifest['kind']}"
        errors = sorted(validator.iter_errors(manifest), key=str)
        assert not errors, f"{manifest['kind']}/{manifest['metadata']['name']}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
        )


def test_strict_crd_validation_refuses_an_unknown_field() -> None:
    directory = crds_dir()
    require(directory.is_dir() and any(directory.glob("*.yaml")), f"CRD folder {directory}")
    validator = crd_validators(directory)[("keda.sh", "v1alpha1", "ScaledObject")]
    bad = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {"scaleTargetRef": {"name": "x"}, "triggers": [], "minReplicas": 0},
    }
    assert not validator.is_valid(bad)


def test_every_named_template_is_prefixed_and_commented() -> None:
    lines = (CHART_DIR / "templates" / "_helpers.tpl").read_text().splitlines()
    defines = [n for n, line in enumerate(lines) if line.startswith('{{- define "')]
    assert defines
    for number in defines:
        assert lines[number].startswith('{{- define "inferq.'), lines[number]
        assert lines[number - 1] == "*/}}", f"no comment above {lines[number]}"


@pytest.mark.parametrize("scenario", [*SCENARIOS, "all-monitoring"])
def test_object_names_are_unique(scenario: str) -> None:
    if scenario == "all-monitoring":
        on = {"enabled": True}
        sections = ("serviceMonitor", "podMonitor", "prometheusRule", "dashboards")
        manifests = objects(render({"monitoring": dict.fromkeys(sections, on)}))
    else:
        manifests = scenario_objects(scenario)
    keys = [(m["kind"], m["metadata"]["name"]) for m in manifests]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
