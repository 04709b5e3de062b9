"""Rate quotas: a token comes back ``per`` seconds after it was taken, in the atomic step.

The HTTP tests run a real server on 127.0.0.1 (aura_nb.examples.quota_server) that
records when each request arrived; the window counts come from those arrival times
and from the log's ``before_task_run`` times, never from sleeps in the test.
"""

from __future__ import annotations

import math
import re
import time

import anyio
import httpx
import pytest

import aura_nb as an
from aura_nb.core._rates import UNLIMITED
from aura_nb.examples.quota_server import QuotaServer, max_in_window

pytestmark = pytest.mark.anyio

LIMIT = 30  # seconds: every test here ends in a few
#: A body may start this much after its rate token's time (a pause of the collector or
#: of the OS between the two). The sliding window's own guard is 1 ms; a pacing window's
#: is 0.1% of it (50 us at one per 50 ms), so the starts are checked against it with this.
LATE = 0.001


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


@pytest.mark.parametrize(
    ("text", "rate"),
    [("20/s burst 1", an.Rate(20, per=1.0, burst=1)), ("20/s, burst=5", an.Rate(20, per=1.0, burst=5)),
     ("20/s burst 1 margin 30ms", an.Rate(20, per=1.0, burst=1, margin=0.03)),
     ("5/2s margin 0.1s", an.Rate(5, per=2.0, margin=0.1)), ("20/s burst 20", an.Rate(20))],
)  # fmt: skip
def test_a_paced_rate_is_written_as_text_or_as_a_rate(text: str, rate: an.Rate) -> None:
    assert an.Rate.parse(text) == rate
    assert an.Rate.parse(str(rate)) == rate  # str() writes the text form back
    assert rate.burst is not None and 1 <= rate.burst <= rate.limit


def test_the_default_burst_is_the_limit_and_reads_as_before() -> None:
    assert an.Rate(20) == an.Rate(20, per=1.0, burst=20) and an.Rate(20).burst == 20
    assert str(an.Rate(20)) == "20/s" and an.Rate(20).spacing is None
    assert str(an.Rate(20, burst=1, margin=0.03)) == "20/s burst 1 margin 30ms"
    assert an.Rate(20, burst=1).spacing == 0.05 and an.Rate(6, per=0.6, burst=2).spacing == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("bad", "what"),
    [({"burst": b}, "burst must be an integer from 1 to the limit (20)") for b in (0, -1, 21, 1.0, True, "1")]
    + [({"margin": m}, "margin must be a number of seconds from 0 to per (1)") for m in (-0.01, 2.0, math.nan, True, "30ms")],
)  # fmt: skip
def test_a_bad_burst_or_margin_is_refused_with_a_message_that_shows_the_way(bad: dict[str, object], what: str) -> None:
    with pytest.raises(an.ResourceTagError) as info:
        an.Rate(20, per=1.0, **bad)
    assert str(info.value).startswith("Rate(20, per=1.0, ") and what in str(info.value)


@pytest.mark.parametrize(
    ("text", "what"),
    [("20/s burst 0", "burst must be"), ("20/s burst 21", "burst must be"), ("20/s burst -1", "not understood"),
     ("20/s burst 1.5", "not understood"), ("20/s margin 30", "not understood"), ("20/s margin 2s", "margin must be"),
     ("20/s margin 30 fortnights", "not understood")],
)  # fmt: skip
def test_a_bad_burst_or_margin_in_text_is_refused_where_it_was_given(text: str, what: str) -> None:
    with pytest.raises(an.ResourceTagError) as info:
        an.ExecutionManager(rates={"api": text})
    message = str(info.value)
    assert message.startswith("rates['api']: ") and what in message and len(message) < 300
    em = an.ExecutionManager()
    with pytest.raises(an.ResourceTagError, match=r"^set_rate\('api', .*" + what):
        em.set_rate("api", text)


@pytest.mark.parametrize("bad", ["9" * 10_000 + "/fortnight", "20/s\nburst x", "20/s \u202e burst 1", ("x" * 10_000, 1.0)])
def test_a_hostile_rate_text_is_shown_short_and_on_one_line(bad: object) -> None:
    em = an.ExecutionManager()
    for refuse in (lambda: an.ExecutionManager(rates={"api": bad}), lambda: em.set_rate("api", bad)):  # type: ignore[arg-type]
        with pytest.raises(an.ResourceTagError) as info:
            refuse()
        message = str(info.value)
        assert len(message) < 400 and "\n" not in message and "\u202e" not in message, message


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


