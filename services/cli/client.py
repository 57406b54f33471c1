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


def predict(url: str, model: str, instances: list[Any], wait: float, timeout: float = 60,
            expect: list[str] | None = None) -> int:
    """Submit, wait for the result, write the task as JSON; exit status 0 only on success,
    and, with ``expect``, only when the predictions, as text, are those."""
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
    if body.get("status") != SUCCESS:
        return 1
    if expect is not None:
        predictions = [str(p) for p in (body.get("result") or {}).get("predictions", [])]
        if predictions != expect:
            sys.stderr.write(f"expected predictions {expect}, got {predictions}\n")
            return 1
    return 0
