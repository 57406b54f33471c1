"""``inferq bench --auth-cost``: the command line it runs, and the script's key and settings."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest
from bench_scripts import BENCHMARKS, load_script

from services.cli.bench import auth_cost_command
from services.cli.main import _parser

SCRIPT = BENCHMARKS / "auth_cost.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("auth_cost")


def test_the_option_runs_the_script_with_the_bench_s_settings() -> None:
    args = _parser().parse_args(["bench", "--auth-cost", "--concurrency", "4,16",
                                 "--duration", "3", "--warmup", "0.5", "--pairs", "2",
                                 "--out", "/tmp/r"])
    command = auth_cost_command(args)
    assert command[1] == str(SCRIPT)
    assert command[2:] == ["--concurrency", "4", "--duration", "3.0", "--warmup", "0.5",
                           "--pairs", "2", "--out", "/tmp/r/auth-cost"]
    assert not _parser().parse_args(["bench"]).auth_cost


def test_the_script_refuses_a_bad_option(bench: ModuleType) -> None:
    with pytest.raises(SystemExit) as exited:
        bench.main(["--pairs", "x"])
    assert exited.value.code == 2


def test_on_seeds_a_key_in_the_api_s_format_and_limits(bench: ModuleType, tmp_path: Path) -> None:
    key = bench.new_key()
    assert re.fullmatch(r"inferq_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", key)
    on = bench.auth_env("on", tmp_path, key)
    assert on["INFERQ_AUTH"] == "on" and len(on["INFERQ_AUTH_SECRET"]) == 64
    assert key in Path(on["INFERQ_AUTH_SEED_FILE"]).read_text()
    assert float(on["INFERQ_RATE_LIMIT_REQUESTS_PER_SECOND"]) > 0
    assert bench.auth_env("off", tmp_path, key) == {"INFERQ_AUTH": "off"}


def test_the_cost_is_the_median_over_adjacent_pairs(bench: ModuleType) -> None:
    runs = [{"setting": s, "pair": p, "api_cpu_ms_per_prediction": cpu, "throughput_rps": 1.0,
             "p50_ms": 1.0}
            for p, (off, on) in enumerate([(1.0, 1.05), (2.0, 2.2), (1.0, 1.5)])
            for s, cpu in (("off", off), ("on", on))]
    summary = bench.summarize(runs)
    assert summary["api_cpu_cost_percent_per_pair"] == [5.0, 10.0, 50.0]
    assert summary["api_cpu_cost_percent"] == 10.0
