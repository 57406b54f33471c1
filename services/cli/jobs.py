"""``inferq jobs``: submit a batch job and follow it, download its results, list, cancel."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from services.cli.client import api_client, json_body, report, request, send_dataset
from services.cli.errors import CliError

TERMINAL = ("succeeded", "failed", "cancelled")
#: Seconds each ``GET ?wait=`` of a followed job waits: how often its progress is shown.
FOLLOW_STEP = 1.0
BAR_WIDTH = 30


def add_jobs_parser(commands: argparse._SubParsersAction, default_url: str) -> None:
    api = argparse.ArgumentParser(add_help=False)
    api.add_argument("--url", default=default_url, help="the API's base URL")
    jobs = commands.add_parser("jobs", help="batch jobs: submit, follow, results, list, "
                               "cancel")
    actions = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")

    submit = actions.add_parser("submit", parents=[api],
                                help="score a dataset (or a file, uploaded first) with a model")
    submit.add_argument("model")
    source = submit.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", metavar="ID", help="a dataset already uploaded")
    source.add_argument("--file", type=Path, help="a CSV, JSON Lines or Parquet file to upload")
    submit.add_argument("--version", type=int, help="the model version (default: the latest)")
    submit.add_argument("--id-column", help="a column copied to the output and the errors")
    submit.add_argument("--passthrough", metavar="A,B",
                        help="comma-separated columns copied to the output")
    submit.add_argument("--output-format", choices=["csv", "jsonl", "parquet"],
                        help="the output's format (default: the dataset's)")
    submit.add_argument("--probabilities", action="store_true",
                        help="add a probability column per class")
    submit.add_argument("--max-failed-rows", type=int, default=0,
                        help="rejected rows allowed before the job fails (default 0)")
    submit.add_argument("--wait", action="store_true",
                        help="follow the job to its end, showing its progress; exit 1 "
                             "unless it succeeded")

    show = actions.add_parser("show", parents=[api], help="a job and its progress")
    show.add_argument("job_id")
    show.add_argument("--wait", action="store_true", help="follow it to its end")

    results = actions.add_parser("results", parents=[api], help="download a job's output")
    results.add_argument("job_id")
    results.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                         help="where to write it")
    errors = actions.add_parser("errors", parents=[api],
                                help="a job's rejected rows, as JSON Lines on stdout")
    errors.add_argument("job_id")

    listing = actions.add_parser("list", parents=[api], help="jobs, newest first")
    listing.add_argument("--status", choices=["queued", "running", *TERMINAL])
    listing.add_argument("--model")
    actions.add_parser("cancel", parents=[api], help="cancel a job").add_argument("job_id")


def run_jobs(args: argparse.Namespace) -> int:
    base = args.url.rstrip("/")
    if args.jobs_command == "submit":
        return _submit(base, args)
    if args.jobs_command == "show":
        if args.wait:
            return _follow(base, args.job_id)
        return _request("GET", f"{base}/v1/batch-jobs/{args.job_id}")
    if args.jobs_command == "results":
        return _download(f"{base}/v1/batch-jobs/{args.job_id}/results", args.output)
    if args.jobs_command == "errors":
        return _copy_out(f"{base}/v1/batch-jobs/{args.job_id}/errors")
    if args.jobs_command == "list":
        params = {k: v for k, v in (("status", args.status), ("model", args.model)) if v}
        return _request("GET", f"{base}/v1/batch-jobs", params=params)
    return _request("DELETE", f"{base}/v1/batch-jobs/{args.job_id}")


def _submit(base: str, args: argparse.Namespace) -> int:
    dataset_id = args.dataset
    if args.file is not None:
        uploaded = send_dataset(base, args.file, None, None)
        if uploaded.status_code >= 400:
            return report(uploaded)
        dataset_id = json_body(uploaded)["dataset_id"]
        sys.stderr.write(f"uploaded {args.file} as dataset {dataset_id}\n")
    body: dict[str, Any] = {"dataset_id": dataset_id, "max_failed_rows": args.max_failed_rows,
                            "return_probabilities": args.probabilities}
    for field, value in (("version", args.version), ("id_column", args.id_column),
                         ("output_format", args.output_format)):
        if value is not None:
            body[field] = value
    if args.passthrough:
        body["passthrough_columns"] = [c for c in args.passthrough.split(",") if c]
    with api_client(60) as client:
        response = request(client, "POST", f"{base}/v1/models/{args.model}/batch-jobs", json=body)
    if response.status_code >= 400 or not args.wait:
        return report(response)
    return _follow(base, json_body(response)["job_id"])


def _follow(base: str, job_id: str) -> int:
    return follow(f"{base}/v1/batch-jobs/{job_id}", Progress(sys.stderr))


def follow(url: str, progress: Bar) -> int:
    """Follow the job at ``url`` to its end, its progress on stderr; the ended job on
    stdout."""
    with api_client(FOLLOW_STEP + 30) as client:
        while True:
            response = request(client, "GET", url, params={"wait": FOLLOW_STEP})
            if response.status_code >= 400:
                progress.close()
                return report(response)
            job = json_body(response)
            progress.show(job)
            if job["status"] in TERMINAL:
                progress.close()
                report(response)
                return 0 if job["status"] == "succeeded" else 1


@dataclass
class Sample:
    at: float
    rows: int


class Bar:
    """A job's progress: a bar redrawn in place on a terminal, a line per change elsewhere."""

    def __init__(self, out: TextIO, tty: bool | None = None) -> None:
        self._out = out
        self._tty = out.isatty() if tty is None else tty
        self._last_line = ""

    def show(self, job: dict[str, Any], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        line = self.line(job, now)
        if self._tty:
            self._out.write(f"\r{line}\033[K")
        elif line != self._last_line:
            self._out.write(line + "\n")
        self._last_line = line
        self._out.flush()

    def line(self, job: dict[str, Any], now: float) -> str:
        """The job as one line: a bar on a terminal, plain words elsewhere."""
        raise NotImplementedError

    def close(self) -> None:
        if self._tty and self._last_line:
            self._out.write("\n")
            self._out.flush()


class Progress(Bar):
    """A batch job's rows: done, rejected, rate and time left."""

    def __init__(self, out: TextIO, tty: bool | None = None) -> None:
        super().__init__(out, tty)
        self._first: Sample | None = None

    def line(self, job: dict[str, Any], now: float) -> str:
        progress = job["progress"]
        total, done = progress["rows_total"], progress["rows_done"]
        if self._first is None or done < self._first.rows:
            self._first = Sample(now, done)
        elapsed = now - self._first.at
        rate = (done - self._first.rows) / elapsed if elapsed > 0 else 0.0
        failed = f", {progress['rows_failed']:,} rejected" if progress["rows_failed"] else ""
        status = job["status"]
        if not self._tty:
            return (f"job {job['job_id']}: {status}, {done:,}/{total:,} rows{failed}, "
                    f"{progress['chunks_done']}/{progress['chunks_total']} chunks")
        share = done / total if total else 1.0
        filled = round(share * BAR_WIDTH)
        eta = ""
        if status not in TERMINAL and rate > 0:
            eta = f"  ETA {_duration((total - done) / rate)}"
        return (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:4.0%}  {done:,}/"
                f"{total:,} rows{failed}  {rate:,.0f} rows/s{eta}  {status}")


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _request(method: str, url: str, **kwargs: Any) -> int:
    with api_client(60) as client:
        return report(request(client, method, url, **kwargs))


def _download(url: str, target: Path) -> int:
    """Stream the file to ``target``, whole or not at all (written aside, then renamed)."""
    partial = target.with_name(f".{target.name}.part")
    with api_client(httpx.Timeout(300)) as client:
        try:
            with client.stream("GET", url) as response:
                if response.status_code >= 400:
                    response.read()
                    return report(response)
                size = 0
                with partial.open("wb") as out:
                    for data in response.iter_bytes():
                        out.write(data)
                        size += len(data)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise CliError(f"cannot write {target}: {exc.strerror}") from None
        except httpx.HTTPError as exc:
            partial.unlink(missing_ok=True)
            raise CliError(f"download from {url.split('/v1/', 1)[0]} failed: {exc}") from None
    os.replace(partial, target)
    sys.stderr.write(f"wrote {size:,} bytes to {target}\n")
    return 0


def _copy_out(url: str) -> int:
    with api_client(httpx.Timeout(300)) as client:
        response = request(client, "GET", url)
    if response.status_code >= 400:
        return report(response)
    sys.stdout.write(response.text)
    return 0

