"""A worker pool's metrics: every prefork process on one endpoint."""

from __future__ import annotations

from pathlib import Path

import httpx
from metrics_text import sample
from processes import start_worker

from services.cli.redis_server import free_port


def test_worker_serves_all_processes_metrics(
    client: httpx.Client, stack_env: dict[str, str], logs: Path
) -> None:
    port = free_port()
    worker = start_worker(stack_env, logs, concurrency=2, metrics_port=port)
    try:
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/healthz").status_code == 200
        ids = [client.post("/v1/models/sleepy/predict", json={"instances": [[0.2, i]]}).json()
               ["task_id"] for i in range(6)]
        for task_id in ids:
            assert client.get(f"/v1/tasks/{task_id}", params={"wait": 20}).json()["status"] == (
                "succeeded")
        text = httpx.get(f"{url}/metrics").text
        finished = sample(text, "inferq_tasks_finished_total", model="sleepy",
                          queue="inference", status="succeeded")
        assert finished == 6
        assert sample(text, "inferq_worker_processes", pool="inference") == 2
        assert sample(text, "inferq_task_e2e_seconds_count", model="sleepy",
                      queue="inference", kind="inference") == 6
        assert sample(text, "inferq_inference_batch_rows_sum", model="sleepy") == 6
        assert sample(text, "inferq_task_run_seconds_count", model="sleepy") == 6
    finally:
        worker.stop()


def test_api_exports_backlog_of_every_queue(client: httpx.Client) -> None:
    lines = client.get("/metrics").text.splitlines()
    text = "\n".join(lines)
    for queue in ("inference", "batch", "training"):
        for gauge in ("inferq_queue_waiting", "inferq_queue_inflight"):
            # Alerts key their thresholds on the kind of the pool consuming the queue.
            assert any(line.startswith(gauge + "{") and f'queue="{queue}"' in line
                       and f'kind="{queue}"' in line for line in lines), (gauge, queue)
    assert sample(text, "inferq_redis_up") == 1
