"""What metrics and tracing cost: inferq's throughput and p50 with both on, and both off.

On: every process exports its spans over OTLP/HTTP to a local sink that answers 200, the
worker serves its metrics (``--metrics-port``), and the benchmark scrapes the API's and the
worker's ``/metrics`` every second, as Prometheus would. Off: no exporter configured and
``--metrics-port 0``. The two alternate, ``--repeat`` times each, on the same models as
``throughput.py``; the report gives each run and the median of each setting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).parent))

import client
import models
from common import local_stack, machine, percentiles

from ml.importer import import_model
from services.cli.redis_server import free_port


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@contextmanager
def otlp_sink() -> Iterator[str]:
    """An OTLP/HTTP endpoint that accepts and drops everything."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


async def scrape_every_second(urls: list[str], stop: asyncio.Event) -> int:
    scrapes = 0
    async with httpx.AsyncClient(timeout=5) as http:
        while not stop.is_set():
            for url in urls:
                (await http.get(url)).raise_for_status()
                scrapes += 1
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    return scrapes


def run(store: Path, observed: bool, args: argparse.Namespace,
        bodies: list[bytes]) -> dict[str, Any]:
    with ExitStack() as stack_exit:
        extra: dict[str, str] = {}
        metrics_port = 0
        if observed:
            endpoint = stack_exit.enter_context(otlp_sink())
            extra = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "1000"}
            metrics_port = free_port()
        stack = stack_exit.enter_context(local_stack(
            store=store, extra_env=extra, worker_args=("--metrics-port", str(metrics_port))))
        port = int(stack.url.rsplit(":", 1)[1])
        urls = [f"{stack.url}/metrics", f"http://127.0.0.1:{metrics_port}/metrics"]

        async def measure() -> dict[str, Any]:
            stop = asyncio.Event()
            scraper = asyncio.create_task(scrape_every_second(urls, stop)) if observed else None
            load = await client.closed_loop("127.0.0.1", port, client.inferq_call(args.model),
                                            bodies, args.concurrency, args.warmup,
                                            args.duration)
            stop.set()
            scrapes = await scraper if scraper else 0
            return {"observed": observed, "throughput_rps": round(len(load.latencies)
                                                                  / args.duration, 1),
                    **percentiles(load.latencies), "errors": load.errors, "scrapes": scrapes}

        return asyncio.run(measure())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="logistic", choices=list(models.MODELS))
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each setting")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = models.train(args.out / "models")
    bodies = [orjson.dumps({"instances": [row]}) for row in models.request_rows(2000)]
    runs = []
    with tempfile.TemporaryDirectory(prefix="inferq-store-") as tmp:
        store = Path(tmp)
        for name, path in paths.items():
            import_model(store, path, name)
        for _ in range(args.repeat):
            for observed in (False, True):
                runs.append(run(store, observed, args, bodies))
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    summary = {}
    for observed, label in ((False, "off"), (True, "on")):
        mine = [r for r in runs if r["observed"] is observed]
        summary[label] = {"throughput_rps": statistics.median(r["throughput_rps"] for r in mine),
                          "p50_ms": statistics.median(r["p50_ms"] for r in mine)}
    summary["throughput_cost_percent"] = round(
        100 * (1 - summary["on"]["throughput_rps"] / summary["off"]["throughput_rps"]), 1)
    summary["p50_cost_percent"] = round(
        100 * (summary["on"]["p50_ms"] / summary["off"]["p50_ms"] - 1), 1)
    report = {"benchmark": "metrics and tracing on vs off", "machine": machine(),
              "settings": {"model": args.model, "concurrency": args.concurrency,
                           "duration": args.duration, "repeat": args.repeat},
              "runs": runs, "summary": summary}
    (args.out / "observability.json").write_text(json.dumps(report, indent=2) + "\n")
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
