"""API keys: their format, their keyed hash, and their records in Redis.

A key reads ``inferq_<id>_<secret>``: ``<id>`` is 16 lowercase hex digits, public, the
record's id; ``<secret>`` is 32 random bytes in base64url without padding. Only the keyed
hash of the whole key, HMAC-SHA256 under ``settings.auth_secret``, is stored, in the hash
``keys.api_key_key(id)``; the key itself is shown once, by ``ApiKeyStore.create``, and is
never stored or logged. The API and the ``inferq keys`` command share this module.

A change that must reach every API process at once (a revocation, new limits, a seed that
changed) is announced on ``keys.API_KEYS_CHANNEL``, the key's id the message: each process
drops what it cached of that key.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from services.common.keys import API_KEYS_CHANNEL, API_KEYS_INDEX, api_key_key
from services.common.principal import SCOPES, TENANT_PATTERN, Principal
from services.common.records import decoded, rfc3339

PREFIX = "inferq_"
ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")
SECRET_BYTES = 32
#: The secret's length in base64url without padding.
SECRET_LENGTH = len(base64.urlsafe_b64encode(bytes(SECRET_BYTES)).rstrip(b"="))
_SECRET_PATTERN = re.compile(rf"^[A-Za-z0-9_-]{{{SECRET_LENGTH}}}$")
#: A name for people to know a key by.
NAME_PATTERN = re.compile(r"^[^\x00-\x1f\x7f]{0,200}$")

# Sets fields of a record that exists; never creates one.
_UPDATE_EXISTING = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


class InvalidKeySpec(ValueError):
    """A key's attributes that cannot be stored; ``field`` names the wrong one."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


def generate() -> tuple[str, str]:
    """A new key and its id."""
    key_id = secrets.token_hex(8)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).rstrip(b"=").decode()
    return key_id, f"{PREFIX}{key_id}_{secret}"


def key_id_of(key: str) -> str | None:
    """The id of a well-formed key; None for anything else, which is simply not a key."""
    if not key.startswith(PREFIX):
        return None
    key_id, sep, secret = key[len(PREFIX):].partition("_")
    if not sep or not ID_PATTERN.fullmatch(key_id) or not _SECRET_PATTERN.fullmatch(secret):
        return None
    return key_id


def key_hash(auth_secret: bytes, key: str) -> str:
    """The keyed hash under which ``key`` is stored."""
    return hmac.new(auth_secret, key.encode(), sha256).hexdigest()


