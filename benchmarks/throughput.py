"""Throughput, latency and CPU of single-row predictions: inferq next to what users build.

In one invocation on one machine: (a) inferq, (b) the classic design (one Celery task per
request, a task id returned, the client polling every 5 ms, prefetch 1, Redis result
backend), (c) a synchronous endpoint calling the model in the request, and (d) the model's
own vectorised ``predict_proba`` over the same rows, the limit; on request (``--systems``)
also the peers Ray Serve and BentoML, each from a virtualenv of its own
(benchmarks/peers/). Closed loop at each concurrency; writes results.json, chart.png and
results.md to ``--out``.

At concurrency 1 the systems differ by about a millisecond, less than a shared machine's
speed drifts from one minute to the next: there all systems run at once and take turns,
in ``--slices`` slices each (alternating order), so every system sees the same minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).parent))

import client
import models
import systems
from common import machine, percentiles
from peers import venvs

from ml.importer import import_model

CALLS = {"inferq": client.inferq_call, "classic": client.classic_call, "sync": client.sync_call,
         "ray": lambda model: client.one_request(f"/predict/{model}", "Ray Serve"),
         "bentoml": lambda model: client.one_request(f"/predict/{model}", "BentoML")}
LABELS = {"inferq": "inferq", "classic": "classic", "sync": "sync", "ray": "Ray Serve",
          "bentoml": "BentoML"}
#: CPU roles that are not the system's own processes.
NOT_SYSTEM = ("client", "machine", "idle systems")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children, alive or reaped."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
    return total


def rss_mib(pid: int) -> dict[str, float]:
    """Resident memory of a process and of each of its children, in MiB."""
    found: dict[str, float] = {}
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        found["main"] = round(root.memory_info().rss / 2**20, 1)
        for i, child in enumerate(root.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                found[f"child{i}"] = round(child.memory_info().rss / 2**20, 1)
    return found


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (/proc/stat: all but idle and iowait)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def cpu_seconds_by_part(pid: int, parts: tuple[str, ...],
                        part_of: Callable[[psutil.Process], str]) -> dict[str, float]:
    """User + system CPU of a process tree, split by ``part_of`` over ``parts``."""
    found = dict.fromkeys(parts, 0.0)
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                found[part_of(process)] += times.user + times.system
    return found


def snapshot(system: systems.System,
             idle: Sequence[systems.System] = ()) -> dict[str, float]:
    """CPU seconds so far by role, of the client and of the machine; ``idle``: the systems
    up but not under load (at concurrency 1), whose CPU the machine's figure leaves out."""
    me = psutil.Process()
    own = me.cpu_times()
    shot = {role: cpu_seconds(pid) for role, pid in system.pids.items()}
    if system.part_of is not None:
        for role, pid in system.pids.items():
            split = cpu_seconds_by_part(pid, system.parts, system.part_of)
            shot.update({f"{role}.{part}": seconds for part, seconds in split.items()})
    shot["client"] = own.user + own.system
    shot["idle systems"] = sum(cpu_seconds(pid) for other in idle for pid in other.pids.values())
    shot["machine"] = machine_busy() - shot["idle systems"]
    return shot


def batch_rows(system: systems.System, model: str) -> tuple[float, float]:
    """(model calls, rows) so far, as the system counts them (the peers themselves, the
    inferq workers in their rows-per-call histograms)."""
    if system.batch_counts is None:
        return 0.0, 0.0
    calls, rows = system.batch_counts(model)
    return float(calls), float(rows)


async def measured_run(system: systems.System, model: str, bodies: list[bytes],
                       concurrency: int, warmup: float, duration: float) -> dict[str, Any]:
    shots: list[dict[str, float]] = []

    async def sampler() -> None:
        await asyncio.sleep(warmup)
        shots.append(snapshot(system))
        await asyncio.sleep(duration)
        shots.append(snapshot(system))

    load, _ = await asyncio.gather(
        client.closed_loop("127.0.0.1", system.ports, CALLS[system.name](model), bodies,
                           concurrency, warmup, duration, system.headers),
        sampler(),
    )
    cpu = {role: shots[1][role] - shots[0][role] for role in shots[0]}
    return run_result(system.name, model, concurrency, duration, load.latencies,
                      load.errors, load.error_samples, cpu)


