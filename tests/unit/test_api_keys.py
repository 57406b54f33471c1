"""API keys: their format, keyed hash, expiry, seed files, and the route scope table."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from services.api.auth import ROUTE_SCOPES, ScopeTable, auth_problem, in_v1
from services.api.hot_routes import HOT_ROUTES
from services.api.main import create_app
from services.common.api_keys import (
    ApiKey,
    InvalidKeySpec,
    SeedFileError,
    check_spec,
    generate,
    key_hash,
    key_id_of,
    matches,
    parse_duration,
    parse_time,
    read_seed_file,
)
from services.common.principal import SCOPES
from services.common.settings import Settings

SECRET = b"test-auth-secret"


def test_generated_keys_have_the_agreed_format() -> None:
    key_id, key = generate()
    prefix, found_id, secret = key.split("_", 2)
    assert prefix == "inferq" and found_id == key_id
    assert len(key_id) == 16 and all(c in "0123456789abcdef" for c in key_id)
    assert len(secret) == 43 and "=" not in secret
    assert key_id_of(key) == key_id
    assert generate()[1] != key


@pytest.mark.parametrize("key", [
    "", "inferq_", "Bearer x", "inferq_0123456789abcdef",
    "inferq_0123456789abcdef_", "inferq_0123456789ABCDEF_" + "a" * 43,
    "inferq_0123456789abcde_" + "a" * 43, "inferq_0123456789abcdef_" + "a" * 42,
    "inferq_0123456789abcdef_" + "a" * 44, "inferq_0123456789abcdef_" + "a" * 42 + "=",
    "inferq_0123456789abcdef_" + "a" * 42 + "!", "xinferq_0123456789abcdef_" + "a" * 43,
    "inferq_0123456789abcdef_" + "é" * 43, "inferq_0123456789abcdef_" + "a" * 43 + "\n",
])
def test_malformed_keys_are_simply_not_keys(key: str) -> None:
    assert key_id_of(key) is None


def test_the_hash_is_keyed_and_compared_whole() -> None:
    _, key = generate()
    stored = key_hash(SECRET, key)
    assert len(stored) == 64 and key not in stored
    assert matches(SECRET, key, stored)
    assert not matches(b"another-secret", key, stored)
    assert not matches(SECRET, key[:-1] + ("A" if key[-1] != "A" else "B"), stored)
    assert key_hash(b"another-secret", key) != stored


def test_expiry_and_revocation() -> None:
    now = time.time()
    record = ApiKey("0123456789abcdef", "acme", ("predict",), "h", created_at=now,
                    expires_at=now + 10)
    assert record.refusal(now) is None and not record.expired(now + 9.9)
    assert record.expired(now + 10) and record.refusal(now + 11) == "expired"
    revoked = ApiKey("0123456789abcdef", "acme", ("predict",), "h", revoked_at=now)
    assert revoked.refusal(now) == "revoked"
    assert ApiKey("0123456789abcdef", "acme", ("predict",), "h").refusal(now + 1e9) is None


def test_records_round_trip_without_the_hash_in_public() -> None:
    record = ApiKey("0123456789abcdef", "acme", ("predict", "jobs"), "a" * 64, "svc",
                    1_700_000_000.5, 1_800_000_000.0, None, None, 2.5, 100)
    assert ApiKey.from_redis(record.key_id, record.to_redis()) == record
    public = record.to_public()
    assert "a" * 64 not in json.dumps(public) and "hash" not in public
    assert public["expires_at"] == "2027-01-15T08:00:00.000Z"
    assert public["revoked_at"] is None and public["requests_per_second"] == 2.5
    principal = record.principal()
    assert principal.tenant == "acme" and principal.scopes == {"predict", "jobs"}
    assert principal.key_id == record.key_id and principal.rows_per_minute == 100


@pytest.mark.parametrize(("arguments", "field"), [
    ({"tenant": "Acme"}, "tenant"),
    ({"tenant": "1acme"}, "tenant"),
    ({"tenant": "acme\n"}, "tenant"),
    ({"scopes": []}, "scopes"),
    ({"scopes": ["predict", "read"]}, "scopes"),
    ({"name": "a\nb"}, "name"),
    ({"name": "ab\n"}, "name"),
    ({"expires_at": time.time() - 1}, "expires_at"),
    ({"requests_per_second": -1.0}, "requests_per_second"),
    ({"requests_per_second": float("nan")}, "requests_per_second"),
    ({"rows_per_minute": -5}, "rows_per_minute"),
])
def test_bad_attributes_name_their_field(arguments: dict[str, object], field: str) -> None:
    spec: dict[str, object] = {"tenant": "acme", "scopes": ["predict"], **arguments}
    with pytest.raises(InvalidKeySpec) as raised:
        check_spec(**spec)  # type: ignore[arg-type]
    assert raised.value.field == field


def test_scopes_are_kept_in_order_once() -> None:
    assert check_spec("acme", ["admin", "predict", "admin"]) == ("predict", "admin")


def test_durations_and_times() -> None:
    assert parse_duration("90s") == 90 and parse_duration("30d") == 30 * 86_400
    assert parse_duration("2w") == 14 * 86_400
    for bad in ("", "30", "0d", "-1d", "1y", "d"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert parse_time("2027-01-15T08:00:00Z") == 1_800_000_000.0
    assert parse_time("2027-01-15T08:00:00") == 1_800_000_000.0
    assert parse_time("2027-01-15T09:00:00+01:00") == 1_800_000_000.0
    with pytest.raises(ValueError):
        parse_time("tomorrow")


def test_seed_file_is_checked_and_never_shows_a_key(tmp_path: Path) -> None:
    _, key = generate()
    path = tmp_path / "seed.json"
    path.write_text(json.dumps([{"key": key, "tenant": "acme", "scopes": ["predict"],
                                 "name": "svc"}]))
    (entry,) = read_seed_file(path)
    assert entry["key"] == key and entry["scopes"] == ["predict"] and entry["name"] == "svc"
    for bad, says in [
        ("{", "not JSON"),
        ("{}", "a JSON list"),
        (json.dumps([{"key": key + "x", "tenant": "acme", "scopes": ["predict"]}]), "key"),
        (json.dumps([{"key": key, "tenant": "Acme", "scopes": ["predict"]}]), "tenant"),
        (json.dumps([{"key": key, "tenant": "acme", "scopes": ["nope"]}]), "scopes"),
        (json.dumps([{"key": key, "tenant": "acme", "scopes": ["predict"], "x": 1}]), "'x'"),
        (json.dumps([{"key": key, "tenant": "acme", "scopes": ["predict"],
                      "rows_per_minute": "many"}]), "rows_per_minute"),
    ]:
        path.write_text(bad)
        with pytest.raises(SeedFileError) as raised:
            read_seed_file(path)
        assert says in str(raised.value) and str(path) in str(raised.value)
        assert key not in str(raised.value) and key[len("inferq_") + 17:] not in str(raised.value)
    with pytest.raises(SeedFileError, match="No such file"):
        read_seed_file(tmp_path / "missing.json")


def test_auth_on_needs_a_secret() -> None:
    problem = auth_problem(Settings(auth="on", auth_secret=None))
    assert problem is not None and "INFERQ_AUTH_SECRET" in problem and "INFERQ_AUTH=off" in problem
    assert auth_problem(Settings(auth="on", auth_secret="x" * 32)) is None  # type: ignore[arg-type]
    assert auth_problem(Settings(auth="off")) is None


def _flatten(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, those of included routers too (FastAPI may keep them nested)."""
    for route in routes:
        nested = getattr(route, "original_router", None)
        yield from _flatten(nested.routes) if nested is not None else (route,)


