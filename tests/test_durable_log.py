"""The durable event log on SQLite: reopened, crash-safe, single writer, flat memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pandas as pd
import pytest

import aura_nb as an

pytestmark = pytest.mark.anyio


async def work(i: int) -> int:
    await anyio.sleep(0)
    if i % 7 == 3:
        raise ValueError(f"bad item {i}")
    return i


async def test_a_clean_close_loses_nothing_and_the_file_gives_the_same_frames(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    async with an.ExecutionManager(event_log=path, capacities={"gpu": 2}) as em:
        async with anyio.create_task_group() as tg:
            for i in range(50):

                async def one(i: int = i) -> None:
                    try:
                        await em.submit(an.Tasklet(work, params={"i": i}, resource_tags=["gpu"], name=f"item{i}"))
                    except ValueError:
                        pass

                tg.start_soon(one)
    assert not Path(str(path) + "-wal").exists() or Path(str(path) + "-wal").stat().st_size == 0
    reopened = an.EventLog.open(path)
    assert len(reopened) == len(em.events) == 300
    pd.testing.assert_frame_equal(reopened.to_frame(), em.events.to_frame())
    pd.testing.assert_frame_equal(reopened.runs(), em.events.runs())
    assert reopened.runs()["status"].value_counts()["failed"] == 7


async def test_a_second_session_appends_to_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    for session in range(2):
        async with an.ExecutionManager(event_log=path) as em:
            await em.submit(an.Tasklet(work, params={"i": session}, name=f"session{session}"))
    log = an.EventLog.open(path)
    assert log.runs()["name"].tolist() == ["session0", "session1"]
    assert log.to_frame()["seq"].tolist() == list(range(12))


async def test_two_managers_on_one_file_the_second_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    async with an.ExecutionManager(event_log=path):
        with pytest.raises(an.EventLogLockedError, match="another ExecutionManager in this process"):
            an.ExecutionManager(event_log=path)
    # and across processes
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time, aura_nb as an
            em = an.ExecutionManager(event_log={str(path)!r})
            print("ready", flush=True)
            time.sleep(30)
        """)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(an.EventLogLockedError, match="another process is writing"):
            an.ExecutionManager(event_log=path)
        an.EventLog.open(path)  # reading is always allowed
    finally:
        holder.kill()
        holder.wait()
    async with an.ExecutionManager(event_log=path) as em:  # the lock died with its process
        await em.submit(an.Tasklet(work, params={"i": 1}))


CHILD = """
import sys, time, anyio, aura_nb as an

async def body():
    await anyio.sleep(0.002)

async def main():
    em = an.ExecutionManager(event_log=sys.argv[1], flush_interval=float(sys.argv[2]), capacities={"gpu": 2})
    while True:
        await em.submit(an.Tasklet(body, resource_tags=["gpu"]))
        print(time.monotonic(), len(em.events), flush=True)

anyio.run(main)
"""


def test_a_killed_process_keeps_every_event_older_than_the_flush_interval(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite"
    interval = 0.1
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(interval)], stdout=subprocess.PIPE, text=True)
    progress: list[tuple[float, int]] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            t, n = line.split()
            progress.append((float(t), int(n)))
            if len(progress) > 400:
                break
        killed_at = time.monotonic()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    log = an.EventLog.open(path)  # opens without any repair step
    # Every event recorded more than one flush interval (plus the few ms a flush takes)
    # before the kill is in the file.
    safe = [n for t, n in progress if t <= killed_at - interval - 0.2]  # + a write on a loaded machine
    assert safe, "the child ran long enough"
    assert len(log) >= safe[-1]
    frame = log.to_frame()
    assert frame["seq"].tolist() == list(range(len(frame)))  # no holes, no torn rows
    statuses = log.runs()["status"].tolist()
    # The child submits one tasklet at a time: only the last can be cut short by the kill.
    assert set(statuses[:-1]) == {"succeeded"} and statuses[-1] in ("succeeded", "unfinished")


