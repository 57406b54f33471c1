"""What authentication and rate limits cost the API: CPU seconds per prediction, on vs off.

Two stacks (Redis, one API process, one inference worker) run side by side: one with
``INFERQ_AUTH=off``, one with authentication on, a key seeded at start and rate limits
that every request takes from (set high enough that none is refused, so both serve the
same load). The same closed-loop load of ``POST /v1/models/iris/predict?wait=10`` (one row)
alternates between them in short slices (off, on, on, off, ...), ``--pairs`` of each; the
API process's user + system CPU over a slice (from ``/proc``, by psutil), divided by the
predictions answered in it, is its cost per prediction. The cost of authentication is the
median over adjacent pairs of on / off - 1: the machine's drift from minute to minute
cancels in a pair.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import client
from common import Stack, auth_env, bearer, local_stack, machine, new_key, percentiles
from throughput import cpu_seconds

BODIES = [b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}', b'{"instances": [[6.7, 3.0, 5.2, 2.3]]}']
SETTINGS = ("off", "on")


def measure(stack: Stack, headers: str, args: argparse.Namespace) -> dict[str, Any]:
    """One slice of load: ``args.warmup`` s, then ``args.duration`` s measured."""
    port = stack.ports[0]

    async def slice_of_load() -> dict[str, Any]:
        shots: list[float] = []

        async def sample_cpu() -> None:
            await asyncio.sleep(args.warmup)
            shots.append(cpu_seconds(stack.api.pid))
            await asyncio.sleep(args.duration)
            shots.append(cpu_seconds(stack.api.pid))

        load, _ = await asyncio.gather(
            client.closed_loop("127.0.0.1", port, client.inferq_call("iris"), BODIES,
                               args.concurrency, args.warmup, args.duration, headers),
            sample_cpu())
        if load.errors:
            raise RuntimeError(f"{load.errors} requests failed: {load.error_samples}")
        done = max(1, len(load.latencies))
        return {"throughput_rps": round(len(load.latencies) / args.duration, 1),
                **percentiles(load.latencies),
                "api_cpu_ms_per_prediction": round(1000 * (shots[1] - shots[0]) / done, 4)}

    return asyncio.run(slice_of_load())


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each setting's medians, and the median cost of ``on`` over its adjacent ``off``."""
    summary: dict[str, Any] = {}
    for setting in SETTINGS:
        mine = [r for r in runs if r["setting"] == setting]
        summary[setting] = {
            "api_cpu_ms_per_prediction": round(statistics.median(
                r["api_cpu_ms_per_prediction"] for r in mine), 4),
            "throughput_rps": round(statistics.median(r["throughput_rps"] for r in mine), 1),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in mine), 3),
        }
    pairs = [(off, on) for off in runs for on in runs
             if off["pair"] == on["pair"] and off["setting"] == "off" and on["setting"] == "on"]
    costs = [100 * (on["api_cpu_ms_per_prediction"] / off["api_cpu_ms_per_prediction"] - 1)
             for off, on in pairs]
    summary["api_cpu_cost_percent"] = round(statistics.median(costs), 1)
    summary["api_cpu_cost_percent_per_pair"] = [round(c, 1) for c in costs]
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds measured a slice")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before that")
    parser.add_argument("--pairs", type=int, default=6, help="slices of each setting")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"))
    args = parser.parse_args(argv)
    key = new_key()
    runs: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="inferq-auth-cost-") as tmp, ExitStack() as exit:
        root = Path(tmp)
        stacks = {setting: exit.enter_context(local_stack(extra_env=auth_env(setting, root, key)))
                  for setting in SETTINGS}
        headers = {"off": "", "on": bearer(key)}
        for pair in range(args.pairs):
            order = SETTINGS if pair % 2 == 0 else SETTINGS[::-1]
            for setting in order:
                runs.append({"setting": setting, "pair": pair,
                             **measure(stacks[setting], headers[setting], args)})
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    report = {"benchmark": "API CPU per prediction, authentication and rate limits on vs off",
              "machine": machine(),
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()],
              "settings": {"concurrency": args.concurrency, "duration": args.duration,
                           "warmup": args.warmup, "pairs": args.pairs},
              "runs": runs, "summary": summarize(runs)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "auth-cost.json").write_text(json.dumps(report, indent=2) + "\n")
    json.dump(report["summary"], sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
