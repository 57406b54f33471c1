"""Versions and aliases served without restarts: an API and workers started once, while
versions are saved and aliases moved by the API, the CLI and other processes."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
import redis
from job_client import submit_job, upload, wait_job
from processes import INFERQ, ServiceProcess, service_env, start_worker
from sklearn.dummy import DummyClassifier

from ml.store import save_model
from services.common import model_events
from services.common.catalog import Lineage, set_alias
from services.common.storage import Storage

pytestmark = pytest.mark.integration

FEATURES = ["x0", "x1"]
ROW = [1.0, 2.0]


def constant(answer: str) -> DummyClassifier:
    """A classifier that answers ``answer`` to every row: which version served is plain."""
    return DummyClassifier(strategy="constant", constant=answer).fit(
        np.zeros((2, 2)), [answer, "other"])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="module")
def stack_env(redis_server, store: Path, storage: Storage) -> dict[str, str]:  # type: ignore[no-untyped-def]
    redis_server.client().flushdb()
    return service_env(redis_server.url, store, INFERQ_STORAGE_URL=storage.url)


@pytest.fixture(scope="module")
def batch_worker(stack_env: dict[str, str], logs: Path) -> Iterator[ServiceProcess]:
    process = start_worker(stack_env, logs, pool="batch")
    yield process
    process.stop()


@pytest.fixture
def model(store: Path, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Makes a model of the test's own, one constant classifier a version."""

    def make(*answers: str) -> str:
        name = request.node.name.replace("_", "-")[:50].lower()
        for answer in answers:
            save_model(store, name, constant(answer), features=FEATURES)
        return name

    return make


def predict(client: httpx.Client, model: str, params: dict[str, Any] | None = None,
            **body: Any) -> dict[str, Any]:
    response = client.post(f"/v1/models/{model}/predict", params={"wait": 20, **(params or {})},
                           json={"instances": [ROW], **body})
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    assert task["status"] == "succeeded", task
    return task


def served(task: dict[str, Any]) -> tuple[int, str]:
    return task["version"], task["result"]["predictions"][0]


