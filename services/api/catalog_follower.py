"""Keeping the API's catalog current from the announcements of changed models.

The waiter's subscription hands over each announced name and each (re)subscription; the
store is read here, on a thread, one change after another, never on the listener's loop.
Names announced while a read runs are gathered and read once after it. A tenant's own model
is announced as ``<tenant>/<name>`` (``tenants.model_event``), and read only by the API
processes that made that tenant's catalog (the others read it on its first use).
"""

from __future__ import annotations

import asyncio
import logging

from services.api.periodic import Background
from services.common.catalog import TenantCatalogs, valid_model_name
from services.common.redaction import redact_url
from services.common.storage import StorageError
from services.common.tenants import DEFAULT_TENANT, parse_model_event

log = logging.getLogger(__name__)

#: How long to wait before reading again when the store fails.
RETRY_SECONDS = 1.0


class CatalogFollower(Background):
    name = "inferq-catalog-follower"

    def __init__(self, catalogs: TenantCatalogs) -> None:
        self._catalogs = catalogs
        self._names: set[tuple[str, str]] = set()
        self._everything = False
        self._pending = asyncio.Event()

    def changed(self, data: bytes) -> None:
        """A model's versions or aliases changed (the message names it)."""
        tenant, name = parse_model_event(data.decode(errors="replace"))
        if valid_model_name(name):
            self._names.add((tenant, name))
            self._pending.set()

    def subscribed(self) -> None:
        """Announcements may have been missed: re-read every model."""
        self._everything = True
        self._pending.set()

    async def run(self) -> None:
        while True:
            await self._pending.wait()
            self._pending.clear()
            everything, names = self._everything, self._names
            self._everything, self._names = False, set()
            try:
                await self._read(everything, names)
            except (StorageError, OSError) as exc:
                log.warning("model store unreadable; serving the models known and "
                            "reading again", extra={"store": redact_url(self._catalogs.store.url),
                                                    "error": str(exc)})
                self._everything |= everything
                self._names |= names
                await asyncio.sleep(RETRY_SECONDS)
                self._pending.set()

    async def _read(self, everything: bool, names: set[tuple[str, str]]) -> None:
        shared, own = self._catalogs.shared, self._catalogs.known()
        if everything:
            for catalog in (shared, *own.values()):
                await asyncio.to_thread(catalog.reload)
            log.info("model catalog read", extra={"models": len(shared.models()),
                                                  "tenants": len(own)})
            return
        for tenant, name in sorted(names):
            found = shared if tenant == DEFAULT_TENANT else own.get(tenant)
            if found is None:
                continue  # No request of this tenant's came here yet.
            await asyncio.to_thread(found.refresh, name)
            log.info("model changed; its versions and aliases read",
                     extra={"model": name, "tenant": tenant})
