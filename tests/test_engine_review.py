"""Hostile review of the v2 engine (issue 12): each test is a bug found by breaking it.

Every test asserts what a user sees and what the README / module docstrings promise;
each fails on the engine as reviewed. Run on asyncio and trio (anyio's plugin).
"""

from __future__ import annotations

import time

import anyio
import pytest

import aura_nb as an

pytestmark = pytest.mark.anyio


class Boom(BaseException):
    """A KeyboardInterrupt-like BaseException (not an Exception)."""


def assert_settled(em: an.ExecutionManager) -> None:
    stats = em.statistics()
    assert stats.idle, stats
    assert stats.global_limit.in_use == 0, stats
    assert em.events.count("tasklet_submitted") == em.events.count("after_task_run")


async def quick() -> int:
    await anyio.sleep(0)
    return 1


# -- 1. a BaseException from an after_task_run hook of a success leaves the tasklet live ---------
@pytest.mark.parametrize("released_hook", [False, True])
async def test_base_exception_from_after_task_run_hook_does_not_hang_aclose(released_hook: bool) -> None:
    # _manager.submit / _released_then_end call _forget() only after _after_hooks()
    # returned; a BaseException from the hook skips it, the run stays in em._live and
    # aclose() waits for it forever. (_conclude has _forget in a finally.)
    em = an.ExecutionManager(max_concurrency=2)

    def hook(ev: an.Event) -> None:
        raise Boom()

    em.hooks.on("after_task_run", hook)
    if released_hook:
        em.hooks.on("resources_released", lambda ev: None)
    with pytest.raises(Boom):
        await em.submit(an.Tasklet(quick))
    assert_settled(em)
    with anyio.fail_after(10):  # hangs forever today
        await em.aclose()


# -- 2. the asyncio body timeout counts the before_task_run hooks' time -------------------------
async def test_body_timeout_counts_from_the_body_start_not_before_hooks() -> None:
    # README: "timeout ... counted from the body's start". On asyncio the timer is armed
    # with limit - (now - t_run), where t_run is taken *before* the before_task_run hooks
    # ran: a slow hook eats the body's time. On trio the same tasklet succeeds.
    em = an.ExecutionManager(max_concurrency=2)

    async def slow_hook(ev: an.Event) -> None:
        await anyio.sleep(1.5)

    em.hooks.on("before_task_run", slow_hook)

    async def body() -> str:
        await anyio.sleep(0.05)
        return "ok"

    with anyio.fail_after(30):
        assert await em.submit(an.Tasklet(body, timeout=1.2)) == "ok"
        await em.aclose()
    assert_settled(em)


# -- 3. handle.cancel() says True, the tasklet ends succeeded/failed anyway ---------------------
@pytest.mark.parametrize(
    ("event", "fail"),
    [("after_task_success", False), ("resources_released", False), ("after_task_failure", True)],
)
async def test_cancel_return_value_agrees_with_the_outcome(event: str, fail: bool) -> None:
    # cancel() is documented as "True if it will end cancelled". Called while a sync
    # hook of these events runs, it returns True (status is not terminal yet), but
    # nothing suspends afterwards, so the tasklet ends succeeded / failed.
    returned: list[bool] = []
    async with an.ExecutionManager(max_concurrency=2) as em:
        box: dict[str, an.TaskletHandle] = {}
        em.hooks.on(event, lambda ev: returned.append(box["h"].cancel()))

        async def body() -> int:
            await anyio.sleep(0)
            if fail:
                raise ValueError("expected")
            return 1

        box["h"] = handle = em.start(an.Tasklet(body))
        with anyio.fail_after(10):
            try:
                await handle
            except (ValueError, an.TaskletCancelledError):
                pass
    frame = em.events.to_frame()
    logged = frame[frame["event"] == "after_task_run"]["status"].tolist()
    assert returned == [handle.cancelled()], (returned, handle.status, logged)
    assert logged == [handle.status]
    assert_settled(em)


# -- 4. "GPU" next to "gpu": refused, but only after something started / was declared -----------
async def test_case_variant_in_a_batch_is_refused_before_anything_starts() -> None:
    # README: "The whole batch is checked before anything starts". check_batch only
    # compares spellings with *declared* names, not with the batch's pending ones, so
    # the first tasklet runs and the second fails at feed time.
    ran: list[int] = []

    async def task(i: int) -> None:
        ran.append(i)

    em = an.ExecutionManager(max_concurrency=2)
    batch = [
        an.Tasklet(task, params={"i": 0}, resource_tags=["gpu:1"]),
        an.Tasklet(task, params={"i": 1}, resource_tags=["GPU:1"]),
    ]
    with anyio.fail_after(10):
        with pytest.raises(an.ResourceTagError):
            await em.run_many(batch)
        await em.aclose()
    assert ran == []
    assert dict(em.capacities) == {}
    assert len(em.events) == 0


async def test_case_variant_in_one_tasklet_declares_nothing() -> None:
    # _resolve: "declares nothing until the whole tasklet (or batch) is valid";
    # README: a failed validation leaves "nothing queued, acquired or declared".
    em = an.ExecutionManager(max_concurrency=2)
    with anyio.fail_after(10):
        with pytest.raises(an.ResourceTagError):
            await em.submit(an.Tasklet(quick, resource_tags=["gpu:1", "GPU:1"]))
        await em.aclose()
    assert dict(em.capacities) == {}  # today {'gpu': 1}


