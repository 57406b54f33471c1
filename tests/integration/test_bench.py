"""``inferq bench`` runs the systems side by side and writes its table, JSON and chart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_bench_runs_inferq_and_the_sync_endpoint_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "results"
    finished = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "bench", "--systems", "inferq,sync",
         "--workloads", "logistic", "--concurrency", "1,8", "--duration", "1",
         "--warmup", "0.5", "--slices", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=240,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    report = json.loads((out / "results.json").read_text())
    runs = {(r["system"], r["concurrency"]): r for r in report["runs"]}
    assert set(runs) == {("inferq", 1), ("inferq", 8), ("sync", 1), ("sync", 8)}
    for run in runs.values():
        assert run["errors"] == 0 and run["n"] > 0 and run["throughput_rps"] > 0
        assert run["cpu_seconds"]["machine"] > 0
        assert run["system_cpu_ms_per_prediction"] > 0 and run["client_cpu_ms_per_prediction"] > 0
    # Concurrency 1 alternates the systems, each measured in its own slices.
    assert runs[("inferq", 1)]["slices"] == runs[("sync", 1)]["slices"] == 2
    assert "slices" not in runs[("inferq", 8)]
    assert runs[("inferq", 8)]["rows_per_model_call"] >= 1.0
    assert report["vectorised_limit"]["logistic"]["throughput_rps"] > 0
    table = (out / "results.md").read_text()
    assert "| logistic | 1 | inferq |" in table and "| logistic | 8 | sync |" in table
    assert (out / "chart.png").stat().st_size > 0
