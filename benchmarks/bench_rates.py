"""Workload 8: a rate quota against a real HTTP server that counts arrivals. A local
server on 127.0.0.1 (aura_nb.examples.quota_server, in a process of its own) records
when each request arrives, per API key. For 10 s, far more tasklets than the quota
allows call ``api_key_A`` (a server limit of 20 requests in any 1 s) and, in the same
manager, ``api_key_B`` (capacity 5, each answer takes 250 ms). Two ways to write
api_key_A's quota, each on both backends:

* ``20/s``, the plain sliding window, shown for contrast (no target): its 20 tokens may
  be taken at the same instant. The client then sends those requests over its own tens
  of milliseconds, in an order that differs from one burst to the next, so the server
  can count more than 20 arrivals in a window that straddles two bursts. Its starts
  can show 21 too: the window is exact on the tokens' times, and a body starts
  microseconds later, but a pause of the collector or of the OS between the two (1 to
  30 ms in this client) outlasts the 1 ms guard, and here each token is taken again
  the moment it comes back.
* ``20/s burst 1 margin 30ms``, what the README advises against a server that counts
  arrivals: one start per 50 ms, and each token out 30 ms longer than the second, room
  for the latency's remaining jitter. Targets: at most 20 *arrivals* (and starts) in
  any 1 s, and the throughput.

Counted by the server: the most api_key_A requests in any 1-second window, the shortest
span of 21 consecutive arrivals (over 1,000 ms: no window holds 21), the throughput
(target: at least 95% of the quota), the spread of the latency from a body's start to
its arrival (measured by the server too) and the most api_key_B requests in flight at
once (target: at most 5). "starts" counts the bodies' starts, from the client's clock.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from typing import Any

import anyio
import httpx

import aura_nb as an
from aura_nb.examples.quota_server import max_in_window

from ._util import table

#: (how the quota is written, whether it has targets): unpaced first, for contrast.
RATES = (("{quota}/s", False), ("{quota}/s burst 1 margin 30ms", True))


class _Remote:
    """The quota server in a process of its own (its clock is the same monotonic clock)."""

    def __enter__(self) -> _Remote:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aura_nb.examples.quota_server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"
        return self

    def __exit__(self, *exc: Any) -> None:
        out, _ = self.proc.communicate(timeout=60)
        self.data = json.loads(out.strip().splitlines()[-1])


async def _run(seconds: float, quota: int, rate: str) -> dict[str, Any]:
    with _Remote() as remote:
        result = await _drive(remote.url, seconds, quota, rate)
    data = remote.data
    a = sorted(data["arrivals"]["api_key_A"])
    latency = data["latency"]["api_key_A"]
    return {
        **result,
        "max_arrivals": max_in_window(a, 1.0),
        "span": min(a[i + quota] - a[i] for i in range(len(a) - quota)),
        "throughput": len([t for t in a if t < a[0] + seconds]) / seconds,
        "spread_ms": (max(latency) - min(latency)) * 1000,
        "b_in_flight": data["max_in_flight"]["api_key_B"],
        "b_requests": len(data["arrivals"]["api_key_B"]),
    }


async def _drive(url: str, seconds: float, quota: int, rate: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        async with anyio.create_task_group() as tg:  # open the client's connections first
            for _ in range(30):
                tg.start_soon(client.get, "/warm-up")
        starts: list[float] = []

        async def call(key: str, delay: float) -> int:
            if key == "api_key_A":
                starts.append(time.monotonic())
            response = await client.get(f"/{key}", params={"delay": delay, "sent": time.monotonic()})
            return response.status_code

        demand = int(seconds * quota * 3)  # three times what the quota lets through
        tasklets = [an.Tasklet(call, params={"key": "api_key_A", "delay": 0}, resource_tags=["api_key_A"])
                    for _ in range(demand)]  # fmt: skip
        tasklets += [an.Tasklet(call, params={"key": "api_key_B", "delay": 0.25}, resource_tags=["api_key_B"])
                     for _ in range(demand // 2)]  # fmt: skip
        async with an.ExecutionManager(max_concurrency=64, rates={"api_key_A": rate}, capacities={"api_key_B": 5}) as em:
            with anyio.move_on_after(seconds):
                await em.run_many(tasklets, return_exceptions=True)
    return {"max_starts": max_in_window(starts, 1.0)}


def run(seconds: float = 10.0, quota: int = 20, backends: tuple[str, ...] = ("asyncio", "trio")) -> dict[str, Any]:
    rows, ok = [], True
    for backend in backends:
        for text, targeted in RATES:
            rate = text.format(quota=quota)
            gc.collect()  # the previous row's garbage is not this one's pause (as in _util.timed)
            r = anyio.run(_run, seconds, quota, rate, backend=backend)
            good = (
                r["max_arrivals"] <= quota and r["max_starts"] <= quota and r["throughput"] >= 0.95 * quota
                and r["b_in_flight"] <= 5
            )  # fmt: skip
            ok &= good or not targeted
            met = ("yes" if good else "**no**") if targeted else "no target (contrast)"
            rows.append([backend, f"`{rate}`", r["max_starts"], r["max_arrivals"],
                         f"{r['span'] * 1000:.0f}", f"{r['throughput']:.2f}/s ({r['throughput'] / quota:.1%})",
                         f"{r['spread_ms']:.1f}", r["b_in_flight"], r["b_requests"], met])  # fmt: skip
    headers = ["backend", "api_key_A quota", "api_key_A max starts / 1 s",
               "api_key_A max arrivals / 1 s", f"shortest span of {quota + 1} arrivals (ms)", "api_key_A throughput",
               "client latency spread (ms)", "api_key_B max in flight", "api_key_B requests", "targets met"]  # fmt: skip
    return {"markdown": table(headers, rows), "ok": ok}


if __name__ == "__main__":
    print(run()["markdown"])
