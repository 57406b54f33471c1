"""Every row of the REST API contract, against a real API, worker and Redis."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from processes import ServiceProcess, service_env

from services.cli.redis_server import free_port
from services.common import keys

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
IRIS_FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]

pytestmark = pytest.mark.usefixtures("worker")


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"] and isinstance(error["details"], dict)
    return error


def test_healthz(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz(client: httpx.Client) -> None:
    assert client.get("/readyz").status_code == 200


def test_metrics_exposition(client: httpx.Client) -> None:
    client.get("/v1/models/iris")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert 'inferq_http_requests_total{method="GET",route="/v1/models/{model}",status="200"}' in (
        response.text
    )


def test_list_models(client: httpx.Client) -> None:
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert {"iris", "breast-cancer", "diabetes"} <= set(models)
    assert models["iris"]["versions"] == [1] and models["iris"]["task"] == "classification"
    assert models["diabetes"]["task"] == "regression"


def test_model_metadata(client: httpx.Client) -> None:
    meta = client.get("/v1/models/iris").json()
    assert meta["task"] == "classification" and meta["version"] == 1
    assert [f["name"] for f in meta["features"]] == IRIS_FEATURES
    assert all(f["dtype"] == "float64" for f in meta["features"])
    assert meta["classes"] == ["setosa", "versicolor", "virginica"]
    assert meta["metrics"]["accuracy"] > 0.9
    assert len(meta["sha256"]) == 64 and meta["created_at"]
    assert client.get("/v1/models/iris", params={"version": 1}).json() == meta


def test_model_metadata_errors(client: httpx.Client) -> None:
    assert_error(client.get("/v1/models/nope"), 404, "model_not_found")
    error = assert_error(client.get("/v1/models/iris?version=7"), 404, "version_not_found")
    assert error["details"]["versions"] == [1]
    assert_error(client.get("/v1/models/iris?version=x"), 400, "invalid_parameter")


def test_predict_without_wait_returns_202_and_a_task(client: httpx.Client) -> None:
    response = client.post("/v1/models/iris/predict", json={"instances": [IRIS_ROW]})
    assert response.status_code == 202
    task = response.json()
    assert task["status"] in ("queued", "running", "succeeded")
    assert response.headers["location"] == f"/v1/tasks/{task['task_id']}"
    assert task["model"] == "iris" and task["version"] == 1
    assert task["submitted_at"].endswith("Z")
    done = client.get(f"/v1/tasks/{task['task_id']}", params={"wait": 20}).json()
    assert done["status"] == "succeeded"
    assert done["result"]["predictions"] == ["setosa"]
    assert done["submitted_at"] <= done["started_at"] <= done["finished_at"]


def test_predict_with_wait_returns_200_when_fast(client: httpx.Client) -> None:
    response = client.post(
        "/v1/models/iris/predict?wait=20",
        json={"instances": [IRIS_ROW, [6.7, 3.0, 5.2, 2.3]], "return_probabilities": True},
    )
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["predictions"] == ["setosa", "virginica"]
    assert len(result["probabilities"]) == 2 and abs(sum(result["probabilities"][0]) - 1) < 1e-4


def test_predict_with_wait_returns_202_when_slow(client: httpx.Client) -> None:
    started = time.monotonic()
    response = client.post("/v1/models/sleepy/predict?wait=0.5", json={"instances": [[2, 1]]})
    assert response.status_code == 202
    assert 0.4 < time.monotonic() - started < 1.9
    assert response.json()["status"] in ("queued", "running")
    task_id = response.json()["task_id"]
    done = client.get(f"/v1/tasks/{task_id}", params={"wait": 20}).json()
    assert done["status"] == "succeeded" and done["result"]["predictions"] == [3.0]


def test_predict_named_features_and_version(client: httpx.Client) -> None:
    row = dict(zip(IRIS_FEATURES, IRIS_ROW, strict=True))
    response = client.post(
        "/v1/models/iris/predict?wait=20", json={"instances": [row], "version": 1}
    )
    assert response.status_code == 200
    assert response.json()["result"]["predictions"] == ["setosa"]


def test_predict_version_in_the_query_is_honoured(client: httpx.Client) -> None:
    body = {"instances": [IRIS_ROW]}
    response = client.post("/v1/models/iris/predict?version=1&wait=20", json=body)
    assert response.status_code == 200 and response.json()["version"] == 1
    error = assert_error(client.post("/v1/models/iris/predict?version=9", json=body), 404,
                         "version_not_found")
    assert error["details"] == {"model": "iris", "version": 9, "versions": [1]}
    error = assert_error(
        client.post("/v1/models/iris/predict?version=2", json={**body, "version": 1}), 400,
        "invalid_parameter")
    assert "disagree" in error["message"]
    assert error["details"] == {"parameter": "version", "query": 2, "body": 1}
    for bad in ("0", "x", "1.5", "-1"):
        error = assert_error(
            client.post("/v1/models/iris/predict", params={"version": bad}, json=body), 400,
            "invalid_parameter")
        assert "not a positive integer" in error["message"]


def test_regression_model(client: httpx.Client) -> None:
    response = client.post("/v1/models/diabetes/predict?wait=20", json={"instances": [[0.0] * 10]})
    assert response.status_code == 200
    assert isinstance(response.json()["result"]["predictions"][0], float)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "malformed_body"),
        (b"[1, 2]", "malformed_body"),
        (b'{"rows": [[1, 2, 3, 4]]}', "malformed_body"),
        (b'{"instances": []}', "malformed_body"),
        (b'{"instances": "x"}', "malformed_body"),
        (b'{"instances": [[1, 2, 3, 4]], "version": "one"}', "malformed_body"),
        (b'{"instances": [[1, 2, 3, 4]], "return_probabilities": "yes"}', "malformed_body"),
    ],
)
def test_predict_malformed_body_is_400(client: httpx.Client, body: bytes, code: str) -> None:
    assert_error(client.post("/v1/models/iris/predict", content=body), 400, code)


@pytest.mark.parametrize("wait", ["-1", "31", "soon", "nan", "inf"])
def test_predict_bad_wait_is_400(client: httpx.Client, wait: str) -> None:
    response = client.post(
        "/v1/models/iris/predict", params={"wait": wait}, json={"instances": [IRIS_ROW]}
    )
    assert "wait" in assert_error(response, 400, "invalid_parameter")["message"]


def test_predict_unknown_model_or_version_is_404(client: httpx.Client) -> None:
    body = {"instances": [IRIS_ROW]}
    assert_error(client.post("/v1/models/nope/predict", json=body), 404, "model_not_found")
    assert_error(
        client.post("/v1/models/iris/predict", json={**body, "version": 9}),
        404,
        "version_not_found",
    )


def test_predict_too_many_rows_is_413(client: httpx.Client) -> None:
    error = assert_error(
        client.post("/v1/models/iris/predict", json={"instances": [IRIS_ROW] * 10_001}),
        413,
        "too_many_rows",
    )
    assert "10000" in error["message"]
    response = client.post("/v1/models/iris/predict", json={"instances": [IRIS_ROW] * 10_000})
    assert response.status_code == 202


def test_predict_too_many_bytes_is_413(client: httpx.Client) -> None:
    body = b'{"instances": [[1, 2, 3, 4]]}' + b" " * (10 * 1024 * 1024)
    assert_error(client.post("/v1/models/iris/predict", content=body), 413, "payload_too_large")


@pytest.mark.parametrize(
    ("instances", "fragment"),
    [
        ([IRIS_ROW, [1, 2, 3]], "row 1 has 3 values"),
        ([IRIS_ROW, [1, 2, "x", 4]], "row 1, column 2 ('petal_length_cm')"),
        ([[1, 2, 3, None]], "row 0, column 3 ('petal_width_cm') is null"),
        ([[1, 2, 3, True]], "is a boolean"),
        ([{"sepal_length_cm": 1}], "row 0 lacks feature 'sepal_width_cm'"),
        (
            [{**dict(zip(IRIS_FEATURES, IRIS_ROW, strict=True)), "colour": 1}],
            "row 0 has feature 'colour'",
        ),
        (["abc"], "row 0 is a string"),
    ],
)
def test_predict_rows_that_do_not_fit_are_422(
    client: httpx.Client, instances: list, fragment: str
) -> None:
    response = client.post("/v1/models/iris/predict", json={"instances": instances})
    assert fragment in assert_error(response, 422, "invalid_rows")["message"]


@pytest.mark.parametrize("model", ["iris", "breast-cancer", "diabetes"])
def test_values_no_model_can_hold_are_422(client: httpx.Client, model: str) -> None:
    width = len(client.get(f"/v1/models/{model}").json()["features"])
    row = [1.0] * width
    row[width - 1] = 1e308
    response = client.post(f"/v1/models/{model}/predict", json={"instances": [[1.0] * width, row]})
    message = assert_error(response, 422, "invalid_rows")["message"]
    assert f"row 1, column {width - 1}" in message
    assert "-3.402823e+38 to 3.402823e+38" in message


def test_the_largest_allowed_values_are_predicted(client: httpx.Client) -> None:
    for model in ("iris", "breast-cancer", "diabetes"):
        width = len(client.get(f"/v1/models/{model}").json()["features"])
        row = [-3.4028234663852886e38, 3.4028234663852886e38] * (width // 2)
        response = client.post(f"/v1/models/{model}/predict?wait=20", json={"instances": [row]})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "succeeded", response.text


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_400(client: httpx.Client, literal: str) -> None:
    body = f'{{"instances": [[5.1, 3.5, 1.4, {literal}]]}}'.encode()
    message = assert_error(client.post("/v1/models/iris/predict", content=body), 400,
                           "malformed_body")["message"]
    assert f"{literal} at line 1 column " in message
    assert "NaN and Infinity are not allowed" in message and "finite number" in message


def test_rejections_are_counted(client: httpx.Client) -> None:
    client.post("/v1/models/iris/predict", content=b"{")
    metrics = client.get("/metrics").text
    assert 'inferq_input_rejected_total{reason="malformed_body"}' in metrics


def test_get_task_unknown_is_404(client: httpx.Client) -> None:
    assert_error(
        client.get("/v1/tasks/00000000-0000-0000-0000-000000000000"), 404, "task_not_found"
    )
    assert_error(client.get("/v1/tasks/not-even-a-uuid"), 404, "task_not_found")


def test_records_live_for_their_ttl(client: httpx.Client, redis_server) -> None:  # type: ignore[no-untyped-def]
    task = client.post("/v1/models/iris/predict?wait=10", json={"instances": [IRIS_ROW]}).json()
    assert task["status"] == "succeeded"
    # Kept for the default 24 h from the moment it finished.
    assert 86_000 < redis_server.client().ttl(keys.task_key(task["task_id"])) <= 86_400


def test_an_expired_task_is_404(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    from processes import start_api

    # A database no worker consumes: the record expires while its task is queued.
    redis_url = stack_env["INFERQ_REDIS_URL"].rsplit("/", 1)[0] + "/4"
    api = start_api(dict(stack_env, INFERQ_REDIS_URL=redis_url, INFERQ_TASK_TTL_SECONDS="1"),
                    free_port(), tmp_path)
    url = f"http://127.0.0.1:{api.args[api.args.index('--port') + 1]}"
    try:
        task = httpx.post(f"{url}/v1/models/sleepy/predict",
                          json={"instances": [[0.1, 1]]}).json()
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}/v1/tasks/{task['task_id']}").status_code == 200:
            assert time.monotonic() < deadline, "the record never expired"
            time.sleep(0.2)
        assert_error(httpx.get(f"{url}/v1/tasks/{task['task_id']}"), 404, "task_not_found")
        assert_error(httpx.delete(f"{url}/v1/tasks/{task['task_id']}"), 404, "task_not_found")
    finally:
        api.stop()


def test_get_task_wait_wakes_on_completion(client: httpx.Client) -> None:
    task = client.post("/v1/models/sleepy/predict", json={"instances": [[0.5, 1]]}).json()
    started = time.monotonic()
    done = client.get(f"/v1/tasks/{task['task_id']}", params={"wait": 20}).json()
    assert done["status"] == "succeeded"
    # Woken by the worker's notification, not by the end of the 20 s wait.
    assert time.monotonic() - started < 5


def test_get_task_wait_times_out_with_current_state(client: httpx.Client) -> None:
    task = client.post("/v1/models/sleepy/predict", json={"instances": [[1.5, 1]]}).json()
    started = time.monotonic()
    seen = client.get(f"/v1/tasks/{task['task_id']}", params={"wait": 0.3}).json()
    assert seen["status"] in ("queued", "running")
    assert 0.25 < time.monotonic() - started < 1.4
    client.get(f"/v1/tasks/{task['task_id']}", params={"wait": 20})


def test_cancel_errors(client: httpx.Client) -> None:
    assert_error(
        client.delete("/v1/tasks/00000000-0000-0000-0000-000000000000"), 404, "task_not_found"
    )
    done = client.post("/v1/models/iris/predict?wait=20", json={"instances": [IRIS_ROW]}).json()
    error = assert_error(client.delete(f"/v1/tasks/{done['task_id']}"), 409, "task_not_cancellable")
    assert error["details"]["status"] == "succeeded"
    running = client.post("/v1/models/sleepy/predict", json={"instances": [[2, 0]]}).json()
    deadline = time.monotonic() + 10
    while client.get(f"/v1/tasks/{running['task_id']}").json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert_error(client.delete(f"/v1/tasks/{running['task_id']}"), 409, "task_not_cancellable")


def test_unknown_route_and_method(client: httpx.Client) -> None:
    assert_error(client.get("/v2/anything"), 404, "not_found")
    response = client.put("/v1/models")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"
    # The paths of the hot routes, with other methods or an empty name.
    response = client.put("/v1/models/iris/predict")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"
    # Two routes share this path: Allow names the methods of both.
    response = client.put("/v1/tasks/abc")
    assert assert_error(response, 405, "method_not_allowed")["details"]["allowed"] == [
        "DELETE", "GET"]
    assert response.headers["allow"] == "DELETE, GET"
    assert_error(client.post("/v1/models//predict", json={"instances": [IRIS_ROW]}), 404,
                 "not_found")


def test_hot_routes_are_counted_under_their_templates(client: httpx.Client) -> None:
    task = client.post("/v1/models/iris/predict", json={"instances": [IRIS_ROW]}).json()
    assert client.get(f"/v1/tasks/{task['task_id']}").status_code == 200
    metrics = client.get("/metrics").text
    assert ('inferq_http_requests_total{method="POST",route="/v1/models/{model}/predict",'
            'status="202"}') in metrics
    assert 'inferq_http_requests_total{method="GET",route="/v1/tasks/{task_id}",status="200"}' \
        in metrics


def test_redis_unreachable_is_503(model_store: Path, tmp_path: Path) -> None:
    env = service_env(
        f"redis://127.0.0.1:{free_port()}/0", model_store, INFERQ_REDIS_SOCKET_TIMEOUT="1"
    )
    port = free_port()
    api = ServiceProcess(["api", "--port", str(port)], env, tmp_path / "api.log")
    try:
        api.wait_http(f"http://127.0.0.1:{port}/healthz")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 503
            response = client.post("/v1/models/iris/predict", json={"instances": [IRIS_ROW]})
            assert_error(response, 503, "redis_unavailable")
            assert response.headers["retry-after"] == "1"
            assert_error(client.get("/v1/tasks/abc"), 503, "redis_unavailable")
            # Input errors are still answered as such without Redis.
            assert_error(
                client.post("/v1/models/iris/predict", content=b"{"), 400, "malformed_body"
            )
    finally:
        api.stop()


def test_a_burst_larger_than_the_redis_pool_waits_instead_of_failing(api_url: str) -> None:
    import asyncio

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=api_url, timeout=60, limits=limits) as http:
            replies = await asyncio.gather(*(
                http.post("/v1/models/iris/predict?wait=20", json={"instances": [IRIS_ROW]})
                for _ in range(150)
            ))
        return [r.status_code for r in replies]

    assert asyncio.run(burst()) == [200] * 150
