"""Metric series: looked up once, and the very children prometheus-client makes."""

from __future__ import annotations

from services.common.metrics import HTTP_REQUESTS, series


def test_series_is_the_metrics_own_child() -> None:
    child = series(HTTP_REQUESTS, "GET", "/v1/test-series", "200")
    assert child is HTTP_REQUESTS.labels("GET", "/v1/test-series", "200")
    assert series(HTTP_REQUESTS, "GET", "/v1/test-series", "200") is child
