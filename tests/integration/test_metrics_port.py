"""The API's /metrics on a port of its own (INFERQ_METRICS_PORT): the main port answers 404."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from processes import ServiceProcess, service_env, start_api

from services.cli.redis_server import free_port


@pytest.fixture(scope="module")
def ports(redis_server, model_store, logs: Path  # type: ignore[no-untyped-def]
          ) -> Iterator[tuple[int, int]]:
    main, metrics = free_port(), free_port()
    env = service_env(redis_server.url, model_store, INFERQ_METRICS_PORT=str(metrics))
    api: ServiceProcess = start_api(env, main, logs)
    yield main, metrics
    api.stop()


def test_metrics_are_served_on_the_metrics_port_only(ports: tuple[int, int]) -> None:
    main, metrics = ports
    assert httpx.get(f"http://127.0.0.1:{main}/healthz").status_code == 200
    refused = httpx.get(f"http://127.0.0.1:{main}/metrics")
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "not_found"
    assert "inferq_" not in refused.text
    served = httpx.get(f"http://127.0.0.1:{metrics}/metrics")
    assert served.status_code == 200
    # The API's own registry: its request counter (which saw the requests above) and its
    # Redis gauge.
    assert 'inferq_http_requests_total{method="GET",route="/healthz",status="200"}' in served.text
    assert "inferq_redis_up 1.0" in served.text


def test_the_metrics_port_speaks_openmetrics_when_asked(ports: tuple[int, int]) -> None:
    served = httpx.get(f"http://127.0.0.1:{ports[1]}/metrics",
                       headers={"Accept": "application/openmetrics-text"})
    assert served.headers["content-type"].startswith("application/openmetrics-text")
    assert served.text.rstrip().endswith("# EOF")