async def test_keep_events_holds_only_the_tail_and_reads_the_rest_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tail.sqlite"
    seen: list[an.Event] = []
    async with an.ExecutionManager(event_log=path, keep_events=1000, capacities={"gpu": 3}) as em:
        em.hooks.on("after_task_run", seen.append)
        for i in range(40):
            async with anyio.create_task_group() as tg:
                for j in range(50):
                    tg.start_soon(em.submit, an.Tasklet(work, params={"i": 1}, resource_tags=["gpu"], name=f"t{i}.{j}"))
            await anyio.to_thread.run_sync(em.events.flush)
        assert len(em.events) == 12_000
        assert len(em.events._tix) <= 2_000 + 300  # only the tail stays in memory
        frame = em.events.to_frame()  # the whole history, from the file
        assert len(frame) == 12_000 and frame["seq"].tolist() == list(range(12_000))
        first = seen[0]  # an event that left memory long ago still reads back
        assert (first.event, first.status, first.seq) == ("after_task_run", "succeeded", first.seq)
        assert first.tasklet_id == seen[0].tasklet.id
        assert em.events.events(0, 1)[0].event == "tasklet_submitted"
    pd.testing.assert_frame_equal(an.EventLog.open(path).to_frame(), frame)
    assert set(em.events.runs()["name"].tolist()[:50]) == {f"t0.{j}" for j in range(50)}


def test_keep_events_needs_a_file() -> None:
    with pytest.raises(ValueError, match="needs event_log"):
        an.ExecutionManager(keep_events=10)


@pytest.mark.slow  # about a third of the whole suite's time
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # a long run; the invariants are not backend-specific
async def test_a_soak_of_100k_tasklets_keeps_memory_flat(tmp_path: Path) -> None:
    """With keep_events, nothing per tasklet outlives it: memory is flat.

    RSS is reported (it also counts allocator slack and SQLite's page cache); the
    assertion uses tracemalloc, which sees exactly which Python objects stay alive.
    """
    import gc
    import resource
    import tracemalloc

    def rss_mib() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    async def nothing() -> None:
        pass

    path = tmp_path / "soak.sqlite"
    # Flushed by hand between batches, so that a snapshot never catches the writer
    # thread holding a batch of rows it is writing.
    async with an.ExecutionManager(
        event_log=path, keep_events=10_000, flush_interval=3000, max_concurrency=64, capacities={"gpu": 4}
    ) as em:

        async def batch(n: int) -> None:
            async with anyio.create_task_group() as tg:
                for _ in range(n):
                    tg.start_soon(em.submit, an.Tasklet(nothing, resource_tags=["gpu"]))
            await anyio.to_thread.run_sync(em.events.flush)

        for _ in range(4):
            await batch(5_000)
        rss_before = rss_mib()
        gc.collect()
        tracemalloc.start()
        traced_before = tracemalloc.get_traced_memory()[0]
        for _ in range(16):
            await batch(5_000)
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - traced_before
        tracemalloc.stop()
        rss_after = rss_mib()
    from conftest import REPORT

    REPORT.append(
        f"soak (100k tasklets, SQLite log, keep_events=10k): RSS {rss_before:.1f} MiB after 20k tasklets, "
        f"{rss_after:.1f} MiB after 100k; {retained / 2**20:.2f} MiB of Python objects retained over the last 80k"
    )
    assert em.statistics().by_status["succeeded"] == 100_000
    assert len(an.EventLog.open(path)) == 600_000
    # Flat: the in-memory tail is bounded, so 80k more tasklets retain (almost) nothing.
    # What is counted is that tail itself (allocated after tracemalloc started): up to
    # 2 x keep_events rows of ~40 bytes and their tasklets' rows, ~2.5 MiB. A leaked
    # Tasklet, coroutine, handle or cancel scope would be ~80 MiB here.
    assert retained < 4 * 2**20
