"""Workload 7: the cost of the manager in front of Dask. The same no-op bodies run on a
``LocalCluster`` (2 worker processes, 2 threads each) through ``ExecutionManager(
executor=DaskExecutor(client))`` and through plain ``client.submit(fn, pure=False)``
followed by ``future.result()``: one at a time (latency), and 200 at once (every
future in flight; aura_nb with ``max_concurrency=200`` so that no limit binds). The
last row is for reference only: plain Dask fetching all 200 results in one
``client.gather`` call, a batching a per-tasklet API cannot do. Per-tasklet times are
medians over repetitions, the two systems interleaved. Target: aura_nb ≤ 1.5x plain
Dask per tasklet.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import distributed

import aura_nb as an

from ._util import median, table, verdict

TARGET = 1.5
SEQUENTIAL = 50
BATCH = 200

# Stdlib callables as bodies: they unpickle on any worker, whatever its sys.path.
_SYNC_NOOP = int  # int() -> 0
_ASYNC_NOOP = asyncio.sleep  # sleep(delay=0) -> None


def _plain_sequential(client: distributed.Client, fn: Any, params: dict[str, Any], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        client.submit(fn, **params, pure=False).result()
    return (time.perf_counter() - t0) / n


def _plain_batch(client: distributed.Client, n: int) -> float:
    t0 = time.perf_counter()
    futures = [client.submit(_SYNC_NOOP, pure=False) for _ in range(n)]
    for future in futures:
        future.result()
    return (time.perf_counter() - t0) / n


def _plain_gather(client: distributed.Client, n: int) -> float:
    t0 = time.perf_counter()
    client.gather([client.submit(_SYNC_NOOP, pure=False) for _ in range(n)])
    return (time.perf_counter() - t0) / n


def _ours_sequential(client: distributed.Client, fn: Any, params: dict[str, Any], n: int) -> float:
    async def main() -> float:
        async with an.ExecutionManager(executor=an.DaskExecutor(client), max_concurrency=8) as em:
            t0 = time.perf_counter()
            for _ in range(n):
                await em.submit(an.Tasklet(fn, params=params))
            return (time.perf_counter() - t0) / n

    return asyncio.run(main())


def _ours_batch(client: distributed.Client, n: int) -> float:
    async def main() -> float:
        async with an.ExecutionManager(executor=an.DaskExecutor(client), max_concurrency=n) as em:
            t0 = time.perf_counter()
            handles = [em.start(an.Tasklet(_SYNC_NOOP)) for _ in range(n)]
            for handle in handles:
                await handle
            return (time.perf_counter() - t0) / n

    return asyncio.run(main())


def run(reps: int = 5) -> dict[str, Any]:
    """Measure; returns ``{"markdown", "ok", "rows"}`` (milliseconds per tasklet, and ratios)."""
    sequential = f"sync no-op, one at a time ({SEQUENTIAL})"
    sequential_async = f"async no-op, one at a time ({SEQUENTIAL})"
    batch = f"sync no-op, {BATCH} at once"
    workloads = {
        sequential: (
            lambda c: _plain_sequential(c, _SYNC_NOOP, {}, SEQUENTIAL),
            lambda c: _ours_sequential(c, _SYNC_NOOP, {}, SEQUENTIAL),
        ),
        sequential_async: (
            lambda c: _plain_sequential(c, _ASYNC_NOOP, {"delay": 0}, SEQUENTIAL),
            lambda c: _ours_sequential(c, _ASYNC_NOOP, {"delay": 0}, SEQUENTIAL),
        ),
        batch: (lambda c: _plain_batch(c, BATCH), lambda c: _ours_batch(c, BATCH)),
    }
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in workloads}
    gathered: list[float] = []
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0") as cluster,
        distributed.Client(cluster) as client,
    ):
        client.wait_for_workers(2)
        for plain, ours in workloads.values():  # warm up: imports, connections, pickling caches
            plain(client)
            ours(client)
        for _ in range(reps):
            for name, (plain, ours) in workloads.items():
                times[name][0].append(plain(client))
                times[name][1].append(ours(client))
            gathered.append(_plain_gather(client, BATCH))
    rows = []
    for name, (plain_times, our_times) in times.items():
        p, o = median(plain_times), median(our_times)
        rows.append({"workload": name, "plain_ms": p * 1e3, "aura_nb_ms": o * 1e3, "ratio": o / p, "targeted": True})
    p, o = median(gathered), median(times[batch][1])
    rows.append(
        {"workload": f"{batch}, plain fetches all in one client.gather", "plain_ms": p * 1e3, "aura_nb_ms": o * 1e3,
         "ratio": o / p, "targeted": False}
    )  # fmt: skip
    ok = all(r["ratio"] <= TARGET for r in rows if r["targeted"])
    md = table(
        ["workload", "plain client.submit (ms/tasklet)", "aura_nb + DaskExecutor (ms/tasklet)",
         f"ratio (≤ {TARGET})", "target"],
        [[r["workload"], r["plain_ms"], r["aura_nb_ms"], r["ratio"],
          verdict(r["ratio"] <= TARGET) if r["targeted"] else "reference"] for r in rows],
    )  # fmt: skip
    return {"markdown": md, "ok": ok, "rows": rows}


def main() -> dict[str, Any]:
    """Run the benchmark, print its markdown table, return the numbers."""
    result = run()
    print(result["markdown"])
    return result


if __name__ == "__main__":
    main()