def run_result(name: str, model: str, concurrency: int, duration: float,
               latencies: list[float], errors: int, error_samples: list[str],
               cpu: dict[str, float]) -> dict[str, Any]:
    """One point of the report: throughput, latency, errors and CPU by role; per
    prediction, the machine's (every process, the client's share included, the same for
    every system), the system's own processes' and the client's."""
    per_prediction = 1000 / max(1, len(latencies))
    own = sum(seconds for role, seconds in cpu.items()
              if role not in NOT_SYSTEM and "." not in role)
    return {
        "system": name, "model": model, "concurrency": concurrency,
        "throughput_rps": round(len(latencies) / duration, 1),
        **percentiles(latencies or [0.0]),
        "errors": errors,
        "error_samples": error_samples[:5],
        "cpu_seconds": {role: round(seconds, 3) for role, seconds in cpu.items()},
        "machine_cpu_ms_per_prediction": round(per_prediction * cpu["machine"], 3),
        "system_cpu_ms_per_prediction": round(per_prediction * own, 3),
        "client_cpu_ms_per_prediction": round(per_prediction * cpu["client"], 3),
    }


def run_system(system: systems.System, args: argparse.Namespace, bodies: list[bytes],
               concurrencies: list[int]) -> Iterator[dict[str, Any]]:
    for model in args.models:
        for concurrency in concurrencies:
            before = batch_rows(system, model)
            run = asyncio.run(measured_run(system, model, bodies, concurrency,
                                           args.warmup, args.duration))
            yield finish_run(system, model, run, before)


def finish_run(system: systems.System, model: str, run: dict[str, Any],
               batches_before: tuple[float, float]) -> dict[str, Any]:
    """Add rows per model call (since ``batches_before``) and memory; print the run."""
    after = batch_rows(system, model)
    if after[0] > batches_before[0]:
        run["rows_per_model_call"] = round(
            (after[1] - batches_before[1]) / (after[0] - batches_before[0]), 1)
    run["rss_mib"] = {role: rss_mib(pid) for role, pid in system.pids.items()}
    print(json.dumps(run), file=sys.stderr, flush=True)
    return run


def run_alternating(running: list[systems.System], args: argparse.Namespace,
                    bodies: list[bytes], concurrency: int) -> Iterator[dict[str, Any]]:
    """Each model at ``concurrency`` on every system, the systems taking turns in slices."""
    piece = args.duration / args.slices
    for model in args.models:
        befores = [batch_rows(system, model) for system in running]
        for system in running:  # Warm-up, not measured.
            asyncio.run(client.closed_loop("127.0.0.1", system.ports,
                                           CALLS[system.name](model), bodies, concurrency,
                                           0.0, args.warmup, system.headers))
        slices: dict[str, list[dict[str, Any]]] = {s.name: [] for s in running}
        for turn in range(args.slices):
            for system in running if turn % 2 == 0 else running[::-1]:
                idle = [other for other in running if other is not system]
                slices[system.name].append(asyncio.run(measured_slice(
                    system, model, bodies, concurrency, piece, idle)))
        for system, before in zip(running, befores, strict=True):
            yield finish_run(system, model, combined(system.name, model, concurrency,
                                                     slices[system.name], args.duration),
                             before)


async def measured_slice(system: systems.System, model: str, bodies: list[bytes],
                         concurrency: int, seconds: float,
                         idle: Sequence[systems.System]) -> dict[str, Any]:
    """One slice: its latencies, errors and CPU by role (``idle``: the systems waiting
    their turn, their CPU kept out of the machine's)."""
    before = snapshot(system, idle)
    load = await client.closed_loop("127.0.0.1", system.ports, CALLS[system.name](model),
                                    bodies, concurrency, 0.0, seconds, system.headers)
    after = snapshot(system, idle)
    return {"load": load, "cpu": {role: after[role] - before[role] for role in before}}


def combined(name: str, model: str, concurrency: int, slices: list[dict[str, Any]],
             duration: float) -> dict[str, Any]:
    """The slices of one system as one point, with each slice's p50."""
    loads = [piece["load"] for piece in slices]
    result = run_result(
        name, model, concurrency, duration,
        [x for load in loads for x in load.latencies], sum(load.errors for load in loads),
        [e for load in loads for e in load.error_samples],
        {role: sum(piece["cpu"][role] for piece in slices) for role in slices[0]["cpu"]})
    result["slices"] = len(slices)
    result["slice_p50_ms"] = [percentiles(load.latencies or [0.0])["p50_ms"] for load in loads]
    return result


