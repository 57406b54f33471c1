"""The chart's Redis ACL users for real: the server the StatefulSet would start, the API and
the workers connecting as the users their pods get, a prediction, a batch job and a
training job end to end; nothing refused on the way (ACL LOG), the default user off, and
keda able to read the backlog and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from chart.chart_redis import ChartRedis, secret_value
from chart.manifests import component_name, named, scenario_objects, worker_deployments
from job_client import iris_csv, iris_rows, submit_job, upload, wait_job
from processes import ServiceProcess, own_store, service_env, start_api, start_worker
from training_client import churn_csv, submit, wait_training

from services.cli.redis_server import free_port

#: The script KEDA's redis scaler runs for each trigger: the key's length by its type.
KEDA_SCRIPT = """
local listName = KEYS[1]
local listType = redis.call('type', listName).ok
local cmd = {zset = 'zcard', set = 'scard', list = 'llen', hash = 'hlen', none = 'llen'}
return redis.call(cmd[listType], listName)
"""


@pytest.fixture(scope="module")
def chart_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartRedis]:
    server = ChartRedis(scenario_objects("default"), tmp_path_factory.mktemp("chart-redis"))
    yield server
    server.stop()


def _password(server: ChartRedis, user: str) -> str:
    return secret_value(server.manifests, {"valueFrom": {"secretKeyRef": {
        "name": component_name("redis-users"), "key": f"{user}-password"}}})


@pytest.fixture(scope="module")
def stack(chart_redis: ChartRedis, model_store: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    manifests = chart_redis.manifests
    (api,) = named(manifests, "Deployment", component_name("api"))["spec"]["template"][
        "spec"]["containers"]
    (worker,) = worker_deployments(manifests)["inference"]["spec"]["template"]["spec"][
        "containers"]
    logs = tmp_path_factory.mktemp("acl-logs")
    model_store = own_store(model_store, tmp_path_factory.mktemp("acl-models"))
    storage = tmp_path_factory.mktemp("acl-storage")
    base = {"INFERQ_STORAGE_URL": str(storage), "INFERQ_BATCH_CHUNK_ROWS": "100"}
    api_env = service_env("unused", model_store, **base, **chart_redis.component_env(api))
    worker_env = service_env("unused", model_store, **base, **chart_redis.component_env(worker))
    assert "api@" in api_env["INFERQ_REDIS_URL"] and "worker@" in worker_env["INFERQ_REDIS_URL"]
    port = free_port()
    processes: list[ServiceProcess] = [start_api(api_env, port, logs)]
    for pool in ("inference", "batch", "training"):
        processes.append(start_worker(worker_env, logs, pool=pool))
    yield f"http://127.0.0.1:{port}"
    for process in processes:
        process.stop()


def test_api_and_workers_run_a_prediction_a_batch_job_and_a_training_job(
    chart_redis: ChartRedis, stack: str
) -> None:
    admin = chart_redis.admin()
    admin.execute_command("ACL", "LOG", "RESET")
    with httpx.Client(base_url=stack, timeout=40) as client:
        task = client.post("/v1/models/iris/predict", params={"wait": 20},
                           json={"instances": [[5.1, 3.5, 1.4, 0.2]]}).json()
        assert task["status"] == "succeeded", task
        assert task["result"]["predictions"] == ["setosa"]

        dataset = upload(client, iris_csv(iris_rows(250)), "csv")
        job = wait_job(client, submit_job(client, dataset)["job_id"])
        assert job["status"] == "succeeded", job
        assert job["progress"]["rows_done"] == 250

        churn = upload(client, churn_csv(), "csv", name="churn")
        training = submit(client, "churn", dataset_id=churn, target_column="churned",
                          feature_columns=["age", "plan", "usage"],
                          estimator="RandomForestClassifier",
                          hyperparameters={"n_estimators": 10}, validation={"holdout": 0.25})
        done = wait_training(client, training["job_id"])
        assert done["status"] == "succeeded", done
    # Nothing either user did was refused.
    assert admin.execute_command("ACL", "LOG") == []


def test_the_default_user_is_refused(chart_redis: ChartRedis) -> None:
    with pytest.raises(redis.AuthenticationError):
        chart_redis.client(None, None).ping()
    with pytest.raises(redis.AuthenticationError):
        chart_redis.client("default", "").ping()


def test_each_user_needs_its_own_password(chart_redis: ChartRedis) -> None:
    with pytest.raises(redis.AuthenticationError):
        chart_redis.client("keda", _password(chart_redis, "api")).ping()
    assert chart_redis.client("api", _password(chart_redis, "api")).ping()


@pytest.fixture
def idle_redis(tmp_path: Path) -> Iterator[ChartRedis]:
    """The chart's Redis with no worker taking from its queues."""
    server = ChartRedis(scenario_objects("default"), tmp_path)
    yield server
    server.stop()


def test_keda_reads_the_backlog_and_nothing_else(idle_redis: ChartRedis) -> None:
    chart_redis = idle_redis
    admin = chart_redis.admin()
    admin.rpush("inference", "m1", "m2")
    admin.hset("inferq:unacked:batch", "tag", "held")
    admin.hset("inferq:task:abc", "status", "queued")
    keda = chart_redis.client("keda", _password(chart_redis, "keda"))
    try:
        # What KEDA's redis scaler sends: PING, then its script per trigger (older
        # releases: TYPE, then LLEN or HLEN).
        assert keda.ping()
        assert keda.eval(KEDA_SCRIPT, 1, "inference") == 2
        assert keda.eval(KEDA_SCRIPT, 1, "inferq:unacked:batch") == 1
        assert keda.eval(KEDA_SCRIPT, 1, "training") == 0
        assert keda.type("inference") == b"list" and keda.llen("inference") == 2
        assert keda.type("inferq:unacked:batch") == b"hash"
        assert keda.hlen("inferq:unacked:batch") == 1
        for refused in (lambda: keda.hgetall("inferq:task:abc"),
                        lambda: keda.type("inferq:task:abc"),
                        lambda: keda.eval(KEDA_SCRIPT, 1, "inferq:task:abc"),
                        lambda: keda.lrange("inference", 0, -1),
                        lambda: keda.hgetall("inferq:unacked:batch"),
                        lambda: keda.rpush("inference", "forged"),
                        lambda: keda.delete("inference"),
                        lambda: keda.hset("inferq:unacked:batch", "x", "y"),
                        lambda: keda.publish("inferq:models", "iris"),
                        lambda: keda.keys("*"),
                        lambda: keda.info()):
            with pytest.raises(redis.exceptions.NoPermissionError):
                refused()
        # Nor through a script: Redis checks what a script calls against its user.
        for script in ("return redis.call('rpush', KEYS[1], 'forged')",
                       "return redis.call('lrange', KEYS[1], 0, -1)",
                       "return redis.call('del', KEYS[1])",
                       "return redis.call('hgetall', 'inferq:task:abc')"):
            with pytest.raises(redis.exceptions.ResponseError, match=r"(?i)permission|can't run"):
                keda.eval(script, 1, "inference")
        assert admin.llen("inference") == 2
    finally:
        keda.close()


def test_app_users_cannot_administer_redis(chart_redis: ChartRedis) -> None:
    api = chart_redis.client("api", _password(chart_redis, "api"))
    for refused in (lambda: api.flushall(), lambda: api.config_get("*"),
                    lambda: api.execute_command("ACL", "LIST"), lambda: api.keys("*"),
                    lambda: api.set("elsewhere", "x")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            refused()
