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
    assert body.version == 2 and body.return_probabilities is False


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
