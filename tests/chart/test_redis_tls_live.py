"""The chart's Redis over TLS for real: the server the StatefulSet would start with a
certificate a test CA signed, the API and a worker connecting as their pods would
(rediss://, their ACL user, the CA bundle), one prediction end to end; with a CA that did
not sign the certificate, each says so in one log line at once instead of hanging."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from chart.chart_redis import ChartRedis, openssl_certificates
from chart.manifests import component_name, named, scenario_objects, worker_deployments
from processes import ServiceProcess, service_env, start_api, start_worker
from redis.backoff import NoBackoff
from redis.retry import Retry

from services.cli.redis_server import free_port

CA_DIR = "/etc/inferq/redis-ca"


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartRedis]:
    certificates = openssl_certificates(tmp_path_factory.mktemp("redis-tls"))
    server = ChartRedis(scenario_objects("redis-tls"), tmp_path_factory.mktemp("chart-redis"),
                        tls_dir=certificates)
    yield server
    server.stop()


def _envs(server: ChartRedis, model_store: Path, ca_dir: Path) -> tuple[dict, dict]:
    manifests = server.manifests
    (api,) = named(manifests, "Deployment", component_name("api"))["spec"]["template"][
        "spec"]["containers"]
    (worker,) = worker_deployments(manifests)["inference"]["spec"]["template"]["spec"][
        "containers"]
    found = []
    for container in (api, worker):
        redis_env = server.component_env(container)
        redis_env["INFERQ_REDIS_CA_FILE"] = redis_env["INFERQ_REDIS_CA_FILE"].replace(
            CA_DIR, str(ca_dir))
        found.append(service_env("unused", model_store, **redis_env))
    return found[0], found[1]


def test_api_and_worker_predict_over_tls_with_the_ca(
    tls_redis: ChartRedis, model_store: Path, tmp_path: Path
) -> None:
    api_env, worker_env = _envs(tls_redis, model_store, tls_redis.tls_dir or tmp_path)
    assert api_env["INFERQ_REDIS_URL"].startswith("rediss://api@127.0.0.1:")
    assert worker_env["INFERQ_REDIS_URL"].startswith("rediss://worker@127.0.0.1:")
    port = free_port()
    api = start_api(api_env, port, tmp_path)
    worker = start_worker(worker_env, tmp_path)
    try:
        task = httpx.post(f"http://127.0.0.1:{port}/v1/models/iris/predict",
                          params={"wait": 20}, json={"instances": [[5.1, 3.5, 1.4, 0.2]]},
                          timeout=30).json()
        assert task["status"] == "succeeded", task
        assert task["result"]["predictions"] == ["setosa"]
    finally:
        worker.stop()
        api.stop()
    # The plain port is closed: the server speaks TLS only.
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=tls_redis.port, socket_timeout=2, retry=Retry(NoBackoff(), 0)).ping()


def test_a_wrong_ca_is_one_clear_log_line_not_a_hang(
    tls_redis: ChartRedis, model_store: Path, tmp_path: Path
) -> None:
    other = openssl_certificates(tmp_path / "other-ca")
    api_env, worker_env = _envs(tls_redis, model_store, other)
    port = free_port()
    api = ServiceProcess(["api", "--port", str(port)], api_env, tmp_path / "api.log")
    worker = ServiceProcess(["worker", "--pool", "inference", "--metrics-port", "0"],
                            worker_env, tmp_path / "worker.log")
    try:
        for process in (api, worker):
            process.wait_for_log("INFERQ_REDIS_CA_FILE", timeout=20)
            assert "CERTIFICATE_VERIFY_FAILED" in process.log()
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "redis_unavailable"
    finally:
        worker.stop()
        api.stop()
