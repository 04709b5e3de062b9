"""Rate quotas: a token comes back ``per`` seconds after it was taken, in the atomic step.

The HTTP tests run a real server on 127.0.0.1 (aura_nb.examples.quota_server) that
records when each request arrived; the window counts come from those arrival times
and from the log's ``before_task_run`` times, never from sleeps in the test.
"""

from __future__ import annotations

import math
import time

import anyio
import httpx
import pytest

import aura_nb as an
from aura_nb.core._rates import UNLIMITED
from aura_nb.examples.quota_server import QuotaServer, max_in_window

pytestmark = pytest.mark.anyio

LIMIT = 30  # seconds: every test here ends in a few


def starts(em: an.ExecutionManager, tag: str | None = None) -> list[float]:
    """The time each tasklet's body started (before_task_run), optionally only those tagging ``tag``."""
    frame = em.events.to_frame()
    rows = frame[frame["event"] == "before_task_run"]
    if tag is not None:
        rows = rows[rows["resource_tags"].astype(str).str.split(",").apply(lambda tags: tag in [t.split(":")[0] for t in tags])]
    return sorted(rows["t"])


def assert_nothing_held(em: an.ExecutionManager) -> None:
    s = em.statistics()
    assert s.idle, s
    assert all(window.pending == 0 for window in em._pool._rates.values())


# -- the value ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "per"),
    [("10/s", 10, 1.0), ("600/min", 600, 60.0), ("5/2s", 5, 2.0), ("100/h", 100, 3600.0), (" 3 / 0.5s ", 3, 0.5),
     ("20/second", 20, 1.0), ("7/250ms", 7, 0.25)],
)  # fmt: skip
def test_rates_are_written_as_text_or_as_a_rate(text: str, limit: int, per: float) -> None:
    assert an.Rate.parse(text) == an.Rate(limit, per=per)


@pytest.mark.parametrize(
    "bad", ["0/s", "-1/s", "10", "10/fortnight", "ten/s", "", 10, 1.5, None, (0, 1.0), (1, -1), (1, math.nan),
            (1, math.inf), (1, 1e308), (True, 1.0), ("10", 1.0), [10, 1.0]],
)  # fmt: skip
def test_a_bad_rate_is_refused_with_a_message_that_shows_the_way(bad: object) -> None:
    with pytest.raises(an.ResourceTagError) as info:
        an.ExecutionManager(rates={"api": bad})  # type: ignore[dict-item]
    message = str(info.value)
    assert "rates['api']" in message and len(message) < 300


def test_rates_need_a_valid_resource_name_and_a_mapping() -> None:
    with pytest.raises(an.ResourceTagError, match="not valid"):
        an.ExecutionManager(rates={"bad name": "1/s"})
    with pytest.raises(an.ArgumentTypeError, match="mapping"):
        an.ExecutionManager(rates=["1/s"])  # type: ignore[arg-type]
    em = an.ExecutionManager(rates={"api": "10/s"})
    with pytest.raises(an.ResourceTagError, match="differs from the declared resource 'api' only in case"):
        em.set_rate("API", "1/s")


# -- the quota holds -----------------------------------------------------------------------


async def test_no_window_holds_more_than_the_quota_and_the_quota_is_used() -> None:
    async def body() -> None:
        await anyio.sleep(0)

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(max_concurrency=50, rates={"api": an.Rate(5, per=0.5)}) as em:
            async with anyio.create_task_group() as tg:
                tg.start_soon(em.run_many, [an.Tasklet(body, resource_tags=["api"]) for _ in range(12)])
                for _ in range(8):
                    tg.start_soon(em.submit, an.Tasklet(body, resource_tags=["api"]))
    t = starts(em)
    assert len(t) == 20
    assert max_in_window(t, 0.5) == 5  # never more, and the quota is filled
    # 20 starts at 5 per 0.5 s: the last starts after at least 3 full windows.
    assert t[-1] - t[0] >= 1.5
    assert_nothing_held(em)


