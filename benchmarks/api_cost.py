"""What one submit costs the API process, measured inside it: no server, no client, no worker.

Builds inferq's ASGI application, starts a Redis of its own and sends ``--requests``
``POST /v1/models/iris/predict`` requests (no ``wait``) straight to the application, one
after the other, after 200 warm-up requests. Prints the CPU time per request.

CPU time on a shared machine moves by tens of percent from minute to minute; instruction
counts do not. For those, run it under callgrind twice and subtract the two totals, so
that start-up cancels out::

    valgrind --tool=callgrind python benchmarks/api_cost.py --requests 0
    valgrind --tool=callgrind python benchmarks/api_cost.py --requests 2000

Start-up is about 8.5 G instructions and repeats within about 7 M from one run to the
next (3.5 k per request over 2,000). To count the measured requests alone, in the running
server with its real client, worker and ``wait``, use ``server_cost.py``.

``--auth on`` sends each request with an API key (made before the warm-up): the cost of
authentication, a key verified from the process's cache, and of its rate limits (high
enough never to refuse, taken by the submit's script).

``--tracing unsampled`` configures an OTLP exporter (at an address nobody listens on)
with a sampler that keeps no new trace: the cost of tracing for the 99 requests in 100
that the default sampler does not keep.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from common import machine

from services.cli.redis_server import free_port, start_redis

BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
WARMUP = 200


#: The ``Authorization`` header of every request; empty with ``--auth off``.
AUTHORIZATION: list[tuple[bytes, bytes]] = []


def _scope() -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/models/iris/predict",
        "raw_path": b"/v1/models/iris/predict", "query_string": b"", "root_path": "",
        "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000), "state": {},
        "headers": [(b"host", b"inferq"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(BODY)).encode()), *AUTHORIZATION],
    }


async def _submit(app: Any) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(_scope(), receive, send)
    if sent[0]["status"] != 202:
        raise RuntimeError(f"the submit failed: {sent}")


async def _make_key(app: Any) -> None:
    _, key = await app.state.authenticator.store.create("bench", ["predict"])
    AUTHORIZATION.append((b"authorization", f"Bearer {key}".encode()))


async def _measure(app: Any, requests: int, auth: str) -> float:
    async with app.router.lifespan_context(app):
        if auth == "on":
            await _make_key(app)
        # Warm-up runs whatever ``requests`` is, so that two runs differ by their
        # measured requests alone.
        for _ in range(WARMUP):
            await _submit(app)
        started = time.process_time()
        for _ in range(requests):
            await _submit(app)
        return time.process_time() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--tracing", choices=("off", "unsampled"), default="off")
    parser.add_argument("--auth", choices=("off", "on"), default="off")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="inferq-api-cost-") as tmp:
        root = Path(tmp)
        from ml.demo import train_demo

        train_demo(root / "models")
        port = free_port()
        redis = start_redis(port, root / "redis", appendonly=False)
        os.environ.update(INFERQ_REDIS_URL=f"redis://127.0.0.1:{port}/0",
                          INFERQ_MODEL_STORE=str(root / "models"), INFERQ_LOG_LEVEL="WARNING",
                          INFERQ_AUTH=args.auth, INFERQ_AUTH_SECRET="bench-secret",
                          # Limits every request takes from, never reached.
                          INFERQ_RATE_LIMIT_REQUESTS_PER_SECOND="1000000",
                          INFERQ_RATE_LIMIT_ROWS_PER_MINUTE="1000000000")
        if args.tracing == "unsampled":
            os.environ.update(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
                              OTEL_TRACES_SAMPLER="parentbased_traceidratio",
                              OTEL_TRACES_SAMPLER_ARG="0")
        try:
            from services.api.main import create_app

            seconds = asyncio.run(_measure(create_app(), args.requests, args.auth))
        finally:
            redis.terminate()
            redis.wait()
    json.dump({"benchmark": "API CPU per submit, in-process", "machine": machine(),
               "tracing": args.tracing, "auth": args.auth, "requests": args.requests,
               "cpu_us_per_request": round(1e6 * seconds / max(1, args.requests), 1)},
              sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
