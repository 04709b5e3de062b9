"""Limits shared through the Dask scheduler: real manager processes, a real scheduler.

The managers run in child processes (``_shared_limits_child.py``), on asyncio or trio
(the Client runs its own loop thread, so both work), against the scheduler of a
``LocalCluster`` started here, and against a ``dask scheduler`` command (with
``--preload aura_nb.shared_limits``). Bodies stamp their own start and end with
``time.monotonic()``, one clock for every process of the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anyio
import distributed
import pytest

import aura_nb as an
from aura_nb.shared_limits import DaskLimits, SharedLimitsLostError

pytestmark = pytest.mark.timeout(120)

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHILD = pathlib.Path(__file__).resolve().parent / "_shared_limits_child.py"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    # No workers: the limits live on the scheduler, task bodies run in the managers.
    cluster = distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=":0")
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.fixture
def client(address: str) -> Iterator[distributed.Client]:
    with distributed.Client(address) as client:
        yield client


class Children:
    """Manager processes of one test; every one is killed at the end, whatever happened."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, **cfg: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), json.dumps(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=ENV, cwd=str(ROOT),
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    @staticmethod
    def result(proc: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err[-3000:]
        return json.loads(out.strip().splitlines()[-1])

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture
def children() -> Iterator[Children]:
    kids = Children()
    try:
        yield kids
    finally:
        kids.kill_all()


def pool_name(request: pytest.FixtureRequest) -> str:
    return request.node.name.replace("[", "-").replace("]", "")


def assert_never_two(intervals: list[list[Any]], capacity: int = 1) -> None:
    """From the bodies' own stamps: at no instant more than ``capacity`` bodies ran."""
    edges = sorted([(s, 1) for s, _, _ in intervals] + [(e, -1) for _, e, _ in intervals], key=lambda x: (x[0], x[1]))
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak <= capacity, f"{peak} holders at once"


def shared_idle(limits: DaskLimits) -> bool:
    snap = limits.statistics()
    return not any(snap["in_use"].values()) and not any(snap["waiting"].values())


# -- across processes ----------------------------------------------------------------------


def test_opposite_tag_orders_in_two_processes_complete(address: str, children: Children, request: Any) -> None:
    """a then b in one manager, b then a in the other, 200 tasklets each: no deadlock."""
    pool = pool_name(request)
    common = dict(address=address, pool=pool, mode="batch", n=200, sleep=0.0005, max_concurrency=4)
    one = children.start(**common, tags=["a:1", "b:1"], backend="asyncio", label="ab")
    two = children.start(**common, tags=["b:1", "a:1"], backend="trio", label="ba")
    results = [children.result(one), children.result(two)]
    assert [r["errors"] for r in results] == [[], []]
    intervals = results[0]["intervals"] + results[1]["intervals"]
    assert len(intervals) == 400
    assert_never_two(intervals)  # a (and b) have capacity 1 for both processes


def test_one_gpu_shared_by_three_managers(address: str, children: Children, request: Any) -> None:
    pool = pool_name(request)
    common = dict(address=address, pool=pool, mode="batch", n=15, sleep=0.01, tags=["gpu:1"])
    procs = [
        children.start(**common, backend=backend, label=f"m{i}")
        for i, backend in enumerate(["asyncio", "trio", "asyncio"])
    ]
    results = [children.result(p) for p in procs]
    assert all(r["errors"] == [] for r in results)
    intervals = [iv for r in results for iv in r["intervals"]]
    assert len(intervals) == 45
    assert {label for *_, label in intervals} == {"m0", "m1", "m2"}
    assert_never_two(intervals)


def test_a_stream_of_small_tasklets_does_not_starve_a_big_one(address: str, children: Children, request: Any) -> None:
    """Manager A keeps a and b busy in turn (never both free); B's tasklet needs both."""
    pool = pool_name(request)
    stream = children.start(
        address=address, pool=pool, mode="stream", tags=[["a:1"], ["b:1"]], sleep=0.03, in_flight=6,
        duration=4.0, label="stream",
    )  # fmt: skip
    big = children.start(
        address=address, pool=pool, mode="late", tags=["a:1", "b:1"], sleep=0.01, delay=2.0, label="big",
        backend="trio",
    )  # fmt: skip
    big_result, stream_result = children.result(big), children.result(stream)
    assert big_result["errors"] == stream_result["errors"] == []
    ((start, end, _),) = big_result["intervals"]
    waited = start - big_result["submitted"]
    assert waited < 1.0, f"the big tasklet waited {waited:.2f} s behind the stream"
    # The stream really was going on around it: the small ones ran before and after.
    small = stream_result["intervals"]
    assert any(e <= start for _, e, _ in small) and any(s >= end for s, _, _ in small)


def test_two_processes_sharing_a_rate_never_exceed_it_together(address: str, children: Children, request: Any) -> None:
    """'api' at 5/s for two managers (asyncio and trio): in no second did more than 5 bodies start."""
    pool = pool_name(request)
    common = dict(address=address, pool=pool, mode="batch", n=8, sleep=0.0, tags=["api"], rates={"api": "5/s"})
    procs = [children.start(**common, backend=b, label=b) for b in ("asyncio", "trio")]
    results = [children.result(p) for p in procs]
    assert all(r["errors"] == [] for r in results)
    starts = sorted(start for r in results for start, _, _ in r["intervals"])
    assert len(starts) == 16
    gaps = [later - first for first, later in zip(starts, starts[5:])]
    assert min(gaps) >= 1.0, f"6 starts within {min(gaps):.4f} s"
    # And the quota was used, not just respected: 16 starts at 5/s take three windows.
    assert starts[-1] - starts[0] < 4.0, starts


@pytest.mark.slow
def test_a_killed_manager_gives_its_tokens_back_after_the_lease(
    address: str, client: distributed.Client, children: Children, request: Any
) -> None:
    pool = pool_name(request)
    lease = 2.0
    victim = children.start(
        address=address, pool=pool, mode="hold", n=3, tags=["gpu:1"], sleep=600, lease_timeout=lease, label="victim"
    )
    assert victim.stdout is not None
    assert victim.stdout.readline().strip() == "holding"
    limits = DaskLimits(client, name=pool, label="survivor")
    stats = limits.statistics()
    assert stats["managers"][f"{limits.host}:{victim.pid} victim"] == {"holds": {"gpu": 1}, "waiting": 2}

    async def main() -> float:
        async with an.ExecutionManager(limits=limits) as em:
            handle = em.start(an.Tasklet(anyio.sleep, params={"delay": 0}, resource_tags=["gpu"]))
            await anyio.sleep(0.3)
            why = str(em.why(handle))
            assert f"held by {limits.host}:{victim.pid} victim (1 tasklet)" in why, why
            killed = time.monotonic()
            os.kill(victim.pid, signal.SIGKILL)
            await handle
            return time.monotonic() - killed

    back_after = anyio.run(main)
    # Renewed every lease/3: the tokens come back between 2/3 of the lease and the lease
    # (plus the scheduler's 0.2 s check).
    assert lease * 2 / 3 - 0.2 < back_after < lease + 1.5, back_after
    stats = limits.statistics()
    assert stats["managers"] == {} and shared_idle(limits)  # its two waiters left the queue too


@pytest.mark.slow
def test_dask_scheduler_command_with_preload_and_its_loss(children: Children, tmp_path: pathlib.Path) -> None:
    """The `dask scheduler` command loads the extension; when it dies, waiting tasklets fail
    with SharedLimitsLostError after the lease timeout and a running one keeps its outcome."""
    scheduler_file = tmp_path / "scheduler.json"
    log = (tmp_path / "scheduler.log").open("w")  # a file, not a pipe nobody reads
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
         "--no-dashboard", "--preload", "aura_nb.shared_limits", "--scheduler-file", str(scheduler_file)],
        env=ENV, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=log, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert scheduler.poll() is None and time.monotonic() < deadline, "dask scheduler did not start"
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        common = dict(address=address, pool="cli", mode="batch", n=10, sleep=0.01, tags=["gpu:1"], register=False)
        procs = [children.start(**common, backend=b, label=b) for b in ("asyncio", "trio")]
        results = [children.result(p) for p in procs]
        assert all(r["errors"] == [] for r in results)
        assert_never_two([iv for r in results for iv in r["intervals"]])

        holder = children.start(
            address=address, pool="cli", mode="hold", n=3, tags=["gpu"], sleep=4.0, lease_timeout=1.5,
            register=False, label="holder",
        )  # fmt: skip
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        scheduler.kill()
        scheduler.wait()
        out = children.result(holder)
        # The running one finished normally; the two waiting ones failed, clearly.
        assert len(out["intervals"]) == 1
        assert len(out["errors"]) == 2
        lost = f"{SharedLimitsLostError.__name__}: the Dask scheduler"
        assert all(e.startswith(lost) for e in out["errors"]), out["errors"]
        assert an.SharedLimitsLostError is SharedLimitsLostError and issubclass(SharedLimitsLostError, an.AuraError)
    finally:
        if scheduler.poll() is None:
            scheduler.kill()
        scheduler.wait()
        log.close()


