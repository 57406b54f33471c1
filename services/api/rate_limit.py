"""Per-key rate limits shared by every API process: requests per second, rows per minute.

Each limit of a key is one GCRA (generic cell rate algorithm) bucket in Redis: a single
number, the key's *theoretical arrival time* (TAT), the moment its bucket would be empty
again. A request costing ``n`` units (one request, or its rows) moves the TAT ``n``
emission periods (``window / quota``) later; it passes when the TAT, so moved, lies no more
than one window ahead of now. A full window's quota may so come at once, and then one unit
per period: no fixed window's edge where twice the quota passes in a moment, and no log of
past requests to keep (a sliding window's cost), one short string per key and limit.

One Lua script (``LIMIT_SCRIPT``) checks every limit of a request and then moves every
TAT, or moves none: a request is counted whole or not at all. It reads the time from Redis
(``TIME``), so API processes with drifting clocks share one clock. One round trip per
request; a predict's request and rows go in the same call.

With authentication off every caller is ``ANONYMOUS``, without a key: nothing is limited
and no header is added. Limits are a share of the platform between keys; one bucket shared
by every anonymous caller would throttle a local stack's clients (and its benchmarks)
against each other, and protect nothing a deployment with authentication on needs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

import redis.asyncio as aioredis
from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.error_responses import error_response
from services.api.errors import ApiError, TooManyRows
from services.api.principal import PRINCIPAL
from services.common import keys
from services.common.metrics import AUTH_REFUSED
from services.common.principal import Principal
from services.common.records import ALLOW_OOM
from services.common.settings import Settings

log = logging.getLogger(__name__)

#: The scope entry of headers to add to the answer, a list of (name, value) byte pairs; the
#: observing middleware (``services.api.observation``) appends them in its ``send``.
RESPONSE_HEADERS = "inferq.response_headers"

# ``take_limits(buckets, spec, rows)``: ``buckets`` the keys of a request's limits, each a TAT
# in microseconds since 2023-11-14; ``spec`` for each its quota, its window (seconds) and
# its cost, ``1`` (a request) or ``n`` (the request's ``rows``), separated by spaces: one
# argument, which redis-py packs once, not three per limit. Moves every TAT, or none.
# Returns {allowed (0/1), microseconds until it would be allowed (0 when allowed)}, then
# for each limit the units left and the microseconds until its bucket is full again.
TAKE_LIMITS = """
local function take_limits(buckets, spec, rows)
  local fields = {}
  for field in string.gmatch(spec, '%S+') do fields[#fields + 1] = field end
  local clock = redis.call('TIME')
  -- Since 2023-11-14: small enough for a double to keep a hundredth of a microsecond.
  local now = (tonumber(clock[1]) - 1700000000) * 1000000 + tonumber(clock[2])
  local windows, periods, costs, tats, moved = {}, {}, {}, {}, {}
  local wait = 0
  for i, key in ipairs(buckets) do
    local at = 3 * i - 2
    windows[i] = tonumber(fields[at + 1]) * 1000000
    periods[i] = windows[i] / tonumber(fields[at])
    costs[i] = fields[at + 2] == 'n' and tonumber(rows) or 1
    tats[i] = math.max(tonumber(redis.call('GET', key) or '0'), now)
    moved[i] = tats[i] + costs[i] * periods[i]
    if moved[i] - now > windows[i] + 1 then
      wait = math.max(wait, moved[i] - windows[i] - now)
    end
  end
  local reply = {wait > 0 and 0 or 1, math.ceil(wait)}
  for i, key in ipairs(buckets) do
    local tat = tats[i]
    if wait == 0 and costs[i] > 0 then
      tat = moved[i]
      redis.call('SET', key, string.format('%.3f', tat), 'PX',
                 math.max(1, math.ceil((tat - now) / 1000)))
    end
    reply[#reply + 1] = math.max(0, math.floor((windows[i] - (tat - now)) / periods[i] + 1e-9))
    reply[#reply + 1] = math.ceil(tat - now)
  end
  return reply
end
"""

# KEYS: the request's buckets; ARGV: their spec and the rows. Allowed under maxmemory: the
# buckets are tiny and expire, and reads must stay limited when Redis refuses new tasks.
LIMIT_SCRIPT = ALLOW_OOM + TAKE_LIMITS + "return take_limits(KEYS, ARGV[1], ARGV[2])\n"


class RateLimited(ApiError):
    """Over one of the key's limits; ``Retry-After`` says when the same request passes."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int, details: dict[str, object]) -> None:
        super().__init__(message, details)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit of a key: ``quota`` units per ``window`` seconds, named ``name`` in the
    headers and in its bucket's Redis key."""

    name: str
    quota: float
    window: int

    def describe(self) -> str:
        """The limit as a member of ``RateLimit-Policy``."""
        return f'"{self.name}";q={math.floor(self.quota)};w={self.window}'


@dataclass(frozen=True, slots=True)
class Limits:
    """Every limit of a key, and its ``RateLimit-Policy`` header, encoded once."""

    requests: Limit | None
    rows: Limit | None
    policy: bytes

    @property
    def all(self) -> tuple[Limit, ...]:
        return tuple(limit for limit in (self.requests, self.rows) if limit is not None)

    @property
    def spec(self) -> bytes:
        """The limits as ``take_limits`` reads them: quota, window and cost of each."""
        return " ".join(f"{limit.quota!r} {limit.window} {'1' if limit is self.requests else 'n'}"
                        for limit in self.all).encode()


@lru_cache(maxsize=1024)
def limits_of(requests_per_second: float, rows_per_minute: int) -> Limits | None:
    """The limits of a key allowed these rates (0: unlimited); None when both are 0.

    Requests per second below 1 become one request per window of as many seconds as one
    request's share (0.2 per second: one request in 5 s): a quota is a whole number.
    """
    requests = None
    if requests_per_second > 0:
        window = max(1, math.ceil(1 / requests_per_second - 1e-9))
        requests = Limit("requests", requests_per_second * window, window)
    rows = Limit("rows", float(rows_per_minute), 60) if rows_per_minute > 0 else None
    if requests is None and rows is None:
        return None
    policy = ", ".join(limit.describe() for limit in (requests, rows) if limit is not None)
    return Limits(requests, rows, policy.encode())


@dataclass(frozen=True, slots=True)
class Plan:
    """A key's limits made ready for the script once: its buckets' keys, its spec."""

    limits: Limits
    chosen: tuple[Limit, ...]
    buckets: list[str]
    spec: bytes


@dataclass(slots=True)
class Charge:
    """What one request takes from its caller's limits: its key's plan and its rows;
    ``settle`` reads the script's reply."""

    scope: Scope
    plan: Plan
    rows: int

    def settle(self, reply: list[int]) -> None:
        """Place the answer's headers in the scope; raise ``RateLimited`` (counted) when a
        limit refused the request."""
        chosen = self.plan.chosen
        state = ", ".join(
            f'"{limit.name}";r={reply[2 + 2 * i]};t={-(-reply[3 + 2 * i] // 1_000_000)}'
            for i, limit in enumerate(chosen))
        self.scope[RESPONSE_HEADERS] = [(b"ratelimit-policy", self.plan.limits.policy),
                                        (b"ratelimit", state.encode())]
        if reply[0]:
            return
        AUTH_REFUSED.labels("rate_limited").inc()
        retry_after = max(1, -(-reply[1] // 1_000_000))
        raise RateLimited(
            f"this key is over its rate limit; retry in {retry_after} s",
            retry_after,
            {"retry_after": retry_after,
             "limits": {limit.name: {"quota": math.floor(limit.quota), "window": limit.window}
                        for limit in chosen}})


#: Plans kept per API process; past this many keys they are made again.
MAX_PLANS = 10_000


class RateLimiter:
    """Takes what each request costs from its key's buckets, in one round trip."""

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self._script = client.register_script(LIMIT_SCRIPT)
        self._requests_per_second = settings.rate_limit_requests_per_second
        self._rows_per_minute = settings.rate_limit_rows_per_minute
        self._plans: dict[tuple[str, float | None, int | None], Plan | None] = {}

    def limits(self, principal: Principal) -> Limits | None:
        """The caller's limits: its key's own, else the settings'; None when unlimited."""
        if principal.key_id is None:
            return None
        rps = principal.requests_per_second
        rpm = principal.rows_per_minute
        return limits_of(self._requests_per_second if rps is None else rps,
                         self._rows_per_minute if rpm is None else rpm)

    def _plan(self, principal: Principal) -> Plan | None:
        found = (principal.key_id or "", principal.requests_per_second,
                 principal.rows_per_minute)
        try:
            return self._plans[found]
        except KeyError:
            pass
        limits = self.limits(principal)
        plan = None
        if limits is not None and principal.key_id is not None:
            chosen = limits.all
            plan = Plan(limits, chosen,
                        [keys.rate_limit_key(principal.key_id, limit.name, limit.window)
                         for limit in chosen], limits.spec)
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()
        self._plans[found] = plan
        return plan

    def charge(self, scope: Scope, rows: int = 0) -> Charge | None:
        """What one request and ``rows`` rows take from the caller's limits; None when it
        has none. Raises ``TooManyRows`` when the rows exceed what the key may ever send in
        one window."""
        principal: Principal | None = scope.get(PRINCIPAL)
        if principal is None or principal.key_id is None:
            return None
        plan = self._plan(principal)
        if plan is None:
            return None
        limit = plan.limits.rows
        if limit is not None and rows > limit.quota:
            raise TooManyRows(
                f"{rows} rows is more than this key may send in a minute "
                f"({math.floor(limit.quota)}); send them in smaller requests",
                {"rows": rows, "rows_per_minute": math.floor(limit.quota)})
        return Charge(scope, plan, rows)

    async def take(self, scope: Scope, rows: int = 0) -> None:
        """Take one request, and ``rows`` rows, from the caller's limits now, and place the
        answer's ``RateLimit-Policy`` and ``RateLimit`` headers in ``scope``.

        Raises ``RateLimited`` when a limit refuses it, ``TooManyRows`` when the rows never
        fit (``charge``); then nothing is taken.
        """
        charge = self.charge(scope, rows)
        if charge is not None:
            charge.settle(await self._script(keys=charge.plan.buckets,
                                             args=[charge.plan.spec, rows]))


def _is_predict(scope: Scope) -> bool:
    """``POST /v1/models/{model}/predict``: its handler takes the request with its rows."""
    path: str = scope["path"]
    return (scope["method"] == "POST" and path.startswith("/v1/models/")
            and path.endswith("/predict") and path.count("/") == 4)


class RateLimitMiddleware:
    """Takes one request from the caller's limits for every authenticated request, except
    predictions, whose handler takes the request and its rows once it has read them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and PRINCIPAL in scope and not _is_predict(scope):
            limiter: RateLimiter = scope["app"].state.inferq.limiter
            try:
                await limiter.take(scope)
            except Exception as exc:  # Refused, or Redis unreachable: answered here.
                await error_response(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)
