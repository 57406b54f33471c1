"""Reading predict bodies: the shape, then the rows against a model's features."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.api.errors import InvalidRows, MalformedBody, TooManyRows
from services.api.validation import check_rows, parse_predict_body
from services.common.catalog import Feature, ModelMetadata

META = ModelMetadata(
    name="m", version=1, task="regression", estimator="Ridge",
    features=[Feature(name="a"), Feature(name="b")], sha256="0" * 64,
    created_at=datetime.now(UTC), sklearn_version="1",
)


def test_rows_in_order_and_by_name() -> None:
    assert check_rows([[1, 2.5], {"b": 4, "a": 3}], META) == [[1, 2.5], [3, 4]]


def test_limits_and_shape() -> None:
    with pytest.raises(TooManyRows):
        parse_predict_body(b'{"instances": [[1, 2], [3, 4]]}', max_rows=1)
    with pytest.raises(MalformedBody, match="unknown field 'extra'"):
        parse_predict_body(b'{"instances": [[1, 2]], "extra": 1}', max_rows=5)
    body = parse_predict_body(b'{"instances": [[1, 2]], "version": 2}', max_rows=5)
    assert body.version == 2 and body.alias is None and body.return_probabilities is False
    assert parse_predict_body(b'{"instances": [[1, 2]], "alias": "staging"}', 5).alias \
        == "staging"
    for bad in (b'""', b"3", b'["a"]'):
        with pytest.raises(MalformedBody, match='"alias" must be an alias name'):
            parse_predict_body(b'{"instances": [[1, 2]], "alias": ' + bad + b"}", 5)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[1]], "row 0 has 1 values"),
        ([[1, 2], [1, "2"]], "row 1, column 1 ('b') is a string"),
        ([{"a": 1}], "row 0 lacks feature 'b'"),
        ([{"a": 1, "b": 2, "c": 3}], "row 0 has feature 'c'"),
        ([7], "row 0 is int"),
    ],
)
def test_rows_that_do_not_fit(rows: list, message: str) -> None:
    with pytest.raises(InvalidRows) as caught:
        check_rows(rows, META)
    assert message in caught.value.message


def test_the_magnitude_limit_is_float32s_largest_value() -> None:
    import numpy as np

    from services.api.validation import MAX_MAGNITUDE

    assert float(np.finfo(np.float32).max) == MAX_MAGNITUDE


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[1, 2], [-1e308, 1e308]], "row 1, column 0 ('a') is -1e+308, out of the allowed range"),
        ([[1, 3.5e38]], "row 0, column 1 ('b') is 3.5e+38"),
        ([{"a": 1, "b": 10**40}], "row 0, column 1 ('b') is 1e+40"),
    ],
)
def test_values_beyond_what_models_hold_are_refused(rows: list, message: str) -> None:
    with pytest.raises(InvalidRows) as caught:
        check_rows(rows, META)
    assert message in caught.value.message
    assert "-3.402823e+38 to 3.402823e+38" in caught.value.message
    assert caught.value.details["max"] == 3.4028234663852886e38


def test_the_largest_allowed_values_pass() -> None:
    edge = 3.4028234663852886e38
    assert check_rows([[-edge, edge]], META) == [[-edge, edge]]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'{"instances": [[1, NaN]]}', "NaN at line 1 column 20: NaN and Infinity are not"),
        (b'{"instances": [[Infinity, 1]]}', "Infinity at line 1 column 17: NaN and Infinity"),
        (b'{"instances": [[1, -Infinity]]}', "-Infinity at line 1 column 20: NaN and"),
        (b'{"instances":\n [[1e309, 1]]}', "1e309 at line 2 column 4 is too large"),
    ],
)
def test_nan_and_infinity_literals_are_named(raw: bytes, fragment: str) -> None:
    with pytest.raises(MalformedBody) as caught:
        parse_predict_body(raw, max_rows=5)
    assert fragment in caught.value.message
    assert "must be a finite number" in caught.value.message


TEXT_META = META.model_copy(update={
    "features": [Feature(name="a"), Feature(name="color", dtype="string")]})


def test_a_string_feature_takes_a_string_or_null() -> None:
    rows = [[1, "red"], {"color": None, "a": 2.5}, [3, ""]]
    assert check_rows(rows, TEXT_META) == [[1, "red"], [2.5, None], [3, ""]]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[1, "red"], [1, 3]], "row 1, column 1 ('color') is the number 3; expected a string "
                               "or null"),
        ([{"a": 1, "color": 2.5}], "row 0, column 1 ('color') is the number 2.5"),
        ([[1, True]], "row 0, column 1 ('color') is a boolean; expected a string or null"),
        ([[1, ["red"]]], "row 0, column 1 ('color') is a list"),
        ([[None, "red"]], "row 0, column 0 ('a') is null; expected a number"),
        ([["1", "red"]], "row 0, column 0 ('a') is a string; expected a number"),
    ],
)
def test_a_string_feature_refuses_other_values(rows: list, message: str) -> None:
    with pytest.raises(InvalidRows) as caught:
        check_rows(rows, TEXT_META)
    assert message in caught.value.message
    assert caught.value.details["column"] in ("a", "color")
