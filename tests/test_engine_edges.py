"""Issue 12, part 3: the sixteen edges a hostile review broke, one group of tests each.

Every test asserts what a user sees (a return value, an exception, a status, an event
row, a token count), never how the engine gets there. Timing bounds are generous: the
bug they catch takes 3 s (or 10 s, or forever), the bound is 1.5 s. Hangs become
failures through ``anyio.fail_after`` and, for hangs that no cancellation reaches
(shielded clean-up, a sync infinite loop), through pytest-timeout.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import pathlib
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any
from unittest.mock import Mock

import anyio
import anyio.to_thread
import pytest

import aura_nb as an

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


# -- helpers ------------------------------------------------------------------------------


def assert_idle(em: an.ExecutionManager) -> None:
    stats = em.statistics()
    assert stats.idle, stats


def events_named(em: an.ExecutionManager, name: str, tasklet: an.Tasklet | None = None) -> list[an.Event]:
    return [ev for ev in em.events if ev.event == name and (tasklet is None or ev.tasklet_id == tasklet.id)]


def terminal_status(em: an.ExecutionManager, tasklet: an.Tasklet) -> str | None:
    (after,) = events_named(em, "after_task_run", tasklet)
    return after.status


async def close(em: an.ExecutionManager) -> None:
    with anyio.fail_after(10):
        await em.aclose()


class Unprintable(Exception):
    """An exception whose message cannot be formatted."""

    def __str__(self) -> str:
        raise ValueError("no")


@contextlib.contextmanager
def two_worker_threads() -> Iterator[None]:
    """The default thread pool shrunk to 2 (restored afterwards); needs a running loop."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    old = limiter.total_tokens
    limiter.total_tokens = 2
    try:
        yield
    finally:
        limiter.total_tokens = old


