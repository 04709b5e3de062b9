"""ExecutionManager.run_many: a batch fed to the manager by a few workers, not a task each."""

from __future__ import annotations

import time
from collections import Counter

import anyio
import pytest

import aura_nb as an

pytestmark = pytest.mark.anyio


class Holders:
    """How many tasks hold each limit at once, seen from inside the tasks."""

    def __init__(self) -> None:
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    def enter(self, names: tuple[str, ...]) -> None:
        for name in names:
            self.now[name] += 1
            self.peak[name] = max(self.peak[name], self.now[name])

    def leave(self, names: tuple[str, ...]) -> None:
        for name in names:
            self.now[name] -= 1


def assert_idle(em: an.ExecutionManager) -> None:
    stats = em.statistics()
    assert stats.idle, stats
    assert all(lim.in_use == 0 and lim.waiting == 0 for lim in stats.limits), stats


async def test_results_come_back_in_batch_order_with_every_hook_and_event() -> None:
    async def square(x: int) -> int:
        if x % 3:
            await anyio.sleep(0)  # some suspend, some do not
        return x * x

    async with an.ExecutionManager(max_concurrency=4) as em:
        seen: Counter[str] = Counter()
        for hook in an.AURA_HOOKS:
            em.hooks.on(hook, lambda e: seen.update([e.event]))
        batch = [an.Tasklet(square, params={"x": i}, resource_tags=["gpu:2"]) for i in range(50)]
        assert await em.run_many(batch) == [i * i for i in range(50)]
        assert seen == {"before_task_run": 50, "after_task_success": 50, "after_task_run": 50}
        frame = em.events.to_frame()
        assert (frame["event"] == "tasklet_submitted").sum() == 50
        assert set(frame.groupby("tasklet_id", observed=True).size()) == {6}
        assert em.statistics().by_status["succeeded"] == 50
        assert_idle(em)


async def test_an_empty_batch_returns_an_empty_list() -> None:
    async with an.ExecutionManager() as em:
        assert await em.run_many([]) == []
        assert await em.run_many(iter(())) == []
        assert len(em.events) == 0


async def test_limits_hold_and_the_global_limit_is_used_fully() -> None:
    holders = Holders()
    caps = {"gpu": 2, "db": 3}

    async def body(names: tuple[str, ...]) -> None:
        holders.enter(names)
        await anyio.sleep(0.002)
        holders.leave(names)

    shapes = [(), ("gpu",), ("db",), ("gpu", "db")]
    batch = []
    for i in range(120):
        names = shapes[i % len(shapes)]
        batch.append(an.Tasklet(body, params={"names": ("global", *names)}, resource_tags=list(names)))
    async with an.ExecutionManager(max_concurrency=5, capacities=caps) as em:
        await em.run_many(batch)
        assert_idle(em)
    assert holders.peak["global"] == 5  # the batch kept every slot busy at some point
    assert holders.peak["gpu"] <= 2 and holders.peak["db"] <= 3
    assert all(v == 0 for v in holders.now.values())


async def test_a_tasklet_waiting_for_a_busy_resource_does_not_hold_up_the_rest() -> None:
    # gpu-first: 10 gpu tasklets (one GPU) ahead of 30 untagged ones, 4 slots. The
    # untagged ones must run beside the GPU queue, not after it (~10 x 20 ms in all).
    async def work() -> None:
        await anyio.sleep(0.02)

    batch = [an.Tasklet(work, resource_tags=["gpu:1"]) for _ in range(10)]
    batch += [an.Tasklet(work) for _ in range(30)]
    async with an.ExecutionManager(max_concurrency=4) as em:
        await em.run_many(batch)
        frame = em.events.to_frame()
    starts = frame[frame["event"] == "before_task_run"].sort_values("seq")
    order = ["gpu" if tags else "-" for tags in starts["resource_tags"]]
    # Beside the first gpu tasklet, the slots not reserved for the next one (the pool's
    # fairness rule) went to untagged tasklets at once: they did not wait behind the
    # GPU queue ahead of them, and kept running beside it.
    assert order[:3] == ["gpu", "-", "-"], order
    second_gpu = order.index("gpu", 1)
    assert order[:second_gpu].count("-") >= 2, order