# -- pacing (burst) and margin ------------------------------------------------------------------


async def test_burst_1_spaces_the_starts_evenly_and_the_window_still_holds() -> None:
    async def body() -> None:
        await anyio.sleep(0)

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(max_concurrency=50, rates={"api": an.Rate(10, per=0.5, burst=1)}) as em:
            async with anyio.create_task_group() as tg:  # one per 50 ms, whoever asks
                tg.start_soon(em.run_many, [an.Tasklet(body, resource_tags=["api"]) for _ in range(8)])
                for _ in range(4):
                    tg.start_soon(em.submit, an.Tasklet(body, resource_tags=["api"]))
    t = starts(em)
    assert len(t) == 12
    assert min(b - a for a, b in zip(t, t[1:], strict=False)) >= 0.05 - LATE
    assert max_in_window(t, 0.5) <= 10
    # Paced, not stalled: the pool's timer wakes each one when its turn comes.
    assert 11 * 0.05 - LATE <= t[-1] - t[0] < 11 * 0.05 + 1.0
    assert_nothing_held(em)


async def test_paced_starts_stay_apart_when_the_task_runs_long_after_start() -> None:
    """start() takes a free token at once; its window starts when the task runs, not at start():
    a caller that keeps the loop busy cannot make two paced starts leave together."""

    async def body() -> None:
        pass

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(rates={"api": "20/s burst 1"}) as em:
            first = em.start(an.Tasklet(body, resource_tags=["api"]))
            second = em.start(an.Tasklet(body, resource_tags=["api"]))
            assert "its tokens were granted" in str(em.why(first))
            time.sleep(0.1)  # longer than the pacing window, before either task ran
            await first
            await second
    t = starts(em)
    assert len(t) == 2 and t[1] - t[0] >= 0.05 - LATE
    assert_nothing_held(em)


async def ten_starts(rate: str) -> list[float]:
    """When each of ten no-op tasklets tagging ``api`` started, under ``rates={"api": rate}``."""

    async def body() -> None:
        pass

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(max_concurrency=50, rates={"api": rate}) as em:
            await em.run_many([an.Tasklet(body, resource_tags=["api"]) for _ in range(10)])
    assert_nothing_held(em)
    return starts(em)


async def test_a_burst_lets_that_many_start_together_then_waits_its_pacing_window() -> None:
    """6 per 0.6 s, burst 2: at most 2 starts in any 0.2 s, and at most 6 in any 0.6 s."""
    t = await ten_starts("6/0.6s burst 2")
    assert max_in_window(t, 0.2 - LATE) == 2 and max_in_window(t, 0.6) <= 6
    assert t[-1] - t[0] >= 4 * 0.2 - LATE  # five pairs, a pacing window apart


async def test_a_margin_keeps_each_token_out_that_much_longer() -> None:
    """4 per 0.2 s with a margin of 0.1 s: at most 4 starts in any 0.3 s."""
    t = await ten_starts("4/0.2s margin 100ms")
    assert max_in_window(t, 0.3) == 4
    assert t[-1] - t[0] >= 2 * 0.3