async def wait_until(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    with anyio.fail_after(limit):
        while not predicate():
            await anyio.sleep(0.01)


# -- 1. an exception whose __str__ raises -----------------------------------------------


async def test_a_task_exception_that_cannot_be_formatted_reaches_the_caller_and_returns_every_token() -> None:
    exc = Unprintable()

    async def body() -> None:
        raise exc

    em = an.ExecutionManager(capacities={"gpu": 1})
    t = an.Tasklet(body, resource_tags=["gpu"])
    with anyio.fail_after(5):
        with pytest.raises(Unprintable) as info:
            await em.submit(t)
    assert info.value is exc
    assert_idle(em)
    assert em.statistics().by_status["failed"] == 1
    (failure,) = events_named(em, "after_task_failure", t)
    assert failure.error_type == "Unprintable"
    assert "could not be formatted" in failure.error_message
    assert terminal_status(em, t) == "failed"
    await close(em)


async def test_a_hook_exception_that_cannot_be_formatted_is_a_hook_error_and_nothing_else() -> None:
    def hook(ev: an.Event) -> None:
        raise Unprintable()

    async def body() -> str:
        return "ok"

    em = an.ExecutionManager()
    em.hooks.on("before_task_run", hook)
    t = an.Tasklet(body)
    with anyio.fail_after(5):
        assert await em.submit(t) == "ok"
    assert_idle(em)
    assert em.statistics().by_status["succeeded"] == 1
    (err,) = events_named(em, "hook_error", t)
    assert err.error_type == "Unprintable"
    assert "could not be formatted" in err.error_message
    assert terminal_status(em, t) == "succeeded"
    await close(em)


# -- 2. aclose() from inside a hook -------------------------------------------------------


async def test_aclose_from_inside_a_hook_raises_manager_usage_error_at_once() -> None:
    caught: list[BaseException] = []

    async def body() -> int:
        return 5

    em = an.ExecutionManager()

    async def hook(ev: an.Event) -> None:
        try:
            await em.aclose()
        except an.ManagerUsageError as exc:
            caught.append(exc)

    em.hooks.on("after_task_success", hook)
    with anyio.fail_after(5):
        assert await em.submit(an.Tasklet(body)) == 5
        assert len(caught) == 1 and isinstance(caught[0], an.ManagerUsageError)
        assert_idle(em)
        await em.aclose()
    assert em.closed


# -- 3. hooks can be cut short by cancellation --------------------------------------------

SLOW_HOOKS = ["after_task_failure", "resources_released"]


def slow_hook(seconds: float = 3.0) -> Callable[[an.Event], Any]:
    async def hook(ev: an.Event) -> None:
        await anyio.sleep(seconds)

    return hook


@pytest.mark.parametrize("hook_name", SLOW_HOOKS)
async def test_move_on_after_is_not_held_up_by_a_slow_hook(hook_name: str) -> None:
    em = an.ExecutionManager()
    em.hooks.on(hook_name, slow_hook())
    t = an.Tasklet(anyio.sleep_forever)
    t0 = time.monotonic()
    with anyio.move_on_after(0.3):
        await em.submit(t)
    assert time.monotonic() - t0 < 1.5
    assert_idle(em)
    assert terminal_status(em, t) == "cancelled"
    await close(em)


@pytest.mark.parametrize("hook_name", SLOW_HOOKS)
async def test_handle_cancel_is_not_held_up_by_a_slow_hook(hook_name: str) -> None:
    started = anyio.Event()

    async def body() -> None:
        started.set()
        await anyio.sleep_forever()

    with anyio.fail_after(20):
        async with an.ExecutionManager() as em:
            em.hooks.on(hook_name, slow_hook())
            t = an.Tasklet(body)
            handle = em.start(t)
            await started.wait()
            t0 = time.monotonic()
            assert handle.cancel()
            with pytest.raises(an.TaskletCancelledError):
                await handle
            assert time.monotonic() - t0 < 1.5
            assert_idle(em)
    assert terminal_status(em, t) == "cancelled"


@pytest.mark.parametrize("hook_name", SLOW_HOOKS)
async def test_aclose_cancel_running_is_not_held_up_by_a_slow_hook(hook_name: str) -> None:
    started = anyio.Event()

    async def body() -> None:
        started.set()
        await anyio.sleep_forever()

    with anyio.fail_after(20):
        async with an.ExecutionManager() as em:
            em.hooks.on(hook_name, slow_hook())
            t = an.Tasklet(body)
            handle = em.start(t)
            await started.wait()
            t0 = time.monotonic()
            await em.aclose(cancel_running=True)
            assert time.monotonic() - t0 < 1.5
            assert_idle(em)
            assert handle.cancelled()
    assert terminal_status(em, t) == "cancelled"


def test_the_after_task_run_grace_is_a_documented_constant() -> None:
    assert an.HOOK_GRACE_S == 1.0


async def test_a_short_after_task_run_hook_completes_for_a_cancelled_tasklet() -> None:
    finished: list[str | None] = []

    async def after(ev: an.Event) -> None:
        await anyio.sleep(0.05)
        finished.append(ev.status)

    em = an.ExecutionManager()
    em.hooks.on("after_task_run", after)
    with anyio.fail_after(10):
        with anyio.move_on_after(0.3):
            await em.submit(an.Tasklet(anyio.sleep_forever))
    assert finished == ["cancelled"]
    assert_idle(em)
    await close(em)


async def test_a_long_after_task_run_hook_is_cut_after_the_grace() -> None:
    em = an.ExecutionManager()
    em.hooks.on("after_task_run", slow_hook(3.0))
    t = an.Tasklet(anyio.sleep_forever)
    t0 = time.monotonic()
    with anyio.move_on_after(0.3):
        await em.submit(t)
    assert time.monotonic() - t0 < 2.5
    assert_idle(em)
    assert terminal_status(em, t) == "cancelled"
    await close(em)


# -- 4. a sync tasklet waiting for a worker thread -----------------------------------------


def blocking(gate: threading.Event, entered: list[int]) -> None:
    entered.append(1)
    gate.wait(10)


@contextlib.asynccontextmanager
async def thread_pool_used_up(em: an.ExecutionManager) -> Any:
    """Two sync tasklets hold both worker threads until the block ends."""
    gates = [threading.Event(), threading.Event()]
    entered: list[int] = []
    with two_worker_threads():
        blockers = [em.start(an.Tasklet(blocking, params={"gate": g, "entered": entered})) for g in gates]
        try:
            await wait_until(lambda: len(entered) == 2)
            yield
        finally:
            for g in gates:
                g.set()
        with anyio.fail_after(10):
            for h in blockers:
                await h


async def test_cancelling_a_sync_tasklet_waiting_for_a_thread_returns_at_once_and_it_never_runs() -> None:
    ran: list[int] = []

    def third() -> None:
        ran.append(1)

    async with an.ExecutionManager() as em:
        async with thread_pool_used_up(em):
            handle = em.start(an.Tasklet(third))
            await anyio.sleep(0.2)  # it waits for a worker thread now
            t0 = time.monotonic()
            assert handle.cancel()
            with anyio.move_on_after(3):
                with pytest.raises(an.TaskletCancelledError):
                    await handle
            assert handle.done() and time.monotonic() - t0 < 1.5
        await anyio.sleep(0.3)  # the threads are free again: a leftover call would run now
        assert ran == []
        assert handle.status == "cancelled"
        assert_idle(em)


async def test_move_on_after_around_a_sync_tasklet_waiting_for_a_thread_returns_at_once_and_it_never_runs() -> None:
    ran: list[int] = []

    def third() -> None:
        ran.append(1)

    async with an.ExecutionManager() as em:
        async with thread_pool_used_up(em):
            t = an.Tasklet(third)
            t0 = time.monotonic()
            with anyio.move_on_after(0.3):
                await em.submit(t)
            assert time.monotonic() - t0 < 1.5
        await anyio.sleep(0.3)
        assert ran == []
        assert terminal_status(em, t) == "cancelled"
        assert_idle(em)


async def test_a_planning_timeout_while_a_sync_transition_waits_for_a_thread_returns_at_once_and_it_never_runs() -> (
    None
):
    moved: list[int] = []
    where = {"at": "a"}
    plan = an.Plan("p")

    async def at_a() -> bool:
        return where["at"] == "a"

    async def at_b() -> bool:
        return where["at"] == "b"

    def go() -> None:
        moved.append(1)
        where["at"] = "b"

    async def work() -> str:
        return "worked"

    plan.add_task(work)
    plan.add_state("a", check=at_a)
    plan.add_state("b", check=at_b)
    plan.add_transition("a", "b", task=go, cost=1)

    async with an.ExecutionManager(plans=[plan]) as em:
        async with thread_pool_used_up(em):
            t0 = time.monotonic()
            with pytest.raises(an.TaskletTimeoutError) as info:
                await em.submit(an.Tasklet("p/work", required_initial_state="b", planning_timeout=0.3))
            assert time.monotonic() - t0 < 1.5
            assert info.value.phase == "planning"
        await anyio.sleep(0.3)
        assert moved == []
        assert_idle(em)


# -- 5. unittest.mock.Mock as a hook or a task (an endless unwrap loop would fail through pytest-timeout) --


@pytest.mark.timeout(8)
async def test_a_mock_as_a_hook_is_called_once_with_the_event() -> None:
    hook = Mock()

    async def body() -> int:
        return 1

    with anyio.fail_after(5):
        em = an.ExecutionManager()
        em.hooks.on("after_task_run", hook)
        assert await em.submit(an.Tasklet(body)) == 1
        await em.aclose()
    hook.assert_called_once()
    assert isinstance(hook.call_args.args[0], an.Event)


@pytest.mark.timeout(8)
async def test_a_mock_as_a_task_returns_its_value() -> None:
    with anyio.fail_after(5):
        em = an.ExecutionManager()
        assert await em.submit(an.Tasklet(Mock(return_value=3))) == 3
        await em.aclose()


# -- 6. awaitables are awaited ------------------------------------------------------------


def passthrough(f: Callable[..., Any]) -> Callable[..., Any]:
    """An ordinary decorator: a sync wrapper that returns what f returns."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return f(*args, **kwargs)

    return wrapper


async def seven() -> int:
    await anyio.sleep(0)
    return 7


class ReturnsACoroutine:
    def __call__(self) -> Any:
        return seven()


TASK_SHAPES: dict[str, Callable[[], Any]] = {
    "functools_wraps_decorator": passthrough(seven),
    "lambda": lambda: seven(),
    "sync_callable_returning_a_coroutine": ReturnsACoroutine(),
}


@pytest.mark.parametrize("shape", list(TASK_SHAPES))
async def test_a_task_returning_a_coroutine_is_awaited(shape: str) -> None:
    em = an.ExecutionManager()
    t = an.Tasklet(TASK_SHAPES[shape])
    with anyio.fail_after(5):
        result = await em.submit(t)
    assert not inspect.isawaitable(result)
    assert result == 7
    assert terminal_status(em, t) == "succeeded"
    await close(em)


def hook_shapes(seen: list[str]) -> dict[str, Callable[[an.Event], Any]]:
    async def record(ev: an.Event) -> None:
        await anyio.sleep(0)
        seen.append(ev.event)

    class Hook:
        def __call__(self, ev: an.Event) -> Any:
            return record(ev)

    return {
        "functools_wraps_decorator": passthrough(record),
        "lambda": lambda ev: record(ev),
        "sync_callable_returning_a_coroutine": Hook(),
    }


@pytest.mark.parametrize("shape", list(TASK_SHAPES))
@pytest.mark.parametrize("event", ["before_task_run", "after_task_success", "after_task_run"])
async def test_a_hook_returning_a_coroutine_is_awaited(shape: str, event: str) -> None:
    seen: list[str] = []

    async def body() -> int:
        return 1

    em = an.ExecutionManager()
    em.hooks.on(event, hook_shapes(seen)[shape])
    with anyio.fail_after(5):
        assert await em.submit(an.Tasklet(body)) == 1
    assert seen == [event]
    assert events_named(em, "hook_error") == []
    await close(em)


# -- 7. hooks registered or removed while a tasklet runs ----------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_hook_registered_while_a_tasklet_runs_is_called_for_the_later_events(kind: str) -> None:
    go, running = anyio.Event(), anyio.Event()
    seen: list[str] = []

    async def body() -> int:
        running.set()
        await go.wait()
        return 1

    def sync_hook(ev: an.Event) -> None:
        seen.append(ev.event)

    async def async_hook(ev: an.Event) -> None:
        await anyio.sleep(0)
        seen.append(ev.event)

    hook = sync_hook if kind == "sync" else async_hook
    with anyio.fail_after(10):
        async with an.ExecutionManager() as em:
            handle = em.start(an.Tasklet(body))
            await running.wait()
            em.hooks.on("after_task_success", hook)
            em.hooks.on("after_task_run", hook)
            go.set()
            assert await handle == 1
    assert seen == ["after_task_success", "after_task_run"]


async def test_a_hook_removed_while_a_tasklet_runs_is_no_longer_called() -> None:
    go, running = anyio.Event(), anyio.Event()
    seen: list[str] = []

    async def body() -> int:
        running.set()
        await go.wait()
        return 1

    async def hook(ev: an.Event) -> None:
        await anyio.sleep(0)
        seen.append(ev.event)

    with anyio.fail_after(10):
        async with an.ExecutionManager() as em:
            em.hooks.on("before_task_run", hook)
            em.hooks.on("after_task_success", hook)
            handle = em.start(an.Tasklet(body))
            await running.wait()
            em.hooks.off("after_task_success", hook)
            go.set()
            assert await handle == 1
    assert seen == ["before_task_run"]


# -- 8. caches do not keep payloads alive -------------------------------------------------


class Chunk:
    __slots__ = ("data", "__weakref__")

    def __init__(self) -> None:
        self.data = bytearray(1_000_000)


async def size_of(chunk: Chunk) -> int:
    return len(chunk.data)


async def test_finished_tasklets_payloads_are_not_kept_alive() -> None:
    refs: list[weakref.ref[Chunk]] = []
    async with an.ExecutionManager() as em:
        for _ in range(200):
            chunk = Chunk()
            refs.append(weakref.ref(chunk))
            assert await em.submit(an.Tasklet(functools.partial(size_of, chunk))) == 1_000_000
            del chunk
        gc.collect()
        alive = sum(ref() is not None for ref in refs)
        assert alive <= 2, f"{alive} of 200 payloads are still alive"


# -- 9. a hook may start a follow-up tasklet while the manager winds down ------------------


def pipeline(em: an.ExecutionManager) -> list[an.Tasklet]:
    async def step(n: int) -> int:
        await anyio.sleep(0.02)
        return n

    steps = [an.Tasklet(step, params={"n": i}) for i in range(3)]
    follow = {steps[0].id: steps[1], steps[1].id: steps[2]}

    def chain(ev: an.Event) -> None:
        nxt = follow.get(ev.tasklet_id)
        if nxt is not None:
            em.start(nxt)

    em.hooks.on("after_task_success", chain)
    return steps


async def test_leaving_async_with_waits_for_a_pipeline_started_from_hooks() -> None:
    with anyio.fail_after(10):
        async with an.ExecutionManager() as em:
            steps = pipeline(em)
            em.start(steps[0])
    assert em.statistics().by_status["succeeded"] == 3
    assert events_named(em, "hook_error") == []
    assert [terminal_status(em, t) for t in steps] == ["succeeded"] * 3


async def test_aclose_drain_waits_for_a_pipeline_started_from_hooks() -> None:
    with anyio.fail_after(10):
        async with an.ExecutionManager() as em:
            steps = pipeline(em)
            em.start(steps[0])
            await em.aclose(drain=True)
            assert em.statistics().by_status["succeeded"] == 3
    assert events_named(em, "hook_error") == []
    assert [terminal_status(em, t) for t in steps] == ["succeeded"] * 3


# -- 10. a handle tells one truth ---------------------------------------------------------


async def test_a_cancel_during_resources_released_makes_every_view_say_cancelled() -> None:
    in_hook = anyio.Event()

    async def body() -> str:
        return "done"

    async def released(ev: an.Event) -> None:
        in_hook.set()
        await anyio.sleep(5)

    with anyio.fail_after(10):
        async with an.ExecutionManager() as em:
            em.hooks.on("resources_released", released)
            t = an.Tasklet(body)
            handle = em.start(t)
            await in_hook.wait()
            assert handle.cancel() is True
            with pytest.raises(an.TaskletCancelledError):
                await handle
            assert handle.cancelled() is True
            assert handle.status == "cancelled"
            assert_idle(em)
    assert terminal_status(em, t) == "cancelled"
    by_status = em.statistics().by_status
    assert by_status["cancelled"] == 1 and by_status["succeeded"] == 0


async def test_a_cancel_during_after_task_run_of_a_success_is_refused_and_every_view_says_succeeded() -> None:
    in_hook = anyio.Event()

    async def body() -> str:
        return "done"

    async def after(ev: an.Event) -> None:
        in_hook.set()
        await anyio.sleep(0.1)

    with anyio.fail_after(10):
        async with an.ExecutionManager() as em:
            em.hooks.on("after_task_run", after)
            t = an.Tasklet(body)
            handle = em.start(t)
            await in_hook.wait()
            assert handle.cancel() is False
            assert await handle == "done"
            assert handle.cancelled() is False
            assert handle.status == "succeeded"
    assert terminal_status(em, t) == "succeeded"
    assert em.statistics().by_status["succeeded"] == 1


# -- 11. why() --------------------------------------------------------------------------


async def test_why_of_a_batch_tasklet_not_fed_yet_says_batched() -> None:
    gate, started = anyio.Event(), anyio.Event()

    async def first() -> None:
        started.set()
        await gate.wait()

    async def other() -> int:
        return 1

    batch = [an.Tasklet(first)] + [an.Tasklet(other) for _ in range(5)]
    with anyio.fail_after(10):
        async with an.ExecutionManager(max_concurrency=1) as em:
            async with anyio.create_task_group() as tg:
                tg.start_soon(em.run_many, batch)
                await started.wait()
                report = em.why(batch[-1])
                gate.set()
    assert report.status == "batched"
    assert "run_many" in str(report)


async def test_why_of_a_tasklet_never_submitted_raises_task_not_found() -> None:
    async def f() -> None:
        pass

    async with an.ExecutionManager() as em:
        with pytest.raises(an.TaskNotFoundError):
            em.why(an.Tasklet(f))


async def test_why_of_a_finished_tasklet_gives_its_terminal_status() -> None:
    async def f() -> int:
        return 1

    async def boom() -> None:
        raise RuntimeError("x")

    async with an.ExecutionManager() as em:
        ok, bad = em.start(an.Tasklet(f)), em.start(an.Tasklet(boom))
        assert await ok == 1
        with pytest.raises(RuntimeError):
            await bad
        assert em.why(ok).status == "succeeded"
        assert em.why(bad).status == "failed"



async def test_why_of_a_tasklet_admitted_but_not_yet_running_does_not_say_it_is_not_waiting() -> None:
    async def f() -> None:
        pass

    async with an.ExecutionManager() as em:
        handle = em.start(an.Tasklet(f, name="next"))  # its tokens are taken; its task has not run yet
        report = em.why(handle)
        assert report.status == "waiting" and report.position is None
        assert "is not in the queue: its tokens were granted" in str(report)
        assert "not waiting: it is waiting" not in str(report)
        await handle

# -- 12. "GPU:1" next to "gpu:1" --------------------------------------------------------


def names_both_spellings(message: str) -> bool:
    return re.search(r"\bGPU\b", message) is not None and re.search(r"\bgpu\b", message) is not None


async def test_a_second_spelling_of_a_declared_resource_is_refused_naming_both() -> None:
    async def f() -> None:
        pass

    async with an.ExecutionManager(capacities={"gpu": 1}) as em:
        with pytest.raises(an.ResourceTagError) as info:
            await em.submit(an.Tasklet(f, resource_tags=["GPU:1"]))
        assert names_both_spellings(str(info.value)), str(info.value)
        assert dict(em.capacities) == {"gpu": 1}
        assert events_named(em, "tasklet_submitted") == []
        assert_idle(em)


async def test_a_second_spelling_of_a_tagged_resource_is_refused_naming_both() -> None:
    async def f() -> None:
        pass

    async with an.ExecutionManager() as em:
        await em.submit(an.Tasklet(f, resource_tags=["gpu:1"]))
        with pytest.raises(an.ResourceTagError) as info:
            await em.submit(an.Tasklet(f, resource_tags=["GPU:1"]))
        assert names_both_spellings(str(info.value)), str(info.value)
        assert dict(em.capacities) == {"gpu": 1}
        assert len(events_named(em, "tasklet_submitted")) == 1
        assert_idle(em)


# -- 13. a cost sum that overflows; YAML "1e3" --------------------------------------------


async def test_a_path_whose_cost_overflows_is_a_planning_failure() -> None:
    plan = an.Plan("p")

    async def in_a() -> bool:
        return True

    async def in_b() -> bool:
        return False

    async def in_c() -> bool:
        return False

    def go_ab() -> None:
        pass

    def go_bc() -> None:
        pass

    async def work() -> int:
        return 1

    plan.add_task(work)
    plan.add_state("a", check=in_a)
    plan.add_state("b", check=in_b)
    plan.add_state("c", check=in_c)
    plan.add_transition("a", "b", task=go_ab, cost=1e308)
    plan.add_transition("b", "c", task=go_bc, cost=1e308)
    em = an.ExecutionManager(plans=[plan])
    t = an.Tasklet("p/work", required_initial_state="c")
    with anyio.fail_after(5):
        with pytest.raises(an.StatePlanningError):
            await em.submit(t)
    assert terminal_status(em, t) == "planning_failed"
    assert em.statistics().by_status["planning_failed"] == 1
    assert_idle(em)
    await close(em)


def test_a_yaml_cost_written_1e3_is_read_as_1000(tmp_path: pathlib.Path) -> None:
    plan = an.Plan("game")
    for name in ("check_logged_out", "check_logged_in", "do_login"):
        plan.add_task(lambda: True, name=name)
    path = tmp_path / "states_map.yaml"
    path.write_text(
        "states:\n"
        "  logged_out: {check_task: check_logged_out}\n"
        "  logged_in:  {check_task: check_logged_in}\n"
        "transitions:\n"
        "  - {from: logged_out, to: logged_in, transition_task: do_login, cost: 1e3}\n",
        encoding="utf-8",
    )
    plan.load_states_map(path)
    (transition,) = plan.transitions
    assert transition.cost == 1000.0
    assert isinstance(transition.cost, float)


# -- 14. the timeout message of a body that never started -----------------------------------


class NeverStarts:
    """An executor that never gets round to running anything (no worker has the resource)."""

    async def run(self, call: an.TaskCall) -> Any:
        await anyio.sleep_forever()


def sync_body() -> int:
    return 1


async def async_body() -> int:
    return 1


@pytest.mark.parametrize("body", [sync_body, async_body], ids=["sync", "async"])
async def test_the_timeout_of_a_body_that_never_started_does_not_say_it_ran(body: Callable[[], Any]) -> None:
    em = an.ExecutionManager(executor=NeverStarts())
    t = an.Tasklet(body, timeout=0.2)
    with anyio.fail_after(5):
        with pytest.raises(an.TaskletTimeoutError) as info:
            await em.submit(t)
    assert "ran to its end" not in str(info.value)
    assert info.value.phase == "run"
    assert terminal_status(em, t) == "timeout"
    assert_idle(em)
    await close(em)


# -- 15. tasklet ids -------------------------------------------------------------------


def test_tasklet_ids_carry_a_48_bit_session_prefix() -> None:
    a, b = an.Tasklet(sync_body), an.Tasklet(sync_body)
    for t in (a, b):
        assert re.fullmatch(r"[0-9a-f]{12}-\d+", t.id), t.id
    assert a.id != b.id
    assert a.id.split("-")[0] == b.id.split("-")[0]


# -- 16. a failed constructor leaves nothing behind -----------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "kind"),
    [
        ({"max_concurrency": 0}, ValueError),
        ({"plans": 42}, TypeError),
        ({"executor": object()}, TypeError),
        ({"plans": [42]}, TypeError),
    ],
    ids=["max_concurrency=0", "plans=42", "executor=object()", "plans=[42]"],
)
async def test_a_bad_constructor_argument_opens_no_log_and_leaves_nothing_behind(
    tmp_path: pathlib.Path, kwargs: dict[str, Any], kind: type[Exception]
) -> None:
    path = tmp_path / "x.sqlite"
    threads = threading.active_count()
    with pytest.raises(an.AuraError) as info:
        an.ExecutionManager(event_log=path, **kwargs)
    assert isinstance(info.value, kind)
    assert not isinstance(info.value, an.ResourceTagError)
    assert not path.exists()
    assert not pathlib.Path(str(path) + ".lock").exists()
    assert threading.active_count() == threads
    # and no lock is held in this process either: a new manager can write the file
    em = an.ExecutionManager(event_log=path)
    await close(em)
