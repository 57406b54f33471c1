"""What metrics and tracing cost: inferq's throughput, p50 and CPU with both on, and both off.

On: every process exports its spans over OTLP/HTTP to a local sink that answers 200, the
worker serves its metrics (``--metrics-port``), and the benchmark scrapes every API
replica's and the worker's ``/metrics`` every second, as Prometheus would. Tracing samples
as the chart does by default (``parentbased_traceidratio`` at ``--sampler-ratio``); a
third setting traces every request. Off: no exporter configured and ``--metrics-port 0``.
"Metrics only" and "tracing only" turn on one of the two, to tell their costs apart.

The API runs as the chart runs it, ``--api-replicas`` processes with the client's
connections spread over them. The machine's speed drifts from minute to minute by more
than the costs measured, so each setting runs side by side with a stack that has both off:
the load alternates between the two in short slices (off, on, on, off, ...), ``--pairs``
of each, and a cost is the median over those adjacent pairs. The report gives each slice,
each setting's medians and its costs, in throughput, p50 and CPU per prediction (from
``/proc``), which the machine's other work disturbs less than throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
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


@dataclass
class Target:
    """A running stack of one setting: where to send load, what to scrape, whose CPU."""

    setting: Setting
    ports: list[int]
    scrape_urls: list[str]
    pids: dict[str, list[int]]


@contextmanager
def started(store: Path, setting: Setting, args: argparse.Namespace) -> Iterator[Target]:
    """Redis, the API replicas and one inference worker, configured for ``setting``."""
    with ExitStack() as stack_exit:
        extra: dict[str, str] = {}
        metrics_port = free_port() if setting.metrics else 0
        if setting.ratio is not None:
            endpoint = stack_exit.enter_context(otlp_sink())
            # The SDK's export schedule, as the chart leaves it (every 5 s).
            extra = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                     "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                     "OTEL_TRACES_SAMPLER_ARG": str(setting.ratio)}
        stack = stack_exit.enter_context(local_stack(
            store=store, extra_env=extra, worker_args=("--metrics-port", str(metrics_port)),
            api_replicas=args.api_replicas))
        urls = [f"http://127.0.0.1:{port}/metrics" for port in stack.ports]
        yield Target(setting, stack.ports, [*urls, f"http://127.0.0.1:{metrics_port}/metrics"],
                     {"api": [api.pid for api in stack.apis], "worker": [stack.workers[0].pid],
                      "redis": [stack.redis_pid]})


def measure(target: Target, args: argparse.Namespace, bodies: list[bytes]) -> dict[str, Any]:
    """One slice of load on ``target``: ``args.warmup`` s, then ``args.duration`` s measured."""
    setting = target.setting

    def cpu() -> dict[str, float]:
        return {role: sum(cpu_seconds(pid) for pid in pids) for role, pids in target.pids.items()}

    async def slice_of_load() -> dict[str, Any]:
        stop = asyncio.Event()
        scraper = (asyncio.create_task(scrape_every_second(target.scrape_urls, stop))
                   if setting.metrics else None)
        shots: list[dict[str, float]] = []

        async def sample_cpu() -> None:
            await asyncio.sleep(args.warmup)
            shots.append(cpu())
            await asyncio.sleep(args.duration)
            shots.append(cpu())

        load, _ = await asyncio.gather(
            client.closed_loop("127.0.0.1", target.ports, client.inferq_call(args.model),
                               bodies, args.concurrency, args.warmup, args.duration),
            sample_cpu(),
        )
        stop.set()
        scrapes = await scraper if scraper else 0
        done = max(1, len(load.latencies))
        per_prediction = {role: round(1000 * (shots[1][role] - shots[0][role]) / done, 3)
                          for role in target.pids}
        return {"metrics": setting.metrics, "sampler_ratio": setting.ratio,
                "throughput_rps": round(len(load.latencies) / args.duration, 1),
                **percentiles(load.latencies), "errors": load.errors, "scrapes": scrapes,
                "cpu_ms_per_prediction": per_prediction}

    return asyncio.run(slice_of_load())


def compare(store: Path, label: str, setting: Setting, off: Setting, args: argparse.Namespace,
            bodies: list[bytes], first_pair: int) -> list[dict[str, Any]]:
    """``args.pairs`` adjacent slices of ``setting`` and of both off, in alternating order
    (off first, then on first), so that a steady drift of the machine's speed cancels."""
    runs: list[dict[str, Any]] = []
    with started(store, off, args) as off_target, started(store, setting, args) as on_target:
        for pair in range(args.pairs):
            order = [("off", off_target), (label, on_target)]
            for name, target in order if pair % 2 == 0 else order[::-1]:
                runs.append({"setting": name, "pair": first_pair + pair,
                             **measure(target, args, bodies)})
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    return runs


def costs(runs: list[dict[str, Any]], label: str) -> dict[str, float]:
    """What ``label`` costs over its adjacent slice with both off: medians over the pairs."""
    by_pair: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for run in runs:
        by_pair[run["pair"]][run["setting"]] = run
    pairs = [(both["off"], both[label]) for both in by_pair.values() if label in both]

    def median(of: Callable[[dict[str, Any]], float], rounding: int = 1,
               relative: bool = True) -> float:
        return round(statistics.median(
            100 * (of(on) / of(off) - 1) if relative else of(on) - of(off)
            for off, on in pairs), rounding)

    def cpu(run: dict[str, Any]) -> float:
        return float(sum(run["cpu_ms_per_prediction"].values()))

    return {
        "throughput_cost_percent": -median(lambda run: run["throughput_rps"]),
        "p50_cost_percent": median(lambda run: run["p50_ms"]),
        "api_cpu_cost_percent": median(lambda run: run["cpu_ms_per_prediction"]["api"]),
        "cpu_cost_percent": median(cpu),
        "cpu_cost_ms_per_prediction": median(cpu, rounding=3, relative=False),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="logistic", choices=list(models.MODELS))
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured a slice")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before that")
    parser.add_argument("--pairs", type=int, default=8,
                        help="slices of each setting, each next to one with both off")
    parser.add_argument("--api-replicas", type=int, default=2,
                        help="API processes, the client's connections spread over them "
                             "(the chart runs two replicas)")
    parser.add_argument("--sampler-ratio", type=float, default=DEFAULT_SAMPLER_RATIO,
                        help="share of traces exported in the 'on' setting (chart default)")
    parser.add_argument("--settings", default="",
                        help="comma-separated names of the settings to run (default: all)")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = models.train(args.out / "models")
    bodies = [orjson.dumps({"instances": [row]}) for row in models.request_rows(2000)]
    runs: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="inferq-store-") as tmp:
        store = Path(tmp)
        for name, path in paths.items():
            import_model(store, path, name)
        chosen = settings(args.sampler_ratio)
        if args.settings:
            wanted = args.settings.split(",")
            chosen = {k: v for k, v in chosen.items() if k == "off" or k.split(" (")[0] in wanted}
        for label, setting in list(chosen.items())[1:]:
            runs.extend(compare(store, label, setting, chosen["off"], args, bodies,
                                first_pair=len(runs) // 2))
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
        summary[label].update(costs(runs, label))
    report = {"benchmark": "metrics and tracing on vs off", "machine": machine(),
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()],
              "settings": {"model": args.model, "concurrency": args.concurrency,
                           "api_replicas": args.api_replicas, "duration": args.duration,
                           "warmup": args.warmup, "pairs": args.pairs,
                           "sampler_ratio": args.sampler_ratio},
              "runs": runs, "summary": summary}
    (args.out / "observability.json").write_text(json.dumps(report, indent=2) + "\n")
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