async def test_against_a_real_server_a_paced_quota_with_a_margin_holds_where_the_server_counts() -> None:
    """api_key_A: 10 per 0.5 s, one per 50 ms, margin 20 ms; api_key_B (2 at once) shares the client.

    Counted by the server from the arrival times: a request arrives at least 50 ms after
    the one before less the spread of the latency (which the server measured), and any
    11 arrive over at least 0.5 s + 20 ms less that spread. So while the latency varies
    by less than the margin, no 0.5 s window the server counts holds more than 10.
    """
    margin = 0.02
    with anyio.fail_after(LIMIT):
        async with QuotaServer() as server, httpx.AsyncClient(base_url=server.url, timeout=10) as client:

            async def call(key: str, delay: float) -> int:
                response = await client.get(f"/{key}", params={"delay": delay, "sent": time.monotonic()})
                return response.status_code

            async with anyio.create_task_group() as tg:  # open the connections first
                for _ in range(10):
                    tg.start_soon(client.get, "/warm-up")
            rate = an.Rate(10, per=0.5, burst=1, margin=margin)
            async with an.ExecutionManager(max_concurrency=20, rates={"api_key_A": rate}, capacities={"api_key_B": 2}) as em:
                tasklets = [an.Tasklet(call, params={"key": "api_key_A", "delay": 0}, resource_tags=["api_key_A"])
                            for _ in range(25)]  # fmt: skip
                tasklets += [an.Tasklet(call, params={"key": "api_key_B", "delay": 0.05}, resource_tags=["api_key_B"])
                             for _ in range(8)]  # fmt: skip
                t0 = time.monotonic()
                assert await em.run_many(tasklets) == [200] * 33
                assert time.monotonic() - t0 < 5  # 25 at one per 50 ms, 10 per 0.52 s: about 1.3 s
    a = sorted(server.arrivals["api_key_A"])
    assert len(a) == 25
    spread = max(server.latency["api_key_A"]) - min(server.latency["api_key_A"])
    assert spread < 0.25, spread  # generous: only a sanity bound on a loaded machine
    assert min(b - x for x, b in zip(a, a[1:], strict=False)) >= 0.05 - LATE - spread
    assert min(a[i + 10] - a[i] for i in range(len(a) - 10)) >= 0.5 + margin - spread
    assert max_in_window(a, 0.5) <= 10 or spread >= margin
    assert server.max_in_flight["api_key_B"] <= 2 and len(server.arrivals["api_key_B"]) == 8


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


@pytest.mark.parametrize("rate", ["1/0.3s", "3/0.9s burst 1"])
async def test_the_oldest_waiter_holds_back_the_next_rate_token(rate: str) -> None:
    """The oldest needs api and the busy gpu; a younger api-only tasklet may not take the last api token.

    Paced, the token the pacing lets go next is the one held back.
    """
    order: list[str] = []
    gpu_free = anyio.Event()

    async def hold_gpu() -> None:
        await gpu_free.wait()

    async def body(name: str) -> None:
        order.append(name)

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(max_concurrency=4, rates={"api": rate}, capacities={"gpu": 1}) as em:
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


@pytest.mark.parametrize(
    ("rate", "used", "soonest", "latest", "shown", "says"),
    [(an.Rate(2, per=1.0), 2, 0.5, 1.0, "rate 2/2 per 1s, 1 waiting", r"quota used \(2/s\), next token in (0\.9|1\.0) s"),
     (an.Rate(2, per=1.0, burst=1), 1, 0.3, 0.5, "rate 1/2 per 1s burst 1, 2 waiting",
      r"paced \(2/s burst 1\), next token in 0\.[345] s")],
    ids=["used up", "paced"],
)  # fmt: skip
async def test_why_and_statistics_show_the_quota(
    rate: an.Rate, used: int, soonest: float, latest: float, shown: str, says: str
) -> None:
    """Used up, the quota counts down to its next token; paced (one per 0.5 s), to the next start."""

    async def body() -> None:
        pass

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(rates={"api_key_A": str(rate)}) as em:
            handles = [em.start(an.Tasklet(body, resource_tags=["api_key_A"])) for _ in range(3)]
            await anyio.sleep(0.05)
            limit = em.statistics().resources["api_key_A"]
            assert (limit.rate, limit.per, limit.burst, limit.rate_used, limit.waiting) == (2, 1.0, rate.burst, used, 3 - used)
            assert limit.unlimited and limit.capacity == UNLIMITED
            assert soonest < limit.next_token_in <= latest and limit.load == used / 2
            assert shown in repr(limit)
            text = str(em.why(handles[2]))
            assert re.search("api_key_A: " + says, text), text
            assert em.rates == {"api_key_A": rate}
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


async def test_set_rate_live_paces_and_unpaces_the_waiters() -> None:
    async def body() -> None:
        pass

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(rates={"api": "1/60s"}) as em:
            await em.submit(an.Tasklet(body, resource_tags=["api"]))
            waiting = [em.start(an.Tasklet(body, resource_tags=["api"])) for _ in range(3)]
            await anyio.sleep(0.05)
            em.set_rate("api", "20/s burst 1")  # one per 50 ms: they start one by one
            for h in waiting:
                await h
            t = starts(em)
            assert min(b - a for a, b in zip(t, t[1:], strict=False)) >= 0.05 - LATE
            em.set_rate("api", an.Rate(20, per=1.0))  # no pacing: the next three start together
            more = [em.start(an.Tasklet(body, resource_tags=["api"])) for _ in range(3)]
            for h in more:
                await h
            t = starts(em)
            assert len(t) == 7 and t[-1] - t[-3] < 0.04
    assert_nothing_held(em)


