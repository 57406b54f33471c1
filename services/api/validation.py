"""Reading a predict request: its body's shape first, then its rows against the model."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from services.api.errors import InvalidRows, MalformedBody, TooManyRows
from services.common.catalog import NUMERIC_DTYPES, ModelMetadata
from services.common.values import BOOL_DTYPE, FINITE_VALUES, MAX_MAGNITUDE, STRING_DTYPE

_FIELDS = ("instances", "version", "alias", "return_probabilities")

#: What some encoders write for non-finite floats, which JSON has no place for.
_NON_FINITE_LITERAL = re.compile(r"-?(?:NaN|[Ii]nfinity|nan|inf)")
_NUMBER = re.compile(r"-?[0-9][0-9.eE+-]*")


@dataclass
class PredictBody:
    instances: list[Any]
    version: int | None
    alias: str | None
    return_probabilities: bool


def parse_predict_body(raw: bytes, max_rows: int) -> PredictBody:
    """The body's shape, before the model is known; raises 400 and 413 errors."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _not_json(exc) from None
    if not isinstance(body, dict):
        raise MalformedBody('the request body must be a JSON object like {"instances": [[...]]}')
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise MalformedBody(
            f"unknown field {unknown[0]!r}; the body takes {', '.join(_FIELDS)}",
            {"field": unknown[0]},
        )
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise MalformedBody('"instances" must be a non-empty list of rows', {"field": "instances"})
    if len(instances) > max_rows:
        raise TooManyRows(
            f"{len(instances)} rows exceed the limit of {max_rows} rows per request; "
            "split the request",
            {"rows": len(instances), "max_rows": max_rows},
        )
    version = body.get("version")
    if version is not None and (type(version) is not int or version < 1):
        raise MalformedBody('"version" must be a positive integer', {"field": "version"})
    alias = body.get("alias")
    if alias is not None and (type(alias) is not str or not alias):
        raise MalformedBody('"alias" must be an alias name, like "production"',
                            {"field": "alias"})
    probabilities = body.get("return_probabilities", False)
    if type(probabilities) is not bool:
        raise MalformedBody(
            '"return_probabilities" must be true or false', {"field": "return_probabilities"}
        )
    return PredictBody(instances, version, alias, probabilities)


def _not_json(exc: orjson.JSONDecodeError) -> MalformedBody:
    """A 400 that says what is wrong, and says it plainly for NaN, Infinity and numbers
    beyond a double."""
    # orjson points past a minus sign: look from it.
    start = exc.pos - 1 if exc.doc[exc.pos - 1:exc.pos] == "-" else exc.pos
    literal = _NON_FINITE_LITERAL.match(exc.doc, start)
    number = _NUMBER.match(exc.doc, exc.pos) if "infinity" in exc.msg else None
    found = literal or number
    if found is None:
        return MalformedBody(f"the request body is not valid JSON: {exc}",
                             {"line": exc.lineno, "column": exc.colno})
    where = {"line": exc.lineno, "column": exc.colno - (exc.pos - found.start())}
    token = found.group() if len(found.group()) <= 24 else f"{found.group()[:20]}..."
    at = f"{token} at line {where['line']} column {where['column']}"
    if literal is not None:
        return MalformedBody(f"{at}: NaN and Infinity are not allowed; {FINITE_VALUES}", where)
    return MalformedBody(f"{at} is too large: {FINITE_VALUES}", where)


def _out_of_range(i: int, row: list[Any], names: list[str], numeric: list[bool]) -> InvalidRows:
    j = next(j for j, value in enumerate(row)
             if numeric[j] and not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE)
    return InvalidRows(
        f"row {i}, column {j} ({names[j]!r}) is {row[j]:g}, out of the allowed range "
        f"{-MAX_MAGNITUDE:.7g} to {MAX_MAGNITUDE:.7g}",
        {"row": i, "column": names[j], "min": -MAX_MAGNITUDE, "max": MAX_MAGNITUDE},
    )


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _shown(value: Any) -> str:
    return f"the number {value}" if type(value) in (int, float) else _kind(value)


def check_rows(instances: list[Any], metadata: ModelMetadata) -> list[list[Any]]:
    """Rows as lists in feature order; a 422 that names the row and column otherwise.
    A numeric feature takes a number; a boolean feature true or false (or 0 or 1); a string
    feature a string, or null for a missing value (the model fills it in as it was trained
    to)."""
    names = metadata.feature_names
    numeric = [f.dtype in NUMERIC_DTYPES for f in metadata.features]
    strings = [j for j, f in enumerate(metadata.features) if f.dtype == STRING_DTYPE]
    booleans = [j for j, f in enumerate(metadata.features) if f.dtype == BOOL_DTYPE]
    all_numeric = all(numeric)
    width = len(names)
    rows: list[list[Any]] = []
    for i, row in enumerate(instances):
        if isinstance(row, dict):
            missing = [n for n in names if n not in row]
            if missing:
                raise InvalidRows(
                    f"row {i} lacks feature {missing[0]!r}", {"row": i, "column": missing[0]}
                )
            if len(row) != width:
                extra = next(k for k in row if k not in names)
                raise InvalidRows(
                    f"row {i} has feature {extra!r}, which {metadata.name} v{metadata.version} "
                    f"does not know; its features are {', '.join(names)}",
                    {"row": i, "column": extra},
                )
            row = [row[n] for n in names]
        elif not isinstance(row, list):
            raise InvalidRows(
                f"row {i} is {_kind(row)}; a row is a list of values "
                "in feature order or an object keyed by feature name",
                {"row": i},
            )
        elif len(row) != width:
            raise InvalidRows(
                f"row {i} has {len(row)} values; {metadata.name} v{metadata.version} expects "
                f"{width}: {', '.join(names)}",
                {"row": i, "expected": width, "got": len(row)},
            )
        for j, value in enumerate(row):
            if numeric[j] and type(value) not in (int, float):
                raise InvalidRows(
                    f"row {i}, column {j} ({names[j]!r}) is {_kind(value)}; expected a number",
                    {"row": i, "column": names[j]},
                )
        for j in booleans:
            if type(row[j]) is not bool and not (type(row[j]) in (int, float)
                                                and row[j] in (0, 1)):
                raise InvalidRows(
                    f"row {i}, column {j} ({names[j]!r}) is {_shown(row[j])}; expected true "
                    "or false",
                    {"row": i, "column": names[j]},
                )
        for j in strings:
            if row[j] is not None and type(row[j]) is not str:
                raise InvalidRows(
                    f"row {i}, column {j} ({names[j]!r}) is {_shown(row[j])}; expected a "
                    "string or null",
                    {"row": i, "column": names[j]},
                )
        # max and min walk the row in C; the Python loop only runs to name a culprit.
        values = row if all_numeric else [v for v, n in zip(row, numeric, strict=True) if n]
        if values and (max(values) > MAX_MAGNITUDE or min(values) < -MAX_MAGNITUDE):
            raise _out_of_range(i, row, names, numeric)
        rows.append(row)
    return rows