async def test_failures_do_not_stop_the_batch_and_the_first_is_raised_at_the_end() -> None:
    async def maybe(i: int) -> int:
        await anyio.sleep(0)
        if i in (3, 7):
            raise ValueError(f"bad {i}")
        return i

    async with an.ExecutionManager(max_concurrency=2) as em:
        batch = [an.Tasklet(maybe, params={"i": i}) for i in range(10)]
        with pytest.raises(ValueError, match="bad 3") as info:
            await em.run_many(batch)
        note = "\n".join(info.value.__notes__)
        assert "position 3 of the batch of 10" in note and "1 more" in note and "return_exceptions=True" in note
        counts = em.statistics().by_status
        assert counts["succeeded"] == 8 and counts["failed"] == 2  # every tasklet ran to its end

        again = [an.Tasklet(maybe, params={"i": i}) for i in range(10)]
        out = await em.run_many(again, return_exceptions=True)
        assert [type(x).__name__ for x in out[2:5]] == ["int", "ValueError", "int"]
        assert str(out[7]) == "bad 7"
        assert_idle(em)


async def test_timeouts_fire_inside_a_batch() -> None:
    async def slow() -> None:
        await anyio.sleep(5)

    async def quick() -> str:
        return "ok"

    async with an.ExecutionManager() as em:
        batch = [an.Tasklet(slow, timeout=0.05), an.Tasklet(quick, timeout=0.05)]
        out = await em.run_many(batch, return_exceptions=True)
        assert isinstance(out[0], an.TaskletTimeoutError) and out[0].phase == "run"
        assert out[1] == "ok"
        assert em.statistics().by_status["timeout"] == 1
        assert_idle(em)


async def test_a_bad_tasklet_rejects_the_whole_batch_before_anything_starts() -> None:
    ran: list[int] = []

    async def body(i: int) -> None:
        ran.append(i)

    async with an.ExecutionManager() as em:
        good = [an.Tasklet(body, params={"i": i}, resource_tags=["gpu:2"]) for i in range(3)]
        cases = [
            (good + ["not a tasklet"], TypeError, "position 3"),
            (good + [an.Tasklet("nowhere/task")], an.TaskNotFoundError, "position 3"),
            (good + [an.Tasklet(body, params={"i": 9}, resource_tags=["gpu:4"])], an.ResourceTagError,
             "earlier tasklet of the same batch"),  # fmt: skip
            (good + [good[1]], an.TaskletError, "already in this batch"),
        ]
        for batch, error, text in cases:
            with pytest.raises(error) as info:
                await em.run_many(batch)
            message = str(info.value) + "\n".join(getattr(info.value, "__notes__", []))
            assert text in message, message
            assert "nothing was started" in message
        assert ran == [] and len(em.events) == 0 and em.capacities == {}
        with pytest.raises(TypeError, match="iterable of Tasklets"):
            await em.run_many(an.Tasklet(body, params={"i": 0}))  # type: ignore[arg-type]
        assert await em.run_many(good) == [None] * 3  # the good ones still run afterwards


async def test_cancelling_the_batch_cancels_running_tasklets_and_starts_no_more() -> None:
    started: list[int] = []

    async def slow(i: int) -> None:
        started.append(i)
        await anyio.sleep(10)

    async with an.ExecutionManager(max_concurrency=3) as em:
        batch = [an.Tasklet(slow, params={"i": i}, resource_tags=["gpu:1"] if i % 2 else []) for i in range(20)]
        with anyio.move_on_after(0.1) as scope:
            await em.run_many(batch)
        assert scope.cancelled_caught
        counts = em.statistics().by_status
        assert counts["cancelled"] >= len(started) and counts["succeeded"] == 0
        assert len(started) <= 3
        fed = em.events.to_frame()
        fed_ids = set(fed.loc[fed["event"] == "tasklet_submitted", "tasklet_id"])
        assert fed_ids < {t.id for t in batch}  # the rest were never submitted
        finished = set(fed.loc[fed["event"] == "after_task_run", "tasklet_id"])
        assert finished == fed_ids  # every fed tasklet reported its end
        assert_idle(em)


