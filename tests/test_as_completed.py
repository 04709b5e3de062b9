"""em.as_completed(tasklets): outcomes as they finish, from the batch path, cancellable."""

from __future__ import annotations

import anyio
import pytest

import aura_nb as an

pytestmark = pytest.mark.anyio

LIMIT = 30


async def sleeper(t: float, fail: bool = False) -> float:
    await anyio.sleep(t)
    if fail:
        raise ValueError(f"failed after {t}")
    return t


async def test_outcomes_come_in_the_order_they_finish_with_their_index_and_id() -> None:
    delays = [0.3, 0.1, 0.2, 0.0]
    tasklets = [an.Tasklet(sleeper, params={"t": d, "fail": i == 2}) for i, d in enumerate(delays)]
    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(max_concurrency=4) as em:
            seen = [o async for o in em.as_completed(tasklets)]
    assert [o.index for o in seen] == [3, 1, 2, 0]
    assert [o.id for o in seen] == [tasklets[i].id for i in (3, 1, 2, 0)]
    assert [o.ok for o in seen] == [True, True, False, True]
    assert isinstance(seen[2].error, ValueError) and seen[2].result is None
    assert seen[0].unwrap() == 0.0
    with pytest.raises(ValueError):
        seen[2].unwrap()
    assert sorted(em.events.runs()["status"].astype(str)) == ["failed", "succeeded", "succeeded", "succeeded"]


async def test_a_large_batch_costs_no_task_per_tasklet() -> None:
    async def noop(i: int) -> int:
        return i

    n = 3000
    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(max_concurrency=8) as em:
            got = sorted([o.result async for o in em.as_completed(an.Tasklet(noop, params={"i": i}) for i in range(n))])
    assert got == list(range(n))


async def test_breaking_out_cancels_the_rest_cleanly() -> None:
    tasklets = [an.Tasklet(sleeper, params={"t": 0.05 if i == 0 else 10.0}, resource_tags=["api:3"]) for i in range(10)]
    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(max_concurrency=4) as em:
            async for outcome in em.as_completed(tasklets):
                assert outcome.index == 0
                break
            # The dropped iterator cancelled its batch: wait until everything was released.
            while not em.statistics().idle:
                await anyio.sleep(0.01)
    runs = em.events.runs()
    statuses = runs["status"].astype(str).tolist()
    assert statuses[0] == "succeeded"
    assert set(statuses[1:]) == {"cancelled"}  # the running ones; unfed tasklets never started
    # Tasklet 0, the two others that held api:3, the one admitted when 0 ended and the one
    # fed to wait behind it, at most; the other five were never submitted.
    assert len(statuses) <= 5
    assert em.events.count("resources_acquired") == em.events.count("resources_released")


async def test_aclose_and_async_with_wait_until_the_rest_has_ended() -> None:
    tasklets = [an.Tasklet(sleeper, params={"t": 0.01 if i == 0 else 10.0}) for i in range(5)]
    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(max_concurrency=5) as em:
            async with em.as_completed(tasklets) as outcomes:
                async for outcome in outcomes:
                    break
            assert em.statistics().idle
            # An iterator never iterated submits nothing.
            await em.as_completed([an.Tasklet(sleeper, params={"t": 1.0})]).aclose()
    assert em.events.runs()["status"].astype(str).tolist().count("cancelled") == 4
    assert len(em.events.runs()) == 5


async def test_a_bad_batch_is_refused_before_anything_runs() -> None:
    async with an.ExecutionManager() as em:
        with pytest.raises(an.ArgumentTypeError):
            em.as_completed([an.Tasklet(sleeper, params={"t": 0}), "not a tasklet"])  # type: ignore[list-item]
    assert len(em.events) == 0


async def test_with_retries_and_a_rate_the_outcomes_still_arrive() -> None:
    calls: dict[int, int] = {}

    async def flaky(i: int) -> int:
        calls[i] = calls.get(i, 0) + 1
        if calls[i] == 1 and i % 2:
            raise ValueError("first try fails")
        return i

    tasklets = [an.Tasklet(flaky, params={"i": i}, resource_tags=["api"], retry=an.Retry(2, backoff=0.01))
                for i in range(6)]  # fmt: skip
    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(rates={"api": "20/s"}) as em:
            got = sorted([o.unwrap() async for o in em.as_completed(tasklets)])
    assert got == list(range(6))
    assert em.events.runs()["attempts"].tolist() == [1, 2, 1, 2, 1, 2]
