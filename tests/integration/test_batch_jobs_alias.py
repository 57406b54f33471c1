"""A batch job names the version that scored it and the alias it came through: the alias
asked for, ``production`` when neither a version nor an alias was, none for a version
pinned or the latest."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from job_client import IRIS_FEATURES, iris_csv, iris_rows, run_job, submit_job, upload
from processes import own_store, service_env

from ml.store import load_estimator, save_model, set_alias
from services.common.storage import Storage


@pytest.fixture(scope="module")
def stack_env(redis_server, model_store, storage: Storage,  # type: ignore[no-untyped-def]
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    redis_server.client().flushdb()
    store = own_store(model_store, tmp_path_factory.mktemp("alias-models"))
    # "flowers": two versions of the demo iris model, production on the older one.
    _, estimator = load_estimator(model_store, "iris", 1)
    for _ in range(2):
        save_model(store, "flowers", estimator, features=IRIS_FEATURES)
    set_alias(store, "flowers", "production", 1)
    set_alias(store, "flowers", "staging", 2)
    return service_env(redis_server.url, store, INFERQ_STORAGE_URL=storage.url)


@pytest.fixture(scope="module")
def dataset(api_url: str) -> str:
    with httpx.Client(base_url=api_url, timeout=40) as http:
        return upload(http, iris_csv(iris_rows(20)), "csv", name="flowers")


@pytest.mark.parametrize(("model", "asked", "version", "alias"), [
    ("flowers", {}, 1, "production"),
    ("flowers", {"alias": "staging"}, 2, "staging"),
    ("flowers", {"alias": "production"}, 1, "production"),
    ("flowers", {"version": 2}, 2, None),
    ("flowers", {"version": 1}, 1, None),
    ("iris", {}, 1, None),  # No production alias: the latest, through no alias.
])
def test_the_job_names_its_version_and_the_alias_it_came_through(
    client: httpx.Client, dataset: str, model: str, asked: dict[str, object],
    version: int, alias: str | None,
) -> None:
    job = submit_job(client, dataset, model=model, **asked)
    assert (job["version"], job["alias"]) == (version, alias)
    read = client.get(f"/v1/batch-jobs/{job['job_id']}").json()
    assert (read["version"], read["alias"]) == (version, alias)
    listed = client.get("/v1/batch-jobs", params={"model": model}).json()["jobs"]
    assert [(j["version"], j["alias"]) for j in listed if j["job_id"] == job["job_id"]] == [
        (version, alias)]


def test_a_finished_job_keeps_the_alias_and_was_scored_by_its_version(
    client: httpx.Client, stack_env: dict[str, str], logs: Path, dataset: str,
) -> None:
    job = submit_job(client, dataset, model="flowers", alias="staging")
    done = run_job(client, job["job_id"], stack_env, logs)
    assert done["status"] == "succeeded", done
    assert (done["version"], done["alias"]) == (2, "staging")
