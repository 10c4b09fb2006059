"""An open-loop HTTP load generator for the benchmarks.

Each request is sent at its scheduled time whatever the others are doing, and measured
from that time, so a stalled server is not hidden by a client waiting for it. The client
is a minimal HTTP/1.1 client over persistent connections: a general-purpose async client
costs several ms of CPU per request on a small machine, which would cap the offered load
before the server under test is loaded at all (this one costs ~0.4 ms).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any


@dataclass
class Latency:
    name: str
    sent: int
    errors: int
    p50_ms: float
    p99_ms: float
    achieved_rate: float
    client_cpu_ms: float = 0.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class KeepAliveClient:
    """A minimal HTTP/1.1 client over persistent connections (asyncio streams).

    The load generator must cost far less than the server it measures: a general-purpose
    async client costs several ms of CPU per request here, which would cap the offered
    load on a 2-core machine before the server is loaded at all.
    """

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.header_lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened: list[asyncio.StreamWriter] = []

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        reused = bool(self.idle)
        try:
            return await self._post(path, body)
        except (ConnectionError, asyncio.IncompleteReadError):
            if not reused:
                raise
            # The server closed an idle keep-alive connection: retry once on a new one.
            return await self._post(path, body, fresh=True)

    async def _post(self, path: str, body: bytes, fresh: bool = False) -> tuple[int, bytes]:
        if self.idle and not fresh:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.opened.append(writer)
        writer.write(
            f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\n{self.header_lines}"
            f"content-length: {len(body)}\r\n\r\n".encode() + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        payload = await reader.readexactly(length)
        self.idle.append((reader, writer))
        return status, payload

    def close(self) -> None:
        for writer in self.opened:
            writer.close()


async def open_loop(
    port: int, request: Callable[[int], tuple[str, Any]], headers: dict[str, str],
    rate: float, seconds: float, name: str, grace: float = 2.0,
) -> Latency:
    """Send ``rate * seconds`` requests, each at its scheduled time; requests unanswered
    ``grace`` seconds after the last was sent count as errors (latency: until then)."""
    client = KeepAliveClient("127.0.0.1", port, headers)
    cpu_before = time.process_time()
    latencies: list[float] = []
    errors = 0
    count = int(rate * seconds)
    start = time.perf_counter() + 0.05

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        path, body = request(i)
        try:
            status, detail = await client.post(path, b"" if body is None else json.dumps(body).encode())
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            status, detail = 0, repr(exc).encode()
        latencies.append(time.perf_counter() - scheduled)
        if status != 200:
            errors += 1
            if errors <= 3:
                print(f"  {name}: {status} {detail[:200]!r}", flush=True)

    pending: dict[asyncio.Task[None], float] = {}
    for i in range(count):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pending[asyncio.create_task(one(i, scheduled))] = scheduled
    _, late = await asyncio.wait(pending, timeout=grace)
    for task in late:
        task.cancel()
    ended = time.perf_counter()
    latencies += [ended - pending[task] for task in late]
    errors += len(late)
    client.close()
    return Latency(name, count, errors, _percentile(latencies, 0.5) * 1000,
                   _percentile(latencies, 0.99) * 1000, (count - len(late)) / (ended - start),
                   (time.process_time() - cpu_before) / count * 1000)


def run_loop(coroutine: Coroutine[Any, Any, Latency]) -> Latency:
    try:
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


