"""Cancellation and clean-up at the awkward moments a review found.

Each test pins down one path where a tasklet used to be lost, a permit leaked, a
backend cancellation leaked into a handle, or a timeout was invented.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import anyio
import pytest

import aura_nb as an

pytestmark = pytest.mark.anyio


def assert_idle(em: an.ExecutionManager) -> None:
    stats = em.statistics()
    assert stats.idle, stats


async def test_cancelled_in_a_resources_released_hook_after_success() -> None:
    in_hook = anyio.Event()

    async def body() -> str:
        return "done"

    async def released(ev: an.Event) -> None:
        in_hook.set()
        await anyio.sleep_forever()

    async with an.ExecutionManager() as em:
        em.hooks.on("resources_released", released)
        handle = em.start(an.Tasklet(body))
        await in_hook.wait()
        handle.cancel()
        with pytest.raises(an.TaskletCancelledError):  # never the backend's own cancellation
            await handle
        assert_idle(em)
        assert em.live() == []
    assert em.events.count("after_task_run") == 1
    # One truth: the cancel landed before the terminal event, so the tasklet is cancelled
    # everywhere (its handle, its status, the log), although its body had returned.
    assert em.statistics().by_status["cancelled"] == 1
    assert handle.cancelled() and handle.status == "cancelled"


async def test_cancelling_during_an_after_task_run_hook_of_a_success_keeps_the_result() -> None:
    """The outcome was decided: a cancel gives after_task_run hooks their grace and keeps the result."""
    in_hook = anyio.Event()
    finished: list[str] = []

    async def body() -> int:
        return 1

    async def after(ev: an.Event) -> None:
        in_hook.set()
        await anyio.sleep(0.1)
        finished.append(ev.status)

    async with an.ExecutionManager() as em:
        em.hooks.on("after_task_run", after)
        handle = em.start(an.Tasklet(body))
        await in_hook.wait()
        handle.cancel()
        assert await handle == 1  # never the backend's cancellation
        assert finished == ["succeeded"]
        assert_idle(em)


async def test_concurrent_acloses_all_return() -> None:
    gate = anyio.Event()

    async def hold() -> None:
        await gate.wait()

    em = an.ExecutionManager()
    returned: list[str] = []

    async def close(name: str) -> None:
        await em.aclose()
        returned.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(em.submit, an.Tasklet(hold))
        await anyio.sleep(0.01)
        tg.start_soon(close, "first")
        tg.start_soon(close, "second")
        await anyio.sleep(0.01)
        gate.set()
        with anyio.fail_after(5):
            while len(returned) < 2:
                await anyio.sleep(0.01)
    assert sorted(returned) == ["first", "second"]


async def test_a_sync_body_that_finished_in_time_is_not_a_timeout_when_the_loop_was_busy() -> None:
    def quick() -> str:
        time.sleep(0.02)
        return "done"

    async def hog() -> None:
        await anyio.sleep(0.01)
        time.sleep(0.7)  # the loop is blocked when the thread finishes and the deadline passes

    async with an.ExecutionManager() as em:
        async with anyio.create_task_group() as tg:
            tg.start_soon(hog)
            assert await em.submit(an.Tasklet(quick, timeout=0.5)) == "done"


async def test_a_sync_body_that_ran_over_is_still_a_timeout() -> None:
    def slow() -> str:
        time.sleep(0.3)
        return "late"

    async with an.ExecutionManager() as em:
        with pytest.raises(an.TaskletTimeoutError, match="sync task cannot be interrupted"):
            await em.submit(an.Tasklet(slow, timeout=0.1))
        assert_idle(em)


async def test_a_trimmed_log_never_reads_a_later_sessions_rows(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"

    async def nothing() -> None:
        pass

    first = an.ExecutionManager(event_log=path, keep_events=10)
    for _ in range(20):
        await first.submit(an.Tasklet(nothing, name="session1"))
    first.events.flush()
    await first.aclose()  # hand the file over (a later session appends to it)
    async with an.ExecutionManager(event_log=path) as second:
        for _ in range(7):
            await second.submit(an.Tasklet(nothing, name="session2"))
    assert len(first.events) == 120
    assert len(first.events.to_frame()) == 120
    assert set(first.events.runs()["name"]) == {"session1"}
    assert first.events.count("after_task_run") == 20
    assert len(an.EventLog.open(path)) == 162


# -- native asyncio cancellation (task.cancel(): asyncio.wait_for, asyncio.timeout, TaskGroup) --
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_native_cancel_never_frees_a_token_while_a_sync_body_runs() -> None:
    holders = 0
    peak = 0

    def body() -> None:
        nonlocal holders, peak
        holders += 1
        peak = max(peak, holders)
        time.sleep(0.2)
        holders -= 1

    async with an.ExecutionManager(capacities={"gpu": 1}) as em:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(em.submit(an.Tasklet(body, resource_tags=["gpu"])), 0.05)
        await em.submit(an.Tasklet(body, resource_tags=["gpu"]))
        assert_idle(em)
    assert peak == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_second_native_cancel_during_a_failure_hook_still_releases() -> None:
    async def body() -> None:
        await asyncio.sleep(10)

    async def failure_hook(ev: an.Event) -> None:
        await asyncio.sleep(0.1)

    em = an.ExecutionManager(max_concurrency=1)
    em.hooks.on("after_task_failure", failure_hook)
    task = asyncio.create_task(em.submit(an.Tasklet(body)))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_idle(em)
    assert em.events.count("after_task_run") == 1
    await asyncio.wait_for(em.aclose(), 2)