def vectorised_limit(paths: dict[str, Path], rows: list[list[float]]) -> dict[str, Any]:
    x = np.asarray(rows, dtype=np.float64)
    limit = {}
    for model in paths:
        estimator = joblib.load(paths[model])
        estimator.predict_proba(x[:100])
        started = time.perf_counter()
        estimator.predict_proba(x)
        elapsed = time.perf_counter() - started
        limit[model] = {"rows": len(x), "seconds": round(elapsed, 4),
                        "throughput_rps": round(len(x) / elapsed, 1)}
    return limit


def soak(store: Path, args: argparse.Namespace, bodies: list[bytes]) -> dict[str, Any]:
    """inferq under steady load for ``--soak`` seconds, memory sampled every ``interval``."""
    interval = max(5.0, args.soak / 20)
    samples = []
    with systems.inferq(store, args.inferq_worker_concurrency, args.inferq_api_replicas,
                        args.inferq_workers, args.inferq_auth == "on") as system:
        call = client.inferq_call("forest")

        async def load() -> client.LoadResult:
            return await client.closed_loop("127.0.0.1", system.ports, call, bodies, 32,
                                            0.0, args.soak, system.headers)

        async def watch() -> None:
            started = time.monotonic()
            while time.monotonic() - started < args.soak:
                samples.append({"t": round(time.monotonic() - started, 1),
                                **{role: rss_mib(pid) for role, pid in system.pids.items()}})
                await asyncio.sleep(interval)

        async def both() -> client.LoadResult:
            result, _ = await asyncio.gather(load(), watch())
            return result

        result = asyncio.run(both())
    return {"seconds": args.soak, "model": "forest", "concurrency": 32,
            "predictions": len(result.latencies), "errors": result.errors, "rss": samples}


