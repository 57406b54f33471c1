"""Authenticating every request under ``/v1``: the API key, its scopes, the caller.

For now every request is ``ANONYMOUS``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.principal import ANONYMOUS, PRINCIPAL


class AuthMiddleware:
    """Places the caller of each HTTP request in its scope (``principal.PRINCIPAL``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[PRINCIPAL] = ANONYMOUS
        await self.app(scope, receive, send)
