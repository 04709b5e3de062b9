"""The systems aura_nb is compared with, written here on purpose.

* :class:`RawAsyncio` -- the floor for one coroutine per tasklet: ``asyncio.Semaphore``
  for the global limit and one per tag, ``asyncio.timeout`` where the workload has
  one; no hooks, no events, and none of aura_nb's guarantees (tags are acquired one
  by one).
* :class:`WorkerPool` -- the floor for a batch, what a user would write instead of
  ``run_many``: ``max_concurrency`` plain asyncio workers pulling from one iterator
  (so the workers *are* the global limit), one ``asyncio.Semaphore`` per resource,
  ``asyncio.timeout`` where the workload has one, results in order. Like
  :class:`RawAsyncio` it has no hooks and records no events.
* :class:`AuraStyle` -- the original Aura ExecutionManager's design: per submission
  the global semaphore, then each tag's semaphore one by one (created lazily under an
  ``asyncio.Lock``, capacity parsed from the tag) in an ``AsyncExitStack``, then
  ``asyncio.timeout`` (always, as Aura does: ``asyncio.timeout(None)`` when the
  tasklet has no limit; raw asyncio uses one only where the workload has one), and
  four awaited hooks that each append a dict to a list.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

Body = Callable[[], Awaitable[Any]]


class RawAsyncio:
    def __init__(self, max_concurrency: int, capacities: dict[str, int]) -> None:
        self.global_sem = asyncio.Semaphore(max_concurrency)
        self.sems = {name: asyncio.Semaphore(cap) for name, cap in capacities.items()}

    async def run(self, body: Body, names: Sequence[str] = (), timeout: float | None = None) -> Any:
        async with self.global_sem:
            sems = [self.sems[name] for name in names]
            for sem in sems:
                await sem.acquire()
            try:
                if timeout is None:
                    return await body()
                async with asyncio.timeout(timeout):
                    return await body()
            finally:
                for sem in sems:
                    sem.release()


class WorkerPool:
    def __init__(self, max_concurrency: int, capacities: dict[str, int]) -> None:
        self.max_concurrency = max_concurrency
        self.sems = {name: asyncio.Semaphore(cap) for name, cap in capacities.items()}

    async def run_many(self, jobs: Sequence[tuple[Body, Sequence[str], float | None]]) -> list[Any]:
        """Run ``(body, resource names, timeout)`` jobs; their results, in order."""
        results: list[Any] = [None] * len(jobs)
        todo = iter(enumerate(jobs))

        async def worker() -> None:
            for i, (body, names, timeout) in todo:
                sems = [self.sems[name] for name in names]
                for sem in sems:
                    await sem.acquire()
                try:
                    if timeout is None:
                        result = await body()
                    else:
                        async with asyncio.timeout(timeout):
                            result = await body()
                finally:
                    for sem in sems:
                        sem.release()
                results[i] = result

        await asyncio.gather(*(worker() for _ in range(self.max_concurrency)))
        return results


class AuraStyle:
    HOOKS = ("before_task_run", "after_task_success", "after_task_failure", "after_task_run")

    def __init__(self, max_concurrency: int) -> None:
        self.global_sem = asyncio.Semaphore(max_concurrency)
        self.sems: dict[str, asyncio.Semaphore] = {}
        self.lock = asyncio.Lock()
        self.events: list[dict[str, Any]] = []
        self.hooks: dict[str, list[Callable[..., Awaitable[None]]]] = {name: [] for name in self.HOOKS}
        for name in self.HOOKS:
            self.hooks[name].append(self._recorder(name))
        self.completed = 0

    def _recorder(self, name: str) -> Callable[..., Awaitable[None]]:
        async def hook(tasklet_id: int, **info: Any) -> None:
            self.events.append({"event": name, "tasklet_id": tasklet_id, "t": time.monotonic(), **info})

        return hook

    async def _semaphore(self, tag: str) -> asyncio.Semaphore:
        async with self.lock:
            name, _, cap = tag.partition(":")
            sem = self.sems.get(name)
            if sem is None:  # the first capacity wins silently (one of Aura's flaws)
                sem = self.sems[name] = asyncio.Semaphore(int(cap or 1))
            return sem

    async def _fire(self, name: str, tasklet_id: int, **info: Any) -> None:
        for hook in self.hooks[name]:
            await hook(tasklet_id, **info)

    async def submit(self, tasklet_id: int, body: Body, tags: Sequence[str] = (), timeout: float | None = None) -> Any:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.global_sem)
            for tag in tags:
                await stack.enter_async_context(await self._semaphore(tag))
            await self._fire("before_task_run", tasklet_id)
            try:
                # As Aura does: always under asyncio.timeout (None: no deadline).
                async with asyncio.timeout(timeout):
                    result = await body()
                await self._fire("after_task_success", tasklet_id)
                self.completed += 1
                return result
            except Exception as exc:
                await self._fire("after_task_failure", tasklet_id, error=repr(exc))
                raise
            finally:
                await self._fire("after_task_run", tasklet_id)
