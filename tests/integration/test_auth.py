"""Authentication on real API processes: every /v1 route needs a key, scopes, expiry,
revocation seen by every process within a second, the seed file, ``inferq keys``, and keys
never shown in logs, error bodies or metrics."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from otlp_receiver import OtlpReceiver
from processes import INFERQ, ServiceProcess, auth_on, create_key, service_env, start_api

from services.api.auth import ROUTE_SCOPES
from services.cli.redis_server import free_port, start_redis
from services.common.api_keys import ApiKeyStore, generate
from services.common.principal import SCOPES

SEED_ID, SEED_KEY = generate()
#: Every key this module makes, to look for in logs and answers at its end.
KEYS_SEEN: list[str] = [SEED_KEY]


@pytest.fixture(scope="module")
def auth_env(redis_server, model_store, tmp_path_factory,  # type: ignore[no-untyped-def]
             receiver: OtlpReceiver) -> dict[str, str]:
    seed = tmp_path_factory.mktemp("seed") / "keys.json"
    seed.write_text(json.dumps([{"key": SEED_KEY, "tenant": "ops", "scopes": ["admin"],
                                 "name": "first admin"}]))
    url = redis_server.url.rsplit("/", 1)[0] + "/6"
    # Traced, every request: no span may carry a key.
    env = auth_on(service_env(url, model_store), INFERQ_AUTH_SEED_FILE=str(seed),
                  OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="100")
    asyncio.run(_flush(url))
    return env


async def _flush(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    await client.flushdb()
    await client.aclose()


@pytest.fixture(scope="module")
def apis(auth_env: dict[str, str], logs: Path) -> Iterator[list[ServiceProcess]]:
    processes = [start_api(auth_env, free_port(), logs) for _ in range(2)]
    yield processes
    for process in processes:
        process.stop()


def _url(api: ServiceProcess) -> str:
    return f"http://127.0.0.1:{api.args[api.args.index('--port') + 1]}"


@pytest.fixture(scope="module")
def urls(apis: list[ServiceProcess]) -> list[str]:
    return [_url(api) for api in apis]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def keys_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INFERQ, "keys", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def make_key(env: dict[str, str], scopes: str, *extra: str,
             tenant: str = "acme") -> dict[str, Any]:
    """A key made by ``inferq keys create``."""
    created: dict[str, Any] = create_key(env, tenant, scopes, *extra)
    KEYS_SEEN.append(created["key"])
    return created


def post_key(url: str, scopes: list[str], **fields: Any) -> dict[str, Any]:
    """A key made through the API, with the seed admin key (quicker than the command)."""
    answer = httpx.post(url + "/v1/api-keys", headers=bearer(SEED_KEY),
                        json={"tenant": "acme", "scopes": scopes, **fields})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    KEYS_SEEN.append(created["key"])
    return created


def _operations(url: str) -> list[tuple[str, str]]:
    document = httpx.get(f"{url}/openapi.json").json()
    found = [(method.upper(), re.sub(r"\{[^}]+\}", "x", path))
             for path, operations in document["paths"].items()
             if path.startswith("/v1/") for method in operations]
    assert ("POST", "/v1/models/x/predict") in found and ("GET", "/v1/tasks/x") in found
    return found


def test_no_v1_route_answers_without_a_key(urls: list[str]) -> None:
    malformed, unknown = "inferq_not-a-key", generate()[1]
    with httpx.Client(base_url=urls[0]) as client:
        for method, path in [*_operations(urls[0]), ("GET", "/v1"), ("GET", "/v1/nothing")]:
            answer = client.request(method, path)
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
            assert "error=" not in answer.headers["WWW-Authenticate"]
            assert answer.json()["error"]["code"] == "missing_credentials"
            for key in (malformed, unknown):
                answer = client.request(method, path, headers=bearer(key))
                assert answer.status_code == 401, (method, path, answer.text)
                assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
                assert answer.json()["error"]["code"] == "invalid_api_key"
                assert key not in answer.text
        # Another scheme is no bearer token at all.
        answer = client.get("/v1/models", headers={"Authorization": f"Basic {SEED_KEY}"})
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "missing_credentials"


def test_paths_outside_v1_need_no_key(urls: list[str]) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
        assert httpx.get(urls[0] + path).status_code == 200, path
    document = httpx.get(urls[0] + "/openapi.json").json()
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    predict = document["paths"]["/v1/models/{model}/predict"]["post"]
    assert predict["security"] and {"401", "403"} <= set(predict["responses"])


def test_a_known_path_with_a_valid_key_is_served_and_an_unknown_one_is_404(
        urls: list[str]) -> None:
    answer = httpx.get(urls[0] + "/v1/nothing", headers=bearer(SEED_KEY))
    assert answer.status_code == 404
    assert httpx.get(urls[0] + "/v1/api-keys", headers=bearer(SEED_KEY)).status_code == 200


def test_each_scope_opens_its_routes_only(auth_env: dict[str, str], urls: list[str]) -> None:
    keys = {scope: post_key(urls[0], [scope])["key"] for scope in SCOPES}
    client = httpx.Client(base_url=urls[0], timeout=20)
    for (method, template), scopes in ROUTE_SCOPES.items():
        path = re.sub(r"\{[^}]+\}", "x", template)
        for scope, key in keys.items():
            answer = client.request(method, path, headers=bearer(key))
            if scope in scopes:
                assert answer.status_code not in (401, 403), (scope, method, path, answer.text)
            else:
                assert answer.status_code == 403, (scope, method, path, answer.text)
                error = answer.json()["error"]
                assert error["code"] == "insufficient_scope"
                assert error["details"]["required"] == sorted(scopes)
                assert 'error="insufficient_scope"' in answer.headers["WWW-Authenticate"]
    # The hot route serves a valid key as FastAPI would: here, an unknown model.
    answer = client.post("/v1/models/nope/predict", headers=bearer(keys["predict"]),
                         json={"instances": [[1.0]]})
    client.close()
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "model_not_found"


def test_an_expired_key_is_refused(auth_env: dict[str, str], urls: list[str]) -> None:
    created = post_key(urls[0], ["predict"], expires_in_seconds=2)
    assert created["expires_at"] is not None
    assert httpx.get(urls[0] + "/v1/models", headers=bearer(created["key"])).status_code == 200
    time.sleep(2.1)
    answer = httpx.get(urls[0] + "/v1/models", headers=bearer(created["key"]))
    assert answer.status_code == 401 and "expired" in answer.json()["error"]["message"]
    past = keys_cli(auth_env, "create", "--tenant", "acme", "--scopes", "predict",
                    "--expires", "2020-01-01T00:00:00Z")
    assert past.returncode == 1 and "expires" in past.stderr and "past" in past.stderr


def _refused_within(url: str, key: str, seconds: float) -> float:
    started = time.monotonic()
    with httpx.Client(base_url=url) as client:
        while client.get("/v1/models", headers=bearer(key)).status_code != 401:
            assert time.monotonic() - started < seconds, f"{url} still takes a revoked key"
            time.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.parametrize("how", ["rest", "cli"])
def test_a_revoked_key_stops_working_on_every_process_within_a_second(
        auth_env: dict[str, str], urls: list[str], how: str) -> None:
    created = post_key(urls[1], ["predict"])
    for url in urls:  # Both processes have it cached.
        for _ in range(3):
            assert httpx.get(url + "/v1/models", headers=bearer(created["key"])).status_code == 200
    if how == "rest":  # Revoked through the second process.
        answer = httpx.delete(f"{urls[1]}/v1/api-keys/{created['id']}", headers=bearer(SEED_KEY))
        assert answer.status_code == 200 and answer.json()["revoked_at"] is not None
    else:
        result = keys_cli(auth_env, "revoke", created["id"])
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["revoked_at"] is not None
    assert _refused_within(urls[0], created["key"], 1.0) < 1.0
    assert _refused_within(urls[1], created["key"], 1.0) < 1.0
    answer = httpx.get(urls[0] + "/v1/models", headers=bearer(created["key"]))
    assert "revoked" in answer.json()["error"]["message"]


def test_seed_file_keys_and_their_changes(auth_env: dict[str, str], urls: list[str]) -> None:
    answer = httpx.get(f"{urls[0]}/v1/api-keys/{SEED_ID}", headers=bearer(SEED_KEY))
    assert answer.status_code == 200
    assert answer.json()["tenant"] == "ops" and answer.json()["scopes"] == ["admin"]
    assert answer.json()["name"] == "first admin"

    async def change(scopes: list[str]) -> None:
        client = aioredis.Redis.from_url(auth_env["INFERQ_REDIS_URL"])
        secret = auth_env["INFERQ_AUTH_SECRET"].encode()
        await ApiKeyStore(client, secret).put(SEED_KEY, "ops", scopes, "first admin")
        await client.aclose()

    # A seed whose scopes change: every process drops what it cached at once.
    asyncio.run(change(["predict"]))
    time.sleep(0.3)
    assert httpx.get(urls[0] + "/v1/api-keys", headers=bearer(SEED_KEY)).status_code == 403
    assert httpx.get(urls[1] + "/v1/models", headers=bearer(SEED_KEY)).status_code == 200
    asyncio.run(change(["admin"]))
    time.sleep(0.3)
    assert httpx.get(urls[0] + "/v1/api-keys", headers=bearer(SEED_KEY)).status_code == 200


def test_an_api_with_a_bad_seed_file_or_no_secret_does_not_start(
        auth_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "seed.json"
    bad.write_text(json.dumps([{"key": SEED_KEY, "tenant": "ops", "scopes": ["root"]}]))
    env = {**auth_env, "INFERQ_AUTH_SEED_FILE": str(bad)}
    result = subprocess.run([INFERQ, "api", "--port", str(free_port())], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "entry 0: scopes" in result.stdout + result.stderr
    assert SEED_KEY not in result.stdout + result.stderr
    env = {k: v for k, v in auth_env.items() if k != "INFERQ_AUTH_SECRET"}
    result = subprocess.run([INFERQ, "api", "--port", str(free_port())], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "INFERQ_AUTH_SECRET" in result.stderr


def test_seeds_are_stored_once_redis_comes_up(model_store: Path, tmp_path: Path) -> None:
    _, key = generate()
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps([{"key": key, "tenant": "late", "scopes": ["predict"]}]))
    redis_port, api_port = free_port(), free_port()
    env = auth_on(service_env(f"redis://127.0.0.1:{redis_port}/0", model_store),
                  INFERQ_AUTH_SEED_FILE=str(seed), INFERQ_REDIS_SOCKET_TIMEOUT="0.5")
    api = ServiceProcess(["api", "--port", str(api_port)], env, tmp_path / "api.log")
    redis = None
    try:
        api.wait_for_log("not stored yet")
        redis = start_redis(redis_port, tmp_path / "redis", appendonly=False)
        api.wait_http(f"http://127.0.0.1:{api_port}/readyz")
        deadline = time.monotonic() + 10
        while httpx.get(f"http://127.0.0.1:{api_port}/v1/models",
                        headers=bearer(key)).status_code != 200:
            assert time.monotonic() < deadline, api.log()[-2000:]
            time.sleep(0.2)
        assert key not in api.log()
    finally:
        api.stop()
        if redis is not None:
            redis.terminate()
            redis.wait()


def test_keys_cli_create_list_revoke(auth_env: dict[str, str], urls: list[str]) -> None:
    created = make_key(auth_env, "predict,jobs", "--name", "svc", "--requests-per-second",
                       "5", "--rows-per-minute", "1000", tenant="beta")
    assert created["key"].startswith(f"inferq_{created['id']}_")
    assert created["tenant"] == "beta" and created["scopes"] == ["predict", "jobs"]
    assert created["requests_per_second"] == 5.0 and created["rows_per_minute"] == 1000
    assert httpx.get(urls[0] + "/v1/datasets", headers=bearer(created["key"])).status_code == 200
    listing = keys_cli(auth_env, "list")
    assert listing.returncode == 0, listing.stderr
    listed = {k["id"]: k for k in json.loads(listing.stdout)["api_keys"]}
    assert listed[created["id"]]["name"] == "svc"
    assert all(key not in listing.stdout for key in KEYS_SEEN)
    assert "hash" not in listing.stdout
    # The last use is written in the background, once a minute at most per process.
    used_at = listed[created["id"]]["last_used_at"]
    assert used_at is not None
    assert httpx.get(urls[0] + "/v1/datasets", headers=bearer(created["key"])).status_code == 200
    time.sleep(0.2)
    again = {k["id"]: k for k in json.loads(keys_cli(auth_env, "list").stdout)["api_keys"]}
    assert again[created["id"]]["last_used_at"] == used_at
    limits = keys_cli(auth_env, "set-limits", created["id"], "--rows-per-minute", "50")
    assert limits.returncode == 0, limits.stderr
    assert json.loads(limits.stdout)["rows_per_minute"] == 50
    assert json.loads(limits.stdout)["requests_per_second"] is None  # Back to the default.
    negative = keys_cli(auth_env, "set-limits", created["id"], "--requests-per-second", "-1")
    assert negative.returncode == 1 and "--requests-per-second" in negative.stderr
    assert keys_cli(auth_env, "revoke", "0123456789abcdef").returncode == 1
    bad = keys_cli(auth_env, "create", "--tenant", "acme", "--scopes", "predict,read")
    assert bad.returncode == 1 and "--scopes" in bad.stderr and "'read'" in bad.stderr


def test_rest_create_get_list_revoke(urls: list[str]) -> None:
    admin = bearer(SEED_KEY)
    answer = httpx.post(urls[0] + "/v1/api-keys", headers=admin,
                        json={"tenant": "gamma", "scopes": ["train"], "name": "trainer",
                              "expires_in_seconds": 3600})
    assert answer.status_code == 201, answer.text
    created = answer.json()
    KEYS_SEEN.append(created["key"])
    assert created["tenant"] == "gamma" and created["expires_at"] is not None
    shown = httpx.get(f"{urls[1]}/v1/api-keys/{created['id']}", headers=admin).json()
    assert "key" not in shown and shown["scopes"] == ["train"]
    listing = httpx.get(urls[0] + "/v1/api-keys", headers=admin)
    assert created["id"] in {k["id"] for k in listing.json()["api_keys"]}
    assert created["key"] not in listing.text
    assert httpx.get(urls[0] + "/v1/training-jobs",
                     headers=bearer(created["key"])).status_code == 200
    revoked = httpx.delete(f"{urls[0]}/v1/api-keys/{created['id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    again = httpx.delete(f"{urls[0]}/v1/api-keys/{created['id']}", headers=admin)
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    missing = httpx.get(urls[0] + "/v1/api-keys/0123456789abcdef", headers=admin)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "api_key_not_found"


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"tenant": "Gamma", "scopes": ["train"]}, 422, "tenant"),
    ({"tenant": "gamma", "scopes": ["train", "root"]}, 422, "scopes"),
    ({"tenant": "gamma", "scopes": []}, 400, "scopes"),
    ({"tenant": "gamma", "scopes": ["train"], "expires_at": "2020-01-01T00:00:00Z"}, 422,
     "expires_at"),
    ({"tenant": "gamma", "scopes": ["train"], "expires_at": "soon"}, 422, "expires_at"),
    ({"tenant": "gamma", "scopes": ["train"], "requests_per_second": -1}, 400,
     "requests_per_second"),
    ({"tenant": "gamma", "scopes": ["train"], "rows_per_minute": -1}, 400, "rows_per_minute"),
    ({"tenant": "gamma", "scopes": ["train"], "key": "mine"}, 400, "key"),
])
def test_rest_refuses_bad_keys_naming_the_field(urls: list[str], body: dict[str, Any],
                                                 status: int, field: str) -> None:
    answer = httpx.post(urls[0] + "/v1/api-keys", headers=bearer(SEED_KEY), json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert field in error["message"]
    assert field in json.dumps(error["details"])


def test_refusals_are_counted(urls: list[str]) -> None:
    text = httpx.get(urls[0] + "/metrics").text
    for reason in ("missing", "invalid", "scope"):
        found = re.search(rf'inferq_auth_refused_total{{reason="{reason}"}} (\S+)', text)
        assert found and float(found.group(1)) > 0, reason
    # A refused request is counted under its route's template, as a served one.
    assert re.search(r'inferq_http_requests_total\{method="POST",'
                     r'route="/v1/models/\{model\}/predict",status="401"\} [1-9]', text)


def test_zz_keys_never_appear_in_logs_metrics_or_traces(
    auth_env: dict[str, str], apis: list[ServiceProcess], urls: list[str],
    receiver: OtlpReceiver,
) -> None:
    assert len(KEYS_SEEN) > 5
    texts = [api.log() for api in apis] + [httpx.get(url + "/metrics").text for url in urls]
    assert "api keys seeded" in texts[0]
    deadline = time.monotonic() + 5
    while not any(s["name"] == "POST /v1/api-keys" for s in receiver.spans):
        assert time.monotonic() < deadline, "the API exported no span of a key's creation"
        time.sleep(0.1)
    texts.append(b"".join(receiver.raw).decode("latin-1"))
    for text in texts:
        assert auth_env["INFERQ_AUTH_SECRET"] not in text
        for key in KEYS_SEEN:
            assert key not in text and key[len("inferq_") + 17:] not in text


def test_with_auth_off_every_caller_is_the_default_tenant(api: ServiceProcess,
                                                          client: httpx.Client) -> None:
    assert "authentication is off" in api.log()
    assert client.get("/v1/models").status_code == 200
    assert client.get("/v1/pools", headers=bearer("inferq_not-a-key")).status_code == 200
    answer = client.post("/v1/api-keys", json={"tenant": "acme", "scopes": ["predict"]})
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "api_keys_unavailable"
    assert "INFERQ_AUTH_SECRET" in answer.json()["error"]["message"]