# -- in this process: the protocol's edges -------------------------------------------------


@pytest.mark.anyio
async def test_cancelled_requests_never_leak_a_token(client: distributed.Client, request: Any) -> None:
    """Cancel tasklets at every moment of their request's round trip: nothing stays held."""
    pool = pool_name(request)
    limits = DaskLimits(client, name=pool)
    async with an.ExecutionManager(limits=limits, max_concurrency=3) as em:
        for delay in (0, 0, 0.0005, 0.001, 0.002, 0.005):
            handles = [em.start(an.Tasklet(anyio.sleep, params={"delay": 0.001}, resource_tags=["gpu:1"]))
                       for _ in range(20)]  # fmt: skip
            await anyio.sleep(delay)
            for h in handles[::2]:
                h.cancel()
            for h in handles:
                try:
                    await h
                except an.TaskletCancelledError:
                    pass
        assert em.statistics().global_limit.in_use == 0
        assert shared_idle(limits)
        # And the pool still works.
        assert await em.submit(an.Tasklet(lambda: 7, resource_tags=["gpu"])) == 7
    # The manager leaves the pool when it closes (its goodbye is on its way).
    with anyio.fail_after(5):
        while limits.statistics()["managers"]:
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_one_capacity_per_name_for_every_manager(client: distributed.Client, request: Any) -> None:
    pool = pool_name(request)
    first = DaskLimits(client, name=pool, label="first")
    second = DaskLimits(client, name=pool, label="second")
    async with an.ExecutionManager(limits=first, capacities={"api": 2}) as one:
        with pytest.raises(an.ResourceTagError, match=r"contradicts the capacity 2 .* first"):
            an.ExecutionManager(limits=second, capacities={"api": 3})
        async with an.ExecutionManager(limits=DaskLimits(client, name=pool)) as two:
            assert two.capacities["api"] == 2  # declared elsewhere: known here
            with pytest.raises(an.ResourceTagError, match="contradicts the capacity 2"):
                await two.submit(an.Tasklet(lambda: None, resource_tags=["api:5"]))
            # Another manager's tag declares a new name: a bare tag here finds it.
            await one.submit(an.Tasklet(lambda: None, resource_tags=["db:1"]))
            await two.submit(an.Tasklet(lambda: None, resource_tags=["db:1"]))
            one.set_capacity("api", 4)  # deliberate: shared by both
            await anyio.sleep(0.1)
            assert two.statistics().resources["api"].capacity == 4


