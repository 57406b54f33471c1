"""Rate limits on two real API processes sharing one Redis: a key's limits hold across
both, rows count per minute, a key's own limits override the defaults, Retry-After is
right, every answer carries the headers, and a refused prediction queues nothing."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from metrics_text import sample
from processes import INFERQ, ServiceProcess, auth_on, create_key, service_env, start_api

from services.cli.redis_server import free_port
from services.common import keys

#: The settings' defaults in this module: small, so that tests reach them at once.
REQUESTS_PER_SECOND = 5
ROWS_PER_MINUTE = 100
POLICY = f'"requests";q={REQUESTS_PER_SECOND};w=1, "rows";q={ROWS_PER_MINUTE};w=60'
STATE = re.compile(r'^"requests";r=\d+;t=\d+, "rows";r=\d+;t=\d+$')
ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def env(redis_server, model_store) -> dict[str, str]:  # type: ignore[no-untyped-def]
    url = redis_server.url.rsplit("/", 1)[0] + "/5"
    redis.Redis.from_url(url).flushdb()
    return auth_on(service_env(url, model_store),
                   INFERQ_RATE_LIMIT_REQUESTS_PER_SECOND=str(REQUESTS_PER_SECOND),
                   INFERQ_RATE_LIMIT_ROWS_PER_MINUTE=str(ROWS_PER_MINUTE))


@pytest.fixture(scope="module")
def urls(env: dict[str, str], logs: Path) -> Iterator[list[str]]:
    processes: list[ServiceProcess] = []
    for _ in range(2):
        port = free_port()
        processes.append(start_api(env, port, logs))
    yield [f"http://127.0.0.1:{p.args[p.args.index('--port') + 1]}" for p in processes]
    for process in processes:
        process.stop()


def key(env: dict[str, str], *limits: str) -> dict[str, str]:
    """A new key of the tenant ``acme`` that may predict, and ``Authorization`` for it;
    ``X-Key-Id`` (sent along, and ignored) names it."""
    created = create_key(env, "acme", "predict", *limits)
    return {"Authorization": f"Bearer {created['key']}", "X-Key-Id": created["id"]}


def predict(url: str, headers: dict[str, str], rows: int) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/iris/predict", json={"instances": [ROW] * rows},
                      headers=headers, timeout=10)


def refused_in(urls: list[str]) -> float:
    return sum(sample(httpx.get(f"{url}/metrics").text, "inferq_auth_refused_total",
                      reason="rate_limited") for url in urls)


def burst(urls: list[str], headers: dict[str, str], count: int
          ) -> tuple[list[httpx.Response], float]:
    """``count`` GET /v1/models at once, spread over both processes; and how long they
    took, first sent to last answered."""
    with httpx.Client(timeout=20) as http, ThreadPoolExecutor(count) as pool:
        started = time.monotonic()
        answers = list(pool.map(
            lambda i: http.get(f"{urls[i % 2]}/v1/models", headers=headers), range(count)))
        return answers, time.monotonic() - started


def test_a_burst_split_between_two_processes_is_refused_at_the_limit(
        env: dict[str, str], urls: list[str]) -> None:
    headers = key(env)
    refused_before = refused_in(urls)
    answers, elapsed = burst(urls, headers, 30)
    passed = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(passed) + len(refused) == 30
    # The quota, and what refilled while the burst ran; never twice the quota.
    assert REQUESTS_PER_SECOND <= len(passed) <= REQUESTS_PER_SECOND + elapsed * 5 + 1
    assert refused, f"30 requests in {elapsed:.1f} s all passed"
    body = refused[0].json()["error"]
    assert body["code"] == "rate_limited"
    assert body["details"]["limits"]["requests"] == {"quota": REQUESTS_PER_SECOND, "window": 1}
    assert refused[0].headers["Retry-After"] == "1"
    assert refused_in(urls) - refused_before == len(refused)


def test_rows_per_minute_and_a_refused_prediction_queues_nothing(
        env: dict[str, str], urls: list[str]) -> None:
    headers = key(env)
    store = redis.Redis.from_url(env["INFERQ_REDIS_URL"])
    queue = keys.queue_key("inference")
    first = predict(urls[0], headers, 60)
    assert first.status_code == 202, first.text
    queued = store.llen(queue)
    tasks = len(list(store.scan_iter(keys.task_key("*"))))
    refused = predict(urls[1], headers, 60)  # 120 rows in a minute: over
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["details"]["limits"]["rows"] == {"quota": 100, "window": 60}
    # 20 rows more than the 40 left need 20 rows' share of the minute: 12 s.
    assert refused.headers["Retry-After"] == "12"
    assert refused.headers["RateLimit"].endswith('"rows";r=40;t=36')
    assert store.llen(queue) == queued
    assert len(list(store.scan_iter(keys.task_key("*")))) == tasks
    assert predict(urls[1], headers, 40).status_code == 202  # what is left still passes
    too_many = predict(urls[0], headers, 101)
    assert too_many.status_code == 413
    assert too_many.json()["error"]["details"] == {"rows": 101, "rows_per_minute": 100}


def test_a_key_s_own_limits_override_the_defaults(env: dict[str, str], urls: list[str]) -> None:
    slow = key(env, "--requests-per-second", "2")
    unlimited = key(env, "--requests-per-second", "0", "--rows-per-minute", "0")
    answers, elapsed = burst(urls, slow, 12)
    passed = sum(a.status_code == 200 for a in answers)
    assert 2 <= passed <= 2 + elapsed * 2 + 1
    assert answers[0].headers["RateLimit-Policy"].startswith('"requests";q=2;w=1, ')
    answers, _ = burst(urls, unlimited, 12)
    assert {a.status_code for a in answers} == {200}
    assert "RateLimit-Policy" not in answers[0].headers  # no limit to describe
    assert predict(urls[0], unlimited, 150).status_code == 202


def test_limits_set_on_a_key_apply_on_every_process(env: dict[str, str],
                                                   urls: list[str]) -> None:
    headers = key(env, "--requests-per-second", "2")
    changed = subprocess.run([INFERQ, "keys", "set-limits", headers["X-Key-Id"],
                              "--requests-per-second", "0", "--rows-per-minute", "0"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert changed.returncode == 0, changed.stderr
    deadline = time.monotonic() + 5
    while any("RateLimit-Policy" in httpx.get(f"{url}/v1/models", headers=headers).headers
              for url in urls):
        assert time.monotonic() < deadline, "the new limits never reached the process"
        time.sleep(0.1)
    answers, _ = burst(urls, headers, 12)
    assert {a.status_code for a in answers} == {200}


def test_waiting_retry_after_lets_the_next_request_pass(env: dict[str, str],
                                                        urls: list[str]) -> None:
    headers = key(env, "--requests-per-second", "0.5")  # one request in 2 s
    assert httpx.get(f"{urls[0]}/v1/models", headers=headers).status_code == 200
    refused = httpx.get(f"{urls[1]}/v1/models", headers=headers)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "2"
    time.sleep(int(refused.headers["Retry-After"]))
    assert httpx.get(f"{urls[1]}/v1/models", headers=headers).status_code == 200


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "/v1/models", None, 200),
    ("POST", "/v1/models/iris/predict", {"instances": [ROW]}, 202),
    ("GET", "/v1/tasks/00000000-0000-0000-0000-000000000000", None, 404),
    ("POST", "/v1/models/iris/predict", {"instances": [[1.0]]}, 422),
    ("POST", "/v1/models/iris/predict", {"rows": []}, 400),
])
def test_every_answer_carries_the_headers(env: dict[str, str], urls: list[str], method: str,
                                          path: str, body: Any, status: int) -> None:
    answer = httpx.request(method, f"{urls[0]}{path}", json=body, headers=key(env))
    assert answer.status_code == status, answer.text
    assert answer.headers["RateLimit-Policy"] == POLICY
    assert STATE.match(answer.headers["RateLimit"]), answer.headers["RateLimit"]
    assert answer.headers["RateLimit"].startswith(f'"requests";r={REQUESTS_PER_SECOND - 1};')


def test_a_refused_request_carries_the_headers(env: dict[str, str], urls: list[str]) -> None:
    headers = key(env, "--requests-per-second", "1")
    httpx.get(f"{urls[0]}/v1/models", headers=headers)
    refused = httpx.post(f"{urls[1]}/v1/models/iris/predict", json={"instances": [ROW]},
                         headers=headers)
    assert refused.status_code == 429
    assert refused.headers["RateLimit-Policy"] == '"requests";q=1;w=1, "rows";q=100;w=60'
    assert refused.headers["RateLimit"].startswith('"requests";r=0;t=1, ')


def test_requests_without_a_key_are_not_limited_here(urls: list[str]) -> None:
    answer = httpx.get(f"{urls[0]}/v1/models")
    assert answer.status_code == 401
    assert "RateLimit" not in answer.headers
