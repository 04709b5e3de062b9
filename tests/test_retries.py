"""Retries: between attempts a tasklet gives everything back and queues again at its place.

The HTTP test runs a real server on 127.0.0.1 that answers 429 with Retry-After and 503
before it answers 200; the waits are checked against the server's own arrival times.
"""

from __future__ import annotations

import math

import anyio
import httpx
import pytest

import aura_nb as an
from aura_nb.examples.quota_server import QuotaServer

pytestmark = pytest.mark.anyio

LIMIT = 30


class Flaky:
    """Fails ``n`` times (with ``retry_after`` if given), then returns "ok"."""

    def __init__(self, n: int, retry_after: object = None, error: type[Exception] = ValueError) -> None:
        self.n, self.calls, self.retry_after, self.error = n, 0, retry_after, error

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.n:
            exc = self.error(f"failure {self.calls}")
            if self.retry_after is not None:
                exc.retry_after = self.retry_after  # type: ignore[attr-defined]
            raise exc
        return "ok"


def attempts_of(em: an.ExecutionManager) -> list[tuple[str, object, object]]:
    frame = em.events.to_frame()
    return [(e, s if isinstance(s, str) else None, None if a is pd_na() else a)
            for e, s, a in zip(frame["event"], frame["status"], frame["attempt"])]  # fmt: skip


def pd_na() -> object:
    import pandas as pd

    return pd.NA


async def test_retried_calls_to_a_real_server_succeed_and_honour_retry_after() -> None:
    with anyio.fail_after(LIMIT):
        async with QuotaServer() as server, httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            server.statuses("api_key_A", (429, {"Retry-After": "0.3"}), 503)
            server.statuses("api_key_B", 503, 503)

            async def call(key: str) -> int:
                response = await client.get(f"/{key}")
                response.raise_for_status()  # httpx.HTTPStatusError, carrying the response
                return response.status_code

            policy = an.Retry(3, on=httpx.HTTPStatusError, backoff=0.05, jitter=0.0)
            async with an.ExecutionManager(capacities={"api": 1}) as em:
                results = await em.run_many(
                    [an.Tasklet(call, params={"key": k}, resource_tags=["api"], retry=policy)
                     for k in ("api_key_A", "api_key_B")]  # fmt: skip
                )
    assert results == [200, 200]
    a, b = server.arrivals["api_key_A"], server.arrivals["api_key_B"]
    assert len(a) == 3 and len(b) == 3
    assert a[1] - a[0] >= 0.3  # the 429's Retry-After, by the server's own clock
    assert a[2] - a[1] >= 0.05 and b[1] - b[0] >= 0.05 and b[2] - b[1] >= 0.1  # backoff 0.05, then 0.1
    runs = em.events.runs()
    assert runs["attempts"].tolist() == [3, 3] and runs["status"].astype(str).tolist() == ["succeeded"] * 2
    frame = em.events.to_frame()
    failures = frame[frame["event"] == "after_task_failure"]
    assert len(failures) == 4 and failures["status"].isna().all()
    assert failures["error_type"].astype(str).str.contains("HTTPStatusError").all()
    assert failures["detail"].astype(str).str.contains("retrying in").all()
    assert sorted(failures["attempt"].tolist()) == [1, 1, 2, 2]
    final = frame[frame["event"] == "after_task_run"]
    assert final["attempt"].tolist() == [3, 3]


async def test_between_attempts_the_tasklet_holds_nothing() -> None:
    seen: list[int] = []
    flaky = Flaky(1, retry_after=0.3)

    async def other() -> None:
        seen.append(em.statistics().resources["gpu"].in_use)

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(max_concurrency=1, capacities={"gpu": 1}) as em:
            handle = em.start(an.Tasklet(flaky, resource_tags=["gpu"], retry=2))
            await anyio.sleep(0.1)  # it failed once and backs off
            assert handle.status == "waiting" and em.statistics().global_limit.in_use == 0
            await em.submit(an.Tasklet(other, resource_tags=["gpu"]))  # runs meanwhile
            assert await handle == "ok"
    assert seen == [1]