@pytest.mark.anyio
async def test_a_capacities_argument_never_changes_a_shared_capacity_silently(
    client: distributed.Client, request: Any
) -> None:
    """Only set_capacity changes what another manager declared, however up to date this one is;
    a bare tag finds a capacity declared since this manager last heard from the scheduler."""
    pool = pool_name(request)
    early = DaskLimits(client, name=pool)  # before 'api' exists
    async with an.ExecutionManager(limits=DaskLimits(client, name=pool, label="first"), capacities={"api": 2}):
        async with an.ExecutionManager(limits=early) as em:
            assert await em.submit(an.Tasklet(lambda: 5, resource_tags=["api"])) == 5
        late = DaskLimits(client, name=pool)  # it knows 'api' already
        with pytest.raises(an.ResourceTagError, match=r"capacity 3 contradicts the capacity 2 .* first"):
            an.ExecutionManager(limits=late, capacities={"api": 3})
        async with an.ExecutionManager(limits=DaskLimits(client, name=pool), capacities={"api": 2}) as same:
            assert same.capacities["api"] == 2  # the same capacity again is no contradiction
        with pytest.raises(an.ArgumentError, match="shared limits admit oldest first.*use admission='fifo'"):
            an.ExecutionManager(limits=DaskLimits(client, name=pool), admission="bottleneck")


