"""One trace from the HTTP request to the model call, across the API and worker processes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from otlp_receiver import OtlpReceiver
from processes import service_env, start_api, start_worker

from services.cli.redis_server import free_port

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def traced_api_url(redis_server, model_store: Path, receiver: OtlpReceiver,  # type: ignore[no-untyped-def]
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("traced")
    env = service_env(redis_server.url, model_store,
                      OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.port}",
                      OTEL_BSP_SCHEDULE_DELAY="100",
                      # Lone iris tasks run in the worker's main process, whatever the load.
                      INFERQ_INLINE_MAX_MS="100")
    port = free_port()
    api = start_api(env, port, logs)
    worker = start_worker(env, logs)
    yield f"http://127.0.0.1:{port}"
    worker.stop()
    api.stop()


def predict_in_trace(url: str, trace_id: str, sampled: bool) -> None:
    """One predict with the client's W3C context; its answer carries the same trace."""
    response = httpx.post(
        f"{url}/v1/models/iris/predict?wait=10",
        json={"instances": [[5.1, 3.5, 1.4, 0.2]]},
        headers={"traceparent": f"00-{trace_id}-{CLIENT_SPAN}-{'01' if sampled else '00'}"},
        timeout=20,
    )
    assert response.status_code == 200
    assert response.json()["trace_id"] == trace_id
    assert response.headers["traceparent"].split("-")[1] == trace_id


def wait_for_spans(receiver: OtlpReceiver, trace_id: str, names: int = 4) -> list[dict]:
    deadline = time.monotonic() + 15
    while len({s["name"] for s in receiver.trace(trace_id)}) < names:
        assert time.monotonic() < deadline, receiver.trace(trace_id)
        time.sleep(0.1)
    return receiver.trace(trace_id)


def test_one_trace_from_request_to_model_call(traced_api_url: str,
                                              receiver: OtlpReceiver) -> None:
    predict_in_trace(traced_api_url, TRACE_ID, sampled=True)
    spans = {s["name"]: s for s in wait_for_spans(receiver, TRACE_ID)}
    server = spans["POST /v1/models/{model}/predict"]
    enqueue, execute, model = (spans[n] for n in
                               ("inferq.enqueue", "inferq.execute", "inferq.model.predict"))
    assert server["parent"] == CLIENT_SPAN and server["service"] == "inferq-api"
    assert enqueue["parent"] == server["span_id"] and enqueue["service"] == "inferq-api"
    assert execute["parent"] == enqueue["span_id"] and execute["service"] == "inferq-worker"
    assert model["parent"] == execute["span_id"]
    assert len(receiver.trace(TRACE_ID)) == 4, receiver.trace(TRACE_ID)
    # SpanKind in OTLP: 2 server, 4 producer, 5 consumer.
    assert (server["kind"], enqueue["kind"], execute["kind"]) == (2, 4, 5)


def test_a_task_run_by_the_workers_main_process_has_its_whole_trace(
        traced_api_url: str, receiver: OtlpReceiver) -> None:
    trace_id = "c" * 32
    for _ in range(2):  # Times iris's lone call: cheap, so the next runs inline.
        predict_in_trace(traced_api_url, "d" * 32, sampled=False)
    predict_in_trace(traced_api_url, trace_id, sampled=True)
    spans = {s["name"]: s for s in wait_for_spans(receiver, trace_id)}
    execute, model = spans["inferq.execute"], spans["inferq.model.predict"]
    assert execute["inline"] is True and execute["service"] == "inferq-worker"
    assert execute["parent"] == spans["inferq.enqueue"]["span_id"]
    assert model["parent"] == execute["span_id"]


def test_probes_are_not_traced(traced_api_url: str, receiver: OtlpReceiver) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "traceparent" not in httpx.get(traced_api_url + path).headers
    time.sleep(0.5)
    assert not [s for s in receiver.spans if s["name"].startswith("GET /")]


def test_new_trace_without_client_context(traced_api_url: str) -> None:
    task = httpx.post(f"{traced_api_url}/v1/models/iris/predict",
                      json={"instances": [[5.1, 3.5, 1.4, 0.2]]}).json()
    assert len(task["trace_id"]) == 32 and task["trace_id"] != TRACE_ID