async def test_against_a_real_server_two_keys_keep_their_own_limits() -> None:
    """api_key_A: 10 per 0.5 s; api_key_B: 2 at once. Counted by the server, per key."""
    with anyio.fail_after(LIMIT):
        async with QuotaServer() as server, httpx.AsyncClient(base_url=server.url, timeout=10) as client:

            async def call(key: str, delay: float) -> int:
                response = await client.get(f"/{key}", params={"delay": delay, "sent": time.monotonic()})
                return response.status_code

            # Open the client's connections first: a request that must connect reaches the
            # server later than one that reuses a connection, which would blur the count.
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(client.get, "/warm-up")
            em = an.ExecutionManager(max_concurrency=20, rates={"api_key_A": "10/0.5s"}, capacities={"api_key_B": 2})
            async with em:
                tasklets = [an.Tasklet(call, params={"key": "api_key_A", "delay": 0}, resource_tags=["api_key_A"])
                            for _ in range(30)]  # fmt: skip
                tasklets += [an.Tasklet(call, params={"key": "api_key_B", "delay": 0.05}, resource_tags=["api_key_B"])
                             for _ in range(10)]  # fmt: skip
                results = await em.run_many(tasklets)
    assert results == [200] * 40
    a = server.arrivals["api_key_A"]
    assert len(a) == 30
    assert max_in_window(starts(em, "api_key_A"), 0.5) <= 10  # exact, at the body's start
    # A request reaches the server a little after its body started (httpx's own work,
    # the loopback): the server sees the quota in every window shortened by the spread
    # of that latency, which it measured itself.
    spread = max(server.latency["api_key_A"]) - min(server.latency["api_key_A"])
    assert spread < 0.25, spread  # generous: only a sanity bound on a loaded machine
    assert max_in_window(a, 0.5 - spread) <= 10
    assert server.max_in_flight["api_key_B"] <= 2
    assert len(server.arrivals["api_key_B"]) == 10


async def test_a_rate_and_a_capacity_on_one_resource_both_hold() -> None:
    running = peak = 0

    async def body() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.05)
        running -= 1

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(max_concurrency=20, rates={"api": "8/0.5s"}) as em:
            # The first "api:2" tag gives the rate-only resource a capacity.
            await em.run_many([an.Tasklet(body, resource_tags=["api:2"]) for _ in range(12)])
            assert em.capacities["api"] == 2
    assert peak == 2
    assert max_in_window(starts(em), 0.5) <= 8


# -- atomic, fair, and nothing held while waiting ------------------------------------------------


async def test_a_tasklet_waiting_for_the_window_holds_nothing() -> None:
    """It needs gpu and api; api's quota is used: it takes no gpu meanwhile.

    By the fairness rule it holds back one gpu token (it is the oldest waiter): with two
    gpus, a gpu-only tasklet still runs while it waits for the window.
    """
    order: list[str] = []

    async def body(name: str) -> None:
        order.append(name)

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(max_concurrency=4, rates={"api": "1/0.4s"}, capacities={"gpu": 2}) as em:
            await em.submit(an.Tasklet(body, params={"name": "first"}, resource_tags=["api"]))
            both = em.start(an.Tasklet(body, params={"name": "both"}, resource_tags=["gpu", "api"]))
            await anyio.sleep(0.05)
            s = em.statistics()
            assert both.status == "waiting"
            assert s.resources["gpu"].in_use == 0 and s.resources["api"].rate_used == 1
            assert s.resources["gpu"].held_back == 1
            # A gpu-only tasklet runs while the older one waits for the window.
            await em.submit(an.Tasklet(body, params={"name": "gpu only"}, resource_tags=["gpu"]))
            await both
    assert order == ["first", "gpu only", "both"]
    assert_nothing_held(em)


async def test_the_oldest_waiter_holds_back_the_next_rate_token() -> None:
    """The oldest needs api and the busy gpu; a younger api-only tasklet may not take the last api token."""
    order: list[str] = []
    gpu_free = anyio.Event()

    async def hold_gpu() -> None:
        await gpu_free.wait()

    async def body(name: str) -> None:
        order.append(name)

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(max_concurrency=4, rates={"api": "1/0.3s"}, capacities={"gpu": 1}) as em:
            holder = em.start(an.Tasklet(hold_gpu, resource_tags=["gpu"]))
            oldest = em.start(an.Tasklet(body, params={"name": "oldest"}, resource_tags=["gpu", "api"]))
            younger = em.start(an.Tasklet(body, params={"name": "younger"}, resource_tags=["api"]))
            await anyio.sleep(0.5)  # the api token is free, but held back for the oldest
            assert order == [] and younger.status == "waiting"
            report = em.why(younger)
            assert report.reserved_by is not None and "oldest" not in str(report) or "held back" in str(report)
            assert em.statistics().resources["api"].held_back == 1
            gpu_free.set()
            await holder
            await oldest
            await younger
    assert order == ["oldest", "younger"]
    assert_nothing_held(em)