def until(check: Callable[[], bool], seconds: float) -> float:
    """How long ``check`` took to hold; fails after ``seconds``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, f"not within {seconds} s"
        time.sleep(0.02)
    return time.monotonic() - started


def inferq(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INFERQ, *args], env=env, capture_output=True, text=True,
                          timeout=60)


def default_version(client: httpx.Client, model: str) -> int:
    """The version that answers a prediction naming none. (The model routes re-read the
    store, so they would not show whether the API heard of a change.)"""
    return served(predict(client, model))[0]


def test_a_moved_alias_is_served_at_once_and_a_pinned_version_stays(
    client: httpx.Client, api: ServiceProcess, worker: ServiceProcess,
    stack_env: dict[str, str], model: Callable[..., str],
) -> None:
    name = model("heads", "tails")
    assert served(predict(client, name)) == (2, "tails")  # The latest, without production.
    moved = client.put(f"/v1/models/{name}/aliases/production", json={"version": 1})
    assert moved.status_code == 200, moved.text
    assert moved.json() == {"model": name, "alias": "production", "version": 1}
    assert served(predict(client, name)) == (1, "heads")

    # Moved by another process: the API hears of it on Redis.
    result = inferq(stack_env, "models", "alias", name, "production", "2")
    assert result.returncode == 0, result.stderr
    took = until(lambda: default_version(client, name) == 2, 1.0)
    assert served(predict(client, name)) == (2, "tails"), f"after {took:.3f} s"
    assert served(predict(client, name, version=1)) == (1, "heads")
    assert served(predict(client, name, {"version": 1})) == (1, "heads")
    assert served(predict(client, name, alias="production")) == (2, "tails")

    # Without production, the latest again.
    assert client.delete(f"/v1/models/{name}/aliases/production").status_code == 204
    assert served(predict(client, name)) == (2, "tails")
    assert client.put(f"/v1/models/{name}/aliases/staging", json={"version": 1}).json() \
        == {"model": name, "alias": "staging", "version": 1}
    assert served(predict(client, name, {"alias": "staging"})) == (1, "heads")
    # Nothing was restarted.
    assert api.process.poll() is None and worker.process.poll() is None


def test_a_version_saved_by_another_process_is_served_within_a_second(
    client: httpx.Client, worker: ServiceProcess, stack_env: dict[str, str], store: Path,
    model: Callable[..., str], tmp_path: Path, redis_server: Any,
) -> None:
    name = model("heads")
    assert served(predict(client, name)) == (1, "heads")
    # Saved here without an announcement: the API does not re-list the store on its own...
    save_model(store, name, constant("tails"), features=FEATURES)
    time.sleep(0.3)
    assert default_version(client, name) == 1
    # The model routes read the store, so they list it at once.
    assert client.get(f"/v1/models/{name}/versions").json()["default_version"] == 2
    # ... but a request pinned to the new version finds it.
    assert served(predict(client, name, version=2)) == (2, "tails")
    model_events.announce(redis.Redis.from_url(redis_server.url), name)
    until(lambda: default_version(client, name) == 2, 1.0)

    joblib.dump(constant("edge"), tmp_path / "edge.joblib")
    imported = inferq(stack_env, "models", "import", str(tmp_path / "edge.joblib"),
                      "--name", name, "--features", ",".join(FEATURES))
    assert imported.returncode == 0, imported.stderr
    took = until(lambda: default_version(client, name) == 3, 1.0)
    assert served(predict(client, name)) == (3, "edge"), f"after {took:.3f} s"


def test_versions_list_metadata_lineage_and_aliases(
    client: httpx.Client, store: Path, model: Callable[..., str],
) -> None:
    name = model("heads")
    lineage = Lineage(
        dataset_id="d1", dataset_sha256="0" * 64, estimator="DummyClassifier",
        hyperparameters={"strategy": "constant"}, validation={"cv": 2}, seed=3,
        fold_metrics=[{"accuracy": 1.0}, {"accuracy": 0.5}], job_id="j1",
        training_seconds=0.25, library_versions={"sklearn": "1"})
    save_model(store, name, constant("tails"), features=FEATURES,
               metrics={"accuracy": 0.75}, lineage=lineage)
    assert client.put(f"/v1/models/{name}/aliases/production", json={"version": 1}) \
        .status_code == 200
    listed = client.get(f"/v1/models/{name}/versions")
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["model"] == name and body["default_version"] == 1
    assert body["aliases"] == {"production": 1}
    first, second = body["versions"]
    assert (first["version"], first["aliases"], first["lineage"]) == (1, ["production"], None)
    assert second["aliases"] == [] and second["metrics"] == {"accuracy": 0.75}
    assert second["lineage"] == lineage.model_dump(mode="json")
    described = client.get(f"/v1/models/{name}").json()
    assert (described["version"], described["default_version"], described["aliases"]) \
        == (1, 1, ["production"])
    assert client.get(f"/v1/models/{name}", params={"version": 2}).json()["lineage"] \
        == lineage.model_dump(mode="json")
    summary = next(m for m in client.get("/v1/models").json()["models"] if m["name"] == name)
    assert summary == {"name": name, "versions": [1, 2], "latest": 2, "default_version": 1,
                       "aliases": {"production": 1}, "task": "classification"}


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    found: dict[str, Any] = response.json()["error"]
    assert found["code"] == code, found
    return found


def test_unknown_aliases_versions_and_bad_bodies_are_4xx(
    client: httpx.Client, model: Callable[..., str],
) -> None:
    name = model("heads", "tails")
    client.put(f"/v1/models/{name}/aliases/staging", json={"version": 2})
    rows = {"instances": [ROW]}
    found = error(client.post(f"/v1/models/{name}/predict", params={"alias": "canary"},
                              json=rows), 404, "alias_not_found")
    assert found["details"] == {"model": name, "alias": "canary", "aliases": ["staging"]}
    assert "canary" in found["message"] and "staging" in found["message"]
    error(client.post(f"/v1/models/{name}/predict", json={**rows, "alias": "canary"}), 404,
          "alias_not_found")
    error(client.get(f"/v1/models/{name}", params={"alias": "canary"}), 404, "alias_not_found")
    for params, body in (({"version": 1}, {"alias": "staging"}), ({"alias": "staging"},
                                                                  {"version": 1}),
                         ({}, {"version": 1, "alias": "staging"})):
        found = error(client.post(f"/v1/models/{name}/predict", params=params,
                                  json={**rows, **body}), 400, "invalid_parameter")
        assert "give one of them" in found["message"]
    error(client.post(f"/v1/models/{name}/predict", json={**rows, "alias": 3}), 400,
          "malformed_body")
    error(client.post(f"/v1/models/{name}/predict", params={"alias": "a"},
                      json={**rows, "alias": "b"}), 400, "invalid_parameter")

    alias = f"/v1/models/{name}/aliases/production"
    found = error(client.put(alias, json={"version": 7}), 404, "version_not_found")
    assert found["details"]["versions"] == [1, 2]
    error(client.put("/v1/models/nope/aliases/production", json={"version": 1}), 404,
          "model_not_found")
    for bad in (b"", b"[1]", b'{"version": "2"}', b'{"version": 0}', b'{"version": 1, "x": 1}',
                b"{"):
        error(client.put(alias, content=bad), 422, "invalid_alias")
    found = error(client.put(f"/v1/models/{name}/aliases/Prod", json={"version": 1}), 422,
                  "invalid_alias")
    assert "'Prod'" in found["message"]
    error(client.delete(alias), 404, "alias_not_found")
    error(client.delete("/v1/models/nope/aliases/production"), 404, "model_not_found")
    error(client.get("/v1/models/nope/versions"), 404, "model_not_found")
    assert client.get(f"/v1/models/{name}/versions").json()["aliases"] == {"staging": 2}


def test_a_batch_job_uses_the_version_its_alias_points_at(
    client: httpx.Client, batch_worker: ServiceProcess, model: Callable[..., str],
) -> None:
    name = model("heads", "tails")
    client.put(f"/v1/models/{name}/aliases/staging", json={"version": 1})
    dataset = upload(client, b"x0,x1\n1,2\n3,4\n", "csv")
    job = submit_job(client, dataset, model=name, alias="staging")
    assert job["version"] == 1
    done = wait_job(client, job["job_id"])
    assert done["status"] == "succeeded" and done["version"] == 1, done
    assert client.get(f"/v1/batch-jobs/{job['job_id']}/results").text.splitlines()[1:] \
        == ['0,"heads"', '1,"heads"']
    assert submit_job(client, dataset, model=name)["version"] == 2
    error(client.post(f"/v1/models/{name}/batch-jobs",
                      json={"dataset_id": dataset, "alias": "canary"}), 404, "alias_not_found")
    found = error(client.post(f"/v1/models/{name}/batch-jobs",
                              json={"dataset_id": dataset, "alias": "staging", "version": 1}),
                  400, "invalid_parameter")
    assert "give one of them" in found["message"]


def test_after_its_subscription_comes_back_the_api_rereads_every_model(
    client: httpx.Client, store: Path, model: Callable[..., str], redis_server: Any,
) -> None:
    name = model("heads", "tails")
    assert default_version(client, name) == 2
    # Moved without an announcement, then the API's subscription is cut.
    set_alias(store, name, "production", 1)
    time.sleep(0.3)
    assert default_version(client, name) == 2
    redis.Redis.from_url(redis_server.url).client_kill_filter(_type="pubsub")
    until(lambda: default_version(client, name) == 1, 5.0)
    assert served(predict(client, name)) == (1, "heads")
