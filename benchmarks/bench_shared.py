"""Workload 8: the cost of sharing the limits through the Dask scheduler. No-op
tasklets, on one ``LocalCluster`` scheduler (no workers: bodies run in the manager):

* **local pool**: ``ExecutionManager()`` keeps the limits itself (no round trip);
* **shared pool**: ``ExecutionManager(limits=DaskLimits(client))``: one round trip per
  admission (the requests of one moment share it), the release is sent without waiting;
* **distributed.Semaphore, one per tag**: acquired one by one, in tag order, then
  released (what sharing looks like without aura_nb: one round trip per tag, and
  hold-and-wait between them).

Rows: one tasklet at a time with tags ``a:1, b:1`` (latency), and 200 tasklets at once
with ``gpu:4`` (``max_concurrency=8``; the Semaphores from 8 threads), started one by
one (``em.start``) or as one ``run_many`` batch (which sends up to ``max_concurrency``
requests ahead). Microseconds per tasklet, medians over repetitions, the three
interleaved. Target: the shared pool costs at most what the Semaphores cost per tasklet.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any

import distributed

import aura_nb as an

from ._util import median, table, verdict

SEQUENTIAL = 100
BATCH = 200


def _noop() -> None:
    return None


def _ours_sequential(limits: Any, n: int) -> float:
    async def main() -> float:
        async with an.ExecutionManager(limits=limits() if limits else None) as em:
            await em.submit(an.Tasklet(_noop, resource_tags=["a:1", "b:1"]))  # declare outside the timing
            t0 = time.perf_counter()
            for _ in range(n):
                await em.submit(an.Tasklet(_noop, resource_tags=["a:1", "b:1"]))
            return (time.perf_counter() - t0) / n

    return asyncio.run(main())


def _ours_batch(limits: Any, n: int) -> float:
    async def main() -> float:
        async with an.ExecutionManager(limits=limits() if limits else None, max_concurrency=8) as em:
            await em.submit(an.Tasklet(_noop, resource_tags=["gpu:4"]))
            t0 = time.perf_counter()
            handles = [em.start(an.Tasklet(_noop, resource_tags=["gpu:4"])) for _ in range(n)]
            for handle in handles:
                await handle
            return (time.perf_counter() - t0) / n

    return asyncio.run(main())


def _ours_run_many(limits: Any, n: int) -> float:
    async def main() -> float:
        async with an.ExecutionManager(limits=limits() if limits else None, max_concurrency=8) as em:
            await em.submit(an.Tasklet(_noop, resource_tags=["gpu:4"]))
            batch = [an.Tasklet(_noop, resource_tags=["gpu:4"]) for _ in range(n)]
            t0 = time.perf_counter()
            await em.run_many(batch)
            return (time.perf_counter() - t0) / n

    return asyncio.run(main())


def _semaphores(client: distributed.Client, **leases: int) -> list[distributed.Semaphore]:
    return [
        distributed.Semaphore(max_leases=cap, name=f"bench-{name}", scheduler_rpc=client.scheduler, loop=client.loop)
        for name, cap in leases.items()
    ]


def _one(sems: list[distributed.Semaphore]) -> None:
    for sem in sems:
        sem.acquire()
    _noop()
    for sem in reversed(sems):
        sem.release()


def _sem_sequential(client: distributed.Client, n: int) -> float:
    sems = _semaphores(client, a=1, b=1)
    _one(sems)
    t0 = time.perf_counter()
    for _ in range(n):
        _one(sems)
    return (time.perf_counter() - t0) / n


def _sem_batch(client: distributed.Client, n: int) -> float:
    sems = _semaphores(client, gpu=4)
    _one(sems)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        t0 = time.perf_counter()
        for future in [pool.submit(_one, sems) for _ in range(n)]:
            future.result()
        return (time.perf_counter() - t0) / n


def run(reps: int = 5) -> dict[str, Any]:
    """Measure; returns ``{"markdown", "ok", "rows"}`` (µs per tasklet)."""
    with (
        distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=":0") as cluster,
        distributed.Client(cluster) as client,
    ):
        count = iter(range(1_000_000))

        def shared() -> an.DaskLimits:
            return an.DaskLimits(client, name=f"bench-{next(count)}")  # a fresh pool each time

        workloads = {
            f"one at a time, tags a:1 + b:1 ({SEQUENTIAL})": (
                lambda: _ours_sequential(None, SEQUENTIAL),
                lambda: _ours_sequential(shared, SEQUENTIAL),
                lambda: _sem_sequential(client, SEQUENTIAL),
            ),
            f"{BATCH} at once, gpu:4, max_concurrency=8": (
                lambda: _ours_batch(None, BATCH),
                lambda: _ours_batch(shared, BATCH),
                lambda: _sem_batch(client, BATCH),
            ),
            f"{BATCH} in one run_many, gpu:4, max_concurrency=8": (
                lambda: _ours_run_many(None, BATCH),
                lambda: _ours_run_many(shared, BATCH),
                lambda: _sem_batch(client, BATCH),
            ),
        }
        times = {name: ([], [], []) for name in workloads}
        for fns in workloads.values():  # warm up: imports, connections, the plugin
            for fn in fns:
                fn()
        for _ in range(reps):
            for name, fns in workloads.items():
                for out, fn in zip(times[name], fns):
                    out.append(fn())
    rows = []
    for name, (local, ours, sem) in times.items():
        lo, sh, se = median(local) * 1e6, median(ours) * 1e6, median(sem) * 1e6
        rows.append({"workload": name, "local_us": lo, "shared_us": sh, "semaphore_us": se, "ratio": sh / se})
    ok = all(r["ratio"] <= 1.0 for r in rows)
    md = table(
        ["workload", "local pool (µs/tasklet)", "shared pool (µs/tasklet)", "Semaphore per tag (µs/tasklet)",
         "shared / Semaphore (≤ 1)", "target"],
        [[r["workload"], r["local_us"], r["shared_us"], r["semaphore_us"], r["ratio"], verdict(r["ratio"] <= 1.0)]
         for r in rows],
    )  # fmt: skip
    return {"markdown": md, "ok": ok, "rows": rows}


def main() -> dict[str, Any]:
    """Run the benchmark, print its markdown table, return the numbers."""
    result = run()
    print(result["markdown"])
    return result


if __name__ == "__main__":
    main()
