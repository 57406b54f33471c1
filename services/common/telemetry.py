"""OpenTelemetry tracing, configured by the standard ``OTEL_*`` variables.

With no exporter configured, nothing is installed: the API's global no-op tracer costs
next to nothing and logs nothing. One trace runs from the HTTP request through the enqueue
(a producer span) to the worker's execution (a consumer span) and its model call.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from random import getrandbits
from typing import Any, NamedTuple

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

PROPAGATOR = TraceContextTextMapPropagator()
TRACER_NAME = "inferq"
_UNSAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT | trace.TraceFlags.RANDOM_TRACE_ID)
# %-formatting of ints is about twice as fast as format specs, and this runs per request.
_UNSAMPLED_TRACEPARENT = f"00-%032x-%016x-{_UNSAMPLED:02x}"
_SPAN_ID_BITS = 64
_SPAN_ID_MASK = (1 << _SPAN_ID_BITS) - 1
_TRACE_ID_LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT
_EMPTY = Context()


class _HandedOver(threading.local):
    #: A class default, so that reading it before any hand-over raises nothing.
    trace_id: int | None = None


class _PreDrawnIds(RandomIdGenerator):
    """Random ids; a new trace's id may be drawn before the SDK starts its root span."""

    def __init__(self) -> None:
        self._drawn = _HandedOver()

    def hand_over(self, trace_id: int | None) -> None:
        """Make ``trace_id`` the id of the next trace this thread's tracer starts."""
        self._drawn.trace_id = trace_id

    def generate_trace_id(self) -> int:
        trace_id = self._drawn.trace_id
        if trace_id is None:
            return super().generate_trace_id()
        self._drawn.trace_id = None
        return trace_id


_provider: TracerProvider | None = None
#: The process that built ``_provider``: a forked child builds its own.
_provider_pid: int | None = None
_tracer: trace.Tracer | None = None
_ids: _PreDrawnIds | None = None
#: What the configured sampler keeps of a new trace, as ``TraceIdRatioBased`` tests it
#: (the trace id's low 64 bits below it); None where inferq leaves the decision to the SDK.
_root_bound: int | None = None


def exporter_configured() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower() == "none":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def root_sampling_bound() -> int | None:
    """The bound ``draw_new_trace`` tests new traces by, from ``OTEL_TRACES_SAMPLER``.

    Known for the ratio samplers (and ``always_off``), read exactly as the SDK reads them;
    None for the others, whose decisions the SDK makes.
    """
    name = os.environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if name in ("always_off", "parentbased_always_off"):
        return 0
    if name not in ("traceidratio", "parentbased_traceidratio"):
        return None
    try:
        rate = float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
    except ValueError:
        rate = 1.0
    return TraceIdRatioBased.get_bound_for_rate(rate) if 0.0 <= rate <= 1.0 else None


def init_tracing(service_name: str, global_provider: bool = True) -> bool:
    """Install an OTLP/HTTP exporting tracer provider when an endpoint is configured.

    A process forked after this builds its own (the exporter's thread and connections
    stay with the parent). ``global_provider=False`` leaves OpenTelemetry's global
    provider unset, for a parent whose forked children set theirs.
    """
    global _provider, _provider_pid, _ids, _root_bound
    if (_provider is not None and _provider_pid == os.getpid()) or not exporter_configured():
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    ids = _PreDrawnIds()
    provider = TracerProvider(resource=resource, id_generator=ids)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if global_provider:
        trace.set_tracer_provider(provider)
    _provider, _provider_pid, _ids = provider, os.getpid(), ids
    _root_bound = root_sampling_bound()
    _reset_tracer()
    log.info("tracing on", extra={"service": service_name})
    return True


def shutdown_tracing() -> None:
    """Flush and stop the exporter; called when a process exits."""
    global _provider, _provider_pid, _ids, _root_bound
    if _provider is not None and _provider_pid == os.getpid():
        _provider.shutdown()
    _provider, _provider_pid, _ids, _root_bound = None, None, None, None
    _reset_tracer()


def _reset_tracer() -> None:
    global _tracer
    _tracer = None


