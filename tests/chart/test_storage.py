"""Object storage reaches the API and every worker pool: the bucket, the endpoint, the keys
from an existing Secret or the pods' cloud identity, and the model store on the bucket."""

from __future__ import annotations

import re
from typing import Any

import pytest
from chart.manifests import (
    component_name,
    env,
    named,
    objects,
    pod_specs,
    render,
    scenario_notes,
    scenario_objects,
    worker_deployments,
)

STORAGE_VARIABLES = ("INFERQ_STORAGE_URL", "AWS_ENDPOINT_URL", "AWS_REGION",
                     "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def _service_envs(manifests: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The environment of each API and worker container (init containers included)."""
    return {
        f"{manifest['metadata']['name']}/{container['name']}": env(container)
        for manifest, pod in pod_specs(manifests)
        for container in [*pod.get("initContainers", []), *pod["containers"]]
        if container["name"] in ("api", "worker", "seed-models")
    }


def test_default_stores_in_each_pods_writable_tmp_and_sets_no_aws_variables() -> None:
    # The root filesystem is read-only: the home directory's default could not be written.
    for name, variables in _service_envs(scenario_objects("default")).items():
        assert variables["INFERQ_STORAGE_URL"]["value"] == "/tmp/inferq-storage", name
        assert not set(STORAGE_VARIABLES[1:]) & set(variables), name


def test_s3_with_keys_from_a_secret_reaches_every_pod() -> None:
    manifests = scenario_objects("s3-storage")
    envs = _service_envs(manifests)
    pools = worker_deployments(manifests)
    assert len(pools) >= 2
    # The API, a worker container and a seeding init container per pool.
    assert len(envs) == 1 + 2 * len(pools)
    for name, variables in envs.items():
        assert variables["INFERQ_STORAGE_URL"]["value"] == "s3://inferq/prod", name
        assert variables["INFERQ_MODEL_STORE"]["value"] == "s3://inferq/prod/models", name
        assert variables["AWS_ENDPOINT_URL"]["value"] == "http://minio.minio:9000"
        assert variables["AWS_REGION"]["value"] == "us-east-1"
        assert variables["AWS_ACCESS_KEY_ID"]["valueFrom"] == {
            "secretKeyRef": {"name": "inferq-s3", "key": "root-user"}}
        assert variables["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {
            "secretKeyRef": {"name": "inferq-s3", "key": "root-password"}}
    for deployment in pools.values():
        pod = deployment["spec"]["template"]["spec"]
        (seed,) = pod["initContainers"]
        assert seed["command"] == ["inferq", "models", "copy", "/opt/inferq/models"]
        assert not any(v["name"] == "models" for v in pod["volumes"])


def test_cloud_identity_sets_no_keys_and_annotates_the_service_accounts() -> None:
    role = "arn:aws:iam::123456789012:role/inferq"
    manifests = objects(render({
        "storage": {"url": "s3://company-ml/inferq", "region": "eu-west-1",
                    "models": {"enabled": True, "prefix": "registry/models",
                               "seedDemoModels": False}},
        "api": {"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": role}}},
        "workers": {"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": role}}},
    }))
    for name, variables in _service_envs(manifests).items():
        assert "AWS_ACCESS_KEY_ID" not in variables and "AWS_ENDPOINT_URL" not in variables
        assert variables["AWS_REGION"]["value"] == "eu-west-1", name
        assert (variables["INFERQ_MODEL_STORE"]["value"]
                == "s3://company-ml/inferq/registry/models")
    for deployment in worker_deployments(manifests).values():
        assert "initContainers" not in deployment["spec"]["template"]["spec"]
    for suffix in ("api", "worker"):
        account = named(manifests, "ServiceAccount", component_name(suffix))
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role


def test_storage_without_the_model_store_keeps_the_baked_models() -> None:
    manifests = objects(render({"storage": {"url": "s3://data/inferq"}}))
    for name, variables in _service_envs(manifests).items():
        assert variables["INFERQ_STORAGE_URL"]["value"] == "s3://data/inferq", name
        assert variables["INFERQ_MODEL_STORE"]["value"] == "/opt/inferq/models"


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"storage": {"url": "gs://bucket/x"}}, "/storage/url"),
        ({"storage": {"url": "s3://Bad_Bucket"}}, "/storage/url"),
        ({"storage": {"endpoint": "minio:9000"}}, "/storage/endpoint"),
        ({"storage": {"credentials": {"accessKey": "x"}}}, "accessKey"),
        ({"storage": {"models": {"prefix": "/models"}}}, "/storage/models/prefix"),
    ],
)
def test_schema_refuses_bad_storage_values(values: dict[str, Any], complaint: str) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmValuesError, match=re.escape(complaint)):
        render(values)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"storage": {"models": {"enabled": True}}}, "storage.models.enabled: the model store"),
        ({"storage": {"url": "s3://bucket/p", "models": {"enabled": True}},
          "models": {"persistence": {"existingClaim": "inferq-models"}}},
         "either the bucket or the claim"),
    ],
)
def test_render_refuses_inconsistent_storage_values(values: dict[str, Any],
                                                    complaint: str) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmError, match=re.escape(complaint)):
        render(values)


def test_notes_say_where_storage_falls_short() -> None:
    assert "storage.url is empty" in scenario_notes("default")
    notes = scenario_notes("s3-storage")
    assert "storage.url is empty" not in notes
    assert "plain http (http://minio.minio:9000)" in notes
