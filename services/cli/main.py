"""``inferq``: the API server, a worker pool, the local stack, the model store, a client."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from services.cli.bench import add_bench_parser, run_bench
from services.cli.errors import CliError
from services.cli.jobs import add_jobs_parser, run_jobs
from services.cli.keys import add_keys_parser, run_keys
from services.cli.models import add_models_parser, run_models
from services.cli.training import add_training_parsers, run_train, run_training_jobs
from services.common.logging import configure_logging
from services.common.media import DATASET_MEDIA_TYPES
from services.common.pools import POOLS, pool
from services.common.settings import get_settings
from services.common.storage import StorageError

DEFAULT_URL = "http://127.0.0.1:8000"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inferq", description="inferq: asynchronous ML inference on Redis and Celery."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="run Redis, the API and one worker per pool locally")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--redis-url", help="use this Redis instead of starting one")
    up.add_argument("--redis-port", type=int,
                    help="port of the Redis it starts (default: 6379, or a free one when "
                         "6379 is taken)")
    up.add_argument("--concurrency", type=int, default=1, help="processes per worker pool")
    up.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".inferq"),
        help="where a started Redis keeps its data",
    )

    api = commands.add_parser("api", help="run the REST API server")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)

    worker = commands.add_parser("worker", help="run one worker pool")
    worker.add_argument("--pool", required=True, metavar="NAME",
                        help=f"the pool's name; one of {', '.join(POOLS)} or a pool of its own "
                             "with --kind")
    worker.add_argument("--kind", choices=sorted(POOLS),
                        help="the kind of work and its defaults (default: the pool's name)")
    worker.add_argument("--queue", help="the queue it consumes (default: the pool's name)")
    worker.add_argument("--concurrency", type=int, default=1, help="worker processes")
    worker.add_argument(
        "--metrics-port",
        type=int,
        default=9808,
        help="port of /metrics and /healthz; 0 turns it off",
    )
    # For `inferq up`: the file appears once the worker consumes its queue.
    worker.add_argument("--ready-file", type=Path, help=argparse.SUPPRESS)

    add_models_parser(commands)
    add_keys_parser(commands)

    predict = commands.add_parser("predict", help="submit rows and print the finished task")
    predict.add_argument("model")
    rows = predict.add_mutually_exclusive_group(required=True)
    rows.add_argument("--json", dest="rows_json", help="rows as JSON, e.g. '[[5.1,3.5,1.4,0.2]]'")
    rows.add_argument("--csv", type=Path, help="a CSV file with a header of feature names")
    predict.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the result")
    predict.add_argument("--url", default=DEFAULT_URL, help="the API's base URL")
    predict.add_argument("--expect", help="comma-separated predictions the rows must get; "
                                          "anything else exits 1 (a smoke test)")
    _add_datasets_parser(commands)
    add_jobs_parser(commands, DEFAULT_URL)
    add_training_parsers(commands, DEFAULT_URL)
    add_bench_parser(commands)
    return parser


def _add_datasets_parser(commands: argparse._SubParsersAction) -> None:
    api = argparse.ArgumentParser(add_help=False)
    api.add_argument("--url", default=DEFAULT_URL, help="the API's base URL")
    datasets = commands.add_parser("datasets", help="datasets on the API: upload, list, "
                                   "show, delete")
    actions = datasets.add_subparsers(dest="datasets_command", required=True, metavar="ACTION")
    upload = actions.add_parser("upload", parents=[api], help="stream a CSV, JSON Lines or "
                                "Parquet file to the API as a new dataset")
    upload.add_argument("file", type=Path)
    upload.add_argument("--name", help="the dataset's name (default: the file's name)")
    upload.add_argument("--format", choices=list(DATASET_MEDIA_TYPES),
                        help="the file's format (default: from its extension)")
    actions.add_parser("list", parents=[api], help="the datasets, newest first")
    for action, what in (("show", "describe a dataset"), ("delete", "delete a dataset and "
                                                                    "its file")):
        actions.add_parser(action, parents=[api], help=what).add_argument("dataset_id")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _run(parser, args)
    except (CliError, StorageError) as exc:
        sys.stderr.write(f"inferq: {exc}\n")
        return 1


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "up":
        if args.redis_url:
            os.environ["INFERQ_REDIS_URL"] = args.redis_url
        # One format for the whole stack, which its processes inherit: text for a person
        # at a terminal, JSON for a file or a log collector.
        os.environ.setdefault("INFERQ_LOG_FORMAT", "text" if sys.stderr.isatty() else "json")
        # A local stack needs no API keys unless asked for (INFERQ_AUTH=on and a secret).
        os.environ.setdefault("INFERQ_AUTH", "off")
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format, settings.secret_values)
    if args.command == "api":
        import uvicorn

        from services.api.auth import auth_problem
        from services.api.main import create_app

        problem = auth_problem(settings)
        if problem:
            raise CliError(problem)
        if settings.auth == "on" and settings.auth_seed_file is not None:
            from services.common.api_keys import SeedFileError, read_seed_file

            try:
                read_seed_file(settings.auth_seed_file)
            except SeedFileError as exc:
                raise CliError(str(exc)) from None
        if settings.metrics_port:
            from services.api.metrics import serve_metrics

            try:
                serve_metrics(args.host, settings.metrics_port)
            except OSError as exc:
                raise CliError(f"cannot serve /metrics on {args.host}:{settings.metrics_port} "
                               f"(INFERQ_METRICS_PORT): {exc.strerror or exc}") from None
        uvicorn.run(
            create_app(settings),
            host=args.host,
            port=args.port,
            loop="uvloop",
            http="httptools",
            log_config=None,
            access_log=False,
            lifespan="on",
        )
        return 0
    if args.command == "worker":
        try:
            worker_pool = pool(args.pool, args.kind, args.queue)
        except ValueError as exc:
            parser.error(f"worker: {exc}")
        if args.metrics_port:
            # Before services.worker.main imports prometheus-client (see metrics_server).
            from services.worker.metrics_server import prepare_multiprocess_dir

            prepare_multiprocess_dir(args.pool)
        from services.worker.main import run_worker

        if args.ready_file:
            _touch_when_ready(args.ready_file)
        run_worker(settings, worker_pool, args.concurrency, args.metrics_port)
        return 0
    if args.command == "bench":
        return run_bench(args)
    if args.command == "up":
        from services.cli.local_stack import StackOptions, run_local_stack

        return run_local_stack(settings, StackOptions(
            args.host, args.port, args.redis_port, args.concurrency, args.state_dir))
    if args.command == "models":
        return run_models(args, settings)
    if args.command == "keys":
        return run_keys(args, settings)
    if args.command == "datasets":
        return _datasets(args)
    if args.command == "jobs":
        return run_jobs(args)
    if args.command == "train":
        return run_train(args)
    if args.command == "training-jobs":
        return run_training_jobs(args)
    from services.cli.client import parse_json_rows, predict, read_csv_rows

    instances = read_csv_rows(args.csv) if args.csv else parse_json_rows(args.rows_json)
    expect = args.expect.split(",") if args.expect is not None else None
    return predict(args.url, args.model, instances, args.wait, expect=expect)


def _datasets(args: argparse.Namespace) -> int:
    from services.cli.client import dataset_request, upload_dataset

    if args.datasets_command == "upload":
        return upload_dataset(args.url, args.file, args.name, args.format)
    if args.datasets_command == "list":
        return dataset_request(args.url, "GET")
    method = "GET" if args.datasets_command == "show" else "DELETE"
    return dataset_request(args.url, method, args.dataset_id)


def _touch_when_ready(path: Path) -> None:
    from celery import signals

    @signals.worker_ready.connect(weak=False)
    def _ready(**_: object) -> None:
        path.touch()


if __name__ == "__main__":
    sys.exit(main())
