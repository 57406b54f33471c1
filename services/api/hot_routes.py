"""The two routes every prediction takes, served without FastAPI's routing.

``POST /v1/models/{model}/predict`` and ``GET /v1/tasks/{task_id}`` carry nearly all of
the API's traffic, and their handlers read the request themselves (no dependencies, no
body model). Starlette's route matching, FastAPI's request and exception wrappers and its
exit stack cost as much as a handler's own work, so this middleware, inside the tracing
and metrics middleware, recognises the two paths, calls the very handlers FastAPI would,
and answers errors as FastAPI's exception handlers do. Everything else, including other
methods on these paths, goes through FastAPI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.error_responses import error_response
from services.api.routes import models, tasks

Handler = Callable[..., Awaitable[Response]]

#: The hot routes' handlers, each with the router that declares its method and path.
HOT_ROUTES: tuple[tuple[APIRouter, Handler], ...] = (
    (models.router, models.predict),
    (tasks.router, tasks.get_task),
)


def _declared(router: APIRouter, handler: Handler) -> APIRoute:
    (route,) = (r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is handler)
    return route


class HotRoutesMiddleware:
    """Serves ``HOT_ROUTES`` directly, with the method and path their routes declare.

    A ``{name}`` in a path is one non-empty segment, as Starlette's default converter
    reads it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._routes: dict[tuple[str, int], tuple[list[str], APIRoute, Handler]] = {}
        for router, handler in HOT_ROUTES:
            route = _declared(router, handler)
            segments = route.path.split("/")[1:]
            for method in route.methods or ():
                key = (method, len(segments))
                if key in self._routes:
                    raise ValueError(f"hot routes {route.path} and "
                                     f"{self._routes[key][1].path} take the same requests")
                self._routes[key] = (segments, route, handler)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._match(scope) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        route, handler, params = found
        scope["route"] = route
        scope["path_params"] = params
        try:
            response = await handler(Request(scope, receive), **params)
        except Exception as exc:
            response = error_response(exc)
        await response(scope, receive, send)

    def _match(self, scope: Scope) -> tuple[APIRoute, Handler, dict[str, Any]] | None:
        if scope.get("root_path"):
            return None  # Mounted under a prefix: FastAPI's router strips it.
        parts = scope["path"].split("/")
        candidate = self._routes.get((scope["method"], len(parts) - 1))
        if candidate is None or parts[0]:
            return None
        segments, route, handler = candidate
        params: dict[str, Any] = {}
        for part, segment in zip(parts[1:], segments, strict=True):
            if segment.startswith("{"):
                if not part:
                    return None
                params[segment[1:-1]] = part
            elif part != segment:
                return None
        return route, handler, params