def write_chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model_names = sorted({r["model"] for r in report["runs"]})
    fig, axes = plt.subplots(2, len(model_names), figsize=(6 * len(model_names), 8),
                             squeeze=False)
    for col, model in enumerate(model_names):
        for name, label in LABELS.items():
            runs = [r for r in report["runs"] if r["model"] == model and r["system"] == name]
            if not runs:
                continue
            xs = [r["concurrency"] for r in runs]
            axes[0][col].plot(xs, [r["throughput_rps"] for r in runs], marker="o", label=label)
            axes[1][col].plot(xs, [r["p50_ms"] for r in runs], marker="o", label=label)
        if model in report.get("vectorised_limit", {}):
            axes[0][col].axhline(report["vectorised_limit"][model]["throughput_rps"],
                                 linestyle="--", color="grey", label="vectorised limit")
        for row, label in ((0, "predictions / s"), (1, "p50 latency (ms)")):
            axes[row][col].set_xscale("log", base=2)
            axes[row][col].set_yscale("log")
            axes[row][col].set_xlabel("concurrency (closed loop)")
            axes[row][col].set_ylabel(label)
            axes[row][col].set_title(f"{model}, single-row requests")
            axes[row][col].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_table(report: dict[str, Any], path: Path) -> None:
    """The runs as a Markdown table, the systems side by side within each model and
    concurrency, and a note on what the CPU columns count."""
    order = list(LABELS)
    lines = ["| model | concurrency | system | predictions/s | p50 ms | p99 ms "
             "| machine CPU ms/prediction | system CPU ms/prediction "
             "| client CPU ms/prediction | rows per model call | errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(report["runs"], key=lambda r: (r["model"], r["concurrency"],
                                                   order.index(r["system"]))):
        lines.append(f"| {r['model']} | {r['concurrency']} | {LABELS[r['system']]} "
                     f"| {r['throughput_rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                     f"| {r['machine_cpu_ms_per_prediction']:.2f} "
                     f"| {r.get('system_cpu_ms_per_prediction', 0):.2f} "
                     f"| {r.get('client_cpu_ms_per_prediction', 0):.2f} "
                     f"| {r.get('rows_per_model_call', '')} | {r['errors']} |")
    for model, limit in report.get("vectorised_limit", {}).items():
        lines.append(f"| {model} | - | vectorised predict_proba ({limit['rows']:,} rows) "
                     f"| {limit['throughput_rps']:,.0f} | | | | | | {limit['rows']} | |")
    lines += ["", "Machine CPU: busy time of the whole machine over the measured window "
              "(/proc/stat), per prediction; it includes the client's share, the same load "
              "for every system, and whatever else ran, less (at concurrency 1, where the "
              "systems are all up and take turns) the CPU of the systems waiting their "
              "turn. System CPU: the system's own "
              "processes and their children (for Ray Serve the whole tree under its "
              "launcher: GCS, raylet, controller, proxy, HAProxy, replica)."]
    path.write_text("\n".join(lines) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)

    def csv(kind: type) -> Any:
        return lambda text: [kind(part) for part in text.split(",") if part]

    parser.add_argument("--systems", type=csv(str), default=["inferq", "classic", "sync"],
                        help="comma-separated: inferq, classic, sync, ray, bentoml")
    parser.add_argument("--models", type=csv(str), default=list(models.MODELS))
    parser.add_argument("--concurrency", type=csv(int), default=[1, 8, 32, 128])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured a run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--worker-concurrency", type=int, default=2,
                        help="prefork children of the classic worker")
    parser.add_argument("--inferq-worker-concurrency", type=int, default=1,
                        help="prefork children of the inferq worker (its main process "
                             "buffers and batches, so one child fills a core)")
    parser.add_argument("--inferq-api-replicas", type=int, default=2,
                        help="inferq API processes, the client's connections spread over "
                             "them (the chart runs two replicas)")
    parser.add_argument("--inferq-workers", type=int, default=1,
                        help="inferq inference workers (processes), each with "
                             "--inferq-worker-concurrency children")
    parser.add_argument("--inferq-auth", choices=("on", "off"), default="on",
                        help="inferq's API keys and rate limits (on, as the chart runs it: "
                             "every request carries a key and takes from its limits)")
    parser.add_argument("--slices", type=int, default=6,
                        help="turns each system takes at concurrency 1, where all systems "
                             "run at once and alternate (0: one after the other)")
    parser.add_argument("--soak", type=float, default=0.0,
                        help="also run inferq this many seconds and record its memory")
    parser.add_argument("--peers-venvs", type=Path, default=venvs.default_root(),
                        help="where the peers' virtualenvs are installed and reused")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"))
    args = parser.parse_args(argv)
    unknown = sorted(set(args.systems) - set(LABELS))
    if unknown:
        parser.error(f"unknown systems {', '.join(unknown)}; known: {', '.join(LABELS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = models.train(args.out / "models")
    rows = models.request_rows(2000)
    bodies = [orjson.dumps({"instances": [row]}) for row in rows]
    report: dict[str, Any] = {
        "benchmark": "single-row predictions, closed loop",
        "machine": machine(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "vectorised_limit": vectorised_limit(paths, models.request_rows(20_000, seed=2)),
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="inferq-store-") as tmp:
        store = Path(tmp)
        for name, path in paths.items():
            import_model(store, path, name)
        starters = {"inferq": lambda: systems.inferq(store, args.inferq_worker_concurrency,
                                                      args.inferq_api_replicas,
                                                      args.inferq_workers,
                                                      args.inferq_auth == "on"),
                    "classic": lambda: systems.classic(paths["forest"].parent,
                                                       args.worker_concurrency),
                    "sync": lambda: systems.sync(paths["forest"].parent),
                    "ray": lambda: systems.ray_serve(paths["forest"].parent, args.peers_venvs),
                    "bentoml": lambda: systems.bentoml(paths["forest"].parent,
                                                       args.peers_venvs)}
        alternate = 1 in args.concurrency and len(args.systems) > 1 and args.slices > 0
        rest = [c for c in args.concurrency if not (alternate and c == 1)]
        with contextlib.ExitStack() as stack:
            running = {name: stack.enter_context(starters[name]()) for name in args.systems} \
                if alternate else {}
            if running:
                report["runs"].extend(run_alternating(list(running.values()), args, bodies, 1))
            for name in args.systems:
                with (contextlib.nullcontext(running[name]) if running
                      else starters[name]()) as system:
                    report["runs"].extend(run_system(system, args, bodies, rest))
        if args.soak:
            report["soak"] = soak(store, args, bodies)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    write_table(report, args.out / "results.md")
    write_chart(report, args.out / "chart.png")
    print(f"wrote {args.out}/results.json, results.md and chart.png")


if __name__ == "__main__":
    main()