def test_every_task_of_a_batch_has_its_whole_trace(traced_api_url: str,
                                                   receiver: OtlpReceiver) -> None:
    import asyncio

    trace_ids = [f"{i:032x}" for i in range(1, 41)]

    async def burst() -> None:
        async with httpx.AsyncClient(base_url=traced_api_url, timeout=30) as http:
            await asyncio.gather(*(
                http.post("/v1/models/breast-cancer/predict?wait=20",
                          json={"instances": [[14.0] * 30]},
                          headers={"traceparent": f"00-{t}-{CLIENT_SPAN}-01"})
                for t in trace_ids
            ))

    asyncio.run(burst())
    deadline = time.monotonic() + 15
    while not all(len(receiver.trace(t)) >= 4 for t in trace_ids):
        assert time.monotonic() < deadline, [len(receiver.trace(t)) for t in trace_ids]
        time.sleep(0.1)
    model_spans = []
    for trace_id in trace_ids:
        spans = {s["name"]: s for s in receiver.trace(trace_id)}
        assert spans["inferq.model.predict"]["parent"] == spans["inferq.execute"]["span_id"]
        model_spans.append(spans["inferq.model.predict"])
    # Batched: some model calls served several tasks, and each of those traces shows it.
    assert max(s["batch_tasks"] for s in model_spans) > 1


def test_an_unsampled_request_exports_nothing_but_keeps_its_trace_id(
    traced_api_url: str, receiver: OtlpReceiver
) -> None:
    unsampled, sampled = "5" * 32, "6" * 32
    predict_in_trace(traced_api_url, unsampled, sampled=False)
    # A sampled request sent after it is exported in full; the unsampled one never is.
    predict_in_trace(traced_api_url, sampled, sampled=True)
    wait_for_spans(receiver, sampled)
    time.sleep(0.3)
    assert receiver.trace(unsampled) == []


def test_latency_of_a_sampled_request_carries_its_trace_id_as_exemplar(
    traced_api_url: str, receiver: OtlpReceiver
) -> None:
    trace_id, unsampled = "7" * 32, "8" * 32
    predict_in_trace(traced_api_url, trace_id, sampled=True)
    predict_in_trace(traced_api_url, unsampled, sampled=False)
    openmetrics = httpx.get(
        f"{traced_api_url}/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
    )
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    exemplars = [line for line in openmetrics.text.splitlines()
                 if line.startswith("inferq_http_request_seconds_bucket") and " # {" in line]
    assert any(f'trace_id="{trace_id}"' in line and "/predict" in line for line in exemplars)
    assert not any(unsampled in line for line in exemplars)
    # Scrapers that do not ask for OpenMetrics get the classic text format, no exemplars.
    classic = httpx.get(f"{traced_api_url}/metrics")
    assert classic.headers["content-type"].startswith("text/plain")
    assert "inferq_http_request_seconds_bucket" in classic.text and " # {" not in classic.text


def test_new_traces_are_sampled_by_the_configured_ratio(
    redis_server, model_store: Path, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """At half the traces, exactly those whose trace id passes the ratio test are
    exported, each of them whole, and every task keeps its trace id either way."""
    receiver = OtlpReceiver()
    # A database of its own: the module's traced worker must not take these tasks.
    env = service_env(redis_server.url.rsplit("/", 1)[0] + "/3", model_store,
                      OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="100",
                      OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="0.5")
    port = free_port()
    api = start_api(env, port, tmp_path)
    worker = start_worker(env, tmp_path)
    try:
        trace_ids = []
        for _ in range(30):
            response = httpx.post(f"http://127.0.0.1:{port}/v1/models/iris/predict?wait=10",
                                  json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, timeout=20)
            assert response.status_code == 200
            trace_id = response.json()["trace_id"]
            sampled = response.headers["traceparent"].endswith("-03")
            assert sampled == (int(trace_id, 16) & (2**64 - 1) < 2**63)
            trace_ids.append((trace_id, sampled))
        kept = [t for t, sampled in trace_ids if sampled]
        dropped = [t for t, sampled in trace_ids if not sampled]
        assert kept and dropped
        for trace_id in kept:
            wait_for_spans(receiver, trace_id)
        time.sleep(0.3)
        assert all(receiver.trace(t) == [] for t in dropped)
        assert {s["trace_id"] for s in receiver.spans} == set(kept)
    finally:
        worker.stop()
        api.stop()
        receiver.server.shutdown()
