"""Whether this machine can listen on a port, and which process holds it when it cannot."""

from __future__ import annotations

import os
import socket
from pathlib import Path

_LISTEN = "0A"  # The TCP state LISTEN in /proc/net/tcp.


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could not listen on ``host:port`` now (what it would bind to)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        # As servers bind: a port left in TIME_WAIT by a stopped server counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def listener(port: int) -> int | None:
    """The pid of a process listening on ``port``; None when this system does not tell
    (no /proc, or the process is another user's)."""
    sockets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not sockets:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(proc / "fd" / fd) in sockets for fd in os.listdir(proc / "fd")):
                return int(proc.name)
        except OSError:
            continue
    return None


def port_owner(port: int) -> str | None:
    """``pid N (command line)`` of a process listening on ``port``, or None."""
    pid = listener(port)
    if pid is None:
        return None
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return f"pid {pid}"
    command = command.strip()
    if len(command) > 80:
        command = command[:77] + "..."
    return f"pid {pid} ({command})"


def describe_taken(port: int, host: str = "127.0.0.1") -> str:
    """A sentence for a person: the port and, where known, the process holding it."""
    owner = port_owner(port)
    return f"port {port} on {host} is taken" + (f" by {owner}" if owner else "")
