"""Workload 3: the deadlock probe. 200 tasklets alternately tagged ["a:1", "b:1"] and
["b:1", "a:1"], each yielding while it holds its resources. aura_nb takes every tag at
once and completes; Aura-style takes them one by one and deadlocks, which a
no-progress watchdog detects (then everything is cancelled).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aura_nb as an

from ._util import table
from .baselines import AuraStyle

N = 200
STALL = 2.0  # seconds without a completion = deadlock


async def _body() -> None:
    await asyncio.sleep(0.001)


async def _watch(submits: list[Callable[[], Awaitable[Any]]]) -> tuple[str, int, float]:
    done = 0
    last = time.perf_counter()

    async def one(submit: Callable[[], Awaitable[Any]]) -> None:
        nonlocal done, last
        await submit()
        done += 1
        last = time.perf_counter()

    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(one(s)) for s in submits]
    while done < len(submits):
        await asyncio.sleep(0.05)
        if time.perf_counter() - last > STALL:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return "deadlocked", done, time.perf_counter() - t0
    return "completed", done, time.perf_counter() - t0


def _tags(i: int) -> list[str]:
    return ["a:1", "b:1"] if i % 2 == 0 else ["b:1", "a:1"]


def run() -> dict[str, Any]:
    async def ours() -> tuple[str, int, float]:
        async with an.ExecutionManager(max_concurrency=8) as em:
            return await _watch([lambda i=i: em.submit(an.Tasklet(_body, resource_tags=_tags(i))) for i in range(N)])

    async def theirs() -> tuple[str, int, float]:
        aura = AuraStyle(8)
        return await _watch([lambda i=i: aura.submit(i, _body, _tags(i)) for i in range(N)])

    a = asyncio.run(ours())
    b = asyncio.run(theirs())
    rows = [["aura_nb", a[0], f"{a[1]}/{N}", a[2]], ["Aura-style", b[0], f"{b[1]}/{N}", b[2]]]
    md = table(["system", "outcome", "completed", "seconds"], rows)
    return {"markdown": md, "ok": a[0] == "completed" and b[0] == "deadlocked"}


if __name__ == "__main__":
    print(run()["markdown"])
