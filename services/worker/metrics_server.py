"""One ``/metrics`` endpoint for all of a worker's processes, plus a cheap ``/healthz``.

Prefork children write their samples to files in ``PROMETHEUS_MULTIPROC_DIR``; the main
process serves them together. The directory is emptied at start, and files of processes
that died are marked dead at each scrape, so a replaced child's gauges disappear.

prometheus-client chooses once, when it is first imported, whether its values live in
memory or in those files. So ``prepare_multiprocess_dir`` must run before anything imports
it (``services.worker.main`` does, through ``services.common.metrics``), and refuses to run
after; ``serve_metrics`` refuses to serve values that never reach the files.
This module imports prometheus-client only inside its functions.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

_PID_FILE = re.compile(r"_(\d+)\.db$")


_CLIENT = "prometheus_client"
_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(pool: str) -> Path:
    """Point prometheus-client at a fresh directory; call before anything imports it.

    Raises RuntimeError when it is already imported: its values would stay in this
    process's memory, or, were the directory set earlier, the files of metrics already made
    would be emptied away.
    """
    if _CLIENT in sys.modules:
        mode = "multiprocess" if multiprocess_values() else "single-process"
        raise RuntimeError(
            f"prometheus_client was imported ({mode}) before the worker's metrics directory "
            f"was prepared, by {', '.join(_importers()) or 'an unknown module'}: call "
            "prepare_multiprocess_dir before importing services.worker.main or "
            "services.common.metrics"
        )
    configured = os.environ.get(_DIR_VARIABLE)
    root = Path(configured) if configured else Path(tempfile.gettempdir()) / "inferq-metrics"
    path = root / f"{pool}-{os.getpid()}" if not configured else root
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[_DIR_VARIABLE] = str(path)
    return path


def multiprocess_values() -> bool:
    """Whether prometheus-client's values are written to files (chosen at its import)."""
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue


def require_multiprocess_values() -> Path:
    """The directory the worker's processes write their samples to; raises RuntimeError
    when they write none there, as when prometheus-client was imported before
    ``prepare_multiprocess_dir``."""
    configured = os.environ.get(_DIR_VARIABLE)
    if not multiprocess_values() or not configured:
        raise RuntimeError(
            "the worker's metric values are single-process: its prefork children's samples "
            "would never reach /metrics; call prepare_multiprocess_dir before importing "
            "services.worker.main or services.common.metrics"
        )
    directory = Path(configured)
    if not directory.is_dir():
        raise RuntimeError(f"{_DIR_VARIABLE} {directory} is not a directory")
    return directory


def _importers() -> list[str]:
    """The modules that hold a name from prometheus-client: those that imported it."""
    found = []
    for name, module in list(sys.modules.items()):
        if module is None or name.partition(".")[0] == _CLIENT:
            continue
        for value in list(vars(module).values()):
            try:
                origin = (value.__name__ if isinstance(value, ModuleType)
                          else getattr(value, "__module__", None))
            except Exception:  # An odd object (a lazy proxy, say) is not a name from it.
                continue
            if isinstance(origin, str) and origin.partition(".")[0] == _CLIENT:
                found.append(name)
                break
    return sorted(found)


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

    directory = require_multiprocess_values()

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
