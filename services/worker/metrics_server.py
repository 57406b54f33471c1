"""One ``/metrics`` endpoint for all of a worker's processes, plus a cheap ``/healthz``.

Prefork children write their samples to files in ``PROMETHEUS_MULTIPROC_DIR``; the main
process serves them together. The directory is emptied at start, and files of processes
that died are marked dead at each scrape, so a replaced child's gauges disappear.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger(__name__)

_PID_FILE = re.compile(r"_(\d+)\.db$")


def prepare_multiprocess_dir(pool: str) -> Path:
    """Point prometheus-client at a fresh directory; call before importing any metric."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    root = Path(configured) if configured else Path(tempfile.gettempdir()) / "inferq-metrics"
    path = root / f"{pool}-{os.getpid()}" if not configured else root
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mark_dead_processes(directory: Path) -> None:
    from prometheus_client import multiprocess

    pids = {int(m.group(1)) for f in directory.iterdir() if (m := _PID_FILE.search(f.name))}
    for pid in pids:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, str(directory))


def serve_metrics(port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve the pool's metrics on ``port`` from a daemon thread of the main process."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/healthz":
                self._reply(200, b'{"status": "ok"}', "application/json")
            elif self.path.split("?")[0] == "/metrics":
                _mark_dead_processes(directory)
                registry = CollectorRegistry()
                MultiProcessCollector(registry, str(directory))
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            else:
                self._reply(404, b'{"error": "not found"}', "application/json")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="inferq-metrics", daemon=True).start()
    log.info("metrics served", extra={"port": port})
    return server
