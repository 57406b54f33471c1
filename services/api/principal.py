"""Who a request comes from: the tenant and the scopes of the API key it carries.

The authentication middleware (``services.api.auth``) places the caller in the request's
ASGI scope under ``PRINCIPAL`` before any route runs, for every request under ``/v1``;
routes, the hot routes included, read it with ``principal_of``. With authentication off
every caller is ``ANONYMOUS``: the default tenant, with every scope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.requests import HTTPConnection
from starlette.types import Scope

from services.common import tenants

#: What a key may do: ``predict`` (predictions and their tasks), ``jobs`` (datasets and
#: batch jobs), ``train`` (training jobs, versions, aliases), ``admin`` (keys).
SCOPES = ("predict", "jobs", "train", "admin")

#: The tenant of everything made with authentication off (``services.common.tenants``).
DEFAULT_TENANT = tenants.DEFAULT_TENANT

#: A tenant's name: lowercase letters, digits and dashes, starting with a letter.
TENANT_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,39}$")

#: The ASGI scope key under which the caller is kept.
PRINCIPAL = "inferq.principal"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    scopes: frozenset[str]
    #: The key's id (the public part of the key); None with authentication off.
    key_id: str | None = None
    #: The key's own limits; None: the settings' defaults.
    requests_per_second: float | None = None
    rows_per_minute: int | None = None


ANONYMOUS = Principal(tenant=DEFAULT_TENANT, scopes=frozenset(SCOPES))


def principal_of(request: HTTPConnection | Scope) -> Principal:
    """The caller of a request under ``/v1``. A KeyError here means the request did not go
    through the authentication middleware: a wiring bug, never an anonymous caller."""
    scope = request.scope if isinstance(request, HTTPConnection) else request
    principal: Principal = scope[PRINCIPAL]
    return principal
