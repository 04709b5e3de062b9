"""Issue 12, part 2: admission that idles no slot, held-back tokens in the statistics,
many distinct tag sets, and the opt-in bottleneck-aware policy.

Counts and orders are asserted, not durations: the bodies sleep so that the waves of
admission are far apart, and every wait is bounded by ``anyio.fail_after``.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

import aura_nb as an

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


def assert_idle(em: an.ExecutionManager) -> None:
    stats = em.statistics()
    assert stats.idle, stats


class Concurrency:
    """How many bodies run at once, and the most seen."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    def enter(self) -> None:
        self.now += 1
        self.most = max(self.most, self.now)

    def leave(self) -> None:
        self.now -= 1


# -- no idle slot ---------------------------------------------------------------------


async def test_a_gpu_waiter_does_not_keep_a_global_slot_idle() -> None:
    bodies = Concurrency()
    release_holder, holding = anyio.Event(), anyio.Event()
    global_in_use: list[int] = []
    em = an.ExecutionManager(max_concurrency=4)

    async def holder() -> None:
        bodies.enter()
        holding.set()
        await release_holder.wait()
        bodies.leave()

    async def gpu_job() -> None:
        bodies.enter()
        bodies.leave()

    async def untagged() -> None:
        bodies.enter()
        global_in_use.append(em.statistics().global_limit.in_use)
        await anyio.sleep(0.2)
        bodies.leave()

    with anyio.fail_after(30):
        async with em:
            first = em.start(an.Tasklet(holder, resource_tags=["gpu:1"]))
            await holding.wait()
            waiter = em.start(an.Tasklet(gpu_job, resource_tags=["gpu:1"]))
            await anyio.sleep(0.05)
            assert waiter.status == "waiting"
            others = [em.start(an.Tasklet(untagged)) for _ in range(10)]
            for h in others:
                await h
            assert waiter.status == "waiting"  # the gpu is still held all along
            release_holder.set()
            await first
            await waiter
            assert_idle(em)
    assert bodies.most == 4, f"at most {bodies.most} bodies ran at once with max_concurrency=4"
    assert max(global_in_use) == 4


# -- held_back / held_for -----------------------------------------------------------------


async def test_statistics_show_the_tokens_held_back_for_the_oldest_waiter() -> None:
    release, holding = anyio.Event(), anyio.Event()

    async def hold_b() -> None:
        holding.set()
        await release.wait()

    async def needs_a_and_b() -> None:
        pass

    with anyio.fail_after(10):
        async with an.ExecutionManager(capacities={"a": 2, "b": 1}) as em:
            holder = em.start(an.Tasklet(hold_b, resource_tags=["b"]))
            await holding.wait()
            t = an.Tasklet(needs_a_and_b, resource_tags=["a", "b"], name="needs_ab")
            waiter = em.start(t)
            await anyio.sleep(0.05)
            assert waiter.status == "waiting"
            stats = em.statistics()
            assert stats.resources["a"].held_back == 1
            assert stats.resources["a"].held_for == f"{t.id} ({t.name})"
            assert stats.resources["b"].held_back == 0  # no b token is free: nothing to hold back
            # the waiter lacks b, not a global token: no global slot is held back for it
            assert stats.global_limit.held_back == 0
            release.set()
            await holder
            await waiter
            stats = em.statistics()
            assert all(lim.held_back == 0 and lim.held_for is None for lim in stats.limits), stats
            assert_idle(em)


# -- many distinct tag sets -------------------------------------------------------------


async def noop() -> None:
    pass


async def test_2000_distinct_tag_sets_via_run_many_all_succeed() -> None:
    tasklets = [an.Tasklet(noop, resource_tags=[f"api_key_{i}:1"]) for i in range(2000)]
    with anyio.fail_after(60):
        async with an.ExecutionManager(max_concurrency=4) as em:
            assert await em.run_many(tasklets) == [None] * 2000
            assert em.statistics().by_status["succeeded"] == 2000
            assert_idle(em)


