"""Instructions per prediction in a running ``inferq api``, counted by callgrind.

Starts Redis and one inference worker, and the API under
``valgrind --tool=callgrind --instr-atstart=no``, then sends ``--requests``
``POST /v1/models/iris/predict?wait=10`` one after the other, as the benchmarks' clients
do. Instrumentation is switched on (``callgrind_control``) only after 300 warm-up
requests, and its counters are zeroed after the first 200 of those, so the count covers the
measured requests alone: start-up, imports and the first requests do not enter it, and two
runs of the same code agree to well under 1 %.

``--tracing`` sets ``OTEL_TRACES_SAMPLER_ARG`` (``parentbased_traceidratio``) with spans
exported to a local sink that answers 200; ``off`` configures no exporter. Under callgrind a
request takes about 50 times longer, so the exporter's work on its 5 s schedule weighs 50
times more per request than in a real run: read a sampled setting's count as an upper
bound.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from common import machine
from observability import otlp_sink

from services.cli.processes import INFERQ, start_worker
from services.cli.redis_server import free_port, start_redis

BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'


def callgrind(pid: int, *command: str) -> None:
    subprocess.run(["callgrind_control", *command, str(pid)], check=True, capture_output=True)


def total_instructions(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError(f"no totals in {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--tracing", default="off",
                        help="off, or the share of new traces sampled (0 to 1)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="inferq-server-cost-") as tmp, \
            contextlib.ExitStack() as stack:
        root = Path(tmp)
        from ml.demo import train_demo

        train_demo(root / "models")
        redis_port = free_port()
        redis = start_redis(redis_port, root / "redis", appendonly=False)
        stack.callback(redis.wait)
        stack.callback(redis.terminate)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INFERQ_", "OTEL_"))}
        env.update(INFERQ_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
                   INFERQ_MODEL_STORE=str(root / "models"), INFERQ_AUTH="off")
        if args.tracing != "off":
            env.update(OTEL_EXPORTER_OTLP_ENDPOINT=stack.enter_context(otlp_sink()),
                       OTEL_TRACES_SAMPLER="parentbased_traceidratio",
                       OTEL_TRACES_SAMPLER_ARG=args.tracing)
        stack.callback(start_worker(env, root).stop)
        port = free_port()
        out = root / "callgrind.out"
        with (root / "api.log").open("w") as log:
            api = subprocess.Popen(
                ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                 f"--callgrind-out-file={out}", INFERQ, "api", "--port", str(port)],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        stack.callback(api.wait)
        stack.callback(api.terminate)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError((root / "api.log").read_text()[-3000:])
            time.sleep(1)
        with httpx.Client(base_url=url, timeout=60,
                          headers={"content-type": "application/json"}) as http:

            def predict(requests: int) -> None:
                for _ in range(requests):
                    answer = http.post("/v1/models/iris/predict?wait=10", content=BODY)
                    if answer.status_code != 200:
                        raise RuntimeError(f"the prediction failed: {answer.text}")

            predict(100)
            callgrind(api.pid, "--instr=on")
            predict(200)  # Under instrumentation, before counting.
            callgrind(api.pid, "--zero")
            predict(args.requests)
            callgrind(api.pid, "--dump")
        (dump,) = root.glob("callgrind.out.*")
        instructions = total_instructions(dump)
    json.dump({"benchmark": "API instructions per prediction, running server",
               "machine": machine(), "tracing": args.tracing, "requests": args.requests,
               "instructions_per_request": round(instructions / args.requests)}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
