"""What metrics and tracing cost: inferq's throughput and p50 with both on, and both off.

On: every process exports its spans over OTLP/HTTP to a local sink that answers 200, the
worker serves its metrics (``--metrics-port``), and the benchmark scrapes the API's and the
worker's ``/metrics`` every second, as Prometheus would. Tracing samples as the chart does
by default (``parentbased_traceidratio`` at ``--sampler-ratio``); a third setting traces
every request. Off: no exporter configured and ``--metrics-port 0``. "Metrics only" and
"tracing only" turn on one of the two, to tell their costs apart. Every run of a setting
follows a run with both off, ``--repeat`` times each, on the same models as
``throughput.py``; a cost is the median over those pairs, so that the machine's drift from
minute to minute cancels out. The report gives each run, each setting's medians and its
costs.
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
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).parent))

import client
import models
from common import local_stack, machine, percentiles
from throughput import cpu_seconds

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


#: Chart default of ``otel.samplerArg``: the share of requests whose trace is exported.
DEFAULT_SAMPLER_RATIO = 0.01


@dataclass(frozen=True)
class Setting:
    """What one run turns on: tracing at a sampling ratio (None: off), worker metrics."""

    ratio: float | None
    metrics: bool


def settings(ratio: float) -> dict[str, Setting]:
    return {
        "off": Setting(None, metrics=False),
        "metrics only": Setting(None, metrics=True),
        f"tracing only ({ratio:g})": Setting(ratio, metrics=False),
        "on": Setting(ratio, metrics=True),
        "on, every request traced": Setting(1.0, metrics=True),
    }


def run(store: Path, setting: Setting, args: argparse.Namespace,
        bodies: list[bytes]) -> dict[str, Any]:
    """One measurement of ``setting``."""
    ratio = setting.ratio
    with ExitStack() as stack_exit:
        extra: dict[str, str] = {}
        metrics_port = free_port() if setting.metrics else 0
        if ratio is not None:
            endpoint = stack_exit.enter_context(otlp_sink())
            extra = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "1000",
                     "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                     "OTEL_TRACES_SAMPLER_ARG": str(ratio)}
        stack = stack_exit.enter_context(local_stack(
            store=store, extra_env=extra, worker_args=("--metrics-port", str(metrics_port))))
        port = int(stack.url.rsplit(":", 1)[1])
        urls = [f"{stack.url}/metrics", f"http://127.0.0.1:{metrics_port}/metrics"]

        pids = {"api": stack.api.pid, "worker": stack.workers[0].pid, "redis": stack.redis_pid}

        async def measure() -> dict[str, Any]:
            stop = asyncio.Event()
            scraper = (asyncio.create_task(scrape_every_second(urls, stop))
                       if setting.metrics else None)
            shots: list[dict[str, float]] = []

            async def sample_cpu() -> None:
                await asyncio.sleep(args.warmup)
                shots.append({role: cpu_seconds(pid) for role, pid in pids.items()})
                await asyncio.sleep(args.duration)
                shots.append({role: cpu_seconds(pid) for role, pid in pids.items()})

            load, _ = await asyncio.gather(
                client.closed_loop("127.0.0.1", port, client.inferq_call(args.model), bodies,
                                   args.concurrency, args.warmup, args.duration),
                sample_cpu(),
            )
            stop.set()
            scrapes = await scraper if scraper else 0
            done = max(1, len(load.latencies))
            cpu = {role: round(1000 * (shots[1][role] - shots[0][role]) / done, 3)
                   for role in pids}
            return {"metrics": setting.metrics, "sampler_ratio": ratio,
                    "throughput_rps": round(len(load.latencies) / args.duration, 1),
                    **percentiles(load.latencies), "errors": load.errors, "scrapes": scrapes,
                    "cpu_ms_per_prediction": cpu}

        return asyncio.run(measure())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="logistic", choices=list(models.MODELS))
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=4, help="runs of each setting")
    parser.add_argument("--sampler-ratio", type=float, default=DEFAULT_SAMPLER_RATIO,
                        help="share of traces exported in the 'on' setting (chart default)")
    parser.add_argument("--settings", default="",
                        help="comma-separated names of the settings to run (default: all)")
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
        chosen = settings(args.sampler_ratio)
        if args.settings:
            wanted = args.settings.split(",")
            chosen = {k: v for k, v in chosen.items() if k == "off" or k.split(" (")[0] in wanted}
        # Each setting runs right after a run with both off: the machine's speed drifts
        # over minutes, so a cost is read from such pairs, not from distant runs.
        for _ in range(args.repeat):
            for label, setting in list(chosen.items())[1:]:
                for name, measured in (("off", chosen["off"]), (label, setting)):
                    runs.append({"setting": name, "pair": len(runs) // 2,
                                 **run(store, measured, args, bodies)})
                    print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    summary: dict[str, Any] = {}
    for label in chosen:
        mine = [r for r in runs if r["setting"] == label]
        summary[label] = {
            "throughput_rps": statistics.median(r["throughput_rps"] for r in mine),
            "p50_ms": statistics.median(r["p50_ms"] for r in mine),
            "cpu_ms_per_prediction": {
                role: statistics.median(r["cpu_ms_per_prediction"][role] for r in mine)
                for role in mine[0]["cpu_ms_per_prediction"]},
        }
    for label in list(chosen)[1:]:
        pairs = [(runs[i], runs[i + 1]) for i in range(0, len(runs), 2)
                 if runs[i + 1]["setting"] == label]
        summary[label]["throughput_cost_percent"] = round(statistics.median(
            100 * (1 - on["throughput_rps"] / off["throughput_rps"]) for off, on in pairs), 1)
        summary[label]["p50_cost_percent"] = round(statistics.median(
            100 * (on["p50_ms"] / off["p50_ms"] - 1) for off, on in pairs), 1)
        summary[label]["cpu_cost_ms_per_prediction"] = round(statistics.median(
            sum(on["cpu_ms_per_prediction"].values()) - sum(off["cpu_ms_per_prediction"].values())
            for off, on in pairs), 3)
    report = {"benchmark": "metrics and tracing on vs off", "machine": machine(),
              "settings": {"model": args.model, "concurrency": args.concurrency,
                           "duration": args.duration, "repeat": args.repeat,
                           "sampler_ratio": args.sampler_ratio},
              "runs": runs, "summary": summary}
    (args.out / "observability.json").write_text(json.dumps(report, indent=2) + "\n")
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
