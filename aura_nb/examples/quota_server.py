"""A small HTTP API on 127.0.0.1 that counts requests per API key, for examples and tests.

It stands in for a real rate-limited API: ``GET /<key>`` answers 200 (or what a test
scripted for that key: a 429 with ``Retry-After``, a 503...), and records the time each
request *arrived*, per key, on its own clock (:func:`time.monotonic`). So a test can
count requests per window from the server's side, exactly, instead of trusting the
client. A request may say when its client sent it (``?sent=<time.monotonic()>``, same
machine, same clock): the server then keeps its latency, so a test can tell the
client's own jitter from the limiter's. ``?delay=0.05`` makes the answer take that long (and the server counts how many
requests of a key were in flight at once).

Runs on the caller's event loop (asyncio or trio, through anyio), listening on the
loopback interface only::

    async with QuotaServer() as server:
        server.script["api_key_A"] = [(429, {"Retry-After": "0.2"}), (503, {})]
        async with httpx.AsyncClient() as client:
            r = await client.get(f"{server.url}/api_key_A")
        server.arrivals["api_key_A"]  # [t0, ...]

Standard library and anyio only; it speaks just enough HTTP/1.1 (keep-alive, no body
in requests) for ``httpx`` and ``urllib``.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import anyio.abc

__all__ = ["QuotaServer", "max_in_window"]

_REASONS = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable"}  # fmt: skip


def max_in_window(times: Iterable[float], window: float = 1.0) -> int:
    """The most of ``times`` that fall in any half-open window ``[t, t + window)``."""
    ts = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


class QuotaServer:
    """The server; use ``async with QuotaServer() as server`` (``server.url`` then works)."""

    def __init__(self, *, max_requests: int = 100_000) -> None:
        #: Arrival times per key (time.monotonic()).
        self.arrivals: defaultdict[str, list[float]] = defaultdict(list)
        #: Responses to give per key, in order, before the default 200: (status, headers).
        self.script: defaultdict[str, deque[tuple[int, dict[str, str]]]] = defaultdict(deque)
        #: The most requests of a key in flight at once (with ``?delay=``).
        self.max_in_flight: defaultdict[str, int] = defaultdict(int)
        self._in_flight: defaultdict[str, int] = defaultdict(int)
        #: Per key: arrival minus the ``sent`` time the client put in the query (seconds).
        self.latency: defaultdict[str, list[float]] = defaultdict(list)
        self._max_requests = max_requests  # bounded: it stops answering after that many
        self._n = 0
        self._tg: Any = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def statuses(self, key: str, *scripted: int | tuple[int, dict[str, str]]) -> None:
        """Script the next answers for ``key``: ``statuses("k", 503, (429, {"Retry-After": "1"}))``."""
        for item in scripted:
            self.script[key].append(item if isinstance(item, tuple) else (item, {}))

    async def __aenter__(self) -> QuotaServer:
        self._listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = self._listener.extra(anyio.abc.SocketAttribute.local_port)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._listener.serve, self._serve)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        await self._listener.aclose()

    async def _serve(self, stream: anyio.abc.SocketStream) -> None:
        buffer = b""
        async with stream:
            while self._n < self._max_requests:
                while b"\r\n\r\n" not in buffer:
                    try:
                        chunk = await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        return
                    buffer += chunk
                    if len(buffer) > 65536:
                        return
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                arrived = time.monotonic()
                self._n += 1
                try:
                    await stream.send(await self._answer(head, arrived))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    return

    async def _answer(self, head: bytes, arrived: float) -> bytes:
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        target = urlsplit(parts[1] if len(parts) > 1 else "/")
        key = unquote(target.path.strip("/")) or "-"
        query = parse_qs(target.query)
        self.arrivals[key].append(arrived)
        if "sent" in query:
            self.latency[key].append(arrived - float(query["sent"][0]))
        script = self.script.get(key)
        status, headers = script.popleft() if script else (200, {})
        delay = float(query.get("delay", ["0"])[0])
        if delay > 0:
            self._in_flight[key] += 1
            self.max_in_flight[key] = max(self.max_in_flight[key], self._in_flight[key])
            try:
                await anyio.sleep(min(delay, 10.0))
            finally:
                self._in_flight[key] -= 1
        body = f'{{"key": "{key}", "status": {status}, "n": {len(self.arrivals[key])}}}'.encode()
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        return (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n"
        ).encode("latin-1") + body


async def _serve_until_stdin_closes() -> None:
    """``python -m aura_nb.examples.quota_server``: serve in a process of its own.

    Prints the port, serves until its standard input closes, then prints the
    arrivals, latencies and peaks as one JSON line. A benchmark uses it so that the
    arrival times are taken by a loop that does nothing else.
    """
    import json
    import sys

    async with QuotaServer() as server:
        print(server.port, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)
    print(json.dumps({"arrivals": server.arrivals, "latency": server.latency, "max_in_flight": server.max_in_flight}))


if __name__ == "__main__":
    anyio.run(_serve_until_stdin_closes)