@pytest.mark.anyio
async def test_a_rate_is_shared_declared_once_and_changed_deliberately(
    client: distributed.Client, request: Any
) -> None:
    pool = pool_name(request)

    async def body() -> None:
        pass

    first = DaskLimits(client, name=pool, label="first")
    async with an.ExecutionManager(limits=first, rates={"api": "2/s"}) as one:
        with pytest.raises(an.ResourceTagError) as refused:
            an.ExecutionManager(limits=DaskLimits(client, name=pool), rates={"api": "3/s"})
        message = str(refused.value)
        assert "rate 3/s contradicts the rate 2/s" in message and first.who in message
        assert "set_rate('api', '3/s')" in message
        async with an.ExecutionManager(limits=DaskLimits(client, name=pool, label="second")) as two:
            assert two.rates == {"api": an.Rate(2, per=1.0)}  # declared elsewhere: known and kept there
            handles = [one.start(an.Tasklet(body, resource_tags=["api"])) for _ in range(2)]
            for h in handles:
                await h
            late = two.start(an.Tasklet(body, resource_tags=["api"], name="late"))  # the bare tag: the shared rate
            await anyio.sleep(0.3)
            assert late.status == "waiting"
            limit = two.statistics().resources["api"]
            assert (limit.rate, limit.per, limit.rate_used, limit.waiting) == (2, 1.0, 2, 1)
            assert limit.next_token_in is not None and 0.2 < limit.next_token_in < 1.0
            assert "api: quota used (2/s), next token in 0." in str(two.why(late))
            one.set_rate("api", "10/s")  # deliberate: for both, live
            with anyio.fail_after(0.9):  # sooner than the 2/s window would have let it
                await late
            assert two.rates == {"api": an.Rate(10, per=1.0)}
            two.set_rate("api", None)
            await anyio.sleep(0.1)
            assert one.rates == {} and first.statistics()["rates"] == {}
    assert shared_idle(first)


@pytest.mark.anyio
async def test_why_and_statistics_name_the_other_manager(client: distributed.Client, request: Any) -> None:
    pool = pool_name(request)
    busy = anyio.Event()
    release = anyio.Event()

    async def hold() -> None:
        busy.set()
        await release.wait()

    a, b = DaskLimits(client, name=pool, label="nb-A"), DaskLimits(client, name=pool, label="nb-B")
    async with an.ExecutionManager(limits=a) as em_a, an.ExecutionManager(limits=b) as em_b:
        holder = em_a.start(an.Tasklet(hold, resource_tags=["gpu:1"]))
        await busy.wait()
        waiter = em_b.start(an.Tasklet(lambda: None, resource_tags=["gpu:1"], name="train"))
        await anyio.sleep(0.2)
        report = em_b.why(waiter)
        assert report.position == 0 and report.status == "waiting"
        (gpu,) = [n for n in report.needs if n.name == "gpu"]
        assert gpu.busy and gpu.in_use == 1 and gpu.holders == (f"{a.who} (1 tasklet)",)
        stats = em_b.statistics()
        assert stats.resources["gpu"].in_use == 1 and stats.waiting == 1
        assert stats.resources["gpu"].held_elsewhere == (f"{a.who} (1 tasklet)",)
        assert em_a.statistics().resources["gpu"].held_elsewhere == ()  # its own holder is not elsewhere
        shared = b.statistics()["managers"]
        assert shared[a.who] == {"holds": {"gpu": 1}, "waiting": 0}
        assert shared[b.who] == {"holds": {}, "waiting": 1}
        release.set()
        await holder
        await waiter


