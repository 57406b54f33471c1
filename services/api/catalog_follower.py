"""Keeping the API's catalog current from the announcements of changed models.

The waiter's subscription hands over each announced name and each (re)subscription; the
store is read here, on a thread, one change after another, never on the listener's loop.
Names announced while a read runs are gathered and read once after it.
"""

from __future__ import annotations

import asyncio
import logging

from services.api.periodic import Background
from services.common.catalog import Catalog, valid_model_name
from services.common.storage import StorageError

log = logging.getLogger(__name__)

#: How long to wait before reading again when the store fails.
RETRY_SECONDS = 1.0


class CatalogFollower(Background):
    name = "inferq-catalog-follower"

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._names: set[str] = set()
        self._everything = False
        self._pending = asyncio.Event()

    def changed(self, data: bytes) -> None:
        """A model's versions or aliases changed (the message is its name)."""
        name = data.decode(errors="replace")
        if valid_model_name(name):
            self._names.add(name)
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
                            "reading again", extra={"store": self._catalog.store.url,
                                                    "error": str(exc)})
                self._everything |= everything
                self._names |= names
                await asyncio.sleep(RETRY_SECONDS)
                self._pending.set()

    async def _read(self, everything: bool, names: set[str]) -> None:
        if everything:
            await asyncio.to_thread(self._catalog.reload)
            log.info("model catalog read", extra={"models": len(self._catalog.models())})
            return
        for name in sorted(names):
            await asyncio.to_thread(self._catalog.refresh, name)
            log.info("model changed; its versions and aliases read", extra={"model": name})
