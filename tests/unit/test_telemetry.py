"""Root sampling: inferq reads the ratio exactly as the OpenTelemetry SDK does."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import SpanKind

from services.common import telemetry
from services.common.telemetry import root_sampling_bound


@pytest.mark.parametrize(
    ("sampler", "arg", "bound"),
    [
        ("parentbased_traceidratio", "0.01", TraceIdRatioBased.get_bound_for_rate(0.01)),
        ("traceidratio", "0.5", 1 << 63),
        ("TraceIdRatio", None, 1 << 64),  # no argument: the SDK samples every new trace
        ("parentbased_traceidratio", "not-a-number", 1 << 64),
        ("always_off", None, 0),
        ("parentbased_always_off", None, 0),
        # Decided by the SDK itself: inferq has no shortcut for these.
        ("parentbased_always_on", None, None),
        ("always_on", None, None),
        ("traceidratio", "1.5", None),
        (None, None, None),
    ],
)
def test_root_sampling_bound(
    monkeypatch: pytest.MonkeyPatch, sampler: str | None, arg: str | None, bound: int | None
) -> None:
    for name, value in (("OTEL_TRACES_SAMPLER", sampler), ("OTEL_TRACES_SAMPLER_ARG", arg)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert root_sampling_bound() == bound


@pytest.fixture
def tracing_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Turn tracing on in this process, new traces sampled at a ratio; spans never end, so
    nothing is exported to the address nobody listens on."""

    def start(ratio: str) -> None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", ratio)
        assert telemetry.init_tracing("inferq-test")

    yield start
    telemetry.shutdown_tracing()


def test_root_spans_are_sampled_at_the_configured_ratio(
    tracing_at: Callable[[str], None],
) -> None:
    tracing_at("0.5")
    kept = 0
    for _ in range(400):
        drawn = telemetry.draw_new_trace()
        assert drawn is not None
        trace_id, _, keep = drawn
        assert keep == (trace_id & (2**64 - 1) < 2**63)
        if keep:
            kept += 1
            # The SDK starts a kept trace under the drawn id, and its own sampler keeps it.
            span = telemetry.start_root_span("root", SpanKind.SERVER, {}, trace_id)
            context = span.get_span_context()
            assert span.is_recording() and context.trace_flags.sampled
            assert context.trace_id == trace_id and context.trace_flags.random_trace_id
    assert 150 < kept < 250


PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("traceparent", "recording"),
    [
        (f"{PARENT}-01", True),
        (f"{PARENT}-03", True),
        (f"{PARENT}-00", False),
        (f"{PARENT}-02", False),
        (None, False),  # a new trace, and new traces are never sampled here
        ("00-garbage", False),  # unreadable: a new trace too
    ],
)
def test_consumer_span_follows_the_producers_decision(
    tracing_at: Callable[[str], None], traceparent: str | None, recording: bool
) -> None:
    tracing_at("0")
    headers = {"traceparent": traceparent} if traceparent else {}
    span = telemetry.consumer_span("inferq.execute", headers, {})
    assert span.is_recording() == recording
    if recording:
        assert format(span.get_span_context().trace_id, "032x") == PARENT.split("-")[1]
        assert format(span.parent.span_id, "016x") == PARENT.split("-")[2]  # type: ignore[attr-defined]


def test_a_dropped_trace_is_two_ids_and_their_traceparent(
    tracing_at: Callable[[str], None],
) -> None:
    tracing_at("0")
    seen = set()
    for _ in range(200):
        drawn = telemetry.draw_new_trace()
        assert drawn is not None and not drawn.kept
        assert 0 < drawn.trace_id < 2**128 and 0 < drawn.span_id < 2**64
        # Unsampled, with the W3C random-trace-id flag the SDK sets on the traces it starts.
        assert drawn.traceparent == f"00-{drawn.trace_id:032x}-{drawn.span_id:016x}-02"
        seen.add(drawn.trace_id)
    assert len(seen) == 200