# -- 5. run_many replaces the task's exception when it cannot add its note ----------------------
async def test_run_many_raises_the_tasks_own_exception_even_if_it_refuses_notes() -> None:
    # README: "A task's own exception reaches the caller unchanged". Batch.outcome calls
    # exc.add_note(), which raises TypeError for an exception whose __notes__ is not a list.
    class Odd(Exception):
        __notes__ = ()

    async def bad() -> None:
        raise Odd("mine")

    em = an.ExecutionManager(max_concurrency=2)
    with anyio.fail_after(10):
        with pytest.raises(Odd):
            await em.run_many([an.Tasklet(bad)])
        await em.aclose()
    assert_settled(em)


# -- 6. a check returning a non-bool whose repr raises ---------------------------------------------
class _NoRepr:
    def __repr__(self) -> str:
        raise ValueError("no repr for you")


def _plan_with_bad_check() -> an.Plan:
    plan = an.Plan("p")

    @plan.task
    def is_a() -> object:
        return _NoRepr()

    @plan.task
    def is_b() -> bool:
        return False

    @plan.task
    def go() -> None:
        pass

    @plan.task
    async def work() -> int:
        return 1

    plan.add_state("a", check="is_a")
    plan.add_state("b", check="is_b")
    plan.add_transition("b", "a", task="go")
    return plan


@pytest.mark.parametrize("target", ["a", "b"])  # "a": the target's own check; "b": while locating
async def test_a_check_returning_a_non_bool_with_a_broken_repr_is_a_planning_error(target: str) -> None:
    # README: "Checks must return a real bool: anything else is a StatePlanningError",
    # status planning_failed. _walk.check formats {value!r:.80}: the repr's ValueError
    # escapes (and, from locate()'s task group, arrives as an ExceptionGroup), status failed.
    em = an.ExecutionManager(plans=[_plan_with_bad_check()])
    with anyio.fail_after(20):
        with pytest.raises(an.StatePlanningError):
            await em.submit(an.Tasklet("p/work", required_initial_state=target))
        await em.aclose()
    frame = em.events.to_frame()
    assert frame[frame["event"] == "after_task_run"]["status"].tolist() == ["planning_failed"]
    assert_settled(em)


# -- 7. a caller's cancellation is ignored while after_task_run hooks run ------------------------
async def test_a_callers_timeout_is_not_ignored_by_a_slow_after_task_run_hook() -> None:
    # Module docstring: "Cancellation may cut any hook short ... after_task_run hooks
    # of a cancelled tasklet get a grace of HOOK_GRACE_S". _after_hooks shields the
    # hooks with no deadline unless the tasklet was already cancelled, so a caller's
    # move_on_after(0.3) waits the hook's full 5 s (issue 12, edge 3).
    em = an.ExecutionManager(max_concurrency=2)

    async def slow(ev: an.Event) -> None:
        await anyio.sleep(5)

    em.hooks.on("after_task_run", slow)
    t0 = time.monotonic()
    with anyio.move_on_after(0.3):
        await em.submit(an.Tasklet(quick))
    elapsed = time.monotonic() - t0
    with anyio.fail_after(20):
        await em.aclose()
    assert elapsed < 0.3 + an.HOOK_GRACE_S + 1.5, elapsed
    assert_settled(em)


async def test_cancelling_run_many_is_not_held_up_by_a_slow_after_task_run_hook() -> None:
    em = an.ExecutionManager(max_concurrency=2)

    async def slow(ev: an.Event) -> None:
        await anyio.sleep(5)

    em.hooks.on("after_task_run", slow)
    t0 = time.monotonic()
    with anyio.move_on_after(0.3):
        await em.run_many([an.Tasklet(quick) for _ in range(3)])
    elapsed = time.monotonic() - t0
    with anyio.fail_after(30):
        await em.aclose()
    assert elapsed < 0.3 + an.HOOK_GRACE_S + 1.5, elapsed
    assert_settled(em)


# -- 8. aclose() from a task a hook started deadlocks ----------------------------------------------
async def test_aclose_from_a_task_started_inside_a_hook_does_not_deadlock() -> None:
    # README: aclose() "called from inside one of the manager's own hooks ... raises
    # ManagerUsageError at once (it would wait for its own tasklet)"; issue 12 edge 2:
    # "neither deadlocks ...". The check compares task ids, so an aclose() in a child
    # task of the hook (the hook's task group waits for it) waits for itself forever.
    em = an.ExecutionManager(max_concurrency=2)
    seen: list[BaseException] = []

    async def close_it() -> None:
        try:
            await em.aclose()
        except an.ManagerUsageError as exc:
            seen.append(exc)

    async def hook(ev: an.Event) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(close_it)

    em.hooks.on("after_task_success", hook)
    with anyio.fail_after(10):  # deadlocks today
        assert await em.submit(an.Tasklet(quick)) == 1
    with anyio.fail_after(10):
        await em.aclose()
    assert_settled(em)