@pytest.mark.anyio
async def test_another_managers_label_is_shown_as_one_line_of_plain_text(client: distributed.Client, request: Any) -> None:
    """A label is another user's text: wherever this manager shows it (why(), statistics'
    repr, the gauges' hover, a refusal's message) it cannot forge a line or reorder the text."""
    from aura_nb.notebook._dashboard import gauge_html

    pool = pool_name(request)
    with pytest.raises(an.ArgumentTypeError, match="label"):
        DaskLimits(client, name=pool, label=b"nb")  # type: ignore[arg-type]
    busy, release = anyio.Event(), anyio.Event()

    async def hold() -> None:
        busy.set()
        await release.wait()

    evil = "nb\n  gpu: free (0/1)\u202eevil" + "x" * 10_000
    other = DaskLimits(client, name=pool, label=evil)
    async with an.ExecutionManager(limits=other) as em_other, an.ExecutionManager(
        limits=DaskLimits(client, name=pool)
    ) as em:
        holder = em_other.start(an.Tasklet(hold, resource_tags=["gpu:1"]))
        await busy.wait()
        waiter = em.start(an.Tasklet(lambda: None, resource_tags=["gpu"], name="w"))
        await anyio.sleep(0.2)
        gpu = em.statistics().resources["gpu"]
        assert gpu.held_elsewhere == (f"{other.who} (1 tasklet)",)  # the data as it is
        with pytest.raises(an.ResourceTagError) as refused:
            an.ExecutionManager(limits=DaskLimits(client, name=pool), capacities={"gpu": 3})
        title = re.findall(r'title="([^"]*held elsewhere by[^"]*)"', gauge_html(gpu))
        report = str(em.why(waiter)).splitlines()
        assert len(report) == 3 and report[2].startswith("  gpu: 1/1 in use, held by ")  # no forged line
        assert len(title) == 1
        for line in (report[2], repr(gpu), str(refused.value), title[0]):
            assert "nb\\n  gpu" in line and "\n" not in line, line[:300]  # the newline shown as an escape
            assert "\u202e" not in line and "x" * 1_000 not in line
        release.set()
        await holder
        await waiter


@pytest.mark.anyio
async def test_run_many_sends_its_requests_ahead_in_order_and_bounded(client: distributed.Client, request: Any) -> None:
    """While another manager holds the GPU, a batch's requests already queue on the scheduler
    (not one at a time, a round trip each), at most max_concurrency of them ahead; they are
    admitted in batch order."""
    pool = pool_name(request)
    busy, release = anyio.Event(), anyio.Event()
    order: list[int] = []

    async def hold() -> None:
        busy.set()
        await release.wait()

    async def step(i: int) -> None:
        order.append(i)

    other, mine = DaskLimits(client, name=pool, label="other"), DaskLimits(client, name=pool, label="mine")
    async with an.ExecutionManager(limits=other) as em_other, an.ExecutionManager(limits=mine, max_concurrency=3) as em:
        holder = em_other.start(an.Tasklet(hold, resource_tags=["gpu:1"]))
        await busy.wait()
        batch = [an.Tasklet(step, params={"i": i}, resource_tags=["gpu:1"]) for i in range(10)]
        async with anyio.create_task_group() as tg:
            tg.start_soon(em.run_many, batch)

            def queued() -> int:  # this manager's requests waiting on the scheduler
                return mine.statistics()["managers"].get(mine.who, {}).get("waiting", 0)

            with anyio.fail_after(5):
                while queued() < 4:
                    await anyio.sleep(0.02)
            await anyio.sleep(0.2)  # and no more than that
            assert queued() == 4  # 3 ahead, and the one that waits
            release.set()
        await holder
        assert order == list(range(10))
    assert shared_idle(mine)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the Workbench lives on Jupyter's asyncio loop
