"""``inferq jobs``: how a followed job's progress reads, on a terminal and in a log."""

from __future__ import annotations

import io
from typing import Any

from services.cli.jobs import Progress


def job(done: int, status: str = "running", failed: int = 0) -> dict[str, Any]:
    return {"job_id": "j1", "status": status, "progress": {
        "rows_total": 1000, "rows_done": done, "rows_failed": failed, "chunks_total": 4,
        "chunks_done": done // 250}}


def test_a_terminal_gets_one_bar_redrawn_with_rate_and_eta() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=True)
    progress.show(job(0), now=10.0)
    progress.show(job(250), now=12.0)
    progress.show(job(500, failed=3), now=14.0)
    progress.show(job(1000, "succeeded", failed=3), now=16.0)
    progress.close()
    frames = out.getvalue().split("\r")[1:]
    assert len(frames) == 4 and out.getvalue().endswith("\n")
    assert frames[1].startswith("[" + "#" * 8 + "." * 22 + "]  25%  250/1,000 rows  125 rows/s")
    assert "ETA 6s" in frames[1]
    assert "500/1,000 rows, 3 rejected  125 rows/s  ETA 4s  running" in frames[2]
    assert "ETA" not in frames[3] and frames[3].rstrip("\n").endswith("succeeded\x1b[K")


def test_a_log_gets_a_plain_line_per_change() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=False)
    for done, status in ((0, "queued"), (0, "queued"), (500, "running"), (1000, "succeeded")):
        progress.show(job(done, status), now=1.0)
    progress.close()
    assert out.getvalue().splitlines() == [
        "job j1: queued, 0/1,000 rows, 0/4 chunks",
        "job j1: running, 500/1,000 rows, 2/4 chunks",
        "job j1: succeeded, 1,000/1,000 rows, 4/4 chunks",
    ]