@pytest.mark.parametrize("look_between", [False, True])
async def test_a_token_back_under_a_shorter_window_stays_back_when_the_window_grows_again(look_between: bool) -> None:
    """What the quota counts after two live changes does not depend on whether statistics() ran between them."""

    async def body() -> None:
        pass

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(rates={"api": "2/1s"}) as em:
            for _ in range(2):
                await em.submit(an.Tasklet(body, resource_tags=["api"]))
            await anyio.sleep(0.6)
            em.set_rate("api", "2/0.5s")  # both tokens are 0.6 s old: back
            if look_between:
                assert em.statistics().resources["api"].rate_used == 0
            em.set_rate("api", "2/1s")
            assert em.statistics().resources["api"].rate_used == 0
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


async def test_a_tasklet_cancelled_before_its_body_started_gives_its_rate_token_back() -> None:
    """Taken at start() (the quota was free), cancelled before its task ran: the body never
    started, so its token does not count; one whose body ran keeps counting, retries too."""
    calls = 0

    async def body() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("the first attempt fails")

    async def noop() -> None:
        pass

    with anyio.fail_after(LIMIT):
        async with an.ExecutionManager(rates={"api": "2/10s"}) as em:
            doomed = [em.start(an.Tasklet(noop, resource_tags=["api"])) for _ in range(2)]
            assert em.statistics().resources["api"].rate_used == 2
            assert all([handle.cancel() for handle in doomed])
            for handle in doomed:
                with pytest.raises(an.TaskletCancelledError):
                    await handle
            assert em.statistics().resources["api"].rate_used == 0
            # Its first attempt ran (a token used), then it is cancelled while it backs off.
            retried = em.start(an.Tasklet(body, resource_tags=["api"], retry=an.Retry(times=1, backoff=5.0)))
            while calls == 0:
                await anyio.sleep(0.01)
            await anyio.sleep(0.01)
            assert retried.cancel()
            with pytest.raises(an.TaskletCancelledError):
                await retried
            assert em.statistics().resources["api"].rate_used == 1
            with anyio.fail_after(5):  # the second token is free now, not in 10 s
                await em.submit(an.Tasklet(noop, resource_tags=["api"]))
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


@pytest.mark.parametrize(("first", "second"), [("asyncio", "asyncio"), ("trio", "trio"), ("asyncio", "trio")])
def test_a_manager_used_by_a_second_run_still_wakes_its_rate_waiters(first: str, second: str) -> None:
    """The pool's timer was armed in a run that ended before it fired: the next run arms it again."""

    async def body() -> None:
        pass

    em = an.ExecutionManager(rates={"api": "1/0.3s"})

    async def leave_one_waiting() -> None:
        await em.submit(an.Tasklet(body, resource_tags=["api"]))
        with anyio.move_on_after(0.05):  # it waits for the window (the timer is armed), then gives up
            await em.submit(an.Tasklet(body, resource_tags=["api"]))

    async def two_more() -> None:
        with anyio.fail_after(LIMIT):
            for _ in range(2):
                await em.submit(an.Tasklet(body, resource_tags=["api"]))
        await em.aclose()

    anyio.run(leave_one_waiting, backend=first)
    anyio.run(two_more, backend=second)
    t = starts(em)
    assert len(t) == 3 and t[2] - t[1] >= 0.3
    assert_nothing_held(em)


@pytest.mark.parametrize(
    "rate",
    [an.Rate(1, per=1 / 3), an.Rate(5, per=1e-7), an.Rate(20, burst=1, margin=0.03), an.Rate(3, per=2.5, margin=1 / 7),
     an.Rate(600, per=60.0), an.Rate(2, per=0.1, margin=0.001)],
)  # fmt: skip
def test_a_rate_written_as_text_reads_back_as_the_same_rate(rate: an.Rate) -> None:
    # The shared-limits refusal tells the user to pass this text to set_rate.
    assert an.Rate.parse(str(rate)) == rate


@pytest.mark.parametrize("text", ["\u0662\u0660/s", "20/s burst \u0661", "\uff12\uff10/s"])
def test_a_rate_text_takes_ascii_digits_only(text: str) -> None:
    with pytest.raises(an.ResourceTagError, match="is not understood"):
        an.Rate.parse(text)
