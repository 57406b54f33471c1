"""Every dashboard panel and alert rule, asked of a real Prometheus scraping real inferq.

Redis, the API, an inference worker, a batch worker, a training worker and Prometheus
(Debian's package) run here; load goes through the API, rejected inputs, a batch job, a
training job and a Redis outage included;
then each expression must parse, and each over inferq's metrics must return data.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from job_client import IRIS_FEATURES, iris_csv, iris_rows, submit_job, upload, wait_job
from otlp_receiver import OtlpReceiver
from processes import ServiceProcess, service_env, start_api, start_worker

from services.cli.redis_server import free_port

RULES = Path(__file__).parents[2] / "charts" / "inferq" / "files" / "prometheus" / "rules.yaml"
IRIS = [5.1, 3.5, 1.4, 0.2]
#: A request traced by its client: its latency's exemplar must lead back to this trace.
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


class Prometheus:
    def __init__(self, binary: str, targets: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in targets.items()
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}", "--enable-feature=exemplar-storage",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert self.process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)

    def query(self, expr: str) -> dict:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        return dict(response.json())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)
        self.log.close()


def drive_load(api: str, redis_server) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=api, timeout=30) as client:
        for model, row in (("iris", IRIS), ("breast-cancer", [14.0] * 30),
                           ("diabetes", [0.0] * 10)):
            for _ in range(5):
                client.post(f"/v1/models/{model}/predict?wait=10", json={"instances": [row]})
        client.post("/v1/models/sleepy/predict?wait=10", json={"instances": [[0, -1]]})
        client.post("/v1/models/iris/predict", content=b"{")
        client.post("/v1/models/iris/predict", json={"instances": [[1, 2]]})
        client.post("/v1/models/nope/predict", json={"instances": [IRIS]})
        queued = client.post("/v1/models/sleepy/predict", json={"instances": [[2, 0]]}).json()
        later = client.post("/v1/models/iris/predict", json={"instances": [IRIS]}).json()
        client.delete(f"/v1/tasks/{later['task_id']}")
        client.get(f"/v1/tasks/{queued['task_id']}", params={"wait": 10})
        run_batch_job(client)
        run_training_job(client)
        # A short Redis outage: the API answers 503 and reports Redis down.
        redis_server.process.terminate()
        redis_server.process.wait()
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            client.post("/v1/models/iris/predict", json={"instances": [IRIS]})
            if "inferq_redis_up 0.0" in client.get("/metrics").text:
                break
            time.sleep(0.3)
        time.sleep(2)
        redis_server.restart()
        for _ in range(5):
            client.post("/v1/models/iris/predict?wait=10", json={"instances": [IRIS]})
        client.post("/v1/models/iris/predict?wait=10", json={"instances": [IRIS]},
                    headers={"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"})


def run_batch_job(client: httpx.Client) -> None:
    """A job of three chunks, one row of it rejected: rows scored and rejected, chunk run
    times, a job finished."""
    lines = iris_csv(iris_rows(250)).decode().splitlines()
    lines[5] = lines[5].replace(lines[5].split(",")[2], "x", 1)
    dataset = upload(client, ("\n".join(lines) + "\n").encode(), "csv")
    job = submit_job(client, dataset, max_failed_rows=1)
    assert wait_job(client, job["job_id"])["status"] == "succeeded"


def run_training_job(client: httpx.Client) -> None:
    """A cross-validated job of two folds and its final fit, registering a version: training
    job gauges, its duration, and the latest metrics of the model."""
    dataset = upload(client, iris_csv(iris_rows(120)), "csv")
    response = client.post("/v1/models/live-trained/training-jobs", json={
        "dataset_id": dataset, "target_column": "region", "feature_columns": IRIS_FEATURES,
        "estimator": "LogisticRegression", "validation": {"cv": 2}})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + 90
    while (job := client.get(f"/v1/training-jobs/{job_id}", params={"wait": 10}).json())[
            "status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
    assert job["status"] == "succeeded", job


@pytest.fixture(scope="module")
def prometheus(redis_server, model_store: Path,  # type: ignore[no-untyped-def]
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    from conftest import require_tool

    binary = require_tool("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    # A store of its own: the version the training job registers reaches no other module.
    store = tmp_path_factory.mktemp("prometheus-models")
    for name in os.listdir(model_store):
        os.symlink(model_store / name, store / name)
    receiver = OtlpReceiver()
    # Traced as in production (1 % of new traces) so latencies carry exemplars.
    env = service_env(redis_server.url, store,
                      OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                      OTEL_TRACES_SAMPLER="parentbased_traceidratio",
                      OTEL_TRACES_SAMPLER_ARG="0.01", INFERQ_BATCH_CHUNK_ROWS="100")
    api_port, worker_port, batch_port, training_port = (free_port() for _ in range(4))
    api: ServiceProcess = start_api(env, api_port, workdir)
    worker = start_worker(env, workdir, concurrency=2, metrics_port=worker_port)
    batch = start_worker(env, workdir, pool="batch", metrics_port=batch_port)
    training = start_worker(env, workdir, pool="training", metrics_port=training_port)
    server = Prometheus(binary, {"inferq-api": f"127.0.0.1:{api_port}",
                                 "inferq-worker": f"127.0.0.1:{worker_port}",
                                 "inferq-worker-batch": f"127.0.0.1:{batch_port}",
                                 "inferq-worker-training": f"127.0.0.1:{training_port}"},
                        workdir)
    try:
        drive_load(f"http://127.0.0.1:{api_port}", redis_server)
        # Enough scrapes after the load for rate() over every series.
        deadline = time.monotonic() + 30
        while not server.query('sum(rate(inferq_task_e2e_seconds_count[1m])) > 0')["data"][
                "result"]:
            assert time.monotonic() < deadline, "Prometheus never saw a finished task"
            time.sleep(0.5)
        time.sleep(3)
        yield server
    finally:
        server.stop()
        training.stop()
        batch.stop()
        worker.stop()
        api.stop()
        receiver.stop()


def _needs_data(query) -> bool:  # type: ignore[no-untyped-def]
    # kube-state-metrics does not run here; everything else is inferq's own.
    return not any(name.startswith("kube_") for name in query.metric_names())


def test_every_panel_returns_data(prometheus: Prometheus, dashboard_queries) -> None:  # type: ignore[no-untyped-def]
    empty, broken = [], []
    for query in dashboard_queries:
        reply = prometheus.query(query.expr)
        if reply["status"] != "success":
            broken.append(f"{query.id}: {reply.get('error')}")
        elif _needs_data(query) and not reply["data"]["result"]:
            empty.append(query.id)
    assert not broken, broken
    assert not empty, f"no data for: {empty}"


def test_every_rule_parses_and_its_series_exist(prometheus: Prometheus, rule_queries) -> None:  # type: ignore[no-untyped-def]
    broken, missing = [], []
    for query in rule_queries:
        reply = prometheus.query(query.expr)
        if reply["status"] != "success":
            broken.append(f"{query.id}: {reply.get('error')}")
            continue
        for name in query.metric_names():
            if name.startswith("kube_") or name == "up":
                continue
            if not prometheus.query(f"count({name})")["data"]["result"]:
                missing.append(f"{query.id}: {name}")
    assert not broken, broken
    assert not missing, f"series without data: {missing}"


def test_rules_loaded_without_errors(prometheus: Prometheus) -> None:
    groups = httpx.get(f"{prometheus.url}/api/v1/rules").json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert rules and all(rule["health"] in ("ok", "unknown") for rule in rules), [
        (r["name"], r.get("lastError")) for r in rules if r["health"] == "err"]


def test_redis_outage_was_seen(prometheus: Prometheus) -> None:
    seen = prometheus.query("min_over_time(inferq_redis_up[5m])")["data"]["result"]
    assert seen and float(seen[0]["value"][1]) == 0
    # The 503 series starts at its first answer, which increase() would not count.
    errors = prometheus.query('max(max_over_time(inferq_http_requests_total{status="503"}[5m]))')
    assert float(errors["data"]["result"][0]["value"][1]) > 0




def test_latency_exemplars_lead_to_traces(prometheus: Prometheus) -> None:
    """Prometheus stores the API latency's exemplars: Grafana's link from panel to trace."""
    now = time.time()
    response = httpx.get(
        f"{prometheus.url}/api/v1/query_exemplars",
        params={"query": "inferq_http_request_seconds_bucket", "start": now - 600, "end": now},
        timeout=10,
    ).json()
    assert response["status"] == "success", response
    trace_ids = {exemplar["labels"].get("trace_id")
                 for series in response["data"] for exemplar in series["exemplars"]}
    assert TRACE_ID in trace_ids, trace_ids
