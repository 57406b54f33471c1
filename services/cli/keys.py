"""``inferq keys``: API keys, created, listed and revoked in Redis directly.

The command needs no key of its own: it reads and writes the records with the process's
settings (``INFERQ_REDIS_URL``, ``INFERQ_AUTH_SECRET``), as the API does, so the first
admin key of a deployment is made inside an API pod
(``kubectl exec deploy/inferq-api -- inferq keys create --tenant ops --scopes admin``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.cli.errors import CliError
from services.cli.models import emit
from services.common.api_keys import (
    ApiKeyStore,
    InvalidKeySpec,
    parse_duration,
    parse_time,
)
from services.common.settings import Settings

T = TypeVar("T")


def add_keys_parser(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="API keys: create, list, revoke (in Redis)")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a key; prints it once, as JSON")
    create.add_argument("--tenant", required=True,
                        help="the tenant the key acts for (lowercase letters, digits, dashes)")
    create.add_argument("--scopes", required=True,
                        help="comma-separated: predict, jobs, train, admin")
    create.add_argument("--name", default="", help="for people to know the key by")
    expiry = create.add_mutually_exclusive_group()
    expiry.add_argument("--expires-in", metavar="DURATION",
                        help="the key expires after this long: 90s, 15m, 12h, 30d, 2w")
    expiry.add_argument("--expires", metavar="TIME",
                        help="the key expires at this time, e.g. 2027-01-31T00:00:00Z")
    create.add_argument("--requests-per-second", type=float, metavar="R",
                        help="the key's own request rate limit (default: the settings')")
    create.add_argument("--rows-per-minute", type=int, metavar="N",
                        help="the key's own row limit (default: the settings')")
    actions.add_parser("list", help="every key: never the key itself nor its hash")
    revoke = actions.add_parser("revoke", help="revoke a key at once, on every API process")
    revoke.add_argument("key_id", metavar="ID")
    limits = actions.add_parser(
        "set-limits", help="a key's own limits, on every API process at once; a limit not "
                           "given goes back to the settings' default")
    limits.add_argument("key_id", metavar="ID")
    limits.add_argument("--requests-per-second", type=float, metavar="R")
    limits.add_argument("--rows-per-minute", type=int, metavar="N")


def run_keys(args: argparse.Namespace, settings: Settings) -> int:
    if args.keys_command == "create":
        if not (settings.auth_secret and settings.auth_secret.get_secret_value()):
            raise CliError("INFERQ_AUTH_SECRET is not set: keys are stored under its keyed "
                           "hash; set it to the API's value")
        expires_at = _expiry(args)
        scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]

        async def create(store: ApiKeyStore) -> dict[str, Any]:
            record, key = await store.create(
                args.tenant, scopes, args.name, expires_at, args.requests_per_second,
                args.rows_per_minute)
            return {**record.to_public(), "key": key}

        emit(_with_store(settings, create))
        return 0
    if args.keys_command == "list":
        async def listing(store: ApiKeyStore) -> list[dict[str, Any]]:
            return [record.to_public() for record in await store.all()]

        emit({"api_keys": _with_store(settings, listing)})
        return 0

    async def change(store: ApiKeyStore) -> dict[str, Any] | None:
        record = (await store.revoke(args.key_id) if args.keys_command == "revoke"
                  else await store.set_limits(args.key_id, args.requests_per_second,
                                              args.rows_per_minute))
        return record.to_public() if record else None

    changed = _with_store(settings, change)
    if changed is None:
        raise CliError(f"no API key {args.key_id!r}; `inferq keys list` lists them")
    emit(changed)
    return 0


def _expiry(args: argparse.Namespace) -> float | None:
    try:
        if args.expires_in:
            return time.time() + parse_duration(args.expires_in)
        if args.expires:
            return parse_time(args.expires)
    except ValueError as exc:
        raise CliError(f"--expires{'-in' if args.expires_in else ''}: {exc}") from None
    return None


def _with_store(settings: Settings, action: Callable[[ApiKeyStore], Awaitable[T]]) -> T:
    async def run() -> T:
        client = aioredis.Redis.from_url(settings.broker_url,
                                         socket_timeout=settings.redis_socket_timeout,
                                         socket_connect_timeout=settings.redis_socket_timeout)
        secret = settings.auth_secret.get_secret_value().encode() if settings.auth_secret \
            else None
        try:
            return await action(ApiKeyStore(client, secret))
        finally:
            await client.aclose()

    try:
        return asyncio.run(run())
    except InvalidKeySpec as exc:
        raise CliError(f"--{exc.field.replace('_', '-')}: {exc}") from None
    except (RedisError, OSError) as exc:
        raise CliError(f"Redis at {settings.redis_url_redacted} is unreachable: {exc}") from None
