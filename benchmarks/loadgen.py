"""A small HTTP/1.1 keep-alive load generator on raw asyncio streams.

The benchmarks share two cores with the server they measure, so the client must cost as
little CPU as possible: requests are prebuilt bytes, responses are parsed only as far as the
status line and ``Content-Length`` (chunked bodies are supported for completeness), and the
event loop is uvloop when it is installed. ``httpx`` costs several times more CPU per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
    uvloop = None  # type: ignore[assignment]

__all__ = [
    "Connection",
    "HttpError",
    "Response",
    "Sample",
    "build_request",
    "closed_loop",
    "percentile",
    "run",
    "summarize",
]

T = TypeVar("T")


class HttpError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: start and end on ``time.perf_counter_ns``, and the status code."""

    start_ns: int
    end_ns: int
    status: int
    body: bytes | None = None

    @property
    def latency_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def build_request(
    method: str,
    path: str,
    *,
    host: str,
    token: str | None = None,
    body: bytes | None = None,
) -> bytes:
    """The exact bytes of one keep-alive request (reusable: nothing in it varies)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if body is not None:
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return head + (body or b"")


def _header(head: bytes, name: bytes) -> bytes | None:
    """A header's value from a raw header block (``name`` lower-case, with the colon)."""
    lower = head.lower()
    at = lower.find(b"\r\n" + name)
    if at < 0:
        return None
    start = at + 2 + len(name)
    end = head.find(b"\r\n", start)
    return head[start:end].strip()


class Connection:
    """One keep-alive connection; requests on it are sequential."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, raw: bytes) -> Response:
        self._writer.write(raw)
        reader = self._reader
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 "):
            raise HttpError(f"not an HTTP/1.1 response: {head[:40]!r}")
        status = int(head[9:12])
        length = _header(head, b"content-length:")
        if length is not None:
            body = await reader.readexactly(int(length)) if length != b"0" else b""
        elif (_header(head, b"transfer-encoding:") or b"").lower() == b"chunked":
            body = await self._chunked()
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            raise HttpError("response without Content-Length on a keep-alive connection")
        return Response(status, body)

    async def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_line = await self._reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")  # no trailers are expected
                return b"".join(parts)
            parts.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


async def closed_loop(
    host: str,
    port: int,
    request: bytes | Callable[[int], bytes],
    total: int,
    concurrency: int,
    *,
    keep_body: bool = False,
) -> list[Sample]:
    """``total`` requests over ``concurrency`` connections, each sending its next request as
    soon as the previous answer arrived (a closed loop: offered load follows the server).

    ``request`` is the raw request, or a function of the request's sequence number.
    """
    connections = [await Connection.open(host, port) for _ in range(concurrency)]
    samples: list[Sample] = []
    counter = iter(range(total))
    clock = time.perf_counter_ns

    async def worker(conn: Connection) -> None:
        for i in counter:
            raw = request if isinstance(request, bytes) else request(i)
            start = clock()
            response = await conn.send(raw)
            samples.append(
                Sample(start, clock(), response.status, response.body if keep_body else None)
            )

    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        for conn in connections:
            await conn.close()
    return samples


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(values_ms: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean of latencies in milliseconds, rounded for printing."""
    if not values_ms:
        return {"n": 0}
    return {
        "n": len(values_ms),
        "p50_ms": round(percentile(values_ms, 50), 2),
        "p90_ms": round(percentile(values_ms, 90), 2),
        "p99_ms": round(percentile(values_ms, 99), 2),
        "max_ms": round(max(values_ms), 2),
        "mean_ms": round(sum(values_ms) / len(values_ms), 2),
    }


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on uvloop when available (cheaper per request than asyncio's loop)."""
    if uvloop is not None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())
    return asyncio.run(main())
