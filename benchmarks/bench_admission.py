"""Workload 8: admission cost with many distinct tag sets.

10,000 tasklets, each tagged with its own ``api_key_<i>:1`` (10,000 distinct tag sets,
none of them contended), against the same 10,000 tasklets all tagged ``api_key:10000``
(one tag set), ``max_concurrency=8``, started with ``em.start`` so that most of them wait
in the pool's queue. The pool must not pay per distinct waiting tag set on every release:
target, distinct sets within 2x of the one-set time (v1 rebuilt a heap over every waiting
set on each release: 8,000 distinct sets took 16x the one-set time).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aura_nb as an

from ._util import median, table, verdict

N = 10_000


async def _body() -> None:
    await asyncio.sleep(0)


def _run(n: int, distinct: bool) -> float:
    async def main() -> float:
        async with an.ExecutionManager(max_concurrency=8) as em:
            tasklets = [
                an.Tasklet(_body, resource_tags=[f"api_key_{i}:1"] if distinct else [f"api_key:{n}"]) for i in range(n)
            ]
            t0 = time.perf_counter()
            handles = [em.start(t) for t in tasklets]
            for handle in handles:
                await handle
            elapsed = time.perf_counter() - t0
            assert em.statistics().by_status["succeeded"] == n
            return elapsed

    return asyncio.run(main())


def run(n: int = N, reps: int = 3) -> dict[str, Any]:
    one, many = [], []
    for _ in range(reps):  # interleaved, so a slow spell of the machine hits both
        one.append(_run(n, distinct=False))
        many.append(_run(n, distinct=True))
    a, b = median(one), median(many)
    ratio = b / a
    ok = ratio <= 2.0
    md = table(
        ["N", "one tag set (s)", f"{n:,} distinct tag sets (s)", "distinct / one (≤ 2)", "target"],
        [[f"{n:,}", a, b, ratio, verdict(ok)]],
    )
    return {"markdown": md, "ok": ok}


if __name__ == "__main__":
    print(run()["markdown"])
