"""Tenants: who owns a record or a model.

Every task, batch job, training job and dataset record names its owner in the field
``tenant``; a record without one (written before tenants existed) is the default tenant's.
Another tenant's record reads as one that does not exist.

Models live in one store. Its root holds the shared models: those the operator imports
(``inferq models import``, the demo models) and those the default tenant trains; every
tenant sees and uses them. A model another tenant's training job creates lives under
``_tenants/<tenant>/`` in the same store, with the same layout (``catalog``), and only that
tenant sees it. ``_tenants`` is no model name (a name starts with a letter or a digit), so
the shared layout never reads a tenant's files as a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.common.storage import Storage

#: The tenant of everything made with authentication off, and the owner of the shared
#: models.
DEFAULT_TENANT = "default"

#: The directory of the store that holds the tenants' own models, one directory a tenant.
TENANTS_DIR = "_tenants"


def tenant_of(record: Mapping[Any, Any]) -> str:
    """The tenant a record (as Redis returned it, bytes or text) belongs to."""
    found = record.get("tenant", record.get(b"tenant"))
    if isinstance(found, bytes):
        found = found.decode()
    return found or DEFAULT_TENANT


def owned_by(record: Mapping[Any, Any], tenant: str) -> bool:
    """Whether ``record`` is ``tenant``'s."""
    return tenant_of(record) == tenant


def tenant_store(store: Storage, tenant: str) -> Storage:
    """Where ``tenant``'s own models live in the model store ``store``: the root for the
    default tenant, whose models are the shared ones."""
    if tenant == DEFAULT_TENANT:
        return store
    return store.within(f"{TENANTS_DIR}/{tenant}")


def model_event(tenant: str, name: str) -> str:
    """The announcement of a change to ``tenant``'s model ``name``: the name alone for a
    shared model, ``<tenant>/<name>`` for a tenant's own (neither holds a ``/``)."""
    return name if tenant == DEFAULT_TENANT else f"{tenant}/{name}"


def parse_model_event(message: str) -> tuple[str, str]:
    """The tenant and the model name of an announcement (``model_event``)."""
    tenant, _, name = message.rpartition("/")
    return tenant or DEFAULT_TENANT, name