def tracer() -> trace.Tracer:
    """inferq's tracer, made once (``get_tracer`` builds a new tracer on every call), from
    the provider ``init_tracing`` installed, else from the global one."""
    global _tracer
    if _tracer is None:
        _tracer = (_provider or trace.get_tracer_provider()).get_tracer(TRACER_NAME)
    return _tracer


class NewTrace(NamedTuple):
    """A new trace's ids, and whether the configured sampler keeps it."""

    trace_id: int
    span_id: int
    kept: bool

    @property
    def traceparent(self) -> str:
        """The W3C ``traceparent`` of a span of this trace, for a trace not kept."""
        return _UNSAMPLED_TRACEPARENT % (self.trace_id, self.span_id)


def draw_new_trace() -> NewTrace | None:
    """A new trace's ids and whether the configured ratio sampler keeps it, decided before
    any span exists; None where the SDK decides (``start_root_span`` then starts it).

    The trace id is tested as ``TraceIdRatioBased`` tests it, so a trace this drops (99 in
    100 at the chart's default) costs one random number and no span at all.
    """
    bound = _root_bound
    if bound is None:
        return None
    # Both ids from one draw of the generator the SDK's own ``RandomIdGenerator`` uses.
    ids = getrandbits(128 + _SPAN_ID_BITS)
    trace_id, span_id = ids >> _SPAN_ID_BITS, ids & _SPAN_ID_MASK
    if not (trace_id and span_id):
        return draw_new_trace()  # W3C forbids an all-zero id; one draw in 2**64.
    return NewTrace(trace_id, span_id, trace_id & _TRACE_ID_LIMIT < bound)


def start_root_span(
    name: str, kind: trace.SpanKind, attributes: dict[str, Any], trace_id: int | None = None
) -> trace.Span:
    """The first span of a new trace, started by the SDK; under ``trace_id`` when given
    (one that ``draw_new_trace`` kept), so that the SDK's sampler keeps it too."""
    if trace_id is None or _ids is None:
        return tracer().start_span(name, context=_EMPTY, kind=kind, attributes=attributes)
    _ids.hand_over(trace_id)
    try:
        return tracer().start_span(name, context=_EMPTY, kind=kind, attributes=attributes)
    finally:
        _ids.hand_over(None)


def extract(carrier: Mapping[str, str]) -> Context:
    return PROPAGATOR.extract(carrier)


def inject() -> dict[str, str]:
    """W3C headers (``traceparent``, ``tracestate``) of the current span; empty without one."""
    return span_headers(trace.get_current_span().get_span_context())


def span_headers(context: trace.SpanContext) -> dict[str, str]:
    """What the W3C propagator writes for ``context``, formatted directly: this runs on
    every request, traced or not."""
    if not context.is_valid:
        return {}
    headers = {
        "traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-"
        f"{context.trace_flags:02x}"
    }
    if context.trace_state:
        headers["tracestate"] = context.trace_state.to_header()
    return headers


def consumer_span(
    name: str, headers: Mapping[str, str], attributes: dict[str, Any]
) -> trace.Span:
    """A task's consumer span, continuing the trace its message carries.

    Under a parent the producer did not sample, no span is made: a parent-based sampler
    would drop it, and reading the parent alone costs as much as the rest of a small
    task's bookkeeping, so only its sampled flag is read. Without a parent, the span
    starts a new trace, sampled as any new trace is.
    """
    traceparent = headers.get("traceparent")
    if not traceparent:
        drawn = draw_new_trace()
        if drawn is not None and not drawn.kept:
            return trace.INVALID_SPAN
        return start_root_span(name, trace.SpanKind.CONSUMER, attributes,
                               drawn.trace_id if drawn else None)
    if _unsampled(traceparent):
        return trace.INVALID_SPAN
    return tracer().start_span(
        name, context=extract(headers), kind=trace.SpanKind.CONSUMER, attributes=attributes
    )


def _unsampled(traceparent: str) -> bool:
    """Whether a W3C ``traceparent``'s sampled flag is clear; False when it does not parse."""
    fields = traceparent.strip().split("-")
    try:
        return len(fields) >= 4 and len(fields[3]) >= 2 and not int(fields[3][:2], 16) & 1
    except ValueError:
        return False
