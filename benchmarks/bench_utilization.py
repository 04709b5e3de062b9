"""Workload 2: utilization. max_concurrency=4; 40 tasklets tagged gpu:1 and 40 untagged,
each sleeping 20 ms. The gpu tasklets must run one after another, so 800 ms is the
shortest possible makespan. Target: makespan / 800 ms <= 1.05 for gpu-first and
interleaved submission orders (Aura-style is ~1.25 gpu-first, because a gpu tasklet
waiting for the GPU sits on a global slot).

Untagged-first is a matter of policy: FIFO admission (the default) lets the 40 untagged
tasklets go first, so the GPU starts late (~1.25). ``admission="bottleneck"`` lets a
tasklet of the scarcest free resource pass older ones (bounded): target <= 1.10.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aura_nb as an

from ._util import median, table, verdict
from .baselines import AuraStyle

SLEEP = 0.02
IDEAL = 40 * SLEEP


def _order(kind: str) -> list[bool]:
    """True = gpu tasklet, in submission order."""
    if kind == "gpu-first":
        return [True] * 40 + [False] * 40
    if kind == "untagged-first":
        return [False] * 40 + [True] * 40
    return [i % 2 == 0 for i in range(80)]


async def _body() -> None:
    await asyncio.sleep(SLEEP)


def _aura_nb(order: list[bool], admission: str = "fifo") -> float:
    async def main() -> float:
        async with an.ExecutionManager(max_concurrency=4, admission=admission) as em:
            t0 = time.perf_counter()
            handles = [em.start(an.Tasklet(_body, resource_tags=["gpu:1"] if gpu else [])) for gpu in order]
            for handle in handles:
                await handle
            return time.perf_counter() - t0

    return asyncio.run(main())


def _aura_style(order: list[bool]) -> float:
    async def main() -> float:
        aura = AuraStyle(4)
        t0 = time.perf_counter()
        await asyncio.gather(*(aura.submit(i, _body, ["gpu:1"] if gpu else []) for i, gpu in enumerate(order)))
        return time.perf_counter() - t0

    return asyncio.run(main())


def run(reps: int = 3) -> dict[str, Any]:
    rows = []
    ok_all = True
    for kind in ("gpu-first", "interleaved", "untagged-first"):
        order = _order(kind)
        ours, theirs = [], []
        for _ in range(reps):
            ours.append(_aura_nb(order) / IDEAL)
            theirs.append(_aura_style(order) / IDEAL)
        a, b = median(ours), median(theirs)
        target = kind != "untagged-first"
        ok = a <= 1.05 if target else True
        ok_all &= ok
        rows.append([kind, "fifo", a, b, "≤ 1.05" if target else "—", verdict(ok) if target else "reported"])
    order = _order("untagged-first")
    bottleneck = median([_aura_nb(order, "bottleneck") / IDEAL for _ in range(reps)])
    ok = bottleneck <= 1.10
    ok_all &= ok
    rows.append(["untagged-first", "bottleneck", bottleneck, "", "≤ 1.10", verdict(ok)])
    md = table(
        ["submission order", "admission", "aura_nb makespan / 800 ms", "Aura-style makespan / 800 ms", "target", ""],
        rows,
    )
    return {"markdown": md, "ok": ok_all}


if __name__ == "__main__":
    print(run()["markdown"])
