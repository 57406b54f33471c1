"""A server span per API request, continuing the client's W3C trace context."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.telemetry import (
    draw_new_trace,
    extract,
    span_headers,
    start_root_span,
    tracer,
)

UNTRACED = frozenset({"/healthz", "/readyz", "/metrics"})
_CONTEXT_HEADERS = (b"traceparent", b"tracestate")
_SCOPE_KEY = "inferq.trace"


@dataclass(frozen=True, slots=True)
class RequestTrace:
    """A request's place in its trace, decided once by the tracing middleware."""

    trace_id: str
    #: The W3C headers of the request's span, for its response and its task's message.
    headers: dict[str, str]
    #: Whether the trace is exported; only then is the span in OpenTelemetry's context.
    sampled: bool


def request_trace(scope: Scope) -> RequestTrace | None:
    """The request's trace; None when tracing is off or the path is not traced."""
    found: RequestTrace | None = scope.get(_SCOPE_KEY)
    return found


class TracingMiddleware:
    """Opens the request's span and returns its ``traceparent`` in the response headers.

    An unsampled request (most of them, at the default ratio) is not put into
    OpenTelemetry's context at all: what the rest of the request needs of its trace is in
    ``request_trace(scope)``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED:
            await self.app(scope, receive, send)
            return
        carrier = {k.decode(): v.decode() for k, v in scope["headers"] if k in _CONTEXT_HEADERS}
        drawn = None if carrier else draw_new_trace()
        if drawn is not None and not drawn.kept:
            # A new trace that is not kept: its ids, and no span.
            headers = {"traceparent": drawn.traceparent}
            await self._untraced(scope, receive, send, RequestTrace(
                format(drawn.trace_id, "032x"), headers, sampled=False))
            return
        method = scope["method"]
        name = f"{method} {scope['path']}"
        attributes = {"http.request.method": method, "url.path": scope["path"]}
        if carrier:
            span = tracer().start_span(
                name, context=extract(carrier), kind=SpanKind.SERVER, attributes=attributes
            )
        else:
            span = start_root_span(name, SpanKind.SERVER, attributes,
                                   drawn.trace_id if drawn else None)
        span_context = span.get_span_context()
        traced = RequestTrace(format(span_context.trace_id, "032x"), span_headers(span_context),
                              span.is_recording())
        if not traced.sampled:
            await self._untraced(scope, receive, send, traced)
            return
        scope[_SCOPE_KEY] = traced
        response_headers = _encoded(traced.headers)

        async def send_with_context(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *response_headers]
                span.set_attribute("http.response.status_code", message["status"])
                if message["status"] >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            await send(message)

        with trace.use_span(span, end_on_exit=True):
            await self.app(scope, receive, send_with_context)
            route = scope.get("route")
            if route is not None:
                span.update_name(f"{method} {route.path}")
                span.set_attribute("http.route", route.path)


    async def _untraced(self, scope: Scope, receive: Receive, send: Send,
                        traced: RequestTrace) -> None:
        """A request whose trace is not kept: its ids travel on, and no span is made."""
        scope[_SCOPE_KEY] = traced
        await self.app(scope, receive, _with_headers(send, _encoded(traced.headers)))


def _encoded(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in headers.items()]


def _with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    """``send``, adding ``headers`` to the response."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *headers]
        await send(message)

    return send_with_headers
