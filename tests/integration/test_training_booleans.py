"""Boolean feature columns: a CSV of true/false and a Parquet bool column train (the pipeline
takes them as 0 and 1), and the model predicts from raw booleans, in a predict's rows and
in a batch job's dataset; what is not a boolean is a 422, or a rejected row."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from job_client import run_job, submit_job, upload
from processes import module_env, start_worker
from training_client import submit, wait_training

from services.common.storage import Storage

ROWS = 120


def members(rows: int = ROWS) -> dict[str, list[Any]]:
    """Customers whose churn is their membership: members stay, the others leave."""
    member = [i % 3 != 0 for i in range(rows)]
    return {
        "age": [20 + i % 50 for i in range(rows)],
        "member": member,
        "plan": [("basic", "pro")[i % 2] for i in range(rows)],
        "churned": ["no" if m else "yes" for m in member],
    }


def members_csv() -> bytes:
    data = members()
    lines = ["age,member,plan,churned"] + [
        f"{a},{'true' if m else 'false'},{p},{c}"
        for a, m, p, c in zip(*data.values(), strict=True)]
    return ("\n".join(lines) + "\n").encode()


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.fixture(scope="module")
def stack_env(redis_server, model_store, storage: Storage,  # type: ignore[no-untyped-def]
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return module_env(redis_server, model_store, storage.url,
                      tmp_path_factory.mktemp("boolean-models"))


@pytest.fixture(scope="module")
def trained(stack_env: dict[str, str], logs: Path, api_url: str) -> dict[str, str]:
    """Three models, trained while the module starts: from the CSV with numbers and
    booleans, and with a string too; from the Parquet file with numbers and booleans.
    Their names, and the datasets' ids."""
    trainer = start_worker(stack_env, logs, pool="training", concurrency=1)
    try:
        with httpx.Client(base_url=api_url, timeout=40) as client:
            csv_id = upload(client, members_csv(), "csv", name="members")
            parquet_id = upload(client, parquet(pa.table(members())), "parquet",
                                name="members")
            common = {"target_column": "churned", "estimator": "DecisionTreeClassifier"}
            jobs = [
                submit(client, "members", dataset_id=csv_id,
                       feature_columns=["age", "member"], **common),
                submit(client, "members-plan", dataset_id=csv_id,
                       feature_columns=["age", "member", "plan"], **common),
                submit(client, "members-parquet", dataset_id=parquet_id,
                       feature_columns=["member", "age"], **common),
            ]
            for job in jobs:
                done = wait_training(client, job["job_id"])
                assert done["status"] == "succeeded", done
                assert done["metrics"]["accuracy"] == 1.0, done["metrics"]
    finally:
        trainer.stop()
    return {"csv": csv_id, "parquet": parquet_id}


def predict(client: httpx.Client, model: str, rows: list[Any]) -> httpx.Response:
    return client.post(f"/v1/models/{model}/predict", params={"wait": 20},
                       json={"instances": rows})


def test_the_dataset_says_bool_and_so_does_the_model(client: httpx.Client,
                                                     trained: dict[str, str]) -> None:
    for dataset_id in trained.values():
        columns = client.get(f"/v1/datasets/{dataset_id}").json()["columns"]
        assert {"name": "member", "dtype": "bool"} in columns
    for model, features in (("members", ["age", "member"]),
                            ("members-plan", ["age", "member", "plan"]),
                            ("members-parquet", ["member", "age"])):
        metadata = client.get(f"/v1/models/{model}").json()
        assert [f["name"] for f in metadata["features"]] == features
        assert {"name": "member", "dtype": "bool"} in metadata["features"]


@pytest.mark.parametrize("model", ["members", "members-plan", "members-parquet"])
def test_predictions_take_raw_booleans_in_objects_and_lists(
    client: httpx.Client, worker: Any, trained: dict[str, str], model: str,
) -> None:
    extra = {"plan": "pro"} if model == "members-plan" else {}
    rows: list[Any] = [{"age": 30, "member": True, **extra},
                       {"age": 30, "member": False, **extra},
                       {"age": 61, "member": 1, **extra},
                       {"age": 61, "member": 0, **extra}]
    response = predict(client, model, rows)
    assert response.status_code == 200, response.text
    task = response.json()
    assert task["status"] == "succeeded", task
    assert task["result"]["predictions"] == ["no", "yes", "no", "yes"]
    if model == "members-parquet":  # Rows as lists, in the model's feature order.
        response = predict(client, model, [[True, 30], [False, 30]])
        assert response.json()["result"]["predictions"] == ["no", "yes"]


@pytest.mark.parametrize(("value", "shown"), [
    ("yes", "a string"), (2, "the number 2"), (None, "null"), (0.5, "the number 0.5")])
def test_a_value_that_is_not_a_boolean_is_a_422_naming_row_and_column(
    client: httpx.Client, trained: dict[str, str], value: Any, shown: str,
) -> None:
    response = predict(client, "members", [{"age": 30, "member": True},
                                            {"age": 30, "member": value}])
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_rows"
    assert error["details"] == {"row": 1, "column": "member"}
    assert error["message"] == (f"row 1, column 1 ('member') is {shown}; expected true or "
                                "false")


def test_a_feature_of_another_type_is_refused_naming_it(
    client: httpx.Client, trained: dict[str, str],
) -> None:
    table = pa.table({**members(), "seen": pa.array([0] * ROWS, pa.timestamp("ms"))})
    dataset_id = upload(client, parquet(table), "parquet", name="members-seen")
    response = client.post("/v1/models/members-seen/training-jobs", json={
        "dataset_id": dataset_id, "target_column": "churned",
        "estimator": "DecisionTreeClassifier"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["details"]["field"] == "feature_columns"
    assert "column 'seen' is timestamp[ms]; a feature is a number, a boolean or a string" \
        in error["message"]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_a_batch_job_scores_raw_booleans_and_rejects_what_is_not_one(
    client: httpx.Client, stack_env: dict[str, str], logs: Path, trained: dict[str, str],
    fmt: str,
) -> None:
    cells: list[Any] = [True, False, None, True, False]
    if fmt == "parquet":
        data = parquet(pa.table({"age": [30] * 5, "member": cells}))
    else:
        rows = [{"age": 30, "member": c} for c in cells] + [{"age": 30, "member": "maybe"}]
        cells.append("maybe")
        if fmt == "jsonl":
            data = b"".join(orjson.dumps(r) + b"\n" for r in rows)
        else:
            shown = {True: "true", False: "false", None: "", "maybe": "maybe"}
            data = ("age,member\n" + "".join(f"30,{shown[r['member']]}\n" for r in rows)
                    ).encode()
    dataset_id = upload(client, data, fmt, name="members-to-score")
    job = submit_job(client, dataset_id, model="members", max_failed_rows=2,
                     output_format="jsonl")
    done = run_job(client, job["job_id"], stack_env, logs)
    assert done["status"] == "succeeded", done
    output = [orjson.loads(line) for line in
              client.get(f"/v1/batch-jobs/{job['job_id']}/results").content.splitlines()]
    expected = {i: "no" if c else "yes" for i, c in enumerate(cells) if isinstance(c, bool)}
    assert {r["row"]: r["prediction"] for r in output} == expected
    errors = [orjson.loads(line) for line in
              client.get(f"/v1/batch-jobs/{job['job_id']}/errors").content.splitlines()]
    assert {e["row"]: e["code"] for e in errors} == {
        i: "missing_value" if c is None else "not_a_boolean"
        for i, c in enumerate(cells) if not isinstance(c, bool)}
