"""The hot routes: the paths they take over, and errors answered as FastAPI would."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from services.api.hot_routes import HotRoutesMiddleware


async def _fastapi(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("not a hot route")


def scope(method: str, path: str, root_path: str = "") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": root_path,
            "headers": [], "query_string": b""}


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("POST", "/v1/models/iris/predict", {"model": "iris"}),
        ("POST", "/v1/models/breast-cancer/predict", {"model": "breast-cancer"}),
        ("GET", "/v1/tasks/0b6f", {"task_id": "0b6f"}),
        # Everything else is FastAPI's, 404s and 405s included.
        ("GET", "/v1/models/iris/predict", None),
        ("PUT", "/v1/models/iris/predict", None),
        ("POST", "/v1/models//predict", None),
        ("POST", "/v1/models/iris/predict/", None),
        ("POST", "/v1/models/iris", None),
        ("DELETE", "/v1/tasks/0b6f", None),
        ("GET", "/v1/tasks/", None),
        ("GET", "/v1/tasks/0b6f/x", None),
        ("GET", "v1/tasks/0b6f", None),
    ],
)
def test_which_requests_are_hot(method: str, path: str, params: dict[str, str] | None) -> None:
    found = HotRoutesMiddleware(_fastapi)._match(scope(method, path))
    if params is None:
        assert found is None
    else:
        assert found is not None
        route, _, matched = found
        assert matched == params and method in (route.methods or ())


def test_a_prefixed_mount_goes_through_fastapi() -> None:
    assert HotRoutesMiddleware(_fastapi)._match(
        scope("GET", "/inferq/v1/tasks/1", root_path="/inferq")) is None


def test_an_unexpected_error_is_a_500_with_an_error_body() -> None:
    middleware = HotRoutesMiddleware(_fastapi)
    segments, route, _ = middleware._routes[("GET", 3)]

    async def broken(request: Any, task_id: str) -> Any:
        raise RuntimeError("boom")

    middleware._routes[("GET", 3)] = (segments, route, broken)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    request = scope("GET", "/v1/tasks/1")
    asyncio.run(middleware(request, receive, send))
    assert sent[0]["status"] == 500
    body = orjson.loads(sent[1]["body"])
    assert body["error"]["code"] == "internal_error" and "boom" not in str(body)
    assert request["route"].path == "/v1/tasks/{task_id}"