def matches(auth_secret: bytes, key: str, stored_hash: str) -> bool:
    """Whether ``key`` is the one whose hash is ``stored_hash``, in constant time."""
    return hmac.compare_digest(key_hash(auth_secret, key), stored_hash)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key's record. Times are seconds since the epoch."""

    key_id: str
    tenant: str
    scopes: tuple[str, ...]
    hash: str = field(repr=False)
    name: str = ""
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None
    requests_per_second: float | None = None
    rows_per_minute: int | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def refusal(self, now: float) -> str | None:
        """Why the key cannot be used now (``revoked``, ``expired``); None when it can."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expired(now):
            return "expired"
        return None

    def principal(self) -> Principal:
        return Principal(tenant=self.tenant, scopes=frozenset(self.scopes), key_id=self.key_id,
                         requests_per_second=self.requests_per_second,
                         rows_per_minute=self.rows_per_minute)

    def to_public(self) -> dict[str, Any]:
        """What clients see: never the hash."""
        return {
            "id": self.key_id,
            "tenant": self.tenant,
            "scopes": list(self.scopes),
            "name": self.name,
            "created_at": rfc3339(repr(self.created_at)),
            "expires_at": _time_text(self.expires_at),
            "revoked_at": _time_text(self.revoked_at),
            "last_used_at": _time_text(self.last_used_at),
            "requests_per_second": self.requests_per_second,
            "rows_per_minute": self.rows_per_minute,
        }

    def to_redis(self) -> dict[Any, Any]:
        return {
            "tenant": self.tenant,
            "scopes": ",".join(self.scopes),
            "hash": self.hash,
            "name": self.name,
            "created_at": repr(self.created_at),
            "expires_at": _number_text(self.expires_at),
            "revoked_at": _number_text(self.revoked_at),
            "last_used_at": _number_text(self.last_used_at),
            "requests_per_second": _number_text(self.requests_per_second),
            "rows_per_minute": _number_text(self.rows_per_minute),
        }

    @classmethod
    def from_redis(cls, key_id: str, raw: dict[Any, Any]) -> ApiKey:
        record = {decoded(k): decoded(v) for k, v in raw.items()}
        rows = record.get("rows_per_minute")
        return cls(
            key_id=key_id,
            tenant=record.get("tenant", ""),
            scopes=tuple(s for s in record.get("scopes", "").split(",") if s),
            hash=record.get("hash", ""),
            name=record.get("name", ""),
            created_at=float(record.get("created_at") or 0.0),
            expires_at=_number(record.get("expires_at")),
            revoked_at=_number(record.get("revoked_at")),
            last_used_at=_number(record.get("last_used_at")),
            requests_per_second=_number(record.get("requests_per_second")),
            rows_per_minute=int(rows) if rows else None,
        )


def _number(value: str | None) -> float | None:
    return float(value) if value else None


def _number_text(value: float | None) -> str:
    return "" if value is None else repr(value)


def _time_text(value: float | None) -> str | None:
    return None if value is None else rfc3339(repr(value))


def check_spec(tenant: str, scopes: list[str] | tuple[str, ...], name: str = "",
               expires_at: float | None = None, requests_per_second: float | None = None,
               rows_per_minute: int | None = None, now: float | None = None) -> tuple[str, ...]:
    """The scopes, deduplicated in ``SCOPES`` order, of a key that may be stored; an
    ``InvalidKeySpec`` naming the field otherwise."""
    if not isinstance(tenant, str) or not TENANT_PATTERN.fullmatch(tenant):
        raise InvalidKeySpec("tenant", f"tenant {tenant!r} must be lowercase letters, digits "
                                       "and dashes, starting with a letter, at most 40")
    if not scopes:
        raise InvalidKeySpec("scopes", f"a key needs at least one scope of {', '.join(SCOPES)}")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise InvalidKeySpec("scopes", f"unknown scope {unknown[0]!r}; the scopes are "
                                       f"{', '.join(SCOPES)}")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidKeySpec("name", "name must be at most 200 characters, none of them "
                                     "control characters")
    if expires_at is not None and expires_at <= (time.time() if now is None else now):
        raise InvalidKeySpec("expires_at", "the expiry is in the past")
    if requests_per_second is not None and not requests_per_second >= 0:
        raise InvalidKeySpec("requests_per_second", "requests_per_second must be 0 "
                                                    "(unlimited) or more")
    if rows_per_minute is not None and rows_per_minute < 0:
        raise InvalidKeySpec("rows_per_minute", "rows_per_minute must be 0 (unlimited) or more")
    return tuple(s for s in SCOPES if s in scopes)


_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_duration(text: str) -> float:
    """Seconds of a duration such as ``90s``, ``15m``, ``12h``, ``30d``, ``2w``."""
    found = _DURATION.match(text.strip())
    if not found or int(found.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration such as 90s, 15m, 12h, 30d or 2w")
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2)]


class NoAuthSecret(RuntimeError):
    """A key to store without ``settings.auth_secret``, the key of its hash."""


class ApiKeyStore:
    """The keys' records in Redis."""

    def __init__(self, client: aioredis.Redis, auth_secret: bytes | None) -> None:
        self._client = client
        self._secret = auth_secret
        self._update = client.register_script(_UPDATE_EXISTING)

    def _hash(self, key: str) -> str:
        if not self._secret:
            raise NoAuthSecret("INFERQ_AUTH_SECRET is not set: keys cannot be stored")
        return key_hash(self._secret, key)

    async def create(self, tenant: str, scopes: list[str] | tuple[str, ...], name: str = "",
                     expires_at: float | None = None,
                     requests_per_second: float | None = None,
                     rows_per_minute: int | None = None) -> tuple[ApiKey, str]:
        """A new key's record, and the key itself: the only time it is seen."""
        now = time.time()
        checked = check_spec(tenant, scopes, name, expires_at, requests_per_second,
                             rows_per_minute, now)
        key_id, key = generate()
        record = ApiKey(key_id, tenant, checked, self._hash(key), name, now, expires_at,
                        requests_per_second=requests_per_second,
                        rows_per_minute=rows_per_minute)
        await self._write(record)
        return record, key

    async def put(self, key: str, tenant: str, scopes: list[str] | tuple[str, ...],
                  name: str = "", expires_at: float | None = None,
                  requests_per_second: float | None = None,
                  rows_per_minute: int | None = None) -> ApiKey:
        """Store a key made elsewhere (a seed file), by its id: a record already there takes
        the new attributes but keeps its creation, last use and revocation."""
        key_id = key_id_of(key)
        if key_id is None:
            raise InvalidKeySpec("key", "not a key of the form inferq_<16 hex>_<43 base64url>")
        checked = check_spec(tenant, scopes, name, None, requests_per_second, rows_per_minute)
        old = await self.get(key_id)
        record = ApiKey(key_id, tenant, checked, self._hash(key), name,
                        old.created_at if old else time.time(), expires_at,
                        revoked_at=old.revoked_at if old else None,
                        last_used_at=old.last_used_at if old else None,
                        requests_per_second=requests_per_second,
                        rows_per_minute=rows_per_minute)
        if record != old:
            await self._write(record)
            if old is not None:
                await self.announce(key_id)
        return record

    async def _write(self, record: ApiKey) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(api_key_key(record.key_id), mapping=record.to_redis())
            pipe.zadd(API_KEYS_INDEX, {record.key_id: record.created_at})
            await pipe.execute()

    async def get(self, key_id: str) -> ApiKey | None:
        if not ID_PATTERN.fullmatch(key_id):
            return None
        raw = await self._client.hgetall(api_key_key(key_id))
        return ApiKey.from_redis(key_id, raw) if raw else None

    async def all(self) -> list[ApiKey]:
        """Every key, oldest first."""
        found: Any = await self._client.zrange(API_KEYS_INDEX, 0, -1)
        ids = [decoded(i) for i in found]
        async with self._client.pipeline(transaction=False) as pipe:
            for key_id in ids:
                pipe.hgetall(api_key_key(key_id))
            raws = await pipe.execute()
        return [ApiKey.from_redis(key_id, raw) for key_id, raw in zip(ids, raws, strict=True)
                if raw]

    async def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke the key (its record stays, for the listing) and announce it; the record,
        None when there is no such key. A key revoked already keeps its first revocation."""
        record = await self.get(key_id)
        if record is None:
            return None
        if record.revoked_at is None:
            await self._update(keys=[api_key_key(key_id)], args=["revoked_at", repr(time.time())])
        await self.announce(key_id)
        return await self.get(key_id)

    async def set_limits(self, key_id: str, requests_per_second: float | None,
                         rows_per_minute: int | None) -> ApiKey | None:
        """The key's own limits (None: the settings' defaults), announced."""
        record = await self.get(key_id)
        if record is None:
            return None
        check_spec(record.tenant, record.scopes, record.name, None, requests_per_second,
                   rows_per_minute)
        await self._update(keys=[api_key_key(key_id)],
                           args=["requests_per_second", _number_text(requests_per_second),
                                 "rows_per_minute", _number_text(rows_per_minute)])
        await self.announce(key_id)
        return await self.get(key_id)

    async def touch(self, key_id: str, when: float) -> None:
        """Note the key's last use."""
        await self._update(keys=[api_key_key(key_id)], args=["last_used_at", repr(when)])

    async def announce(self, key_id: str) -> None:
        await self._client.publish(API_KEYS_CHANNEL, key_id)


