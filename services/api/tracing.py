"""A server span per API request, continuing the client's W3C trace context."""

from __future__ import annotations

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.telemetry import extract, span_headers, start_root_span, tracer

UNTRACED = frozenset({"/healthz", "/readyz", "/metrics"})
_CONTEXT_HEADERS = (b"traceparent", b"tracestate")


class TracingMiddleware:
    """Opens the request's span and returns its ``traceparent`` in the response headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED:
            await self.app(scope, receive, send)
            return
        carrier = {k.decode(): v.decode() for k, v in scope["headers"] if k in _CONTEXT_HEADERS}
        method = scope["method"]
        name = f"{method} {scope['path']}"
        attributes = {"http.request.method": method, "url.path": scope["path"]}
        if carrier:
            span = tracer().start_span(
                name, context=extract(carrier), kind=SpanKind.SERVER, attributes=attributes
            )
        else:
            span = start_root_span(name, SpanKind.SERVER, attributes)
        recording = span.is_recording()
        response_headers = [
            (k.encode(), v.encode()) for k, v in span_headers(span.get_span_context()).items()
        ]

        async def send_with_context(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *response_headers]
                if recording:
                    span.set_attribute("http.response.status_code", message["status"])
                    if message["status"] >= 500:
                        span.set_status(Status(StatusCode.ERROR))
            await send(message)

        if not recording:
            # Only the trace id travels on (to the task record and the worker): no span
            # to end, no exception to record.
            token = context.attach(trace.set_span_in_context(span))
            try:
                await self.app(scope, receive, send_with_context)
            finally:
                context.detach(token)
            return
        with trace.use_span(span, end_on_exit=True):
            await self.app(scope, receive, send_with_context)
            route = scope.get("route")
            if route is not None:
                span.update_name(f"{method} {route.path}")
                span.set_attribute("http.route", route.path)
