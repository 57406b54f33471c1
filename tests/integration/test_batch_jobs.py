"""Batch jobs end to end: a real API, Redis, local storage and a batch worker."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from job_client import (
    CLASSES,
    IRIS_FEATURES,
    in_process,
    iris_csv,
    iris_jsonl,
    iris_rows,
    sleepy_csv,
    submit_job,
    upload,
    wait_drained,
    wait_job,
)
from processes import INFERQ, ServiceProcess, service_env, start_worker

from services.common.storage import Storage

CHUNK_ROWS = 200


@pytest.fixture(scope="module")
def stack_env(redis_server, model_store, storage: Storage) -> dict[str, str]:  # type: ignore[no-untyped-def]
    redis_server.client().flushdb()
    return service_env(
        redis_server.url, model_store,
        INFERQ_STORAGE_URL=storage.url,
        INFERQ_BATCH_CHUNK_ROWS=str(CHUNK_ROWS),
        INFERQ_SOFT_TIME_LIMIT="20", INFERQ_HARD_TIME_LIMIT="25",
        INFERQ_VISIBILITY_TIMEOUT="4",
    )


@pytest.fixture(scope="module")
def batch_worker(stack_env: dict[str, str], logs: Path) -> Iterator[ServiceProcess]:
    process = start_worker(stack_env, logs, pool="batch", concurrency=2)
    yield process
    process.stop()


def test_csv_job_scores_every_row_as_the_model_does_in_process(
    client: httpx.Client, batch_worker: ServiceProcess,
    model_store: Path,
) -> None:
    values = iris_rows(1050)
    dataset = upload(client, iris_csv(values), "csv")
    job = submit_job(client, dataset, id_column="customer", passthrough_columns=["region"],
                     return_probabilities=True)
    assert job["status"] == "queued" and job["version"] == 1
    assert job["progress"] == {"rows_total": 1050, "rows_done": 0, "rows_failed": 0,
                               "chunks_total": 6, "chunks_done": 0}
    done = wait_job(client, job["job_id"])
    assert done["status"] == "succeeded", done
    assert done["progress"] == {"rows_total": 1050, "rows_done": 1050, "rows_failed": 0,
                                "chunks_total": 6, "chunks_done": 6}
    assert done["started_at"] and done["finished_at"]

    response = client.get(f"/v1/batch-jobs/{job['job_id']}/results")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert done["output"] == {"format": "csv", "rows": 1050, "bytes": len(response.content)}
    rows = list(csv.DictReader(io.StringIO(response.text)))
    header = ["row", "customer", "region", "prediction",
              *(f"probability_{c}" for c in CLASSES)]
    assert list(rows[0]) == header
    expected = in_process(model_store, values)
    assert [int(r["row"]) for r in rows] == list(range(1050))
    for i, row in enumerate(rows):
        assert row["customer"] == f"c-{i:05d}"
        assert row["region"] == ("north" if i % 2 else "south")
        assert row["prediction"] == expected["predictions"][i]
        assert [float(row[f"probability_{c}"]) for c in CLASSES] == \
            expected["probabilities"][i]
    assert client.get(f"/v1/batch-jobs/{job['job_id']}/errors").content == b""


def test_jsonl_job_writes_json_lines_in_input_order(
    client: httpx.Client, batch_worker: ServiceProcess,
    model_store: Path,
) -> None:
    values = iris_rows(450, seed=1)
    dataset = upload(client, iris_jsonl(values), "jsonl")
    job = submit_job(client, dataset, id_column="customer")
    done = wait_job(client, job["job_id"])
    assert done["status"] == "succeeded", done
    response = client.get(f"/v1/batch-jobs/{job['job_id']}/results")
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in response.content.splitlines()]
    expected = in_process(model_store, values)["predictions"]
    assert lines == [{"row": i, "customer": f"c-{i:05d}", "prediction": p}
                     for i, p in enumerate(expected)]


BAD_CELLS = {3: ("sepal_width_cm", ""), 250: ("petal_length_cm", "abc"),
             401: ("sepal_length_cm", "inf"), 599: ("petal_width_cm", "1e39")}
BAD_CODES = {3: "missing_value", 250: "not_a_number", 401: "non_finite_value",
             599: "out_of_range"}


def iris_csv_with_bad_cells(values: np.ndarray) -> bytes:
    lines = iris_csv(values).decode().splitlines()
    header = lines[0].split(",")
    for row, (column, cell) in BAD_CELLS.items():
        cells = lines[row + 1].split(",")
        cells[header.index(column)] = cell
        lines[row + 1] = ",".join(cells)
    return ("\n".join(lines) + "\n").encode()


def test_rows_that_do_not_fit_are_rejected_alone_and_listed(
    client: httpx.Client, batch_worker: ServiceProcess,
    model_store: Path,
) -> None:
    values = iris_rows(700, seed=2)
    dataset = upload(client, iris_csv_with_bad_cells(values), "csv")
    job = submit_job(client, dataset, id_column="customer", max_failed_rows=4)
    done = wait_job(client, job["job_id"])
    assert done["status"] == "succeeded", done
    assert done["progress"]["rows_done"] == 700 and done["progress"]["rows_failed"] == 4
    assert done["output"]["rows"] == 696
    rows = list(csv.DictReader(io.StringIO(
        client.get(f"/v1/batch-jobs/{job['job_id']}/results").text)))
    kept = [i for i in range(700) if i not in BAD_CELLS]
    assert [int(r["row"]) for r in rows] == kept
    expected = in_process(model_store, values[kept])["predictions"]
    assert [r["prediction"] for r in rows] == expected

    errors = client.get(f"/v1/batch-jobs/{job['job_id']}/errors")
    assert errors.status_code == 200
    assert errors.headers["content-type"].startswith("application/x-ndjson")
    listed = [orjson.loads(line) for line in errors.content.splitlines()]
    assert [(e["row"], e["id"], e["code"]) for e in listed] == [
        (row, f"c-{row:05d}", BAD_CODES[row]) for row in sorted(BAD_CELLS)]
    for error in listed:
        assert repr(BAD_CELLS[error["row"]][0]) in error["message"]


def test_a_job_with_more_rejected_rows_than_allowed_fails_and_says_where_they_are(
    client: httpx.Client, batch_worker: ServiceProcess,
) -> None:
    dataset = upload(client, iris_csv_with_bad_cells(iris_rows(700, seed=2)), "csv")
    job = submit_job(client, dataset, max_failed_rows=3)
    done = wait_job(client, job["job_id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "too_many_rejected_rows"
    assert done["error"]["message"] == (
        "4 of 700 rows were rejected, more than max_failed_rows (3); "
        f"GET /v1/batch-jobs/{job['job_id']}/errors lists them")
    assert done["output"]["rows"] is None
    results = client.get(f"/v1/batch-jobs/{job['job_id']}/results")
    assert results.status_code == 409 and results.json()["error"]["code"] == "job_not_succeeded"
    listed = client.get(f"/v1/batch-jobs/{job['job_id']}/errors").content.splitlines()
    assert len(listed) == 4 and b'"id"' not in listed[0]


def test_a_row_the_model_refuses_is_rejected_without_failing_its_chunk(
    client: httpx.Client, batch_worker: ServiceProcess,
) -> None:
    # sleepy raises on the whole call when a row has x1 < 0.
    lines = ["x0,x1", *(f"0,{-1 if i in (7, 8, 120) else i}" for i in range(300))]
    dataset = upload(client, ("\n".join(lines) + "\n").encode(), "csv")
    job = submit_job(client, dataset, model="sleepy", max_failed_rows=10, output_format="jsonl")
    done = wait_job(client, job["job_id"])
    assert done["status"] == "succeeded", done
    assert done["progress"]["rows_failed"] == 3
    results = [orjson.loads(line) for line in
               client.get(f"/v1/batch-jobs/{job['job_id']}/results").content.splitlines()]
    assert [r["row"] for r in results] == [i for i in range(300) if i not in (7, 8, 120)]
    assert all(r["prediction"] == r["row"] for r in results)
    listed = [orjson.loads(line) for line in
              client.get(f"/v1/batch-jobs/{job['job_id']}/errors").content.splitlines()]
    assert [e["row"] for e in listed] == [7, 8, 120]
    assert all(e["code"] == "prediction_failed" and "x1 must not be negative" in e["message"]
               for e in listed)


def test_a_job_that_does_not_fit_is_refused_naming_what(
    client: httpx.Client,
) -> None:
    dataset = upload(client, b"sepal_length_cm,petal_width_cm,k\n1,2,3\n",
                          "csv")
    missing = client.post("/v1/models/iris/batch-jobs", json={"dataset_id": dataset})
    assert missing.status_code == 422
    error = missing.json()["error"]
    assert error["code"] == "unfit_columns"
    assert error["details"]["missing_columns"] == ["sepal_width_cm", "petal_length_cm"]
    assert "'sepal_width_cm', 'petal_length_cm'" in error["message"]

    full = upload(client, iris_csv(iris_rows(3)), "csv")
    for body, named in (({"id_column": "nope"}, "'nope'"),
                        ({"passthrough_columns": ["region", "zone"]}, "'zone'"),
                        ({"passthrough_columns": ["prediction"]}, None)):
        response = client.post("/v1/models/iris/batch-jobs",
                               json={"dataset_id": full, **body})
        assert response.status_code == 422, (body, response.text)
        assert named is None or named in response.json()["error"]["message"]

    for model, body, code in (
        ("iris", {"dataset_id": "f00d"}, "dataset_not_found"),
        ("irsi", {"dataset_id": full}, "model_not_found"),
        ("iris", {"dataset_id": full, "version": 9}, "version_not_found"),
    ):
        response = client.post(f"/v1/models/{model}/batch-jobs", json=body)
        assert response.status_code == 404 and response.json()["error"]["code"] == code
    for body in ({}, {"dataset_id": full, "max_failed_rows": -1},
                 {"dataset_id": full, "output_format": "xlsx"},
                 {"dataset_id": full, "colour": "red"}):
        response = client.post("/v1/models/iris/batch-jobs", json=body)
        assert response.status_code == 400, (body, response.text)
    # What `curl -d` sends: JSON declared as a form. The answer says how to send it.
    form = client.post("/v1/models/iris/batch-jobs", content=orjson.dumps({"dataset_id": full}),
                       headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 400, form.text
    assert "Content-Type: application/json" in form.json()["error"]["message"]
    assert client.get("/v1/batch-jobs/nope").status_code == 404
    assert client.get("/v1/batch-jobs/nope/results").status_code == 404
    assert client.get("/v1/batch-jobs/nope/errors").status_code == 404


def test_cancel_stops_a_job_no_chunk_starts_after_it(
    client: httpx.Client, batch_worker: ServiceProcess, redis_server,  # type: ignore[no-untyped-def]
) -> None:
    # 12 chunks of 0.6 s on two processes.
    dataset = upload(client, sleepy_csv(2400, 0.003), "csv")
    job = submit_job(client, dataset, model="sleepy")
    job_id = job["job_id"]
    deadline = time.monotonic() + 30
    while client.get(f"/v1/batch-jobs/{job_id}").json()["progress"]["chunks_done"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with httpx.Client(base_url=str(client.base_url), timeout=30) as other:
        started = time.monotonic()
        cancelled = client.delete(f"/v1/batch-jobs/{job_id}")
        waited = other.get(f"/v1/batch-jobs/{job_id}", params={"wait": 20})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert waited.json()["status"] == "cancelled" and time.monotonic() - started < 5
    at_cancel = cancelled.json()["progress"]["chunks_done"]
    assert 1 <= at_cancel < 12
    # The chunks left are taken and skipped: the queue drains and nothing more is counted.
    wait_drained(redis_server.client())
    final = client.get(f"/v1/batch-jobs/{job_id}").json()
    assert final["status"] == "cancelled"
    assert final["progress"]["chunks_done"] == at_cancel
    again = client.delete(f"/v1/batch-jobs/{job_id}")
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_not_cancellable"
    assert client.get(f"/v1/batch-jobs/{job_id}/results").status_code == 409
    assert client.delete("/v1/batch-jobs/nope").status_code == 404


def test_a_queued_job_cancelled_before_a_worker_takes_it_never_starts(
    client: httpx.Client, batch_worker: ServiceProcess, redis_server,  # type: ignore[no-untyped-def]
) -> None:
    redis = redis_server.client()
    dataset = upload(client, iris_csv(iris_rows(10)), "csv")
    os.killpg(batch_worker.pid, signal.SIGSTOP)  # The worker takes nothing meanwhile.
    try:
        job = submit_job(client, dataset)
        queued = client.get("/v1/batch-jobs", params={"status": "queued", "model": "iris"})
        assert [j["job_id"] for j in queued.json()["jobs"]] == [job["job_id"]]
        assert client.get("/v1/batch-jobs", params={"model": "diabetes"}).json() == {"jobs": []}
        cancelled = client.delete(f"/v1/batch-jobs/{job['job_id']}")
        assert cancelled.status_code == 200 and cancelled.json()["started_at"] is None
    finally:
        os.killpg(batch_worker.pid, signal.SIGCONT)
    assert client.get("/v1/batch-jobs", params={"status": "queued"}).json() == {"jobs": []}
    listed = client.get("/v1/batch-jobs", params={"status": "cancelled"}).json()["jobs"]
    assert job["job_id"] in [j["job_id"] for j in listed]
    wait_drained(redis)
    final = client.get(f"/v1/batch-jobs/{job['job_id']}").json()
    assert final["status"] == "cancelled" and final["started_at"] is None
    assert final["progress"]["chunks_done"] == 0


def test_a_parquet_dataset_gives_one_parquet_file_with_the_columns_typed(
    client: httpx.Client, batch_worker: ServiceProcess,
    model_store: Path,
) -> None:
    values = iris_rows(520, seed=3)
    table = pa.table({
        "customer": pa.array(range(1000, 1520), pa.int64()),
        **{name: values[:, j] for j, name in enumerate(IRIS_FEATURES)},
        "weight": pa.array([i / 4 for i in range(520)], pa.float64()),
    })
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=150)
    dataset = upload(client, sink.getvalue(), "parquet")
    job = submit_job(client, dataset, id_column="customer", passthrough_columns=["weight"],
                     return_probabilities=True)
    done = wait_job(client, job["job_id"])
    assert done["status"] == "succeeded", done
    # Chunks end where row groups start (150 rows each): none is read by two chunks.
    assert done["output"]["format"] == "parquet" and done["progress"]["chunks_total"] == 4
    response = client.get(f"/v1/batch-jobs/{job['job_id']}/results")
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    assert done["output"]["bytes"] == len(response.content)
    output = pq.read_table(io.BytesIO(response.content))
    assert output.schema.names == ["row", "customer", "weight", "prediction",
                                   *(f"probability_{c}" for c in CLASSES)]
    assert output.schema.field("customer").type == pa.int64()
    assert output.schema.field("prediction").type == pa.string()
    expected = in_process(model_store, values)
    assert output["row"].to_pylist() == list(range(520))
    assert output["customer"].to_pylist() == list(range(1000, 1520))
    assert output["weight"].to_pylist() == [i / 4 for i in range(520)]
    assert output["prediction"].to_pylist() == expected["predictions"]
    probabilities = [output[f"probability_{c}"].to_pylist() for c in CLASSES]
    assert [list(p) for p in zip(*probabilities, strict=True)] == expected["probabilities"]


def inferq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INFERQ, *args], capture_output=True, text=True, timeout=120,
                          check=False)


def test_cli_submits_a_file_follows_the_job_and_downloads_its_results(
    api_url: str, batch_worker: ServiceProcess, tmp_path: Path, model_store: Path,
) -> None:
    values = iris_rows(430, seed=4)
    source = tmp_path / "customers.csv"
    source.write_bytes(iris_csv(values))
    submitted = inferq("jobs", "submit", "iris", "--file", str(source), "--id-column",
                       "customer", "--wait", "--url", api_url)
    assert submitted.returncode == 0, submitted.stderr
    job = orjson.loads(submitted.stdout)
    assert job["status"] == "succeeded" and job["progress"]["rows_done"] == 430
    # Not a terminal: one plain line per change of progress, the last one the end.
    lines = submitted.stderr.strip().splitlines()
    assert lines[0].startswith("uploaded ") and lines[-1] == (
        f"job {job['job_id']}: succeeded, 430/430 rows, 3/3 chunks")

    target = tmp_path / "out" / "scored.csv"
    target.parent.mkdir()
    downloaded = inferq("jobs", "results", job["job_id"], "-o", str(target), "--url", api_url)
    assert downloaded.returncode == 0, downloaded.stderr
    rows = list(csv.DictReader(target.open()))
    assert [r["prediction"] for r in rows] == in_process(model_store, values)["predictions"]
    assert [r["customer"] for r in rows] == [f"c-{i:05d}" for i in range(430)]
    assert list(target.parent.iterdir()) == [target]

    listed = inferq("jobs", "list", "--status", "succeeded", "--url", api_url)
    assert job["job_id"] in [j["job_id"] for j in orjson.loads(listed.stdout)["jobs"]]
    refused = inferq("jobs", "cancel", job["job_id"], "--url", api_url)
    assert refused.returncode == 1
    assert orjson.loads(refused.stderr)["error"]["code"] == "job_not_cancellable"
    missing = inferq("jobs", "results", "nope", "-o", str(tmp_path / "x.csv"), "--url", api_url)
    assert missing.returncode == 1 and not (tmp_path / "x.csv").exists()
    assert not (tmp_path / ".x.csv.part").exists()


def test_a_job_whose_dataset_is_deleted_fails_saying_so(
    client: httpx.Client, batch_worker: ServiceProcess,
) -> None:
    dataset = upload(client, iris_csv(iris_rows(10)), "csv")
    os.killpg(batch_worker.pid, signal.SIGSTOP)
    try:
        job = submit_job(client, dataset)
        assert client.delete(f"/v1/datasets/{dataset}").status_code == 204
    finally:
        os.killpg(batch_worker.pid, signal.SIGCONT)
    done = wait_job(client, job["job_id"])
    assert done["status"] == "failed"
    assert done["error"]["type"] == "DatasetGone"
    assert done["error"]["message"] == (
        f"chunk 0 (rows 0 to 9): dataset {dataset} was deleted while the job ran")
