"""The chart's Redis run for real: the redis.conf of its ConfigMap and the arguments of its
StatefulSet (its ACL users), with the passwords of the Secrets the chart renders; and the
environment each component's pod would get, pointed at that server."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from chart.manifests import Manifest, component_name, env, named
from redis.backoff import NoBackoff
from redis.retry import Retry

from services.cli.redis_server import free_port, port_open

#: A user of the test's own, to read ACL LOG: the chart's users cannot, by design.
ADMIN = ("inspector", "inspector-password")
_EXPANDED = re.compile(r"\$\(([A-Z_]+)\)")


def secret_value(manifests: list[Manifest], reference: dict[str, Any]) -> str:
    """The value a ``valueFrom.secretKeyRef`` resolves to, from the rendered Secret."""
    ref = reference["valueFrom"]["secretKeyRef"]
    secret = named(manifests, "Secret", ref["name"])
    return base64.b64decode(secret["data"][ref["key"]]).decode()


def resolved_env(manifests: list[Manifest], container: dict[str, Any]) -> dict[str, str]:
    """The container's variables that come from a value or a rendered Secret."""
    found = {}
    for name, entry in env(container).items():
        if "value" in entry:
            found[name] = str(entry["value"])
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            found[name] = secret_value(manifests, entry)
    return found


def openssl_certificates(directory: Path, host: str = "localhost") -> Path:
    """A CA and a server certificate for ``host`` and 127.0.0.1 it signs, as a Secret of
    cert-manager's layout (tls.crt, tls.key, ca.crt) would hold them; the directory."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}",
        "-keyout", "tls.key", "-out", "tls.csr")
    (directory / "san.ext").write_text(f"subjectAltName=DNS:{host},IP:127.0.0.1\n")
    run("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "tls.crt")
    return directory


class ChartRedis:
    """redis-server started as the chart's StatefulSet would start it, on a free port."""

    def __init__(self, manifests: list[Manifest], workdir: Path,
                 tls_dir: Path | None = None) -> None:
        self.manifests = manifests
        self.port = free_port()
        self.tls_dir = tls_dir
        statefulset = named(manifests, "StatefulSet", component_name("redis"))
        (container,) = statefulset["spec"]["template"]["spec"]["containers"]
        config = named(manifests, "ConfigMap", component_name("redis"))["data"]["redis.conf"]
        data = workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = (config.replace("dir /data", f"dir {data}")
                  .replace("port 6379", f"port {self.port}")
                  .replace("/etc/redis/tls", str(tls_dir)))
        (workdir / "redis.conf").write_text(config + "\nbind 127.0.0.1\n")
        variables = resolved_env(manifests, container)
        args = [_EXPANDED.sub(lambda m: variables[m.group(1)], str(a))
                for a in container["args"][1:]]
        admin = ["--user", ADMIN[0], "on", f">{ADMIN[1]}", "~*", "&*", "+@all"]
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", str(workdir / "redis.conf"),
             *args, *admin],
            stdout=(workdir / "redis.log").open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((workdir / "redis.log").read_text())
            time.sleep(0.05)

    def client(self, user: str | None, password: str | None, **kwargs: Any) -> redis.Redis:
        """A client that gives up at the first refusal (redis-py retries one by default)."""
        options: dict[str, Any] = {"retry": Retry(NoBackoff(), 0)}
        if self.tls_dir is not None:
            options.update(ssl=True, ssl_ca_certs=str(self.tls_dir / "ca.crt"))
        return redis.Redis(port=self.port, username=user, password=password,
                           **options, **kwargs)

    def admin(self) -> redis.Redis:
        return self.client(*ADMIN)

    def component_env(self, container: dict[str, Any]) -> dict[str, str]:
        """The pod's Redis variables, the chart's Service replaced by this server."""
        variables = resolved_env(self.manifests, container)
        found = {k: v for k, v in variables.items() if k.startswith("INFERQ_REDIS_")}
        found["INFERQ_REDIS_URL"] = found["INFERQ_REDIS_URL"].replace(
            f"{component_name('redis')}:6379", f"127.0.0.1:{self.port}")
        return found

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
