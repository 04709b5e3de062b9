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


# -- 1. a BaseException from an after_task_run hook of a success still lets the tasklet end ------
@pytest.mark.parametrize("released_hook", [False, True])
async def test_base_exception_from_after_task_run_hook_does_not_hang_aclose(released_hook: bool) -> None:
    # The tasklet is forgotten whatever its after_task_run hooks raise, so aclose()
    # returns (it used to wait forever for a tasklet left live).
    em = an.ExecutionManager(max_concurrency=2)

    def hook(ev: an.Event) -> None:
        raise Boom()

    em.hooks.on("after_task_run", hook)
    if released_hook:
        em.hooks.on("resources_released", lambda ev: None)
    with pytest.raises(Boom):
        await em.submit(an.Tasklet(quick))
    assert_settled(em)
    with anyio.fail_after(10):  # a hang fails here
        await em.aclose()


# -- 2. the body's timeout does not count the before_task_run hooks' time -----------------------
async def test_body_timeout_counts_from_the_body_start_not_before_hooks() -> None:
    # README: "timeout ... counted from the body's start", on asyncio as on trio: a slow
    # before_task_run hook does not eat the body's time.
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


# -- 3. handle.cancel() returns True exactly when the tasklet ends cancelled --------------------
@pytest.mark.parametrize(
    ("event", "fail"),
    [("after_task_success", False), ("resources_released", False), ("after_task_failure", True)],
)
async def test_cancel_return_value_agrees_with_the_outcome(event: str, fail: bool) -> None:
    # Called from a sync hook of these events (no checkpoint follows), cancel() still
    # decides the outcome: it returns True and the tasklet ends cancelled.
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


# -- 4. "GPU" next to "gpu": refused before anything starts or is declared ----------------------
async def test_case_variant_in_a_batch_is_refused_before_anything_starts() -> None:
    # README: "The whole batch is checked before anything starts": spellings are
    # compared with the batch's own pending names too, not only with declared ones.
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
    assert dict(em.capacities) == {}  # nothing declared by a refused tasklet


# -- 5. run_many raises the task's own exception even when it refuses a note --------------------
async def test_run_many_raises_the_tasks_own_exception_even_if_it_refuses_notes() -> None:
    # README: "A task's own exception reaches the caller unchanged", also when its
    # __notes__ is not a list (add_note would raise TypeError).
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
    # status planning_failed, even when the value's repr raises (it is shown safely).
    em = an.ExecutionManager(plans=[_plan_with_bad_check()])
    with anyio.fail_after(20):
        with pytest.raises(an.StatePlanningError):
            await em.submit(an.Tasklet("p/work", required_initial_state=target))
        await em.aclose()
    frame = em.events.to_frame()
    assert frame[frame["event"] == "after_task_run"]["status"].tolist() == ["planning_failed"]
    assert_settled(em)


# -- 7. a caller's cancellation bounds after_task_run hooks by the grace -------------------------
@pytest.mark.parametrize("way", ["submit", "run_many"])
async def test_a_callers_timeout_is_not_held_up_by_a_slow_after_task_run_hook(way: str) -> None:
    # after_task_run hooks run shielded, but at most HOOK_GRACE_S past the caller's own
    # deadline: move_on_after(0.3) around submit or run_many never waits a 5 s hook out.
    em = an.ExecutionManager(max_concurrency=2)

    async def slow(ev: an.Event) -> None:
        await anyio.sleep(5)

    em.hooks.on("after_task_run", slow)
    t0 = time.monotonic()
    with anyio.move_on_after(0.3):
        if way == "submit":
            await em.submit(an.Tasklet(quick))
        else:
            await em.run_many([an.Tasklet(quick) for _ in range(3)])
    elapsed = time.monotonic() - t0
    with anyio.fail_after(30):
        await em.aclose()
    assert elapsed < 0.3 + an.HOOK_GRACE_S + 1.5, elapsed
    assert_settled(em)


# -- 8. aclose() from a task a hook started refuses instead of deadlocking --------------------------
async def test_aclose_from_a_task_started_inside_a_hook_does_not_deadlock() -> None:
    # README: aclose() "called from inside one of the manager's own hooks ... raises
    # ManagerUsageError at once (it would wait for its own tasklet)"; issue 12 edge 2:
    # "neither deadlocks ...": also from a child task of the hook, which the hook's task
    # group waits for (it would wait for itself).
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
    with anyio.fail_after(10):  # a deadlock fails here
        assert await em.submit(an.Tasklet(quick)) == 1
    with anyio.fail_after(10):
        await em.aclose()
    assert_settled(em)
