"""The caller of a request, as the authentication middleware found it.

The middleware (``services.api.auth``) places the caller (``services.common.principal``)
in the request's ASGI scope under ``PRINCIPAL`` before any route runs, for every request
under ``/v1``; routes, the hot routes included, read it with ``principal_of``.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.types import Scope

from services.common.principal import Principal

#: The ASGI scope key under which the caller is kept.
PRINCIPAL = "inferq.principal"


def principal_of(request: HTTPConnection | Scope) -> Principal:
    """The caller of a request under ``/v1``. A KeyError here means the request did not go
    through the authentication middleware: a wiring bug, never an anonymous caller."""
    scope = request.scope if isinstance(request, HTTPConnection) else request
    principal: Principal = scope[PRINCIPAL]
    return principal