async def test_why_and_statistics_show_the_quota() -> None:
    async def body() -> None:
        pass

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(rates={"api_key_A": "2/s"}) as em:
            handles = [em.start(an.Tasklet(body, resource_tags=["api_key_A"])) for _ in range(3)]
            await anyio.sleep(0.05)
            limit = em.statistics().resources["api_key_A"]
            assert (limit.rate, limit.per, limit.rate_used, limit.waiting) == (2, 1.0, 2, 1)
            assert limit.unlimited and limit.capacity == UNLIMITED
            assert 0.5 < limit.next_token_in <= 1.0 and limit.load == 1.0
            assert "rate 2/2 per 1s" in repr(limit)
            text = str(em.why(handles[2]))
            assert "api_key_A: quota used (2/s), next token in 0.9 s" in text or "next token in 1.0 s" in text
            assert em.rates == {"api_key_A": an.Rate(2, per=1.0)}
            for h in handles:
                await h
        assert_nothing_held(em)


async def test_why_shows_a_free_rate_only_resource_with_no_capacity_and_its_quota() -> None:
    gate = anyio.Event()

    async def hold() -> None:
        await gate.wait()

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(max_concurrency=1, rates={"api": "1/s"}) as em:
            holder = em.start(an.Tasklet(hold))
            waiter = em.start(an.Tasklet(hold, resource_tags=["api"]))
            await anyio.sleep(0.05)
            text = str(em.why(waiter))
            assert "  api: free (0/inf, quota 1/s)" in text.splitlines() and str(UNLIMITED) not in text
            gate.set()
            await holder
            await waiter
        assert_nothing_held(em)


# -- live changes and cancellation -----------------------------------------------------------


async def test_set_rate_live_raises_lowers_and_removes_the_quota() -> None:
    async def body() -> None:
        pass

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(rates={"api": "1/10s"}) as em:
            handles = [em.start(an.Tasklet(body, resource_tags=["api"])) for _ in range(4)]
            await anyio.sleep(0.05)
            assert [h.status for h in handles].count("waiting") == 3
            em.set_rate("api", "3/10s")  # raised: two more start at once
            await anyio.sleep(0.05)
            assert [h.done() for h in handles] == [True, True, True, False]
            em.set_rate("api", "1/10s")  # lowered below what was taken: nobody new starts
            await anyio.sleep(0.05)
            assert not handles[3].done()
            assert em.statistics().resources["api"].rate_used == 3
            em.set_rate("api", None)  # removed: no quota any more
            await handles[3]
            assert "api" not in em.rates and em.statistics().resources["api"].rate is None
    assert_nothing_held(em)


async def test_a_shorter_window_set_while_waiting_wakes_the_waiter_sooner() -> None:
    async def body() -> None:
        pass

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(rates={"api": "1/60s"}) as em:
            await em.submit(an.Tasklet(body, resource_tags=["api"]))
            waiting = em.start(an.Tasklet(body, resource_tags=["api"]))
            await anyio.sleep(0.05)
            em.set_rate("api", "1/0.2s")  # the token taken 0.05 s ago comes back in 0.15 s
            await waiting
    assert_nothing_held(em)


async def test_cancelling_a_tasklet_that_waits_for_the_window_leaves_nothing_behind() -> None:
    async def body() -> None:
        pass

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(rates={"api": "1/0.5s"}) as em:
            await em.submit(an.Tasklet(body, resource_tags=["api"]))
            doomed = em.start(an.Tasklet(body, resource_tags=["api"]))
            after = em.start(an.Tasklet(body, resource_tags=["api"]))
            await anyio.sleep(0.05)
            assert doomed.cancel()
            with pytest.raises(an.TaskletCancelledError):
                await doomed
            await after  # the cancelled one's place went to the next
            # A cancelled waiter used no token: two bodies ran in two windows.
            assert len(starts(em)) == 2
        runs = em.events.runs()
        assert sorted(runs["status"].astype(str)) == ["cancelled", "succeeded", "succeeded"]
    assert_nothing_held(em)


async def test_closing_the_manager_while_tasklets_wait_for_the_window() -> None:
    async def body() -> None:
        pass

    with anyio.fail_after(LIMIT):
        em = an.ExecutionManager(rates={"api": "1/60s"})
        await em.submit(an.Tasklet(body, resource_tags=["api"]))
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(_submit_expect_closed, em, an.Tasklet(body, resource_tags=["api"]))
            await anyio.sleep(0.05)
            await em.aclose()
    assert em.events.runs()["status"].astype(str).tolist().count("cancelled") == 3


async def _submit_expect_closed(em: an.ExecutionManager, tasklet: an.Tasklet) -> None:
    with pytest.raises(an.ManagerClosedError):
        await em.submit(tasklet)
