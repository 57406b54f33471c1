"""Worker pools: one Deployment per pool, its time limits, and KEDA counting its backlog."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlsplit

import pytest
from chart.manifests import (
    CHART_DIR,
    SCENARIOS,
    argv,
    backlog_terms,
    chart,
    component_name,
    env,
    named,
    objects,
    of_kind,
    render,
    scaled_objects,
    scenario_objects,
    scenario_values,
    worker_deployments,
)

from services.common import keys
from services.common.pools import NAME_PATTERN, POOLS, visibility_timeout
from services.common.pools import pool as pool_spec
from services.common.settings import Settings
from services.worker.celery_app import create_celery_app

METRICS_PORT = 9808


def _pools(scenario: str) -> dict[str, dict]:
    """The scenario's enabled pools as values give them, with kind and queue resolved."""
    merged = chart().merge_values(scenario_values(scenario))["workers"]["pools"]
    pools = {}
    for name, spec in merged.items():
        kind = spec.get("kind") or name
        # An added pool takes its kind's pool's settings for what it does not set.
        base = {k: v for k, v in merged[kind].items() if k not in ("enabled", "queue", "models")}
        resolved = spec if kind == name else _merged(base, spec)
        if resolved.get("enabled", True):
            pools[name] = {**resolved, "kind": kind, "queue": spec.get("queue") or name}
    return pools


def _merged(base: dict, override: dict) -> dict:
    """``override`` over ``base``, maps merged key by key as Helm's mergeOverwrite does."""
    out = dict(base)
    for key, value in override.items():
        both_maps = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merged(out[key], value) if both_maps else value
    return out


