"""Start a local Ray cluster and the Ray Serve peer on ``--port``; stop both when stdin ends.

Runs in the Ray virtualenv: ``python ray_serve.py --port P --temp-dir D``, with
PEER_MODEL_DIR and PEER_COUNTS_DIR set (benchmarks/peers/serving.py) and the throughput
settings in the environment (benchmarks/systems.py sets them). Prints ``ready`` once the
application is up. Ray takes SIGTERM over for itself (it exits without shutting its
processes down), so the benchmark asks for the stop by closing this process's stdin.
"""

from __future__ import annotations

import argparse
import sys

import ray
import ray_app
from ray import serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--temp-dir", required=True, help="Ray's sockets, logs and spill")
    args = parser.parse_args()
    ray.init(include_dashboard=False, _temp_dir=args.temp_dir, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        serve.run(ray_app.app(), name="peer", route_prefix="/")
        print("ready", flush=True)
        sys.stdin.read()
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
