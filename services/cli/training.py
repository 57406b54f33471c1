"""``inferq train`` and ``inferq training-jobs``: submit a training job and follow it; read,
list and cancel training jobs."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

import orjson

from services.cli.client import api_client, json_body, report, request
from services.cli.errors import CliError
from services.cli.jobs import BAR_WIDTH, TERMINAL, Bar, _request, follow

#: ``--promote-if``: a metric, ``>=`` (at least) or ``<=`` (at most), a number.
PROMOTE_IF = re.compile(r"^\s*([a-z0-9_]+)\s*(>=|<=)\s*(\S+)\s*$")


def add_training_parsers(commands: argparse._SubParsersAction, default_url: str) -> None:
    api = argparse.ArgumentParser(add_help=False)
    api.add_argument("--url", default=default_url, help="the API's base URL")
    train = commands.add_parser(
        "train", parents=[api], help="train a new version of a model on a dataset",
        description="Submit a training job; values of --param and --grid are JSON when they "
                    "parse as JSON (5, 0.1, true, null, \"text\"), else text.")
    train.add_argument("model")
    train.add_argument("--dataset", required=True, metavar="ID", help="an uploaded dataset")
    train.add_argument("--target", required=True, metavar="COL", help="the column to predict")
    train.add_argument("--features", metavar="A,B",
                       help="comma-separated feature columns (default: all others)")
    train.add_argument("--estimator", required=True, metavar="NAME",
                       help="a scikit-learn estimator class of the allow-list")
    train.add_argument("--param", action="append", default=[], metavar="K=V",
                       help="a hyperparameter (repeatable)")
    train.add_argument("--grid", action="append", default=[], metavar="K=V1,V2",
                       help="values of a hyperparameter to search (repeatable)")
    train.add_argument("--metric", help="the metric that picks the best candidate")
    split = train.add_mutually_exclusive_group()
    split.add_argument("--cv", type=int, metavar="K", help="cross-validate on K folds")
    split.add_argument("--holdout", type=float, metavar="F",
                       help="evaluate on this share of the rows (default 0.2)")
    train.add_argument("--seed", type=int, help="seeds the splits and the estimator")
    train.add_argument("--alias", help="move this alias to the new version")
    train.add_argument("--promote-if", metavar="METRIC>=X",
                       help="move the alias only when the metric clears the bar "
                            "(METRIC>=X, or METRIC<=X for mae and rmse)")
    train.add_argument("--wait", action="store_true",
                       help="follow the job to its end, its phase and progress on stderr; "
                            "exit 1 unless it succeeded")

    jobs = commands.add_parser("training-jobs", help="training jobs: get, list, cancel")
    actions = jobs.add_subparsers(dest="training_command", required=True, metavar="ACTION")
    get = actions.add_parser("get", parents=[api], help="a job, its phase and progress")
    get.add_argument("job_id")
    get.add_argument("--wait", action="store_true", help="follow it to its end")
    listing = actions.add_parser("list", parents=[api], help="jobs, newest first")
    listing.add_argument("--status", choices=["queued", "running", *TERMINAL])
    listing.add_argument("--model")
    actions.add_parser("cancel", parents=[api], help="cancel a job").add_argument("job_id")


def run_train(args: argparse.Namespace) -> int:
    base = args.url.rstrip("/")
    body = training_body(args)
    with api_client(60) as client:
        response = request(client, "POST", f"{base}/v1/models/{args.model}/training-jobs",
                           json=body)
    if response.status_code >= 400 or not args.wait:
        return report(response)
    job_id = json_body(response)["job_id"]
    return follow(f"{base}/v1/training-jobs/{job_id}", PhaseProgress(sys.stderr))


def run_training_jobs(args: argparse.Namespace) -> int:
    base = args.url.rstrip("/")
    if args.training_command == "get":
        if args.wait:
            return follow(f"{base}/v1/training-jobs/{args.job_id}", PhaseProgress(sys.stderr))
        return _request("GET", f"{base}/v1/training-jobs/{args.job_id}")
    if args.training_command == "list":
        params = {k: v for k, v in (("status", args.status), ("model", args.model)) if v}
        return _request("GET", f"{base}/v1/training-jobs", params=params)
    return _request("DELETE", f"{base}/v1/training-jobs/{args.job_id}")


def training_body(args: argparse.Namespace) -> dict[str, Any]:
    """The request's body from ``inferq train``'s arguments."""
    body: dict[str, Any] = {"dataset_id": args.dataset, "target_column": args.target,
                            "estimator": args.estimator,
                            "hyperparameters": dict(_pair(p, "--param") for p in args.param)}
    if args.features:
        body["feature_columns"] = [c for c in args.features.split(",") if c]
    if args.grid or args.metric:
        search: dict[str, Any] = {}
        if args.grid:
            search["grid"] = {name: [parse_value(v) for v in raw.split(",")]
                              for name, raw in (_split(g, "--grid") for g in args.grid)}
        if args.metric:
            search["metric"] = args.metric
        body["search"] = search
    if args.cv is not None:
        body["validation"] = {"cv": args.cv}
    elif args.holdout is not None:
        body["validation"] = {"holdout": args.holdout}
    if args.seed is not None:
        body["seed"] = args.seed
    if args.alias:
        body["alias"] = args.alias
    if args.promote_if:
        found = PROMOTE_IF.match(args.promote_if)
        bar = parse_value(found.group(3)) if found else None
        if found is None or not isinstance(bar, int | float) or isinstance(bar, bool):
            raise CliError(f"--promote-if {args.promote_if!r}: write METRIC>=NUMBER (or "
                           "METRIC<=NUMBER for mae and rmse), e.g. accuracy>=0.9")
        body["promote_if"] = {"metric": found.group(1),
                              "min" if found.group(2) == ">=" else "max": bar}
    return body


def parse_value(raw: str) -> Any:
    """A value given on the command line: its JSON value when it parses, else the text."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


def _split(text: str, flag: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise CliError(f"{flag} {text!r}: write NAME=VALUE")
    return name.strip(), value


def _pair(text: str, flag: str) -> tuple[str, Any]:
    name, value = _split(text, flag)
    return name, parse_value(value)


class PhaseProgress(Bar):
    """A training job's phase and progress (0 to 1)."""

    def line(self, job: dict[str, Any], now: float) -> str:
        share = float(job.get("progress") or 0.0)
        phase, status = job.get("phase") or "", job["status"]
        if not self._tty:
            return f"job {job['job_id']}: {status}, {phase}, {share:.0%}"
        filled = round(share * BAR_WIDTH)
        return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:4.0%}  {phase}  {status}"