def test_chart_defaults_match_the_pools_of_the_code() -> None:
    pools = chart().values["workers"]["pools"]
    assert set(pools) == set(POOLS)
    for name, spec in POOLS.items():
        limits = pools[name]["timeLimits"]
        assert (limits["soft"], limits["hard"]) == (spec.soft_time_limit, spec.hard_time_limit)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_pool_runs_its_own_worker_command(scenario: str) -> None:
    pools = _pools(scenario)
    deployments = worker_deployments(scenario_objects(scenario))
    assert set(deployments) == set(pools)
    for pool, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == "worker"
        assert labels["inferq.io/pool"] == pool
        assert deployment["spec"]["selector"]["matchLabels"]["inferq.io/pool"] == pool
        (worker,) = deployment["spec"]["template"]["spec"]["containers"]
        concurrency = str(pools[pool]["concurrency"])
        assert argv(worker) == [
            "inferq", "worker", "--pool", pool, "--kind", pools[pool]["kind"],
            "--queue", pools[pool]["queue"], "--concurrency", concurrency,
            "--metrics-port", str(METRICS_PORT),
        ]  # fmt: skip


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_grace_period_outlasts_the_hard_time_limit(scenario: str) -> None:
    pools = _pools(scenario)
    for pool, deployment in worker_deployments(scenario_objects(scenario)).items():
        pod = deployment["spec"]["template"]["spec"]
        variables = env(pod["containers"][0])
        hard = pools[pool]["timeLimits"]["hard"]
        assert variables["INFERQ_HARD_TIME_LIMIT"]["value"] == str(hard)
        soft = pools[pool]["timeLimits"]["soft"]
        assert variables["INFERQ_SOFT_TIME_LIMIT"]["value"] == str(soft)
        assert pod["terminationGracePeriodSeconds"] > hard


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_worker_derives_its_visibility_timeout_from_the_hard_limit(
    scenario: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pools = _pools(scenario)
    for name, deployment in worker_deployments(scenario_objects(scenario)).items():
        (worker,) = deployment["spec"]["template"]["spec"]["containers"]
        variables = env(worker)
        assert "INFERQ_VISIBILITY_TIMEOUT" not in variables
        with monkeypatch.context() as patched:
            for variable, entry in variables.items():
                if variable.startswith("INFERQ_") and "value" in entry:
                    patched.setenv(variable, entry["value"])
            # The Celery app of the worker the chart starts, built as it builds it.
            app = create_celery_app(Settings(), pool_spec(name, pools[name]["kind"],
                                                          pools[name]["queue"]))
        hard = pools[name]["timeLimits"]["hard"]
        assert app.conf.task_time_limit == hard
        assert app.conf.broker_transport_options["visibility_timeout"] == (
            visibility_timeout(hard)
        )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_liveness_is_the_metrics_server_not_the_broker(scenario: str) -> None:
    for deployment in worker_deployments(scenario_objects(scenario)).values():
        (worker,) = deployment["spec"]["template"]["spec"]["containers"]
        probe = worker["livenessProbe"]
        assert probe["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"} in worker[
            "ports"
        ]
        assert "celery" not in str(deployment)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_scaled_object_counts_its_pools_backlog(scenario: str) -> None:
    manifests = scenario_objects(scenario)
    if not chart().merge_values(scenario_values(scenario))["keda"]["enabled"]:
        assert of_kind(manifests, "ScaledObject") == []
        return
    pools = _pools(scenario)
    scaled = scaled_objects(manifests)
    assert set(scaled) == set(pools)
    for pool, scaled_object in scaled.items():
        spec = scaled_object["spec"]
        assert spec["scaleTargetRef"]["name"] == component_name(f"worker-{pool}")
        terms, formula = backlog_terms(scaled_object)
        queue = pools[pool]["queue"]
        assert terms == [("waiting", keys.queue_key(queue)), ("inflight", keys.unacked_key(queue))]
        assert formula.replace(" ", "") == "waiting+inflight"
        scaling = pools[pool]["autoscaling"]
        modifiers = spec["advanced"]["scalingModifiers"]
        assert modifiers["target"] == str(scaling["listLength"])
        assert modifiers["activationTarget"] == str(scaling["activationListLength"])
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (
            scaling["minReplicas"],
            scaling["maxReplicas"],
        )
        for trigger in spec["triggers"]:
            assert "password" not in trigger["metadata"]
            assert not any(k.lower().startswith("password") for k in trigger["metadata"])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_keda_reads_its_credentials_from_secrets(scenario: str) -> None:
    """With the chart's ACL users: user keda and its password; otherwise the workers'
    password (and the external URL's user); the CA wherever there is one."""
    manifests = scenario_objects(scenario)
    internal = bool(of_kind(manifests, "StatefulSet"))
    for pool, scaled_object in scaled_objects(manifests).items():
        worker = worker_deployments(manifests)[pool]["spec"]["template"]["spec"]["containers"][0]
        secret = env(worker)["INFERQ_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        url = urlsplit(env(worker)["INFERQ_REDIS_URL"]["value"])
        for trigger in scaled_object["spec"]["triggers"]:
            auth = named(manifests, "TriggerAuthentication", trigger["authenticationRef"]["name"])
            refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
            user = (named(manifests, "Secret", refs["username"]["name"])["data"]["username"]
                    if "username" in refs else "")
            if internal:
                assert refs["password"] == {"parameter": "password",
                                            "name": secret["name"], "key": "keda-password"}
                assert base64.b64decode(user) == b"keda"
            else:
                assert refs["password"] == {"parameter": "password", **secret}
                assert base64.b64decode(user).decode() == (url.username or "")
            assert ("ca" in refs) == ("INFERQ_REDIS_CA_FILE" in env(worker))


def test_scale_to_zero_is_allowed_for_batch_and_training() -> None:
    scaled = scaled_objects(scenario_objects("default"))
    assert scaled["batch"]["spec"]["minReplicaCount"] == 0
    assert scaled["training"]["spec"]["minReplicaCount"] == 0
    assert scaled["inference"]["spec"]["minReplicaCount"] >= 1


def test_keda_owns_the_replica_count_when_on_and_values_when_off() -> None:
    with_keda = worker_deployments(scenario_objects("default"))
    assert all("replicas" not in d["spec"] for d in with_keda.values())
    without = worker_deployments(objects(render({"keda": {"enabled": False}})))
    assert {pool: d["spec"]["replicas"] for pool, d in without.items()} == {
        "inference": 1,
        "batch": 1,
        "training": 1,
    }


def test_a_gpu_training_pool_is_one_values_change() -> None:
    training = worker_deployments(scenario_objects("production"))["training"]
    pod = training["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_external_tls_redis_reaches_keda_with_tls() -> None:
    for scaled_object in scaled_objects(scenario_objects("external-redis-tls")).values():
        for trigger in scaled_object["spec"]["triggers"]:
            assert trigger["metadata"]["address"] == "master.inferq.cache.example.com:6380"
            assert trigger["metadata"]["enableTLS"] == "true"
            assert trigger["metadata"]["databaseIndex"] == "0"


def test_an_added_pool_takes_its_kinds_settings_and_its_own() -> None:
    manifests = scenario_objects("production")
    large = worker_deployments(manifests)["inference-large"]
    pod = large["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    variables = env(worker)
    # Its own settings...
    assert argv(worker)[2:8] == ["--pool", "inference-large", "--kind", "inference",
                                 "--queue", "inference-large"]
    assert worker["resources"]["limits"]["memory"] == "8Gi"
    assert pod["nodeSelector"] == {"inferq.io/node-class": "highmem"}
    # ...and, where it sets none, the inference pool's.
    assert variables["INFERQ_BATCH_MAX_ROWS"]["value"] == "512"
    assert variables["INFERQ_HARD_TIME_LIMIT"]["value"] == "60"
    scaling = scaled_objects(manifests)["inference-large"]["spec"]
    assert (scaling["minReplicaCount"], scaling["maxReplicaCount"]) == (0, 4)
    assert scaling["advanced"]["scalingModifiers"]["target"] == "64"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_api_sends_each_model_to_the_pool_that_serves_it(
    scenario: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pools = _pools(scenario)
    api = named(scenario_objects(scenario), "Deployment", component_name("api"))
    variables = env(api["spec"]["template"]["spec"]["containers"][0])
    for name in ("INFERQ_PREDICT_QUEUE", "INFERQ_MODEL_QUEUES", "INFERQ_POOL_QUEUES"):
        monkeypatch.setenv(name, variables[name]["value"])
    # The chart's values as the code reads them.
    settings = Settings()
    assert settings.pool_queues == {name: spec["queue"] for name, spec in pools.items()}
    assert settings.predict_queue == pools["inference"]["queue"]
    served = {model: name for name, spec in pools.items() for model in spec.get("models", [])}
    for model in ("iris", "breast-cancer", "diabetes"):
        assert settings.queue_for(model) == pools[served.get(model, "inference")]["queue"]
    if scenario == "production":
        assert settings.queue_for("breast-cancer") == "inference-large"
        assert settings.pool_queues["training"] == "training-gpu"


def test_the_schema_names_pools_as_the_code_does() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    pools = schema["properties"]["workers"]["properties"]["pools"]
    assert pools["propertyNames"]["pattern"] == NAME_PATTERN.pattern
    # A pool's queue may be empty (the pool's name); otherwise it is named as a pool is.
    queue = schema["definitions"]["pool"]["properties"]["queue"]
    assert queue["pattern"] == f"^$|{NAME_PATTERN.pattern}"
    kind = schema["definitions"]["pool"]["properties"]["kind"]
    assert set(kind["enum"]) == {"", *POOLS}


def test_pod_settings_per_pool_and_for_every_pool() -> None:
    spread = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
               "whenUnsatisfiable": "ScheduleAnyway",
               "labelSelector": {"matchLabels": {"inferq.io/pool": "inference"}}}]
    values = {"workers": {
        "podAnnotations": {"team": "ml", "cost": "shared"},
        "extraVolumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/custom", "readOnly": True}],
        "probes": {"liveness": {"periodSeconds": 60, "timeoutSeconds": 10}},
        "pools": {"inference": {"podAnnotations": {"cost": "online"},
                                "topologySpreadConstraints": spread}},
    }}
    deployments = worker_deployments(objects(render(values)))
    inference = deployments["inference"]["spec"]["template"]
    batch = deployments["batch"]["spec"]["template"]
    assert inference["metadata"]["annotations"]["cost"] == "online"
    assert inference["metadata"]["annotations"]["team"] == "ml"
    assert batch["metadata"]["annotations"]["cost"] == "shared"
    assert inference["spec"]["topologySpreadConstraints"] == spread
    assert "topologySpreadConstraints" not in batch["spec"]
    for template in (inference, batch):
        (worker,) = template["spec"]["containers"]
        assert {"name": "ca", "configMap": {"name": "corporate-ca"}} in template["spec"]["volumes"]
        assert {"name": "ca", "mountPath": "/etc/ssl/custom", "readOnly": True} in (
            worker["volumeMounts"])
        # What values set, over the defaults they leave.
        assert worker["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": "metrics"},
                                           "initialDelaySeconds": 10, "periodSeconds": 60,
                                           "timeoutSeconds": 10, "failureThreshold": 3}


def test_the_api_learns_the_kind_of_each_pool() -> None:
    api = named(scenario_objects("production"), "Deployment", component_name("api"))
    variables = env(api["spec"]["template"]["spec"]["containers"][0])
    settings = Settings.model_validate({
        "pool_queues": json.loads(variables["INFERQ_POOL_QUEUES"]["value"]),
        "pool_kinds": json.loads(variables["INFERQ_POOL_KINDS"]["value"]),
    })
    assert settings.queue_kinds == {"inference": "inference", "batch": "batch",
                                    "training-gpu": "training", "inference-large": "inference"}
