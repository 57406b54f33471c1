"""``inferq predict`` and ``inferq datasets``: a small client of the REST API."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson

from services.cli.errors import CliError
from services.common.media import DATASET_MEDIA_TYPES

SUCCESS = "succeeded"

#: A dataset file's format, from its extension.
DATASET_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                      ".parquet": "parquet", ".pq": "parquet"}
EXAMPLE = "--json '[[5.1, 3.5, 1.4, 0.2]]'"


def parse_json_rows(text: str) -> list[Any]:
    try:
        rows = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"--json is not valid JSON ({exc}); give a list of rows, e.g. "
                       f"{EXAMPLE}") from None
    if not isinstance(rows, list):
        raise CliError(f"--json must be a list of rows, e.g. {EXAMPLE}")
    return rows


def read_csv_rows(path: Path) -> list[dict[str, Any] | list[Any]]:
    """Rows of a CSV file with a header of feature names, as objects keyed by feature."""
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            return [_numbers(path, reader.line_num, row) for row in reader]
    except OSError as exc:
        raise CliError(f"--csv: cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CliError(f"--csv: {path} is not a CSV text file ({exc})") from None


def _numbers(path: Path, line: int, row: dict[str | None, Any]) -> dict[str, Any]:
    where = f"{path}, line {line}"
    if None in row:
        raise CliError(f"{where} has more cells than the header has names")
    numbers = {}
    for name, cell in row.items():
        try:
            numbers[str(name)] = float(cell)
        except (TypeError, ValueError):
            what = "is empty" if cell in (None, "") else f"is {cell!r}"
            raise CliError(f"{where}: column {name!r} {what}; every cell must be a number"
                           ) from None
    return numbers


def predict(url: str, model: str, instances: list[Any], wait: float, timeout: float = 60,
            expect: list[str] | None = None) -> int:
    """Submit, wait for the result, write the task as JSON; exit status 0 only on success,
    and, with ``expect``, only when the predictions, as text, are those."""
    base = url.rstrip("/")
    with api_client(timeout) as client:
        response = request(client, "POST", f"{base}/v1/models/{model}/predict",
                           params={"wait": min(wait, 30)}, json={"instances": instances})
        body = json_body(response)
        if response.status_code >= 400:
            sys.stderr.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
            return 1
        remaining = wait - min(wait, 30)
        while body.get("status") in ("queued", "running") and remaining > 0:
            step = min(remaining, 30)
            body = json_body(request(client, "GET", f"{base}/v1/tasks/{body['task_id']}",
                                     params={"wait": step}))
            remaining -= step
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    if body.get("status") != SUCCESS:
        return 1
    if expect is not None:
        predictions = [str(p) for p in (body.get("result") or {}).get("predictions", [])]
        if predictions != expect:
            sys.stderr.write(f"expected predictions {expect}, got {predictions}\n")
            return 1
    return 0


#: The environment variable holding the API key the commands send (never an argument:
#: arguments show in the process list and the shell's history).
API_KEY_VARIABLE = "INFERQ_API_KEY"


def api_client(timeout: float | httpx.Timeout) -> httpx.Client:
    """A client of the REST API that sends ``$INFERQ_API_KEY`` as its bearer token."""
    key = os.environ.get(API_KEY_VARIABLE, "").strip()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(timeout=timeout, headers=headers)


def request(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """The request; an API that cannot be reached is a one-line error that says what to do."""
    base = url.split("/v1/", 1)[0]
    try:
        return client.request(method, url, **kwargs)
    except httpx.ConnectError:
        raise CliError(f"cannot reach the API at {base}; start it with `make up` (or "
                       "`inferq up`), or give its address with --url") from None
    except httpx.TimeoutException:
        raise CliError(f"the API at {base} did not answer within {client.timeout.read:g} s; "
                       "check that it runs, or wait less with --wait") from None
    except httpx.HTTPError as exc:
        raise CliError(f"request to {base} failed: {exc}; check --url") from None


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object; anything else means --url is not inferq's API."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise CliError(f"{response.request.url} answered {response.status_code} without "
                       "an inferq JSON body; check that --url is inferq's API")
    return body


def upload_dataset(url: str, path: Path, name: str | None, fmt: str | None) -> int:
    """Stream the file to ``POST /v1/datasets`` and write the dataset (or the error)."""
    return report(send_dataset(url, path, name, fmt))


def send_dataset(url: str, path: Path, name: str | None, fmt: str | None) -> httpx.Response:
    """Stream the file to ``POST /v1/datasets``; the API's answer."""
    if fmt is None:
        fmt = DATASET_EXTENSIONS.get(path.suffix.lower())
        if fmt is None:
            raise CliError(f"cannot tell the format of {path} from its extension; give "
                           f"--format {'|'.join(DATASET_MEDIA_TYPES)}")
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    # No overall deadline: a large file takes as long as it takes; each read and write
    # still times out.
    with handle, api_client(httpx.Timeout(300)) as client:
        return request(client, "POST", f"{url.rstrip('/')}/v1/datasets",
                       params={"name": name or path.name}, content=handle,
                       headers={"Content-Type": DATASET_MEDIA_TYPES[fmt]})


def dataset_request(url: str, method: str, dataset_id: str | None = None) -> int:
    """List the datasets, or show or delete one; write the answer."""
    where = f"{url.rstrip('/')}/v1/datasets" + (f"/{dataset_id}" if dataset_id else "")
    with api_client(60) as client:
        response = request(client, method, where)
    if response.status_code == 204:
        sys.stdout.write(f"deleted {dataset_id}\n")
        return 0
    return report(response)


def report(response: httpx.Response) -> int:
    """The answer's JSON on stdout, or on stderr with exit status 1 for an error."""
    body = orjson.dumps(json_body(response), option=orjson.OPT_INDENT_2).decode() + "\n"
    if response.status_code >= 400:
        sys.stderr.write(body)
        return 1
    sys.stdout.write(body)
    return 0
