"""A model store in an S3 bucket: the CLI writes versions there, the API lists them and a
worker process loads them, checking each artifact's sha256 before it unpickles it."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
from processes import INFERQ, ServiceProcess, service_env, start_api, start_worker
from s3_server import S3Server
from sklearn.tree import DecisionTreeClassifier
from task_client import IRIS_ROW, submit, wait_all

from ml.store import ModelCache, save_model
from services.cli.redis_server import free_port
from services.common.catalog import (
    Catalog,
    TenantCatalogs,
    aliases_of,
    delete_alias,
    list_models,
    list_versions,
    set_alias,
)
from services.common.storage import Storage
from services.common.tenants import tenant_store

pytestmark = pytest.mark.integration


def inferq(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INFERQ, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def s3_store(s3_server: S3Server) -> str:
    return s3_server.url(f"models-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def s3_env(redis_server, s3_server: S3Server, s3_store: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    redis_server.client().flushdb()
    return service_env(redis_server.url, s3_store, **s3_server.env)


@pytest.fixture(scope="module")
def s3_client(s3_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[httpx.Client]:
    tmp = tmp_path_factory.mktemp("s3-models")
    trained = inferq("models", "train-demo", env=s3_env)
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout) == ["iris v1", "breast-cancer v1", "diabetes v1"]
    joblib.dump(DecisionTreeClassifier().fit(np.eye(3), ["a", "b", "c"]), tmp / "tree.joblib")
    for name in ("tree", "tree-tampered"):
        imported = inferq("models", "import", str(tmp / "tree.joblib"), "--name", name,
                          "--features", "p,q,r", env=s3_env)
        assert imported.returncode == 0, imported.stderr
    port = free_port()
    api: ServiceProcess = start_api(s3_env, port, tmp)
    worker = start_worker(s3_env, tmp)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        worker.stop()
        api.stop()


def test_versions_are_in_the_bucket(s3_server: S3Server, s3_store: str,
                                    s3_client: httpx.Client,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    keys = Storage.from_url(s3_store).list("iris")
    assert keys == ["iris/1/metadata.json", "iris/1/model.joblib"]
    listed = inferq("models", "list", env=service_env("redis://127.0.0.1:1/0", s3_store,
                                                      **s3_server.env))
    assert json.loads(listed.stdout) == {"breast-cancer": [1], "diabetes": [1], "iris": [1],
                                         "tree": [1], "tree-tampered": [1]}
    models = {m["name"] for m in s3_client.get("/v1/models").json()["models"]}
    assert models == {"breast-cancer", "diabetes", "iris", "tree", "tree-tampered"}


def test_a_worker_predicts_from_the_bucket(s3_client: httpx.Client) -> None:
    iris, tree = wait_all(s3_client, [submit(s3_client, "iris", [IRIS_ROW]),
                                      submit(s3_client, "tree", [[0, 1, 0]])])
    assert iris["status"] == "succeeded", iris
    assert iris["result"]["predictions"] == ["setosa"]
    assert tree["result"]["predictions"] == ["b"]


def test_a_tampered_artifact_in_the_bucket_is_refused(
    s3_server: S3Server, s3_store: str, s3_client: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    storage = Storage.from_url(s3_store)
    key = "tree-tampered/1/model.joblib"
    storage.put(key, storage.get(key) + b"\0")
    (task,) = wait_all(s3_client, [submit(s3_client, "tree-tampered", [[0, 1, 0]])])
    assert task["status"] == "failed"
    assert task["error"]["type"] == "IntegrityError"
    assert "sha256" in task["error"]["message"]


def test_an_unreachable_store_is_a_503_and_a_clear_cli_error(redis_server, tmp_path: Path  # type: ignore[no-untyped-def]
                                                             ) -> None:
    env = service_env(redis_server.url, "s3://nowhere/models",
                      AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
                      AWS_ACCESS_KEY_ID="id", AWS_SECRET_ACCESS_KEY="secret",
                      AWS_REGION="us-east-1")
    listed = inferq("models", "list", env=env)
    assert listed.returncode == 1
    assert listed.stderr.startswith("inferq: storage failed"), listed.stderr
    assert "Traceback" not in listed.stderr
    port = free_port()
    api = start_api(env, port, tmp_path)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for response in (client.get("/v1/models"),
                             client.post("/v1/models/iris/predict",
                                         json={"instances": [IRIS_ROW]})):
                assert response.status_code == 503, response.text
                error = response.json()["error"]
                assert error["code"] == "storage_unavailable"
                assert "object store" in error["message"]
    finally:
        api.stop()


def test_copy_seeds_a_bucket_once(s3_server: S3Server, model_store: Path) -> None:
    env = service_env("redis://127.0.0.1:1/0", s3_server.url(f"seed-{uuid.uuid4().hex[:8]}"),
                      **s3_server.env)
    # Other tests add models to the session's store: whatever it holds now is copied.
    source = {name: list_versions(model_store, name) for name in list_models(model_store)}
    assert {"breast-cancer", "diabetes", "iris", "sleepy"} <= set(source)
    aliases = {name: aliases_of(model_store, name) for name in source}
    first = inferq("models", "copy", str(model_store), env=env)
    assert first.returncode == 0, first.stderr
    assert sorted(json.loads(first.stdout)) == sorted(
        [f"{name} v{version}" for name, versions in source.items() for version in versions]
        + [f"{name}@{alias} -> v{version}" for name, pointed in aliases.items()
           for alias, version in pointed.items()])
    again = inferq("models", "copy", str(model_store), env=env)
    assert json.loads(again.stdout) == []
    listed = inferq("models", "list", env=env)
    assert json.loads(listed.stdout) == source


def test_copy_brings_the_aliases_and_never_moves_one_the_target_has(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    tree = DecisionTreeClassifier().fit(np.eye(2), ["a", "b"])
    source = tmp_path / "source"
    for _ in range(3):
        save_model(source, "coin", tree, features=["x0", "x1"])
    set_alias(source, "coin", "production", 2)
    set_alias(source, "coin", "staging", 3)
    bucket = s3_server.url(f"aliases-{uuid.uuid4().hex[:8]}")
    env = service_env("redis://127.0.0.1:1/0", bucket, **s3_server.env)
    target = Storage.from_url(bucket)
    save_model(target, "coin", tree, features=["x0", "x1"])
    set_alias(target, "coin", "production", 1)

    first = inferq("models", "copy", str(source), env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == ["coin v2", "coin v3", "coin@staging -> v3"]
    assert aliases_of(target, "coin") == {"production": 1, "staging": 3}


def test_aliases_live_in_the_bucket(s3_server: S3Server, s3_store: str, s3_env: dict[str, str],
                                    s3_client: httpx.Client,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    storage = Storage.from_url(s3_store)
    moved = s3_client.put("/v1/models/tree/aliases/production", json={"version": 1})
    assert moved.status_code == 200, moved.text
    record = json.loads(storage.get("tree/aliases/production.json"))
    assert record["version"] == 1 and record["updated_at"]
    assert aliases_of(storage, "tree") == {"production": 1}
    with pytest.raises(ValueError, match="has no version 5"):
        set_alias(storage, "tree", "staging", 5)
    cli = inferq("models", "alias", "iris", "staging", "1", env=s3_env)
    assert cli.returncode == 0, cli.stderr
    listed = json.loads(inferq("models", "versions", "iris", "--json", env=s3_env).stdout)
    assert listed["aliases"] == {"staging": 1}
    assert listed["versions"][0]["aliases"] == ["staging"]
    catalog = Catalog(storage)
    assert catalog.aliases("iris") == {"staging": 1} and catalog.default_version("iris") == 1
    assert catalog.models()["tree"] == [1] and catalog.aliases("tree") == {"production": 1}
    deadline = time.monotonic() + 1  # The API hears of the CLI's change on Redis.
    while s3_client.get("/v1/models/iris/versions").json()["aliases"] != {"staging": 1}:
        assert time.monotonic() < deadline, "the API never served the alias"
        time.sleep(0.02)
    assert s3_client.delete("/v1/models/tree/aliases/production").status_code == 204
    assert not storage.exists("tree/aliases/production.json")
    assert delete_alias(storage, "iris", "staging") and aliases_of(storage, "iris") == {}


def test_a_tenants_models_live_under_its_prefix_in_the_bucket(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    root = Storage.from_url(s3_server.url(f"models-{uuid.uuid4().hex[:8]}"))
    tree = DecisionTreeClassifier().fit(np.eye(3), ["a", "b", "c"])
    save_model(root, "tree", tree, features=["p", "q", "r"])
    save_model(tenant_store(root, "acme"), "tree", tree, features=["x", "y", "z"])

    assert root.list("_tenants") == ["_tenants/acme/tree/1/metadata.json",
                                     "_tenants/acme/tree/1/model.joblib"]
    catalogs = TenantCatalogs(Catalog(root))
    assert catalogs.shared.models() == {"tree": [1]}
    own, owner = catalogs.serving("acme", "tree")
    assert owner == "acme" and own.get("tree").feature_names == ["x", "y", "z"]
    assert ModelCache(root).get("tree", 1, "acme")[0].feature_names == ["x", "y", "z"]
    assert ModelCache(root).get("tree", 1)[0].feature_names == ["p", "q", "r"]
