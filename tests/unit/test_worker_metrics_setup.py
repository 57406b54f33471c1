"""A worker's metrics directory is prepared before prometheus-client is imported, or the
worker does not start: its children's samples would never reach /metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def python(code: str, multiproc_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter, which has imported nothing of inferq yet."""
    env = {k: v for k, v in os.environ.items() if k.upper() != "PROMETHEUS_MULTIPROC_DIR"}
    if multiproc_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc_dir)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_preparing_after_the_worker_is_imported_fails_naming_the_importer() -> None:
    run = python("""
        import services.worker.main
        from services.worker.metrics_server import prepare_multiprocess_dir
        prepare_multiprocess_dir("inference")
    """)
    assert run.returncode != 0
    assert ("RuntimeError: prometheus_client was imported (single-process) before the "
            "worker's metrics directory was prepared, by ") in run.stderr
    assert "services.common.metrics" in run.stderr


def test_preparing_late_fails_even_when_the_directory_was_set(tmp_path: Path) -> None:
    # Values would be multiprocess, but emptying the directory would lose the files of the
    # metrics already made.
    run = python("""
        import services.common.metrics
        from services.worker.metrics_server import prepare_multiprocess_dir
        prepare_multiprocess_dir("inference")
    """, multiproc_dir=tmp_path)
    assert run.returncode != 0
    assert "prometheus_client was imported (multiprocess) before" in run.stderr


def test_a_worker_serving_metrics_refuses_single_process_values() -> None:
    for start in ("run_worker(Settings(), INFERENCE, 1, 9)", "serve_metrics(0)"):
        run = python(f"""
            from services.common.pools import INFERENCE
            from services.common.settings import Settings
            from services.worker.main import run_worker, serve_metrics
            {start}
        """)
        assert run.returncode != 0, start
        assert ("RuntimeError: the worker's metric values are single-process: its prefork "
                "children's samples would never reach /metrics") in run.stderr, start


def test_prepared_first_every_process_writes_to_the_directory_served(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "gauge_max_1.db").write_bytes(b"left by a previous worker")
    run = python("""
        import os
        from services.worker.metrics_server import prepare_multiprocess_dir
        directory = prepare_multiprocess_dir("inference")

        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        import services.worker.main
        from services.common.metrics import WORKER_PROCESSES
        from services.worker.metrics_server import (
            multiprocess_values, require_multiprocess_values)

        assert multiprocess_values()
        assert require_multiprocess_values() == directory
        child = os.fork()
        if child == 0:  # As a prefork child does.
            WORKER_PROCESSES.labels("inference").set(1)
            os._exit(0)
        os.waitpid(child, 0)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, str(directory))
        print(generate_latest(registry).decode())
    """, multiproc_dir=directory)
    assert run.returncode == 0, run.stderr
    assert 'inferq_worker_processes{pool="inference"} 1.0' in run.stdout
    assert not (directory / "gauge_max_1.db").exists()
