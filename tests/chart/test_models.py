"""The model store reaches every API and worker pod: baked in the images, or on a claim."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from chart.manifests import (
    REPO_ROOT,
    component_name,
    env,
    named,
    objects,
    pod_specs,
    render,
    scenario_objects,
    worker_deployments,
)

IMAGE_STORE = "/opt/inferq/models"


def _stores(scenario: str) -> dict[str, str]:
    return {
        f"{manifest['metadata']['name']}/{container['name']}": env(container)["INFERQ_MODEL_STORE"][
            "value"
        ]
        for manifest, pod in pod_specs(scenario_objects(scenario))
        for container in pod["containers"]
        if container["name"] in ("api", "worker")
    }


def test_default_store_is_the_one_baked_into_both_images() -> None:
    for dockerfile in ("Dockerfile.api", "Dockerfile.worker"):
        text = (REPO_ROOT / dockerfile).read_text()
        assert f"INFERQ_MODEL_STORE={IMAGE_STORE}" in text
        assert f"COPY --from=models {IMAGE_STORE} {IMAGE_STORE}" in text
    assert set(_stores("default").values()) == {IMAGE_STORE}


def test_a_claim_is_the_store_of_every_pod() -> None:
    assert set(_stores("models-volume").values()) == {"/models"}
    manifests = scenario_objects("models-volume")
    api = named(manifests, "Deployment", component_name("api"))["spec"]["template"]["spec"]
    (api_mount,) = [m for m in api["containers"][0]["volumeMounts"] if m["name"] == "models"]
    assert api_mount == {"name": "models", "mountPath": "/models", "readOnly": True}
    for deployment in worker_deployments(manifests).values():
        pod = deployment["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == "models"]
        assert volume["persistentVolumeClaim"] == {"claimName": "inferq-models"}
        (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "models"]
        assert mount["readOnly"] is False
        assert [c["name"] for c in pod["initContainers"]] == ["seed-models"]


def test_seeding_copies_missing_versions_and_keeps_existing_ones(tmp_path: Path) -> None:
    source, target = tmp_path / "image-store", tmp_path / "claim"
    for name in ("iris", "diabetes"):
        (source / name / "1").mkdir(parents=True)
        (source / name / "1" / "metadata.json").write_text(f'{{"name": "{name}"}}')
    (target / "iris" / "1").mkdir(parents=True)
    (target / "iris" / "1" / "metadata.json").write_text('{"name": "iris", "mine": true}')
    values = {"models": {"persistence": {"existingClaim": "c", "mountPath": str(target)}}}
    pod = worker_deployments(objects(render(values)))["batch"]["spec"]["template"]["spec"]
    (seed,) = pod["initContainers"]
    script = seed["args"][0].replace(IMAGE_STORE, str(source))
    assert seed["command"] == ["sh", "-c"]
    for _ in range(2):
        subprocess.run(["sh", "-c", script], check=True, timeout=30)
    assert (target / "diabetes" / "1" / "metadata.json").read_text() == '{"name": "diabetes"}'
    assert "mine" in (target / "iris" / "1" / "metadata.json").read_text()
    assert not [p for p in target.rglob(".seed-*")]


def test_no_seeding_without_a_claim() -> None:
    for deployment in worker_deployments(scenario_objects("default")).values():
        assert "initContainers" not in deployment["spec"]["template"]["spec"]
    production = worker_deployments(scenario_objects("production"))
    assert all("initContainers" not in d["spec"]["template"]["spec"] for d in production.values())
    assert re.search(
        r"seedDemoModels: false",
        (REPO_ROOT / "charts/inferq/ci/production-values.yaml").read_text(),
    )
