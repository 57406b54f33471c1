"""``GET /v1/pools``: backlog per queue and, in a cluster, each pool's replicas.

The Kubernetes API server is the one component that cannot run here: a stub answers its
Deployment list at the HTTP boundary, reached through an ordinary kubeconfig.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from kube_stub import StubKubernetes
from processes import ServiceProcess, service_env, start_api

from services.cli.redis_server import free_port

SELECTOR = "app.kubernetes.io/instance=prod,app.kubernetes.io/component=worker"


def deployment(pool: str, desired: int, ready: int | None) -> dict:
    return {
        "metadata": {"name": f"prod-inferq-worker-{pool}", "namespace": "ml",
                     "labels": {"inferq.io/pool": pool}},
        "spec": {"replicas": desired, "selector": {"matchLabels": {"p": pool}},
                 "template": {"metadata": {}, "spec": {"containers": []}}},
        "status": {"readyReplicas": ready} if ready is not None else {},
    }


@pytest.fixture
def stub() -> Iterator[StubKubernetes]:
    items = [deployment("inference", 3, 2), deployment("batch", 0, None)]
    stub = StubKubernetes(lambda _: {"kind": "DeploymentList", "apiVersion": "apps/v1",
                                     "metadata": {}, "items": items})
    yield stub
    stub.close()


def test_pools_outside_a_cluster(client: httpx.Client, redis_server) -> None:  # type: ignore[no-untyped-def]
    redis_server.client().lpush("batch", "x", "y")
    redis_server.client().hset("inferq:unacked:batch", "tag", "m")
    try:
        pools = {p["name"]: p for p in client.get("/v1/pools").json()["pools"]}
    finally:
        redis_server.client().delete("batch", "inferq:unacked:batch")
    assert set(pools) == {"inference", "batch", "training"}
    assert (pools["batch"]["waiting"], pools["batch"]["inflight"], pools["batch"]["backlog"]) == (
        2, 1, 3)
    assert pools["inference"]["ready_replicas"] is None
    assert pools["inference"]["desired_replicas"] is None


def test_pools_in_a_cluster(redis_server, model_store: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                            stub: StubKubernetes) -> None:
    env = service_env(redis_server.url, model_store, INFERQ_K8S_NAMESPACE="ml",
                      INFERQ_K8S_WORKER_SELECTOR=SELECTOR,
                      KUBECONFIG=str(stub.kubeconfig(tmp_path / "kubeconfig")))
    env.pop("KUBERNETES_SERVICE_HOST", None)
    port = free_port()
    api: ServiceProcess = start_api(env, port, tmp_path)
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/v1/pools", timeout=10)
    finally:
        api.stop()
    pools = {p["name"]: p for p in response.json()["pools"]}
    assert (pools["inference"]["ready_replicas"], pools["inference"]["desired_replicas"]) == (2, 3)
    assert (pools["batch"]["ready_replicas"], pools["batch"]["desired_replicas"]) == (0, 0)
    assert pools["training"]["ready_replicas"] is None
    (path,) = stub.requests
    assert path.startswith("/apis/apps/v1/namespaces/ml/deployments?")
    query = parse_qs(urlsplit(path).query)
    assert query["labelSelector"] == [SELECTOR]