@pytest.mark.anyio
async def test_the_workbench_gauges_name_the_managers_holding_a_shared_resource(
    client: distributed.Client, request: Any
) -> None:
    pool = pool_name(request)
    busy, release = anyio.Event(), anyio.Event()

    async def hold() -> None:
        busy.set()
        await release.wait()

    other = DaskLimits(client, name=pool, label="other-notebook")
    async with an.ExecutionManager(limits=other, rates={"api": "100/s"}) as em:
        holders = [em.start(an.Tasklet(hold, resource_tags=tags)) for tags in (["gpu:1"], ["api"])]
        await busy.wait()
        wb = an.Workbench(limits=DaskLimits(client, name=pool, label="this-notebook"))
        waiter = wb.submit(an.Tasklet(lambda: None, resource_tags=["gpu"]))

        def row(name: str) -> str:
            (found,) = re.findall(rf'<div class="aura-gauge aura-gauge-{name} .*?</div>', wb.gauges_widget.value)
            return re.sub(r"<[^>]+>", "", found)  # its text

        with anyio.fail_after(5):
            while "1 waiting" not in row("gpu"):  # the pump shows it by itself
                await anyio.sleep(0.02)
        assert "1 / 1 in use · 1 waiting" in row("gpu") and f"held elsewhere: {other.who} (1 tasklet)" in row("gpu")
        assert f"held elsewhere: {other.who} (1 tasklet)" in row("api")  # a rate-only resource's row
        assert wb.gauges["gpu"].held_elsewhere == (f"{other.who} (1 tasklet)",)
        release.set()
        for h in holders:
            await h
        await waiter
        await wb.aclose()


def test_retried_messages_never_grant_twice() -> None:
    """The extension's handlers alone: a message applied, its reply lost, sent again."""
    from aura_nb.shared_limits import SharedLimits

    async def main() -> None:
        ext = SharedLimits()
        hello = {"host": "h", "pid": 1, "label": "x", "lease_timeout": 5, "max_concurrency": 4}
        assert ext.declare("p", "gpu", 1, False, "h:1 x")["ok"]
        take_give = [("take", 1, ["gpu"], "t1", "n"), ("give", 1)]
        for _ in range(2):  # the second is the retry
            reply = ext.send("p", "m", take_give, 0, hello)
        assert [list(g) for g in reply["grants"]] == [[1, 1, False]]  # (seq, request, takes a rate)
        pool = ext.pools["p"].pool
        assert pool.in_use["gpu"] == 0 and not ext.pools["p"].members["m"].requests
        # A queued request given back while its admission is on its way: nothing leaks.
        ext.send("p", "m", [("take", 2, ["gpu"], "t2", "n"), ("take", 3, ["gpu"], "t3", "n")], 1, None)
        ext.send("p", "m", [("give", 2), ("give", 3)], 1, None)  # 3 was admitted by the release of 2
        await asyncio.sleep(0.01)
        assert pool.in_use["gpu"] == 0 and pool.n_waiting == 0
        ext.send("p", "m", [("bye",)], 3, None)
        assert not ext.pools["p"].members

    asyncio.run(main())


