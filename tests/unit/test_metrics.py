"""Metric series: looked up once, and the very children prometheus-client makes."""

from __future__ import annotations

from services.common.metrics import HTTP_REQUESTS, series


def test_series_is_the_metrics_own_child() -> None:
    child = series(HTTP_REQUESTS, "GET", "/v1/test-series", "200")
    assert child is HTTP_REQUESTS.labels("GET", "/v1/test-series", "200")
    assert series(HTTP_REQUESTS, "GET", "/v1/test-series", "200") is child


def test_the_default_longest_wait_is_a_request_latency_bound() -> None:
    from services.common.metrics import HTTP_BUCKETS
    from services.common.settings import Settings

    longest = Settings.model_fields["max_wait_seconds"].default
    assert longest in HTTP_BUCKETS and longest < HTTP_BUCKETS[-1]
