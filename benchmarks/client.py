"""A lean closed-loop HTTP/1.1 client on asyncio streams: the load costs little CPU itself.

Each of ``concurrency`` connections sends its next request when the previous one has
answered. ``inferq`` and ``sync`` answer in one request; ``classic`` returns a task id and
the client polls its status every 5 ms, as users of that design do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import orjson


class Connection:
    """One keep-alive connection; ``headers`` (``Name: value`` lines, each ending in CRLF)
    go with every request."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 headers: str = "") -> None:
        self._reader, self._writer = reader, writer
        self._headers = headers

    @classmethod
    async def open(cls, host: str, port: int, headers: str = "") -> Connection:
        return cls(*await asyncio.open_connection(host, port), headers)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (f"{method} {path} HTTP/1.1\r\nHost: bench\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"{self._headers}\r\n")
        self._writer.write(head.encode() + body)
        header = await self._reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length = 0
        for line in header.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self._reader.readexactly(length)

    def close(self) -> None:
        self._writer.close()


Call = Callable[[Connection, bytes], Awaitable[None]]


def one_request(path: str, system: str) -> Call:
    """A design that answers with the prediction in the same HTTP request."""

    async def call(conn: Connection, body: bytes) -> None:
        status, reply = await conn.request("POST", path, body)
        if status != 200:
            raise RuntimeError(f"{system} answered {status}: {reply[:200]!r}")

    return call


def inferq_call(model: str) -> Call:
    return one_request(f"/v1/models/{model}/predict?wait=10", "inferq")


def sync_call(model: str) -> Call:
    return one_request(f"/predict/{model}", "sync endpoint")


def classic_call(model: str, poll_every: float = 0.005) -> Call:
    path = f"/predict/{model}"

    async def call(conn: Connection, body: bytes) -> None:
        status, reply = await conn.request("POST", path, body)
        if status != 200:
            raise RuntimeError(f"classic API answered {status}: {reply[:200]!r}")
        status_path = f"/tasks/{orjson.loads(reply)['task_id']}"
        while True:
            await asyncio.sleep(poll_every)
            status, reply = await conn.request("GET", status_path)
            state = orjson.loads(reply)["status"]
            if state == "SUCCESS":
                return
            if state == "FAILURE":
                raise RuntimeError(f"classic task failed: {reply[:200]!r}")

    return call


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)


async def closed_loop(host: str, port: int | Sequence[int], call: Call, bodies: list[bytes],
                      concurrency: int, warmup: float, duration: float,
                      headers: str = "") -> LoadResult:
    """Run ``concurrency`` loops for ``warmup`` + ``duration`` s; record only the latter.

    With several ports (API replicas), the loops' connections are spread over them evenly,
    as a load balancer would. ``headers`` go with every request (``Connection.open``).
    """
    result = LoadResult()
    ports = [port] if isinstance(port, int) else list(port)
    connections = [await Connection.open(host, ports[i % len(ports)], headers)
                   for i in range(concurrency)]
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + duration

    async def loop(index: int, conn: Connection) -> None:
        i = index
        while True:
            began = time.perf_counter()
            if began >= stop_at:
                return
            try:
                await call(conn, bodies[i % len(bodies)])
            except (RuntimeError, OSError, asyncio.IncompleteReadError) as exc:
                result.errors += 1
                if len(result.error_samples) < 5:
                    result.error_samples.append(f"{time.perf_counter() - start:.2f}s {exc!r}")
                conn.close()
                conn = await Connection.open(host, ports[index % len(ports)], headers)
                continue
            ended = time.perf_counter()
            if measure_from <= ended <= stop_at:
                result.latencies.append(ended - began)
            i += concurrency

    await asyncio.gather(*(loop(i, c) for i, c in enumerate(connections)))
    result.seconds = duration
    for conn in connections:
        conn.close()
    return result