def test_a_rate_token_counts_from_when_the_work_starts() -> None:
    """The extension alone: a rate token of a grant is pending until the manager says its
    work started ("run"); given back before that, it comes back; a manager that vanishes
    with a grant whose start was never heard of has its token counted."""
    from aura_nb.shared_limits import SharedLimits

    async def main() -> None:
        ext = SharedLimits()
        hello = {"host": "h", "pid": 1, "label": "x", "lease_timeout": 5, "max_concurrency": 4}
        assert ext.set_rate("p", "api", {"limit": 2, "per": 60.0}, False, "h:1 x")["ok"]
        refused = ext.set_rate("p", "api", {"limit": 3, "per": 60.0}, False, "h:2 y")
        assert refused["ok"] is False and refused["by"] == "h:1 x"
        assert an.Rate(**refused["known"]) == an.Rate(2, per=60.0)  # the whole rate travels (burst, margin too)
        takes = [("take", rid, ["api"], f"t{rid}", "n") for rid in (1, 2, 3)]
        reply = ext.send("p", "m", takes, 0, hello)
        assert [list(g) for g in reply["grants"]] == [[1, 1, True], [2, 2, True]]
        pool = ext.pools["p"].pool
        assert pool.rate_of("api")[1] == 2 and pool.n_waiting == 1  # taken, not started: still counted
        ext.send("p", "m", [("give", 2)], 2)  # never started: its token comes back, and 3 gets it
        await asyncio.sleep(0.01)
        assert [list(g) for g in ext.pools["p"].members["m"].grants] == [[3, 3, True]]
        ext.send("p", "m", [("run", 1), ("give", 1)], 3)  # started: its token stays out for 60 s
        assert pool.rate_of("api")[1] == 2 and pool.in_use["api"] == 1
        ext._forget(ext.pools["p"], ext.pools["p"].members["m"])  # lease expired with 3 granted
        assert pool.rate_of("api")[1] == 2 and pool.in_use["api"] == 0

    asyncio.run(main())


@pytest.mark.anyio
async def test_closing_the_dask_client_fails_waiting_tasklets_saying_so(address: str, request: Any) -> None:
    """The usual way to lose the scheduler in a notebook: the client is closed under the manager."""
    own = distributed.Client(address)
    limits = DaskLimits(own, name=pool_name(request), label="closing", lease_timeout=1.0)
    release = anyio.Event()

    async def hold() -> str:
        await release.wait()
        return "done"

    try:
        async with an.ExecutionManager(limits=limits) as em:
            holder = em.start(an.Tasklet(hold, resource_tags=["gpu:1"]))
            waiter = em.start(an.Tasklet(hold, resource_tags=["gpu:1"]))
            await anyio.sleep(0.3)
            await anyio.to_thread.run_sync(own.close)
            with anyio.fail_after(15), pytest.raises(SharedLimitsLostError, match="the Dask client was closed"):
                await waiter
            release.set()
            assert await holder == "done"  # the running one keeps its outcome
    finally:
        await anyio.to_thread.run_sync(own.close)


def test_an_unreachable_scheduler_is_asked_for_snapshots_less_and_less_often(
    client: distributed.Client, request: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """statistics() and why() block the caller up to 1 s per try while the scheduler does
    not answer: the tries thin out (the last snapshot is shown meanwhile)."""
    import aura_nb.shared_limits as shared

    limits = DaskLimits(client, name=pool_name(request), lease_timeout=30)
    first = limits.snapshot()
    clock = [shared._now()]
    tries = []

    def unreachable(op: str, **kwargs: Any) -> Any:
        tries.append(clock[0])
        raise OSError("timed out")

    monkeypatch.setattr(shared, "_now", lambda: clock[0])
    monkeypatch.setattr(limits, "_call", unreachable)
    for _ in range(120):  # a Workbench refreshing every 0.25 s for 30 s
        clock[0] += 0.25
        assert limits.snapshot() is first
    gaps = [b - a for a, b in zip(tries, tries[1:])]
    assert 3 <= len(tries) <= 7, tries
    assert gaps == sorted(gaps) and gaps[-1] <= 10.5  # growing, to a third of the lease at most
