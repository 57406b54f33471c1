"""A bounded fault run (benchmarks/faults.py): nothing accepted is lost, failed or wrong
while workers are SIGKILLed and SIGTERMed and Redis restarts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FAULTS = Path(__file__).parents[2] / "benchmarks" / "faults.py"


def test_every_accepted_task_ends_right_through_kills_a_sigterm_and_a_redis_restart(
    tmp_path: Path, record_property: Any
) -> None:
    report_path = tmp_path / "faults.json"
    finished = subprocess.run(
        [sys.executable, str(FAULTS), "--tasks", "1000", "--rate", "50", "--kill-every", "4",
         "--drain-timeout", "60", "--out", str(report_path)],
        capture_output=True, text=True, timeout=400,
    )
    if not report_path.exists():
        pytest.fail(f"no report: {finished.stderr[-3000:]}")
    report = json.loads(report_path.read_text())
    record_property("duplicates", report["duplicates"])
    summary = {k: report[k] for k in ("accepted", "succeeded", "lost", "failed", "wrong",
                                      "duplicates", "sigkills", "drain_s")}
    print("fault run:", summary)

    assert report["accepted"] == 1000
    assert (report["lost"], report["failed"], report["wrong"]) == (0, 0, 0), summary
    assert report["succeeded"] == report["accepted"]
    assert finished.returncode == 0, finished.stderr[-3000:]
    # Killed workers run some tasks again: counted, and never so often that one fails.
    assert 0 <= report["duplicates"] < report["accepted"] // 10
    assert report["most_starts"] <= 3
    assert report["sigkills"] >= 6 and report["redis_restarts"] == 1
    (sigterm,) = report["sigterms"]
    # It hands back what it holds at once and exits once its running batch is done.
    assert sigterm["exit_code"] == 0 and sigterm["exit_s"] < 10, sigterm
