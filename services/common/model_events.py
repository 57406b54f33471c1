"""Announcing that a model's versions or aliases changed, so running APIs re-read them.

Whoever writes a version or moves an alias in the model store (``ml.store``) publishes the
model's name on ``keys.MODELS_CHANNEL`` afterwards. Each API process subscribes to it and
re-reads that model's versions and aliases (``Catalog.refresh``); after subscribing, it
re-reads everything, for what was announced while it was not listening. Nothing polls the
store.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.common import keys

log = logging.getLogger(__name__)

#: How long a command-line announcement waits for Redis before it gives up.
CONNECT_TIMEOUT_SECONDS = 2.0


def announce(client: redis.Redis, name: str) -> None:
    """Tell the APIs that ``name`` has a new version or a moved alias."""
    client.publish(keys.MODELS_CHANNEL, name)


async def aannounce(client: aioredis.Redis, name: str) -> None:
    """``announce`` for coroutines."""
    await client.publish(keys.MODELS_CHANNEL, name)


def announce_to(url: str, redacted_url: str, name: str, *, quiet: bool = False,
                tls: Mapping[str, Any] | None = None) -> bool:
    """``announce`` on the Redis at ``url``; when it cannot be reached, one log line (naming
    ``redacted_url``; none when ``quiet``) and False: the change is in the store, and APIs
    re-read the store whenever they subscribe again. ``tls``: ``Settings.redis_tls``."""
    client = redis.Redis.from_url(url, socket_timeout=CONNECT_TIMEOUT_SECONDS,
                                  socket_connect_timeout=CONNECT_TIMEOUT_SECONDS, **(tls or {}))
    try:
        announce(client, name)
    except (RedisError, OSError) as exc:
        if quiet:
            return False
        log.warning("redis unreachable: running APIs were not told of the change",
                    extra={"redis": redacted_url, "model": name, "error": str(exc)})
        return False
    finally:
        client.close()
    return True