class SeedFileError(ValueError):
    """A seed file that cannot be used; the message names the file and the entry, never
    a key."""


def read_seed_file(path: Path) -> list[dict[str, Any]]:
    """The seed file's entries, checked, as keyword arguments of ``ApiKeyStore.put``."""
    try:
        entries = json.loads(path.read_text())
    except OSError as exc:
        raise SeedFileError(f"API key seed file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise SeedFileError(f"API key seed file {path} is not JSON: {exc}") from None
    if not isinstance(entries, list):
        raise SeedFileError(f"API key seed file {path} must hold a JSON list of objects")
    checked: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        where = f"API key seed file {path}, entry {index}"
        if not isinstance(entry, dict):
            raise SeedFileError(f"{where}: not an object")
        unknown = set(entry) - {"key", "tenant", "scopes", "name", "expires_at",
                                "requests_per_second", "rows_per_minute"}
        if unknown:
            raise SeedFileError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        key = entry.get("key")
        if not isinstance(key, str) or key_id_of(key) is None:
            raise SeedFileError(f"{where}: key: not a key of the form "
                                "inferq_<16 hex>_<43 base64url>")
        scopes = entry.get("scopes")
        if isinstance(scopes, str):
            scopes = [s.strip() for s in scopes.split(",") if s.strip()]
        if not isinstance(scopes, list):
            raise SeedFileError(f"{where}: scopes: a list of scopes")
        expires = entry.get("expires_at")
        try:
            expires_at = parse_time(expires) if expires else None
            arguments: dict[str, Any] = {
                "key": key, "tenant": entry.get("tenant"), "scopes": scopes,
                "name": entry.get("name") or "", "expires_at": expires_at,
                "requests_per_second": entry.get("requests_per_second"),
                "rows_per_minute": entry.get("rows_per_minute"),
            }
            _check_seed_types(arguments)
            check_spec(arguments["tenant"], scopes, arguments["name"], None,
                       arguments["requests_per_second"], arguments["rows_per_minute"])
        except InvalidKeySpec as exc:
            raise SeedFileError(f"{where}: {exc.field}: {exc}") from None
        except ValueError as exc:
            raise SeedFileError(f"{where}: {exc}") from None
        checked.append(arguments)
    return checked


def _check_seed_types(arguments: dict[str, Any]) -> None:
    rps, rpm = arguments["requests_per_second"], arguments["rows_per_minute"]
    if rps is not None and (isinstance(rps, bool) or not isinstance(rps, int | float)):
        raise InvalidKeySpec("requests_per_second", "requests_per_second must be a number")
    if rpm is not None and (isinstance(rpm, bool) or not isinstance(rpm, int)):
        raise InvalidKeySpec("rows_per_minute", "rows_per_minute must be an integer")
    if rps is not None:
        arguments["requests_per_second"] = float(rps)


def parse_time(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 / ISO 8601 time; one without a zone is UTC."""
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise ValueError(f"{text!r} is not a time such as 2027-01-31T00:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
