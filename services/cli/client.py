"""``inferq predict``: a small client of the REST API."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson

SUCCESS = "succeeded"


def read_csv_rows(path: Path) -> list[dict[str, Any] | list[Any]]:
    """Rows of a CSV file with a header of feature names, as objects keyed by feature."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return [{k: float(v) for k, v in row.items()} for row in reader]


def predict(url: str, model: str, instances: list[Any], wait: float, timeout: float = 60) -> int:
    """Submit, wait for the result, write the task as JSON; exit status 0 only on success."""
    base = url.rstrip("/")
    with httpx.Client(timeout=timeout) as client:
        response = client.post(
            f"{base}/v1/models/{model}/predict",
            params={"wait": min(wait, 30)},
            json={"instances": instances},
        )
        body = response.json()
        if response.status_code >= 400:
            sys.stderr.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
            return 1
        remaining = wait - min(wait, 30)
        while body.get("status") in ("queued", "running") and remaining > 0:
            step = min(remaining, 30)
            body = client.get(f"{base}/v1/tasks/{body['task_id']}", params={"wait": step}).json()
            remaining -= step
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0 if body.get("status") == SUCCESS else 1
