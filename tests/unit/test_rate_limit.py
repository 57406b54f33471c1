"""The limiter's buckets on a real Redis: quotas, rows, overrides, Retry-After, headers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.api.errors import TooManyRows
from services.api.principal import PRINCIPAL
from services.api.rate_limit import RESPONSE_HEADERS, RateLimited, RateLimiter, limits_of
from services.common import keys
from services.common.metrics import AUTH_REFUSED
from services.common.principal import ANONYMOUS, SCOPES, Principal
from services.common.settings import Settings


def caller(key_id: str = "0123456789abcdef", **limits: Any) -> Principal:
    return Principal(tenant="acme", scopes=frozenset(SCOPES), key_id=key_id, **limits)


def scope_of(principal: Principal) -> dict[str, Any]:
    return {"type": "http", PRINCIPAL: principal}


def headers(scope: dict[str, Any]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in scope[RESPONSE_HEADERS]}


async def take_many(limiter: RateLimiter, principal: Principal, count: int,
                    rows: int = 0) -> tuple[int, list[RateLimited]]:
    passed, refused = 0, []
    for _ in range(count):
        try:
            await limiter.take(scope_of(principal), rows)
            passed += 1
        except RateLimited as exc:
            refused.append(exc)
    return passed, refused


def run(redis_server: Any, body: Any, **settings: Any) -> Any:
    async def main() -> Any:
        client = aioredis.Redis(port=redis_server.port)
        try:
            return await body(client, Settings(**settings))
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_a_burst_from_two_limiters_is_refused_at_the_quota(redis_server: Any,
                                                           clean_redis: Any) -> None:
    async def body(client: aioredis.Redis, settings: Settings) -> tuple[int, int]:
        other = aioredis.Redis(port=redis_server.port)
        try:
            one, two = RateLimiter(client, settings), RateLimiter(other, settings)
            results = await asyncio.gather(take_many(one, caller(), 15),
                                           take_many(two, caller(), 15))
            return sum(r[0] for r in results), sum(len(r[1]) for r in results)
        finally:
            await other.aclose()

    before = AUTH_REFUSED.labels("rate_limited")._value.get()
    passed, refused = run(redis_server, body, rate_limit_requests_per_second=10)
    # Within a second of the first: the quota, and at most one more unit drained meanwhile.
    assert 10 <= passed <= 11
    assert refused == 30 - passed
    assert AUTH_REFUSED.labels("rate_limited")._value.get() - before == refused


def test_rows_per_minute_refuses_whole_requests(redis_server: Any, clean_redis: Any) -> None:
    async def body(client: aioredis.Redis, settings: Settings) -> Any:
        limiter = RateLimiter(client, settings)
        passed, refused = await take_many(limiter, caller(), 5, rows=40)
        requests_tat = await client.get(keys.rate_limit_key("0123456789abcdef", "requests", 1))
        return passed, refused, requests_tat

    passed, refused, _ = run(redis_server, body, rate_limit_requests_per_second=0,
                             rate_limit_rows_per_minute=100)
    assert passed == 2  # 80 rows; a third request's 40 would be 120
    assert len(refused) == 3
    # 40 rows more than the 20 left need 20 rows' share of a minute: 12 s.
    assert refused[0].retry_after == 12
    assert refused[0].details["limits"] == {"rows": {"quota": 100, "window": 60}}


def test_a_refused_request_takes_nothing_from_any_limit(redis_server: Any,
                                                        clean_redis: Any) -> None:
    async def body(client: aioredis.Redis, settings: Settings) -> tuple[str, str]:
        limiter = RateLimiter(client, settings)
        await limiter.take(scope_of(caller()), 90)
        scope = scope_of(caller())
        with pytest.raises(RateLimited):
            await limiter.take(scope, 20)  # rows refuse it; requests would pass
        return headers(scope)["ratelimit"], (await limiter_state(limiter))

    async def limiter_state(limiter: RateLimiter) -> str:
        scope = scope_of(caller())
        await limiter.take(scope, 10)  # the 10 rows still left
        return headers(scope)["ratelimit"]

    refused, after = run(redis_server, body, rate_limit_requests_per_second=3,
                         rate_limit_rows_per_minute=100)
    assert refused.startswith('"requests";r=2;')  # the refused request was not counted
    assert '"rows";r=10;' in refused
    assert after.startswith('"requests";r=1;') and '"rows";r=0;' in after


def test_a_keys_own_limits_override_the_defaults(redis_server: Any, clean_redis: Any) -> None:
    async def body(client: aioredis.Redis, settings: Settings) -> Any:
        limiter = RateLimiter(client, settings)
        own = caller("00000000000000aa", requests_per_second=3)
        unlimited = caller("00000000000000bb", requests_per_second=0, rows_per_minute=0)
        scope = scope_of(unlimited)
        await limiter.take(scope)
        return (await take_many(limiter, own, 6))[0], \
            (await take_many(limiter, caller(), 6))[0], \
            (await take_many(limiter, unlimited, 50))[0], scope

    own, default, unlimited, scope = run(redis_server, body, rate_limit_requests_per_second=5)
    assert own == 3
    assert default == 5
    assert unlimited == 50
    assert RESPONSE_HEADERS not in scope  # no limit, nothing to announce


def test_waiting_retry_after_lets_the_next_request_pass(redis_server: Any,
                                                        clean_redis: Any) -> None:
    async def body(client: aioredis.Redis, settings: Settings) -> tuple[int, int]:
        limiter = RateLimiter(client, settings)
        principal = caller(requests_per_second=0.5)  # one request in 2 s
        await limiter.take(scope_of(principal))
        with pytest.raises(RateLimited) as refused:
            await limiter.take(scope_of(principal))
        await asyncio.sleep(refused.value.retry_after)
        passed, _ = await take_many(limiter, principal, 1)
        return refused.value.retry_after, passed

    retry_after, passed = run(redis_server, body)
    assert retry_after == 2
    assert passed == 1


def test_headers_follow_the_draft_syntax(redis_server: Any, clean_redis: Any) -> None:
    async def body(client: aioredis.Redis, settings: Settings) -> dict[str, str]:
        limiter = RateLimiter(client, settings)
        scope = scope_of(caller())
        await limiter.take(scope, 10)
        return headers(scope)

    found = run(redis_server, body, rate_limit_requests_per_second=100,
                rate_limit_rows_per_minute=600_000)
    assert found["ratelimit-policy"] == '"requests";q=100;w=1, "rows";q=600000;w=60'
    assert found["ratelimit"] == '"requests";r=99;t=1, "rows";r=599990;t=1'


def test_more_rows_than_a_window_allows_is_a_413_that_takes_nothing(
        redis_server: Any, clean_redis: Any) -> None:
    async def body(client: aioredis.Redis, settings: Settings) -> list[Any]:
        with pytest.raises(TooManyRows) as refused:
            await RateLimiter(client, settings).take(scope_of(caller()), 101)
        assert refused.value.details == {"rows": 101, "rows_per_minute": 100}
        return [key async for key in client.scan_iter("inferq:ratelimit:*")]

    assert run(redis_server, body, rate_limit_rows_per_minute=100) == []


def test_anonymous_callers_are_not_limited(redis_server: Any, clean_redis: Any) -> None:
    async def body(client: aioredis.Redis, settings: Settings) -> tuple[int, dict[str, Any]]:
        scope = scope_of(ANONYMOUS)
        passed, _ = await take_many(RateLimiter(client, settings), ANONYMOUS, 20)
        await RateLimiter(client, settings).take(scope)
        return passed, scope

    passed, scope = run(redis_server, body, rate_limit_requests_per_second=1)
    assert passed == 20
    assert RESPONSE_HEADERS not in scope


def test_buckets_expire_once_full_again(redis_server: Any, clean_redis: Any) -> None:
    async def body(client: aioredis.Redis, settings: Settings) -> int:
        await RateLimiter(client, settings).take(scope_of(caller()))
        return int(await client.pttl(keys.rate_limit_key("0123456789abcdef", "requests", 1)))

    ttl = run(redis_server, body, rate_limit_requests_per_second=10)
    assert 0 < ttl <= 100  # one request's share of the second


@pytest.mark.parametrize(("rps", "policy"), [
    (100, '"requests";q=100;w=1'),
    (2.5, '"requests";q=2;w=1'),
    (0.2, '"requests";q=1;w=5'),
])
def test_fractional_rates_have_whole_quotas(rps: float, policy: str) -> None:
    limits = limits_of(rps, 0)
    assert limits is not None and limits.policy.decode() == policy
    assert limits_of(0, 0) is None


def test_the_clock_is_redis_s(redis_server: Any, clean_redis: Any) -> None:
    async def body(client: aioredis.Redis, settings: Settings) -> float:
        await RateLimiter(client, settings).take(scope_of(caller()))
        raw = await client.get(keys.rate_limit_key("0123456789abcdef", "requests", 1))
        seconds, micros = await client.time()
        return (seconds - 1_700_000_000 + micros / 1e6) - float(raw) / 1e6

    # The stored arrival time is Redis's now plus one request's share of the second.
    assert abs(run(redis_server, body, rate_limit_requests_per_second=10) + 0.1) < 0.05


def test_quotas_finer_than_a_microsecond_still_count(redis_server: Any,
                                                     clean_redis: Any) -> None:
    async def body(client: aioredis.Redis, settings: Settings) -> dict[str, str]:
        scope = scope_of(caller())
        # A row's share of the minute is 0.06 µs: its bucket lives a millisecond (the
        # shortest expiry Redis takes), not zero, which Redis refuses.
        await RateLimiter(client, settings).take(scope, 1)
        return headers(scope)

    found = run(redis_server, body, rate_limit_requests_per_second=1_000_000,
                rate_limit_rows_per_minute=1_000_000_000)
    assert found["ratelimit"].startswith('"requests";r=999999;t=1, "rows";r=99999999')
