"""The execution manager: atomic limits, fairness, hooks, timeouts and cancellation."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

from typing import Any

import anyio
import pytest

import aura_nb as an

pytestmark = pytest.mark.anyio


class Holders:
    """Counts how many tasks hold each limit at once, from inside the tasks."""

    def __init__(self) -> None:
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    def enter(self, names: list[str]) -> None:
        for name in names:
            self.now[name] += 1
            self.peak[name] = max(self.peak[name], self.now[name])

    def leave(self, names: list[str]) -> None:
        for name in names:
            self.now[name] -= 1


def assert_idle(em: an.ExecutionManager) -> None:
    stats = em.statistics()
    assert stats.idle, stats
    assert all(lim.waiting == 0 for lim in stats.limits), stats


async def test_submit_returns_the_result_and_passes_params() -> None:
    async def add(a: int, b: int) -> int:
        await anyio.sleep(0)
        return a + b

    async with an.ExecutionManager() as em:
        assert await em.submit(an.Tasklet(add, params={"a": 2, "b": 3})) == 5
        assert_idle(em)


async def test_sync_tasks_run_in_a_worker_thread() -> None:
    loop_thread = threading.get_ident()

    def where(x: int) -> tuple[int, int]:
        return threading.get_ident(), x * 2

    async with an.ExecutionManager() as em:
        ident, value = await em.submit(an.Tasklet(where, params={"x": 21}))
    assert value == 42
    assert ident != loop_thread


async def test_the_tasks_own_exception_reaches_the_caller_unchanged() -> None:
    class Boom(Exception):
        pass

    err = Boom("the device is on fire")

    async def fail() -> None:
        raise err

    async with an.ExecutionManager() as em:
        with pytest.raises(Boom) as info:
            await em.submit(an.Tasklet(fail, resource_tags=["gpu:1"]))
        assert info.value is err
        # even a TimeoutError raised by the task itself is not mistaken for a timeout
        async def own_timeout() -> None:
            raise TimeoutError("the remote API timed out")

        with pytest.raises(TimeoutError) as info2:
            await em.submit(an.Tasklet(own_timeout, timeout=5))
        assert not isinstance(info2.value, an.TaskletTimeoutError)
        assert_idle(em)
    runs = em.events.runs()
    assert list(runs["status"]) == ["failed", "failed"]


async def test_limits_are_never_exceeded() -> None:
    caps = {"a": 2, "b": 1, "c": 3}
    holders = Holders()
    rng = random.Random(7)

    def make(names: list[str]):
        async def body() -> None:
            holders.enter(["global", *names])
            await anyio.sleep(rng.random() * 0.003)
            holders.leave(["global", *names])

        return body

    async with an.ExecutionManager(max_concurrency=4, capacities=caps) as em:
        async with anyio.create_task_group() as tg:
            for _ in range(120):
                names = rng.sample(sorted(caps), rng.randint(0, 3))
                tags = [f"{n}:{caps[n]}" for n in names]
                tg.start_soon(em.submit, an.Tasklet(make(names), resource_tags=tags))
        assert_idle(em)
    assert holders.peak["global"] <= 4
    for name, cap in caps.items():
        assert holders.peak[name] <= cap, (name, holders.peak)
    # The limits were actually approached (the oldest waiter's reservation may keep one
    # global token idle, so 4 at once is not guaranteed).
    assert holders.peak["global"] >= 3
    assert em.statistics().by_status["succeeded"] == 120


async def test_opposite_tag_orders_never_deadlock() -> None:
    async def work() -> None:
        await anyio.sleep(0)

    async with an.ExecutionManager(max_concurrency=8) as em:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(200):
                    tags = ["a:1", "b:1"] if i % 2 == 0 else ["b:1", "a:1"]
                    tg.start_soon(em.submit, an.Tasklet(work, resource_tags=tags))
        assert em.statistics().by_status["succeeded"] == 200
        assert_idle(em)


async def test_a_waiting_gpu_tasklet_does_not_hold_a_global_slot() -> None:
    """With one-by-one acquisition the untagged tasklets would wait for ~38 gpu ones."""
    log: list[tuple[str, str, int]] = []

    def make(kind: str, i: int):
        async def body() -> None:
            log.append(("start", kind, i))
            await anyio.sleep(0.02)
            log.append(("end", kind, i))

        return body

    async with an.ExecutionManager(max_concurrency=4) as em:
        # start() fixes each tasklet's place in the queue at once, on both backends
        handles = [em.start(an.Tasklet(make("gpu", i), resource_tags=["gpu:1"])) for i in range(40)]
        handles += [em.start(an.Tasklet(make("plain", i))) for i in range(40)]
        for handle in handles:
            await handle
    first_plain_start = next(k for k, e in enumerate(log) if e[:2] == ("start", "plain"))
    second_gpu_end = [k for k, e in enumerate(log) if e[:2] == ("end", "gpu")][1]
    assert first_plain_start < second_gpu_end
    # the gpu tasklets ran one at a time, in submission order
    gpu_starts = [i for what, kind, i in log if what == "start" and kind == "gpu"]
    assert gpu_starts == list(range(40))


async def test_a_multi_resource_tasklet_is_not_starved_by_a_stream() -> None:
    order: list[str] = []
    stop = anyio.Event()

    def db_only(i: int):
        async def body() -> None:
            order.append(f"db{i}")
            await anyio.sleep(0.002)

        return body

    async def both() -> None:
        order.append("BOTH")

    async with an.ExecutionManager(max_concurrency=8, capacities={"gpu": 1, "db": 1}) as em:
        async def stream(tg: anyio.abc.TaskGroup) -> None:
            i = 0
            while not stop.is_set():
                tg.start_soon(em.submit, an.Tasklet(db_only(i), resource_tags=["db"]))
                i += 1
                await anyio.sleep(0.0005)
                if i == 20:
                    tg.start_soon(finish_both)
            # keep the stream going a little after BOTH was submitted

        async def finish_both() -> None:
            await em.submit(an.Tasklet(both, resource_tags=["gpu", "db"]))
            stop.set()

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(stream, tg)
        assert_idle(em)
    frame = em.events.to_frame()
    submitted = frame[frame["event"] == "tasklet_submitted"].set_index("tasklet_id")["seq"]
    acquired = frame[frame["event"] == "resources_acquired"].set_index("tasklet_id")["seq"]
    both_id = frame.loc[frame["task"].str.endswith("both"), "tasklet_id"].iloc[0]
    later = submitted[submitted > submitted[both_id]].index
    assert len(later) > 0, "the stream went on after BOTH was submitted"
    # No db tasklet submitted after BOTH got the db before BOTH did.
    assert (acquired[later] > acquired[both_id]).all()
    assert "BOTH" in order


async def test_an_impossible_capacity_change_still_drains() -> None:
    gate = anyio.Event()

    async def hold() -> None:
        await gate.wait()

    async def quick() -> None:
        pass

    async with an.ExecutionManager(capacities={"gpu": 2}) as em:
        h1 = em.start(an.Tasklet(hold, resource_tags=["gpu"]))
        h2 = em.start(an.Tasklet(hold, resource_tags=["gpu"]))
        await anyio.sleep(0.01)
        em.set_capacity("gpu", 1)  # shrinking never preempts the holders
        h3 = em.start(an.Tasklet(quick, resource_tags=["gpu"]))
        await anyio.sleep(0.01)
        assert em.statistics().resources["gpu"].in_use == 2
        assert h3.status == "waiting"
        em.set_capacity("gpu", 3)  # growing wakes the waiter
        with anyio.fail_after(5):
            await h3
        gate.set()
        await h1
        await h2
        assert_idle(em)


async def test_the_global_limit_can_change_live() -> None:
    gate = anyio.Event()

    async def hold() -> None:
        await gate.wait()

    async with an.ExecutionManager(max_concurrency=1) as em:
        handles = [em.start(an.Tasklet(hold)) for _ in range(3)]
        await anyio.sleep(0.01)
        assert (em.statistics().running, em.statistics().waiting) == (1, 2)
        em.set_max_concurrency(3)  # growing admits the waiters at once
        await anyio.sleep(0.01)
        assert (em.statistics().running, em.statistics().waiting) == (3, 0)
        assert em.max_concurrency == 3
        with pytest.raises(an.ArgumentError, match="max_concurrency 0"):
            em.set_max_concurrency(0)
        gate.set()
        for h in handles:
            await h
        assert_idle(em)


# -- hooks -----------------------------------------------------------------------------
def record_hooks(em: an.ExecutionManager) -> list[tuple[str, str | None]]:
    seen: list[tuple[str, str | None]] = []
    for name in an.AURA_HOOKS:
        em.hooks.on(name, lambda ev: seen.append((ev.event, ev.status)))
    return seen


def lifecycle(em: an.ExecutionManager) -> list[str]:
    return [ev.event for ev in em.events]


async def test_hooks_on_success() -> None:
    async def ok() -> str:
        return "fine"

    async with an.ExecutionManager() as em:
        seen = record_hooks(em)
        results = []

        async def async_hook(ev: an.Event) -> None:
            await anyio.sleep(0)
            results.append(ev.result)

        em.hooks.on("after_task_success", async_hook)
        assert await em.submit(an.Tasklet(ok, resource_tags=["gpu:1"])) == "fine"
    assert seen == [
        ("before_task_run", None),
        ("after_task_success", None),
        ("after_task_run", "succeeded"),
    ]
    assert results == ["fine"]
    assert lifecycle(em) == [
        "tasklet_submitted",
        "resources_acquired",
        "before_task_run",
        "after_task_success",
        "resources_released",
        "after_task_run",
    ]


async def test_hooks_on_exception() -> None:
    async def bad() -> None:
        raise KeyError("x")

    async with an.ExecutionManager() as em:
        seen = record_hooks(em)
        errors = []
        em.hooks.on("after_task_failure", lambda ev: errors.append(ev.error))
        with pytest.raises(KeyError):
            await em.submit(an.Tasklet(bad))
        assert_idle(em)
    assert seen == [("before_task_run", None), ("after_task_failure", "failed"), ("after_task_run", "failed")]
    assert isinstance(errors[0], KeyError)
    assert lifecycle(em)[-3:] == ["after_task_failure", "resources_released", "after_task_run"]


@pytest.mark.parametrize("sync", [False, True])
async def test_hooks_on_timeout(sync: bool) -> None:
    if sync:
        import time

        def slow() -> None:
            time.sleep(0.2)
    else:

        async def slow() -> None:
            await anyio.sleep(10)

    async with an.ExecutionManager() as em:
        seen = record_hooks(em)
        with pytest.raises(an.TaskletTimeoutError) as info:
            await em.submit(an.Tasklet(slow, timeout=0.05, resource_tags=["gpu:1"]))
        assert info.value.phase == "run"
        assert info.value.limit == 0.05
        assert isinstance(info.value, TimeoutError)
        assert_idle(em)
    assert seen == [("before_task_run", None), ("after_task_failure", "timeout"), ("after_task_run", "timeout")]


async def test_the_timeout_nests_with_the_bodys_own_scopes_and_counts_from_the_start() -> None:
    # On asyncio the tasklet's timer is armed only when the body first suspends (after
    # the body entered scopes of its own); it must still fire, nest, and count from the
    # body's start.
    async def nested_slow() -> None:
        with anyio.fail_after(10):  # the body's own, looser limit
            await anyio.sleep(10)

    async def inner_limit_first() -> str:
        with anyio.move_on_after(0.01):  # the body's own, tighter limit
            await anyio.sleep(10)
        return "inner"

    async def busy_then_sleep() -> None:
        deadline = time.monotonic() + 0.08
        while time.monotonic() < deadline:  # CPU before its first suspension
            pass
        await anyio.sleep(0.5)

    async def quick() -> int:
        return 7

    async with an.ExecutionManager() as em:
        with pytest.raises(an.TaskletTimeoutError):
            await em.submit(an.Tasklet(nested_slow, timeout=0.05))
        assert await em.submit(an.Tasklet(inner_limit_first, timeout=5)) == "inner"
        t0 = time.monotonic()
        with pytest.raises(an.TaskletTimeoutError):
            await em.submit(an.Tasklet(busy_then_sleep, timeout=0.05))
        assert time.monotonic() - t0 < 0.4  # not the 0.5 s sleep: the limit had passed
        assert await em.submit(an.Tasklet(quick, timeout=0.05)) == 7
        assert em.statistics().by_status["timeout"] == 2
        assert_idle(em)


async def test_a_handled_exception_does_not_linger_in_a_timed_body(anyio_backend: str) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("the asyncio path arms the tasklet's timer after the body's first suspension")
    import asyncio
    import sys

    async def handles_its_own_timeout() -> str:
        try:
            async with asyncio.timeout(0.01):  # its cancellation is thrown into the body
                await asyncio.sleep(1)
        except TimeoutError:
            pass
        return repr(sys.exc_info()[1])  # nothing is being handled any more

    async with an.ExecutionManager() as em:
        for timeout in (None, 5):
            assert await em.submit(an.Tasklet(handles_its_own_timeout, timeout=timeout)) == "None"


async def test_cancelling_a_running_tasklet_with_a_timeout() -> None:
    async def forever() -> None:
        await anyio.sleep_forever()

    async with an.ExecutionManager() as em:
        handle = em.start(an.Tasklet(forever, timeout=30))
        await anyio.sleep(0.02)
        assert handle.status == "running"
        handle.cancel()
        with pytest.raises(an.TaskletCancelledError):
            await handle
        assert em.statistics().by_status["cancelled"] == 1
        assert_idle(em)


async def test_hooks_on_cancellation_while_running() -> None:
    started = anyio.Event()

    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    async with an.ExecutionManager() as em:
        seen = record_hooks(em)
        with anyio.move_on_after(5) as outer:
            async with anyio.create_task_group() as tg:
                tg.start_soon(em.submit, an.Tasklet(forever, resource_tags=["gpu:1"]))
                await started.wait()
                tg.cancel_scope.cancel()
        assert not outer.cancelled_caught
        assert_idle(em)
    assert seen == [("before_task_run", None), ("after_task_failure", "cancelled"), ("after_task_run", "cancelled")]
    assert lifecycle(em)[-3:] == ["after_task_failure", "resources_released", "after_task_run"]


async def test_cancellation_propagates_even_if_a_hook_is_async() -> None:
    async def forever() -> None:
        await anyio.sleep_forever()

    hook_ran = []

    async def slow_hook(ev: an.Event) -> None:
        await anyio.sleep(0.01)  # must run although the tasklet is cancelled
        hook_ran.append(ev.event)

    async with an.ExecutionManager() as em:
        em.hooks.on("after_task_failure", slow_hook)
        em.hooks.on("after_task_run", slow_hook)
        with anyio.move_on_after(0.05) as scope:
            await em.submit(an.Tasklet(forever))
        assert scope.cancelled_caught  # the cancellation reached the caller
        assert_idle(em)
    # A cancellation may cut hooks short; after_task_run hooks get a short grace.
    assert hook_ran == ["after_task_run"]


async def test_a_raising_hook_changes_no_outcome() -> None:
    async def ok() -> int:
        return 7

    def broken(ev: an.Event) -> None:
        raise RuntimeError(f"hook bug in {ev.event}")

    async def broken_async(ev: an.Event) -> None:
        raise ValueError("async hook bug")

    async with an.ExecutionManager(capacities={"gpu": 1}) as em:
        for name in an.AURA_HOOKS:
            em.hooks.on(name, broken)
        em.hooks.on("after_task_run", broken_async)
        assert await em.submit(an.Tasklet(ok, resource_tags=["gpu"])) == 7
        assert_idle(em)
        frame = em.events.to_frame()
    errors = frame[frame["event"] == "hook_error"]
    assert len(errors) == 4
    assert set(errors["error_type"]) == {"RuntimeError", "ValueError"}
    assert errors["detail"].str.contains("after_task_run hook").any()
    assert em.events.runs()["status"].tolist() == ["succeeded"]


def test_hook_registration_is_validated() -> None:
    em = an.ExecutionManager()
    with pytest.raises(an.HookError, match="unknown event name 'after_run'"):
        em.hooks.on("after_run", print)
    with pytest.raises(an.HookError, match="not callable"):
        em.hooks.on("after_task_run", 42)
    with pytest.raises(an.HookError, match="cannot take the one argument"):
        em.hooks.on("after_task_run", lambda: None)
    with pytest.raises(an.HookError, match="cannot take the one argument"):
        em.hooks.on("after_task_run", lambda a, b: None)
    em.hooks.on("after_task_run", lambda ev, extra=1: None)  # defaults are fine


# -- handles and cancellation ----------------------------------------------------------
async def test_start_returns_a_handle() -> None:
    gate = anyio.Event()

    async def wait_gate() -> str:
        await gate.wait()
        return "done"

    async with an.ExecutionManager() as em:
        handle = em.start(an.Tasklet(wait_gate, name="gate"))
        assert not handle.done()
        with pytest.raises(an.ManagerUsageError, match="still"):
            handle.result()
        await anyio.sleep(0.01)
        assert handle.status == "running"
        gate.set()
        assert await handle == "done"
        assert handle.done() and handle.status == "succeeded"
        assert handle.result() == "done" and handle.exception() is None


async def test_cancelling_a_waiting_and_a_running_tasklet_returns_every_permit() -> None:
    async def forever() -> None:
        await anyio.sleep_forever()

    async with an.ExecutionManager(max_concurrency=2, capacities={"gpu": 1}) as em:
        seen = record_hooks(em)
        running = em.start(an.Tasklet(forever, resource_tags=["gpu"]))
        waiting = em.start(an.Tasklet(forever, resource_tags=["gpu"]))
        await anyio.sleep(0.02)
        stats = em.statistics()
        assert stats.resources["gpu"].in_use == 1 and stats.resources["gpu"].waiting == 1
        assert (running.status, waiting.status) == ("running", "waiting")
        assert waiting.cancel()
        with pytest.raises(an.TaskletCancelledError):
            await waiting
        assert running.cancel()
        with pytest.raises(an.TaskletCancelledError):
            await running
        assert running.cancelled() and waiting.cancelled()
        assert not running.cancel()  # already finished
        assert_idle(em)
        assert em.statistics().by_status["cancelled"] == 2
    # the waiting one never acquired anything, and still got its two hooks
    assert seen.count(("after_task_run", "cancelled")) == 2
    frame = em.events.to_frame()
    waiting_events = frame[frame["tasklet_id"] == waiting.id]["event"].tolist()
    assert waiting_events == ["tasklet_submitted", "after_task_failure", "after_task_run"]


async def test_cancel_before_the_task_even_started() -> None:
    ran = []

    async def body() -> None:
        ran.append(1)
        await anyio.sleep(0)

    async with an.ExecutionManager() as em:
        handle = em.start(an.Tasklet(body))
        handle.cancel()
        with pytest.raises(an.TaskletCancelledError):
            await handle
        assert_idle(em)


async def test_a_failing_background_tasklet_keeps_its_error_in_the_handle() -> None:
    async def bad() -> None:
        raise ZeroDivisionError("nope")

    async def good() -> int:
        await anyio.sleep(0.01)
        return 1

    async with an.ExecutionManager() as em:
        h_bad = em.start(an.Tasklet(bad))
        h_good = em.start(an.Tasklet(good))
        with pytest.raises(ZeroDivisionError):
            await h_bad
        assert isinstance(h_bad.exception(), ZeroDivisionError)
        assert await h_good == 1  # the failure did not tear the others down


async def test_done_callbacks() -> None:
    async def ok() -> int:
        return 3

    async with an.ExecutionManager() as em:
        seen = []
        handle = em.start(an.Tasklet(ok))
        handle.add_done_callback(lambda h: seen.append(h.result()))
        await handle
        handle.add_done_callback(lambda h: seen.append("late"))
    assert seen == [3, "late"]


# -- closing ---------------------------------------------------------------------------
async def test_aclose_ends_waiters_waits_for_runners_and_refuses_new_work() -> None:
    gate = anyio.Event()
    finished = []

    async def hold() -> None:
        await gate.wait()
        finished.append("hold")

    em = an.ExecutionManager(max_concurrency=1)
    results: dict[str, object] = {}

    async def submit(name: str) -> None:
        try:
            results[name] = await em.submit(an.Tasklet(hold))
        except an.AuraError as exc:
            results[name] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(submit, "runner")
        await anyio.sleep(0.01)
        tg.start_soon(submit, "waiter")
        await anyio.sleep(0.01)

        async def open_gate() -> None:
            await anyio.sleep(0.05)
            gate.set()

        tg.start_soon(open_gate)
        await em.aclose()
        assert finished == ["hold"]  # the running one was waited for
    assert isinstance(results["waiter"], an.ManagerClosedError)
    assert results["runner"] is None
    assert_idle(em)
    assert em.statistics().by_status["cancelled"] == 1
    with pytest.raises(an.ManagerClosedError, match="closed"):
        await em.submit(an.Tasklet(hold))


async def test_exiting_the_context_with_an_error_cancels_started_tasklets() -> None:
    async def forever() -> None:
        await anyio.sleep_forever()

    with pytest.raises(RuntimeError, match="user code failed"):
        async with an.ExecutionManager() as em:
            em.start(an.Tasklet(forever))
            await anyio.sleep(0.01)
            raise RuntimeError("user code failed")
    assert_idle(em)
    assert em.statistics().by_status["cancelled"] == 1


def test_start_without_a_loop_says_what_to_do() -> None:
    async def ok() -> None:
        pass

    em = an.ExecutionManager()
    with pytest.raises(an.ManagerUsageError, match="running event loop"):
        em.start(an.Tasklet(ok))
    assert len(em.events) == 0


# -- statistics and why ------------------------------------------------------------------
async def test_statistics_is_a_frozen_snapshot() -> None:
    gate = anyio.Event()

    async def hold() -> None:
        await gate.wait()

    async with an.ExecutionManager(max_concurrency=3, capacities={"gpu": 1}) as em:
        handles = [em.start(an.Tasklet(hold, resource_tags=["gpu"])) for _ in range(3)]
        await anyio.sleep(0.01)
        snap = em.statistics()
        with pytest.raises(AttributeError):
            snap.waiting = 0  # type: ignore[misc]
        assert (snap.global_limit.in_use, snap.global_limit.waiting) == (1, 2)
        assert (snap.resources["gpu"].in_use, snap.resources["gpu"].waiting) == (1, 2)
        assert (snap.running, snap.waiting) == (1, 2)
        report = em.why(handles[2])
        assert report.position == 1 and report.waiting_total == 2
        gpu = next(n for n in report.needs if n.name == "gpu")
        assert gpu.busy and gpu.holders == (f"{handles[0].id} (hold)",)
        assert "held by" in str(report)
        gate.set()
        for h in handles:
            await h
        assert snap.running == 1  # the snapshot did not change
        assert em.why(handles[0]).position is None


async def test_manager_repr_and_live() -> None:
    async with an.ExecutionManager() as em:
        assert "ExecutionManager open" in repr(em)
        assert em.live() == []


@pytest.mark.parametrize("busy", [False, True])
async def test_cancelled_in_an_async_submitted_hook_leaves_nothing_behind(busy: bool) -> None:
    gate = anyio.Event()
    in_hook = anyio.Event()

    async def hold() -> None:
        await gate.wait()

    async def slow_hook(ev: an.Event) -> None:
        if ev.tasklet.name == "victim":
            in_hook.set()
            await anyio.sleep_forever()

    async with an.ExecutionManager(capacities={"gpu": 1}) as em:
        em.hooks.on("tasklet_submitted", slow_hook)
        holder = em.start(an.Tasklet(hold, resource_tags=["gpu"])) if busy else None
        await anyio.sleep(0.01)
        victim = em.start(an.Tasklet(hold, resource_tags=["gpu"], name="victim"))
        await in_hook.wait()
        victim.cancel()
        with pytest.raises(an.TaskletCancelledError):
            await victim
        gate.set()
        if holder is not None:
            await holder
        assert_idle(em)
    assert em.events.runs()["status"].tolist() == (["succeeded", "cancelled"] if busy else ["cancelled"])


async def test_leaving_async_with_normally_waits_for_queued_tasklets_too() -> None:
    """Like a task group: everything started inside has run when the block is left."""
    done: list[int] = []

    async def work(i: int) -> None:
        await anyio.sleep(0.005)
        done.append(i)

    async with an.ExecutionManager(max_concurrency=2, capacities={"gpu": 1}) as em:
        handles = [em.start(an.Tasklet(work, params={"i": i}, resource_tags=["gpu"])) for i in range(10)]
    assert sorted(done) == list(range(10))
    assert all(h.status == "succeeded" for h in handles)
    assert em.closed
    assert_idle(em)


async def test_aclose_drain_runs_the_queue_but_refuses_new_work() -> None:
    async def work() -> None:
        await anyio.sleep(0.005)

    async with an.ExecutionManager(max_concurrency=1) as em:
        handles = [em.start(an.Tasklet(work)) for _ in range(5)]
        await em.aclose(drain=True)
        assert [h.status for h in handles] == ["succeeded"] * 5
        with pytest.raises(an.ManagerClosedError):
            em.start(an.Tasklet(work))


def test_a_tasklet_is_immutable_and_survives_pickle_and_copy() -> None:
    import copy
    import pickle

    t = an.Tasklet("p/t", params={"n": [1]}, resource_tags=["gpu:1"], timeout=2, retry=2, name="job")
    with pytest.raises(AttributeError, match="immutable: cannot set 'timeout'"):
        t.timeout = 5  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        t.anything = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="immutable: cannot delete 'name'"):
        del t.name  # type: ignore[misc]
    with pytest.raises(TypeError):
        t.params["n"] = 2  # type: ignore[index]
    for back in (pickle.loads(pickle.dumps(t)), copy.deepcopy(t)):
        assert type(back) is an.Tasklet and back is not t
        assert (back.id, back.task, dict(back.params), back.resource_tags, back.timeout, back.name, back.retry) == (
            t.id, t.task, {"n": [1]}, ("gpu:1",), 2.0, "job", t.retry,
        )  # fmt: skip
        with pytest.raises(TypeError):
            back.params["n"] = 2  # type: ignore[index]
    assert copy.copy(t) is t

    class Mine(an.Tasklet):
        pass

    mine = Mine("p/t", name="sub")
    assert type(mine) is Mine and mine.name == "sub" and mine.id != t.id
    with pytest.raises(AttributeError, match="immutable"):
        mine.name = "x"  # type: ignore[misc]

    class Fetch(an.Tasklet):  # a subclass with its own constructor, the usual way
        def __init__(self, url: str, **kw: Any) -> None:
            super().__init__("web/get", params={"url": url}, **kw)

    job = Fetch("https://example.org", timeout=3)
    assert isinstance(job, an.Tasklet) and dict(job.params) == {"url": "https://example.org"} and job.timeout == 3.0
    assert type(copy.deepcopy(job)) is Fetch and copy.deepcopy(job).id == job.id
    with pytest.raises(an.TaskletError, match="timeout"):
        Fetch("https://example.org", timeout=-1)
