"""Each API request's place in its W3C trace, and a server span for a request that is kept."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from starlette.types import Scope

from services.common.telemetry import (
    draw_new_trace,
    extract,
    span_headers,
    start_root_span,
    tracer,
)

UNTRACED = frozenset({"/healthz", "/readyz", "/metrics"})
_CONTEXT_HEADERS = frozenset({b"traceparent", b"tracestate"})
_SCOPE_KEY = "inferq.trace"


# Not frozen: a frozen dataclass sets each field through ``object.__setattr__``, and one
# is made for every request.
@dataclass(slots=True)
class RequestTrace:
    """A request's place in its trace, decided once by ``begin_request_trace``."""

    trace_id: str
    #: The W3C headers of the request's span, for its response and its task's message.
    headers: dict[str, str]
    #: Whether the trace is exported; only then is there a span, in OpenTelemetry's context.
    sampled: bool
    #: The request's server span, for a sampled request only.
    span: Span | None = None


def request_trace(scope: Scope) -> RequestTrace | None:
    """The request's trace; None when tracing is off or the path is not traced."""
    found: RequestTrace | None = scope.get(_SCOPE_KEY)
    return found


def begin_request_trace(scope: Scope) -> RequestTrace:
    """Decide the request's trace and keep it in ``scope``.

    The trace is the client's W3C context when it sent one, else a new trace. A new trace
    the sampler drops (most of them, at the default ratio) is two ids and a formatted
    ``traceparent``: no span, and nothing in OpenTelemetry's context.
    """
    carrier: dict[str, str] | None = None
    for name, value in scope["headers"]:
        if name in _CONTEXT_HEADERS:
            carrier = carrier or {}
            carrier[name.decode("latin-1")] = value.decode("latin-1")
    drawn = None if carrier else draw_new_trace()
    if drawn is not None and not drawn.kept:
        traceparent = drawn.traceparent
        traced = RequestTrace(traceparent[3:35], {"traceparent": traceparent}, sampled=False)
    else:
        method, path = scope["method"], scope["path"]
        name = f"{method} {path}"
        attributes = {"http.request.method": method, "url.path": path}
        if carrier:
            span = tracer().start_span(name, context=extract(carrier), kind=SpanKind.SERVER,
                                       attributes=attributes)
        else:
            span = start_root_span(name, SpanKind.SERVER, attributes,
                                   drawn.trace_id if drawn else None)
        context = span.get_span_context()
        recording = span.is_recording()
        traced = RequestTrace(format(context.trace_id, "032x"), span_headers(context),
                              recording, span if recording else None)
    scope[_SCOPE_KEY] = traced
    return traced


def end_server_span(span: Span, scope: Scope, status: int) -> None:
    """Name a sampled request's span after its route and record its answer's status."""
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
    route = scope.get("route")
    if route is not None:
        span.update_name(f"{scope['method']} {route.path}")
        span.set_attribute("http.route", route.path)
