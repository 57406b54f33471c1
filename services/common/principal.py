"""Who a request comes from: the tenant and the scopes of the API key it carries.

Shared by the API (which authenticates each request: ``services.api.auth``) and the
``inferq keys`` command (which makes keys), so it needs neither the web framework nor
the model runtime.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.common.tenants import DEFAULT_TENANT

#: What a key may do: ``predict`` (predictions and their tasks), ``jobs`` (datasets and
#: batch jobs), ``train`` (training jobs, versions, aliases), ``admin`` (keys).
SCOPES = ("predict", "jobs", "train", "admin")

#: A tenant's name: lowercase letters, digits and dashes, starting with a letter (match it
#: with ``fullmatch``: ``$`` would let a trailing newline through).
TENANT_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,39}")


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    scopes: frozenset[str]
    #: The key's id (the public part of the key); None with authentication off.
    key_id: str | None = None
    #: The key's own limits; None: the settings' defaults.
    requests_per_second: float | None = None
    rows_per_minute: int | None = None


#: The caller with authentication off: the default tenant, with every scope.
ANONYMOUS = Principal(tenant=DEFAULT_TENANT, scopes=frozenset(SCOPES))