def _v1_routes() -> set[tuple[str, str]]:
    app = create_app(Settings(auth="off"))
    routes = {(method, route.path)
              for route in _flatten(app.routes)
              if isinstance(route, APIRoute) and in_v1(route.path)
              for method in route.methods or ()}
    assert len(routes) > 20
    hot = {(method, route.path)
           for router, handler in HOT_ROUTES
           for route in router.routes
           if isinstance(route, APIRoute) and route.endpoint is handler
           for method in route.methods or ()}
    return routes | hot


def test_every_v1_route_has_its_scopes() -> None:
    routes = _v1_routes()
    missing = routes - set(ROUTE_SCOPES)
    assert not missing, f"routes under /v1 without scopes in auth.ROUTE_SCOPES: {missing}"
    stale = set(ROUTE_SCOPES) - routes
    assert not stale, f"auth.ROUTE_SCOPES names routes the API does not have: {stale}"
    assert all(scopes and scopes <= set(SCOPES) for scopes in ROUTE_SCOPES.values())


@pytest.mark.parametrize(("method", "path", "scopes"), [
    ("POST", "/v1/models/iris/predict", {"predict"}),
    ("GET", "/v1/tasks/abc", {"predict"}),
    ("GET", "/v1/models/iris", {"predict", "jobs", "train"}),
    ("GET", "/v1/models/iris/versions", {"predict", "jobs", "train"}),
    ("PUT", "/v1/models/iris/aliases/production", {"train"}),
    ("POST", "/v1/models/iris/batch-jobs", {"jobs"}),
    ("GET", "/v1/batch-jobs/j1/results", {"jobs"}),
    ("POST", "/v1/models/iris/training-jobs", {"train"}),
    ("DELETE", "/v1/api-keys/0123456789abcdef", {"admin"}),
    ("GET", "/v1/nothing", None),
    ("GET", "/v1/models//versions", None),
    ("PATCH", "/v1/models/iris", None),
])
def test_scope_table_reads_raw_paths(method: str, path: str, scopes: set[str] | None) -> None:
    matched = ScopeTable(ROUTE_SCOPES).match(method, path)
    assert (matched and matched[1]) == scopes
    if matched is not None:
        assert ROUTE_SCOPES[(method, matched[0].path)] == scopes
