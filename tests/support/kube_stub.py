"""A stub of the Kubernetes API server at the HTTP boundary: the one component of a
deployment that cannot run here. It answers GETs from a table of paths and records them."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: The core group's discovery document, which clients read before a ``v1`` object.
CORE_V1 = {
    "kind": "APIResourceList", "groupVersion": "v1",
    "resources": [{"name": "secrets", "singularName": "secret", "namespaced": True,
                   "kind": "Secret", "verbs": ["get", "list"]}],
}


class StubKubernetes:
    """Answers ``GET path`` with ``answer(path)`` (without the query), 404 when it is None."""

    def __init__(self, answer: Callable[[str], dict[str, Any] | None]) -> None:
        self.requests: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub.requests.append(self.path)
                body = answer(self.path.split("?", 1)[0])
                status = 200 if body is not None else 404
                if body is None:
                    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "reason": "NotFound", "code": 404}
                encoded = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(encoded)))
                self.end_headers()
                self.wfile.write(encoded)

            def log_message(self, *_: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "stub",
            "clusters": [{"name": "stub", "cluster": {"server": self.url}}],
            "users": [{"name": "stub", "user": {"token": "t"}}],
            "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
        }))
        return path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
