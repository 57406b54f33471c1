"""Long training runs and scale-in: a stopping training pod finishes its fit, and KEDA
scales the training Deployment without taking a running fit's pod to zero.

docs/kubernetes.md ("Long training runs and scale-in") gives the decision these tests hold
the chart to: a Deployment scaled by a ScaledObject, each pod given its pool's hard time
limit plus a margin to stop, rather than a KEDA ScaledJob.
"""

from __future__ import annotations

from typing import Any

import pytest
from chart.manifests import (
    chart,
    component_name,
    env,
    objects,
    of_kind,
    render,
    scaled_objects,
    worker_deployments,
)

from services.common import keys

#: Custom limits a user may set, the largest the chart accepts among them (12 hours).
CUSTOM_LIMITS = [
    pytest.param({"timeLimits": {"soft": 21540, "hard": 21600}}, 30, id="six-hours"),
    pytest.param({"timeLimits": {"soft": 43000, "hard": 43200}}, 600, id="twelve-hours-margin"),
    pytest.param({"timeLimits": {"soft": 500, "hard": 900}}, 0, id="short-no-margin"),
]


def _values(training: dict[str, Any], margin: int, **pools: dict[str, Any]) -> dict[str, Any]:
    return {"workers": {"terminationGraceMarginSeconds": margin,
                        "pools": {"training": training, **pools}}}


def _grace(deployment: dict[str, Any]) -> tuple[int, int]:
    """(terminationGracePeriodSeconds, INFERQ_HARD_TIME_LIMIT) of a worker Deployment."""
    pod = deployment["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    return pod["terminationGracePeriodSeconds"], int(env(worker)["INFERQ_HARD_TIME_LIMIT"]["value"])


@pytest.mark.parametrize(("training", "margin"), CUSTOM_LIMITS)
def test_a_stopping_training_pod_has_its_hard_limit_and_the_margin(
    training: dict[str, Any], margin: int
) -> None:
    deployments = worker_deployments(objects(render(_values(training, margin))))
    grace, hard = _grace(deployments["training"])
    assert hard == training["timeLimits"]["hard"]
    # SIGTERM to SIGKILL: the running fit ends by itself or by its hard limit first.
    assert grace == hard + margin
    assert grace >= hard


@pytest.mark.parametrize(("training", "margin"), CUSTOM_LIMITS)
def test_an_added_training_pool_gets_its_own_limit_or_the_training_pools(
    training: dict[str, Any], margin: int
) -> None:
    own = {"kind": "training", "timeLimits": {"soft": 7000, "hard": 7200}}
    inherits = {"kind": "training", "autoscaling": {"maxReplicas": 1}}
    values = _values(training, margin, **{"training-gpu": own, "training-cpu": inherits})
    deployments = worker_deployments(objects(render(values)))
    assert _grace(deployments["training-gpu"]) == (7200 + margin, 7200)
    hard = training["timeLimits"]["hard"]
    assert _grace(deployments["training-cpu"]) == (hard + margin, hard)


def test_the_training_pool_is_a_scaled_deployment_and_no_scaled_job() -> None:
    manifests = objects(render(_values({}, 30, **{"training-gpu": {"kind": "training"}})))
    assert of_kind(manifests, "ScaledJob") == []
    scaled = scaled_objects(manifests)
    for pool in ("training", "training-gpu"):
        target = scaled[pool]["spec"]["scaleTargetRef"]
        assert target == {"apiVersion": "apps/v1", "kind": "Deployment",
                          "name": component_name(f"worker-{pool}")}


def test_a_running_fit_holds_its_pod_up() -> None:
    """The backlog KEDA reads counts the fits that run, so the pool keeps one pod per
    running fit (listLength 1) and never goes to zero under one; at zero it wakes for the
    first queued job."""
    spec = scaled_objects(objects(render()))["training"]["spec"]
    triggers = {t["name"]: t["metadata"]["listName"] for t in spec["triggers"]}
    assert triggers == {"waiting": keys.queue_key("training"),
                        "inflight": keys.unacked_key("training")}
    modifiers = spec["advanced"]["scalingModifiers"]
    assert modifiers["formula"].replace(" ", "") == "waiting+inflight"
    assert (modifiers["target"], modifiers["activationTarget"]) == ("1", "0")
    assert spec["minReplicaCount"] == 0


def test_the_training_pool_scales_in_slowly() -> None:
    """Scale-in waits out several backlog reads and a cooldown of several minutes: a job
    ending while the next is submitted keeps its warm pod, and a pod is not removed on one
    read of a smaller backlog."""
    spec = scaled_objects(objects(render()))["training"]["spec"]
    polling = spec["pollingInterval"]
    scale_down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 10 * polling
    assert spec["cooldownPeriod"] >= 10 * polling
    (policy,) = scale_down["policies"]
    assert policy["periodSeconds"] >= 5 * polling


def test_scale_in_settings_of_values_reach_the_training_scaled_object() -> None:
    autoscaling = {"cooldownPeriod": 1800, "pollingInterval": 60,
                   "scaleDown": {"stabilizationWindowSeconds": 1200, "percent": 25,
                                 "periodSeconds": 600}}
    spec = scaled_objects(objects(render(_values({"autoscaling": autoscaling}, 30))))[
        "training"]["spec"]
    assert (spec["cooldownPeriod"], spec["pollingInterval"]) == (1800, 60)
    scale_down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert scale_down == {"stabilizationWindowSeconds": 1200,
                          "policies": [{"type": "Percent", "value": 25, "periodSeconds": 600}]}


def test_the_default_training_limit_is_what_the_docs_promise() -> None:
    """docs/kubernetes.md says a training pod may linger three hours after SIGTERM."""
    hard = chart().values["workers"]["pools"]["training"]["timeLimits"]["hard"]
    margin = chart().values["workers"]["terminationGraceMarginSeconds"]
    assert (hard, margin) == (10800, 30)
    assert _grace(worker_deployments(objects(render()))["training"]) == (10830, 10800)


@pytest.mark.parametrize(("values", "parts"), [
    pytest.param({}, 4, id="keda-default-max-4-pods"),
    pytest.param({"workers": {"pools": {"training": {
        "concurrency": 2, "autoscaling": {"maxReplicas": 6}}}}}, 12, id="keda-6-pods-of-2"),
    pytest.param({"keda": {"enabled": False}, "workers": {"pools": {"training": {
        "replicas": 3}}}}, 3, id="no-keda-3-replicas"),
    pytest.param({"workers": {"pools": {"training": {
        "concurrency": 4, "autoscaling": {"maxReplicas": 40}}}}}, 64, id="at-most-64"),
])
def test_training_workers_split_a_forests_final_fit_for_every_process_the_pool_runs(
    values: dict[str, Any], parts: int
) -> None:
    deployments = worker_deployments(objects(render(values)))
    (trainer,) = deployments["training"]["spec"]["template"]["spec"]["containers"]
    assert env(trainer)["INFERQ_TRAINING_FIT_PARTS"]["value"] == str(parts)
    for pool in ("inference", "batch"):
        (container,) = deployments[pool]["spec"]["template"]["spec"]["containers"]
        assert "INFERQ_TRAINING_FIT_PARTS" not in env(container)
