"""The authenticator's cache of verified keys, against a real Redis: what it keeps, what an
announcement drops, and the throttled note of a key's last use."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from services.api.auth import Authenticator
from services.api.errors import InvalidApiKey, Unauthenticated
from services.common.api_keys import ApiKeyStore
from services.common.keys import api_key_key
from services.common.settings import Settings

SECRET = "unit-test-auth-secret"

Scenario = Callable[[Authenticator, ApiKeyStore], Awaitable[None]]


def run(redis_url: str, scenario: Scenario) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        authenticator = Authenticator(Settings(auth="on", auth_secret=SECRET))  # type: ignore[arg-type]
        authenticator.bind(client)
        try:
            await scenario(authenticator, ApiKeyStore(client, SECRET.encode()))
        finally:
            await client.aclose()

    asyncio.run(main())


@pytest.fixture
def redis_url(clean_redis: redis.Redis, redis_server: Any) -> str:
    return str(redis_server.url)


def test_a_cached_key_is_checked_whole_and_dropped_when_announced(
        redis_url: str, clean_redis: redis.Redis) -> None:
    async def scenario(authenticator: Authenticator, store: ApiKeyStore) -> None:
        record, key = await store.create("acme", ["predict"])
        principal = await authenticator.principal(f"Bearer {key}")
        assert principal.tenant == "acme" and principal.key_id == record.key_id
        # Same id, another secret: the cached hash refuses it.
        forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
        with pytest.raises(InvalidApiKey):
            await authenticator.principal(f"Bearer {forged}")
        # Revoked behind the cache's back: served from the cache until announced.
        clean_redis.hset(api_key_key(record.key_id), "revoked_at", "1")
        assert (await authenticator.principal(f"bearer {key}")).tenant == "acme"
        authenticator.changed(record.key_id.encode())
        with pytest.raises(InvalidApiKey, match="revoked"):
            await authenticator.principal(f"Bearer {key}")

    run(redis_url, scenario)


def test_a_resubscription_forgets_every_key(redis_url: str, clean_redis: redis.Redis) -> None:
    async def scenario(authenticator: Authenticator, store: ApiKeyStore) -> None:
        records = [await store.create("acme", ["jobs"]) for _ in range(3)]
        for _, key in records:
            await authenticator.principal(f"Bearer {key}")
        clean_redis.delete(*(api_key_key(r.key_id) for r, _ in records))
        authenticator.subscribed()
        for _, key in records:
            with pytest.raises(InvalidApiKey):
                await authenticator.principal(f"Bearer {key}")

    run(redis_url, scenario)


def test_a_record_read_across_an_announcement_is_not_cached(
        redis_url: str, clean_redis: redis.Redis) -> None:
    async def scenario(authenticator: Authenticator, store: ApiKeyStore) -> None:
        record, key = await store.create("acme", ["predict"])
        # Redis holds the read while the key's change is announced.
        clean_redis.execute_command("CLIENT", "PAUSE", 300, "ALL")
        reading = asyncio.ensure_future(authenticator.principal(f"Bearer {key}"))
        await asyncio.sleep(0.1)
        assert not reading.done()
        authenticator.changed(record.key_id.encode())
        assert (await reading).tenant == "acme"  # Served once, but not kept:
        clean_redis.hset(api_key_key(record.key_id), "revoked_at", "1")
        with pytest.raises(InvalidApiKey, match="revoked"):
            await authenticator.principal(f"Bearer {key}")

    run(redis_url, scenario)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic abc", "Token x"])
def test_no_bearer_token_is_missing_credentials(redis_url: str, header: str | None) -> None:
    async def scenario(authenticator: Authenticator, store: ApiKeyStore) -> None:
        with pytest.raises(Unauthenticated) as raised:
            await authenticator.principal(header)
        assert raised.value.code == "missing_credentials"

    run(redis_url, scenario)


def test_last_use_is_noted_once_a_minute_in_the_background(
        redis_url: str, clean_redis: redis.Redis) -> None:
    async def scenario(authenticator: Authenticator, store: ApiKeyStore) -> None:
        record, key = await store.create("acme", ["predict"])
        await authenticator.principal(f"Bearer {key}")
        await asyncio.sleep(0.05)
        first = clean_redis.hget(api_key_key(record.key_id), "last_used_at")
        assert first
        for _ in range(5):
            await authenticator.principal(f"Bearer {key}")
        await asyncio.sleep(0.05)
        assert clean_redis.hget(api_key_key(record.key_id), "last_used_at") == first

    run(redis_url, scenario)


def test_an_expired_key_is_refused_from_the_cache(redis_url: str) -> None:
    async def scenario(authenticator: Authenticator, store: ApiKeyStore) -> None:
        _, key = await store.create("acme", ["predict"], expires_at=time.time() + 0.3)
        await authenticator.principal(f"Bearer {key}")
        await asyncio.sleep(0.35)
        with pytest.raises(InvalidApiKey, match="expired"):
            await authenticator.principal(f"Bearer {key}")

    run(redis_url, scenario)
