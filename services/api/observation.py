"""One middleware counts, times and traces every API request, with one wrapper of ``send``.

Metrics and tracing each wrapping the application, and each wrapping ``send`` again, cost
as much per request as what they record; here a request goes through one layer, and one
``send`` wrapper both notes the status and adds the ``traceparent`` header, and the headers
inner layers left in the scope under ``RESPONSE_HEADERS`` (the rate limits').
"""

from __future__ import annotations

import time

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.rate_limit import RESPONSE_HEADERS
from services.api.tracing import UNTRACED, begin_request_trace, end_server_span
from services.common.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS, series


class ObservedRequestsMiddleware:
    """Counts and times every request under its route template, not its raw path, and,
    with ``tracing``, places it in its trace and answers its ``traceparent``.

    A sampled request runs inside its server span, and its latency carries its trace id as
    an exemplar, which Grafana turns into a link from the latency panel to the trace.
    """

    def __init__(self, app: ASGIApp, tracing: bool = False) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        traced = (begin_request_trace(scope)
                  if self.tracing and scope["path"] not in UNTRACED else None)
        added = ([(k.encode(), v.encode()) for k, v in traced.headers.items()]
                 if traced is not None else None)
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Headers an inner layer placed in the scope (the rate limits').
                more = scope.get(RESPONSE_HEADERS)
                if added or more:
                    message["headers"] = [*message.get("headers", []), *(added or ()),
                                          *(more or ())]
            await send(message)

        try:
            span = traced.span if traced is not None else None
            if span is None:
                await self.app(scope, receive, send_observed)
            else:
                with trace.use_span(span, end_on_exit=True):
                    try:
                        await self.app(scope, receive, send_observed)
                    finally:
                        end_server_span(span, scope, status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            series(HTTP_REQUESTS, method, template, str(status)).inc()
            series(HTTP_REQUEST_SECONDS, method, template).observe(
                time.perf_counter() - started,
                {"trace_id": traced.trace_id} if traced is not None and traced.sampled else None,
            )