async def test_2000_distinct_tag_sets_via_start_all_succeed() -> None:
    with anyio.fail_after(60):
        async with an.ExecutionManager(max_concurrency=4) as em:
            handles = [em.start(an.Tasklet(noop, resource_tags=[f"api_key_{i}:1"])) for i in range(2000)]
            for h in handles:
                await h
            assert all(h.status == "succeeded" for h in handles)
            assert em.statistics().by_status["succeeded"] == 2000
            assert_idle(em)


# -- the bottleneck-aware policy ----------------------------------------------------------


async def start_order(admission: str | None) -> list[str]:
    """12 untagged then 6 gpu:1 tasklets, all started at once: the order their bodies start."""
    order: list[str] = []

    async def body(kind: str) -> None:
        order.append(kind)
        await anyio.sleep(0.05)

    kwargs: dict[str, Any] = {} if admission is None else {"admission": admission}
    with anyio.fail_after(30):
        async with an.ExecutionManager(max_concurrency=4, **kwargs) as em:
            tasklets = [an.Tasklet(body, params={"kind": "untagged"}) for _ in range(12)]
            tasklets += [an.Tasklet(body, params={"kind": "gpu"}, resource_tags=["gpu:1"]) for _ in range(6)]
            handles = [em.start(t) for t in tasklets]
            for h in handles:
                await h
            assert_idle(em)
    assert sorted(order) == ["gpu"] * 6 + ["untagged"] * 12
    return order


async def test_bottleneck_admission_starts_the_scarce_resource_early() -> None:
    order = await start_order("bottleneck")
    last_untagged = max(i for i, kind in enumerate(order) if kind == "untagged")
    assert order.index("gpu") < last_untagged, order


@pytest.mark.parametrize("admission", [None, "fifo"], ids=["default", "fifo"])
async def test_fifo_admission_starts_the_gpu_tasklets_after_the_untagged_ones(admission: str | None) -> None:
    order = await start_order(admission)
    # FIFO: the first gpu tasklet is admitted only after every untagged one (bodies of
    # one wave may start in either order, hence >= 8 rather than == 12).
    assert order.index("gpu") >= 8, order


async def test_bottleneck_admission_lets_nothing_starve_under_a_stream_of_gpu_tasklets() -> None:
    """gpu:2 and max_concurrency=2: preferring gpu tasklets forever would starve the others."""
    untagged_done = anyio.Event()

    async def gpu_body() -> None:
        await anyio.sleep(0.02)

    async def untagged_body() -> str:
        return "ran"

    with anyio.fail_after(30):
        async with an.ExecutionManager(max_concurrency=2, capacities={"gpu": 2}, admission="bottleneck") as em:
            stream_end = time.monotonic() + 5.0

            async def stream() -> None:
                pending: list[an.TaskletHandle] = []
                while not untagged_done.is_set() and time.monotonic() < stream_end:
                    pending.append(em.start(an.Tasklet(gpu_body, resource_tags=["gpu"])))
                    if len(pending) >= 6:
                        await pending.pop(0)
                    else:
                        await anyio.sleep(0)
                for h in pending:
                    await h

            async with anyio.create_task_group() as tg:
                tg.start_soon(stream)
                await anyio.sleep(0.2)  # the stream is flowing
                handles = [em.start(an.Tasklet(untagged_body)) for _ in range(4)]
                results = [await h for h in handles]
                finished_at = time.monotonic()
                untagged_done.set()
            assert results == ["ran"] * 4
            assert finished_at < stream_end, "the untagged tasklets waited until the gpu stream stopped"
            assert_idle(em)


def test_an_unknown_admission_policy_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(an.AuraError) as info:
        an.ExecutionManager(admission="nope")
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "'nope'" in message or "nope" in message
    assert "fifo" in message and "bottleneck" in message