async def test_closing_the_manager_ends_the_rest_of_a_batch() -> None:
    async def slow() -> None:
        await anyio.sleep(0.05)

    em = an.ExecutionManager(max_concurrency=1)
    out: list[object] = []

    async def batch() -> None:
        out.extend(await em.run_many([an.Tasklet(slow) for _ in range(10)], return_exceptions=True))

    async with anyio.create_task_group() as tg:
        tg.start_soon(batch)
        await anyio.sleep(0.02)
        await em.aclose()
    assert len(out) == 10
    assert out[0] is None  # the running one finished
    assert all(isinstance(x, an.ManagerClosedError) for x in out[1:])
    assert_idle(em)
    with pytest.raises(an.ManagerClosedError):
        await em.run_many([an.Tasklet(slow)])


async def test_a_batch_that_never_suspends_still_lets_the_loop_run() -> None:
    async def noop() -> None:
        return None

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0)

    async with an.ExecutionManager(max_concurrency=1) as em:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await anyio.sleep(0)
            t0 = time.monotonic()
            await em.run_many([an.Tasklet(noop) for _ in range(20_000)])
            elapsed = time.monotonic() - t0
            tg.cancel_scope.cancel()
    # the worker yielded every couple of milliseconds: the other task kept running
    assert ticks >= min(5, elapsed / 0.01)
    assert ticks > 1


async def test_a_batch_plans_states_like_submit() -> None:
    from aura_nb.examples.game import GameDevice, make_game_plan

    device = GameDevice(delay=0.002)
    plan = make_game_plan(device)
    async with an.ExecutionManager(plans=[plan], capacities={"gpu": 1}) as em:
        batch = [
            an.Tasklet("game/daily_quests", params={"rounds": r}, required_initial_state="in_game_at_home",
                       resource_tags=["gpu"])  # fmt: skip
            for r in (1, 2)
        ]
        assert await em.run_many(batch) == [1, 2]
        assert_idle(em)
    # The first tasklet walked the path; the second found the game already there.
    assert device.log == ["do_login", "select_character_and_enter_game", "daily_quests(1)", "daily_quests(2)"]
    frame = em.events.to_frame()
    assert (frame["event"] == "state_path_planned").sum() == 1
    assert (frame["event"] == "state_planning_finished").sum() == 2


async def test_a_batch_of_tasklets_that_never_suspend_stops_at_its_next_checkpoint() -> None:
    ran = 0

    async def noop() -> None:
        nonlocal ran
        ran += 1

    async with an.ExecutionManager(max_concurrency=8) as em:
        with anyio.CancelScope() as scope:

            async def stop_the_batch() -> None:
                scope.cancel()

            batch = [an.Tasklet(noop) for _ in range(50_000)]
            batch[100] = an.Tasklet(stop_the_batch)
            await em.run_many(batch)
        assert scope.cancelled_caught
        # The cancellation reached the batch at its next checkpoint (a few ms of no-op
        # tasklets at most), then nothing more was fed; everything fed has ended.
        assert 100 <= ran < 40_000
        counts = em.statistics().by_status
        assert counts["succeeded"] == ran + 1 and counts["cancelled"] <= 1
        assert len(em.events.to_frame().query("event == 'tasklet_submitted'")) == ran + 1 + counts["cancelled"]
        assert_idle(em)


async def test_a_generator_that_raises_midway_starts_nothing() -> None:
    async def noop() -> None:
        return None

    def tasklets():  # type: ignore[no-untyped-def]
        yield an.Tasklet(noop)
        raise RuntimeError("the source broke")

    async with an.ExecutionManager() as em:
        with pytest.raises(RuntimeError, match="the source broke"):
            await em.run_many(tasklets())
        assert len(em.events) == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_batches_keep_every_limit_and_account_for_every_tasklet(seed: int) -> None:
    import random

    rng = random.Random(seed)
    holders = Holders()
    caps = {"a": 1, "b": 2, "c": 3}

    async def body(names: tuple[str, ...], nap: float, fail: bool) -> str:
        holders.enter(names)
        try:
            if nap:
                await anyio.sleep(nap)
            if fail:
                raise ValueError("planned failure")
            return "ok"
        finally:
            holders.leave(names)

    batch = []
    for _ in range(150):
        names = tuple(sorted(rng.sample(sorted(caps), rng.randint(0, 2))))
        nap = rng.choice([0, 0, 0.001, 0.003, 0.2])
        params = {"names": ("global", *names), "nap": nap, "fail": rng.random() < 0.1}
        batch.append(an.Tasklet(body, params=params, resource_tags=list(names), timeout=0.05))
    async with an.ExecutionManager(max_concurrency=4, capacities=caps) as em:
        out = await em.run_many(batch, return_exceptions=True)
        assert_idle(em)
        counts = em.statistics().by_status
    assert holders.peak["global"] <= 4 and all(holders.peak[k] <= v for k, v in caps.items())
    assert all(v == 0 for v in holders.now.values())
    kinds = Counter(type(x).__name__ for x in out)
    assert kinds["str"] == counts["succeeded"]
    assert kinds["ValueError"] == counts["failed"]
    assert kinds["TaskletTimeoutError"] == counts["timeout"] > 0
    assert sum(kinds.values()) == len(batch) == sum(counts.values())