async def test_a_retry_keeps_its_place_in_line() -> None:
    """It waited first; while it backs off younger tasklets queue; it goes before them."""
    order: list[str] = []
    release = anyio.Event()
    flaky = Flaky(1, retry_after=0.2)

    async def hold() -> None:
        await release.wait()

    async def body(name: str) -> None:
        order.append(name)

    async def retried() -> str:
        order.append("retried")
        return await flaky()

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(capacities={"gpu": 1}) as em:
            holder = em.start(an.Tasklet(hold, resource_tags=["gpu"]))
            first = em.start(an.Tasklet(retried, resource_tags=["gpu"], retry=1))
            await anyio.sleep(0.02)
            release.set()
            await holder
            await anyio.sleep(0.05)  # it failed and backs off; now younger ones queue
            blocker = anyio.Event()

            async def hold2() -> None:
                await blocker.wait()

            h2 = em.start(an.Tasklet(hold2, resource_tags=["gpu"]))
            younger = [em.start(an.Tasklet(body, params={"name": f"y{i}"}, resource_tags=["gpu"])) for i in range(2)]
            await anyio.sleep(0.3)  # its backoff is over: it waits again, before y0 and y1
            assert em.why(first).position == 0
            blocker.set()
            await first
            for h in (h2, *younger):
                await h
    assert order == ["retried", "retried", "y0", "y1"]


@pytest.mark.parametrize("hostile", [-1, math.nan, 1e308, math.inf, "soon", "0.05", b"x", True, object()])
async def test_hostile_retry_after_values_are_tamed(hostile: object) -> None:
    flaky = Flaky(1, retry_after=hostile)
    policy = an.Retry(1, backoff=0.01, max_delay=0.2)
    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager() as em:
            t0 = anyio.current_time()
            assert await em.submit(an.Tasklet(flaky, retry=policy)) == "ok"
            assert anyio.current_time() - t0 < 5  # 1e308 is capped at max_delay, never waited
    assert an.core._retry.retry_after(ValueError()) is None


async def test_timeouts_cancellation_and_planning_failures_are_not_retried_unless_asked() -> None:
    calls = 0

    async def slow() -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep(5)

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager() as em:
            with pytest.raises(an.TaskletTimeoutError):
                await em.submit(an.Tasklet(slow, timeout=0.05, retry=3))
            assert calls == 1
            with pytest.raises(an.TaskletTimeoutError):
                await em.submit(an.Tasklet(slow, timeout=0.05, retry=an.Retry(2, backoff=0.01, timeouts=True)))
            assert calls == 4
            handle = em.start(an.Tasklet(slow, retry=3))
            await anyio.sleep(0.05)
            handle.cancel()
            with pytest.raises(an.TaskletCancelledError):
                await handle
            assert calls == 5
            # Not in `on`: final at once.
            with pytest.raises(KeyError):
                await em.submit(an.Tasklet(Flaky(1, error=KeyError), retry=an.Retry(3, on=ValueError)))
    statuses = em.events.runs()["status"].astype(str).tolist()
    assert statuses == ["timeout", "timeout", "cancelled", "failed"]
    assert em.events.runs()["attempts"].tolist() == [1, 3, 1, 1]


async def test_a_retry_cancelled_during_its_backoff_ends_cancelled_and_holds_nothing() -> None:
    flaky = Flaky(5, retry_after=10)
    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(capacities={"gpu": 1}) as em:
            handle = em.start(an.Tasklet(flaky, resource_tags=["gpu"], retry=5))
            await anyio.sleep(0.1)
            assert handle.cancel()
            with pytest.raises(an.TaskletCancelledError):
                await handle
            assert em.statistics().idle
    frame = em.events.to_frame()
    assert frame["event"].tolist().count("resources_released") == 1  # released once, not twice
    assert em.events.runs()["status"].astype(str).tolist() == ["cancelled"]


async def test_closing_the_manager_during_a_backoff_ends_the_tasklet() -> None:
    flaky = Flaky(5, retry_after=0.2)
    with anyio.fail_after(LIMIT):
        em = an.ExecutionManager()
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                with pytest.raises(an.ManagerClosedError):
                    await em.submit(an.Tasklet(flaky, retry=5))

            tg.start_soon(run)
            await anyio.sleep(0.05)
            await em.aclose()
    assert flaky.calls == 1


def test_bad_policies_are_refused() -> None:
    for bad in (dict(times=-1), dict(times=1.5), dict(on=42), dict(on=()), dict(backoff=-1), dict(factor=0.5),
                dict(max_delay=math.nan), dict(jitter=2)):  # fmt: skip
        with pytest.raises(an.TaskletError):
            an.Retry(**bad)  # type: ignore[arg-type]
    with pytest.raises(an.TaskletError, match="retry"):
        an.Tasklet(print, retry="3")  # type: ignore[arg-type]
    assert an.Tasklet(print, retry=2).retry == an.Retry(2)