async def test_a_stray_cancellation_is_that_tasklets_outcome_not_the_batchs(anyio_backend: str) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("a stray CancelledError (a cancelled future) is an asyncio thing")
    import asyncio

    async def stray() -> None:
        future = asyncio.get_running_loop().create_future()
        future.cancel()  # someone else cancelled what this tasklet awaits
        await future

    async def job(i: int) -> int:
        await anyio.sleep(0.001)
        return i

    async with an.ExecutionManager(max_concurrency=2) as em:
        batch = [an.Tasklet(job, params={"i": i}) for i in range(8)]
        batch[1] = an.Tasklet(stray)
        out = await em.run_many(batch, return_exceptions=True)
        assert isinstance(out[1], an.TaskletCancelledError)
        assert [x for k, x in enumerate(out) if k != 1] == [0, 2, 3, 4, 5, 6, 7]  # the rest all ran
        with pytest.raises(an.TaskletCancelledError):
            await em.run_many([an.Tasklet(stray), an.Tasklet(job, params={"i": 1})])
        assert em.statistics().by_status["cancelled"] == 2
        assert_idle(em)


async def test_a_base_exception_from_a_tasklet_comes_out_as_it_is() -> None:
    class Stop(BaseException):
        pass

    async def stop() -> None:
        await anyio.sleep(0.01)
        raise Stop("stop everything")

    async def slow() -> None:
        await anyio.sleep(5)

    async with an.ExecutionManager(max_concurrency=4) as em:
        with pytest.raises(Stop, match="stop everything"):  # not wrapped in a BaseExceptionGroup
            await em.run_many([an.Tasklet(slow), an.Tasklet(stop), an.Tasklet(slow)])
        assert_idle(em)  # the others were cancelled and released


async def test_slots_freed_by_others_are_used_by_a_running_batch() -> None:
    holders = Holders()
    outside_done = anyio.Event()

    async def outside() -> None:
        await outside_done.wait()

    async def job() -> None:
        holders.enter(("batch",))
        await anyio.sleep(0.2)
        holders.leave(("batch",))

    async with an.ExecutionManager(max_concurrency=4) as em:
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(em.submit, an.Tasklet(outside))
            await anyio.sleep(0.01)  # the outside tasklets hold 3 of the 4 slots

            async def release_soon() -> None:
                await anyio.sleep(0.05)
                outside_done.set()

            tg.start_soon(release_soon)
            await em.run_many([an.Tasklet(job) for _ in range(4)])
    assert holders.peak["batch"] == 4  # not one at a time after the slots came back


async def test_a_bare_tag_may_rely_on_a_capacity_written_earlier_in_the_batch() -> None:
    async def job(i: int) -> int:
        return i

    async with an.ExecutionManager() as em:
        batch = [an.Tasklet(job, params={"i": 0}, resource_tags=["gpu:1"]),
                 an.Tasklet(job, params={"i": 1}, resource_tags=["gpu"])]  # fmt: skip
        assert await em.run_many(batch) == [0, 1]
        assert em.capacities == {"gpu": 1}
    async with an.ExecutionManager() as em:
        # rejected batch: the bare tag's resource is still undeclared afterwards
        bad = [an.Tasklet(job, params={"i": 0}, resource_tags=["tpu:2"]),
               an.Tasklet(job, params={"i": 1}, resource_tags=["tpu"]),
               an.Tasklet("nowhere/task")]  # fmt: skip
        with pytest.raises(an.TaskNotFoundError):
            await em.run_many(bad)
        assert em.capacities == {}
        with pytest.raises(an.ResourceTagError, match="no capacity is declared"):
            await em.submit(an.Tasklet(job, params={"i": 1}, resource_tags=["tpu"]))
