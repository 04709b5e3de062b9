"""DaskExecutor on a real LocalCluster: two worker processes, two threads each.

Task bodies are defined at module level so the workers (separate processes) can
unpickle them by reference. The cluster's scheduler is created with
``distributed.scheduler.allowed-failures = 0``: a body that kills its worker fails at
once instead of being retried on the other worker.
"""

from __future__ import annotations

import asyncio
import copy
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import anyio
import dask
import distributed
import pytest

import aura_nb as an
from aura_nb.dask_executor import DaskExecutor, WorkerLostError

pytestmark = pytest.mark.timeout(120)


# -- the cluster ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.LocalCluster]:
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        # Worker "0" declares the Dask resource GPU; worker "cpu" is the same spec without it.
        cluster = distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=True, dashboard_address=":0", resources={"GPU": 2}
        )
        plain = copy.deepcopy(cluster.new_spec)
        plain["options"].pop("resources")
        cluster.worker_spec["cpu"] = plain
        cluster.scale(2)
    with cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        yield cluster


@pytest.fixture
def client(cluster: distributed.LocalCluster) -> Iterator[distributed.Client]:
    with distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)  # a worker killed by a test is restarted by its nanny
        yield client


def workers(client: distributed.Client) -> dict[str, dict]:
    return client.scheduler_info(n_workers=-1)["workers"]


def details(client: distributed.Client) -> set[str]:
    """The ``detail`` of an event about a body run by each worker alive now: address and name."""
    return {f"worker {address} (name {info['name']})" for address, info in workers(client).items()}


def gpu_worker(client: distributed.Client) -> str:
    (address,) = [a for a, w in workers(client).items() if w["resources"].get("GPU")]
    return address


def assert_idle(em: an.ExecutionManager) -> None:
    stats = em.statistics()
    assert stats.global_limit.in_use == 0 and stats.waiting == stats.running == stats.planning == 0
    assert all(r.in_use == 0 and r.waiting == 0 for r in stats.resources.values())


# -- task bodies (module level: they pickle by reference) ------------------------------


class QuestFailed(Exception):
    """A task's own exception type: it must come back from the worker unchanged."""


def record_interval(seconds: float) -> tuple[float, float, str]:
    start = time.time()
    time.sleep(seconds)
    return start, time.time(), distributed.get_worker().address


async def double_later(x: int) -> dict[str, int]:
    await asyncio.sleep(0.01)
    return {"x": x, "double": 2 * x}


def add(a: int, b: int) -> int:
    return a + b


def fail_quest(level: int) -> None:
    raise QuestFailed(f"the boss of level {level} is too strong", level)


async def fail_quest_async() -> None:
    await asyncio.sleep(0)
    raise KeyError("missing_item")


async def sleep_then_mark(seconds: float, marker: str) -> None:
    await asyncio.sleep(seconds)
    pathlib.Path(marker).write_text("the body ran to its end")


def sleep_then_mark_sync(seconds: float, marker: str) -> None:
    time.sleep(seconds)
    pathlib.Path(marker).write_text("the body ran to its end")


def kill_own_worker() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def where_am_i() -> str:
    return distributed.get_worker().address


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    # An end sorts before a start at the same instant: touching intervals do not overlap.
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1]))
    peak = now = 0
    for _, step in points:
        now += step
        peak = max(peak, now)
    return peak


# -- tests -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_limits_hold_across_the_cluster(client: distributed.Client) -> None:
    async with an.ExecutionManager(executor=DaskExecutor(client), max_concurrency=3) as em:
        handles = [
            em.start(an.Tasklet(record_interval, params={"seconds": 0.25}, resource_tags=["gpu:2"])) for _ in range(6)
        ] + [em.start(an.Tasklet(record_interval, params={"seconds": 0.25})) for _ in range(4)]
        results = [await h for h in handles]
    gpu = [(s, e) for s, e, _ in results[:6]]
    every = [(s, e) for s, e, _ in results]
    # Measured on the workers' clocks (one machine): never more holders than capacity.
    assert max_overlap(gpu) <= 2
    assert max_overlap(every) <= 3
    assert max_overlap(every) >= 2  # and the bodies did run side by side on the cluster
    assert {w for _, _, w in results} <= set(workers(client))
    assert_idle(em)
    assert em.statistics().by_status["succeeded"] == 10


@pytest.mark.anyio
async def test_results_and_exceptions_round_trip(client: distributed.Client) -> None:
    async with an.ExecutionManager(executor=DaskExecutor(client)) as em:
        assert await em.submit(an.Tasklet(add, params={"a": 2, "b": 40})) == 42
        assert await em.submit(an.Tasklet(double_later, params={"x": 21})) == {"x": 21, "double": 42}

        with pytest.raises(QuestFailed) as info:
            await em.submit(an.Tasklet(fail_quest, params={"level": 7}))
        assert type(info.value) is QuestFailed
        assert info.value.args == ("the boss of level 7 is too strong", 7)
        assert "_aura_nb_worker" not in vars(info.value)  # the worker stamp is removed

        with pytest.raises(KeyError) as key_info:
            await em.submit(an.Tasklet(fail_quest_async))
        assert type(key_info.value) is KeyError and key_info.value.args == ("missing_item",)

        runs = em.events.runs().set_index("name")
        assert runs.loc["fail_quest", "status"] == "failed"
        assert runs.loc["fail_quest", "error_type"] == "QuestFailed"
        assert_idle(em)


@pytest.mark.anyio
async def test_events_record_the_worker(client: distributed.Client) -> None:
    async with an.ExecutionManager(executor=DaskExecutor(client)) as em:
        for i in range(4):
            await em.submit(an.Tasklet(add, params={"a": i, "b": 1}))
        with pytest.raises(QuestFailed):
            await em.submit(an.Tasklet(fail_quest, params={"level": 1}))
    frame = em.events.to_frame()
    known = details(client)
    success = frame[frame["event"] == "after_task_success"]
    assert len(success) == 4 and set(success["detail"]) <= known
    (failure,) = frame[frame["event"] == "after_task_failure"].itertuples()
    assert failure.detail in known and failure.error_type == "QuestFailed"


@pytest.mark.anyio
async def test_events_name_the_worker_by_its_name_as_well_as_its_address(client: distributed.Client) -> None:
    # The cluster's workers are named "0" (with the GPU resource) and "cpu": the name is
    # what stays the same when a nanny restarts a worker on a new address.
    gpu = gpu_worker(client)
    async with an.ExecutionManager(executor=DaskExecutor(client, resources={"gpu": "GPU"})) as em:
        assert await em.submit(an.Tasklet(where_am_i, resource_tags=["gpu:1"])) == gpu
    frame = em.events.to_frame()
    (detail,) = frame[frame["event"] == "after_task_success"]["detail"]
    assert detail == f"worker {gpu} (name 0)"


def fail_and_count(path: str) -> None:
    with open(path, "a") as f:
        f.write("ran\n")
    raise QuestFailed("not this time")


@pytest.mark.anyio
async def test_dask_never_retries_a_body_the_manager_does(client: distributed.Client, tmp_path: pathlib.Path) -> None:
    once, thrice = tmp_path / "once", tmp_path / "thrice"
    async with an.ExecutionManager(executor=DaskExecutor(client)) as em:
        with pytest.raises(QuestFailed):  # no retry policy: the body ran once, Dask did not rerun it
            await em.submit(an.Tasklet(fail_and_count, params={"path": str(once)}))
        with pytest.raises(QuestFailed):  # two retries: three runs, each one an attempt in the log
            await em.submit(
                an.Tasklet(fail_and_count, params={"path": str(thrice)}, retry=an.Retry(2, backoff=0.01))
            )
    assert once.read_text().count("ran") == 1 and thrice.read_text().count("ran") == 3
    runs = em.events.runs()
    assert runs["attempts"].tolist() == [1, 3] and runs["status"].tolist() == ["failed", "failed"]
    frame = em.events.to_frame()
    failures = frame[frame["event"] == "after_task_failure"]
    assert failures["attempt"].tolist()[1:] == [1, 2, 3]


@pytest.mark.anyio
async def test_timeout_cancels_the_remote_body(client: distributed.Client, tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "marker"
    tasklet = an.Tasklet(
        sleep_then_mark, params={"seconds": 1.0, "marker": str(marker)}, timeout=0.3, resource_tags=["gpu:1"]
    )
    async with an.ExecutionManager(executor=DaskExecutor(client)) as em:
        t0 = time.monotonic()
        with pytest.raises(an.TaskletTimeoutError):
            await em.submit(tasklet)
        assert time.monotonic() - t0 < 0.9  # an async body is interrupted: no waiting for its end
        assert_idle(em)
        await anyio.sleep(1.3 - (time.monotonic() - t0))  # past the moment it would have written
    assert not marker.exists()
    assert em.events.runs()["status"].tolist() == ["timeout"]
    frame = em.events.to_frame()  # the worker that was stopped is recorded too
    assert frame[frame["event"] == "after_task_failure"]["detail"].iloc[0] in details(client)
    # The Dask future was cancelled: the scheduler has forgotten the task.
    remaining = client.run_on_scheduler(lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks])
    assert not [k for k in remaining if k.startswith("sleep_then_mark-")]


@pytest.mark.anyio
async def test_a_sync_body_keeps_its_permit_until_the_remote_thread_ends(
    client: distributed.Client, tmp_path: pathlib.Path
) -> None:
    marker = tmp_path / "marker"
    async with an.ExecutionManager(executor=DaskExecutor(client), capacities={"gpu": 1}) as em:
        t0 = time.monotonic()
        handle = em.start(
            an.Tasklet(sleep_then_mark_sync, params={"seconds": 0.8, "marker": str(marker)}, timeout=0.2,
                       resource_tags=["gpu"])
        )  # fmt: skip
        await anyio.sleep(0.5)  # past the timeout, while the thread still sleeps on the worker
        assert em.statistics().resources["gpu"].in_use == 1
        with pytest.raises(an.TaskletTimeoutError):
            await handle
        assert time.monotonic() - t0 >= 0.75
        assert marker.exists()  # a thread cannot be interrupted, like in the core
        assert_idle(em)


@pytest.mark.anyio
async def test_stop_timeout_gives_up_waiting_for_a_sync_body(
    client: distributed.Client, tmp_path: pathlib.Path
) -> None:
    executor = DaskExecutor(client, stop_timeout=0.2)
    async with an.ExecutionManager(executor=executor, capacities={"gpu": 1}) as em:
        t0 = time.monotonic()
        with pytest.raises(an.TaskletTimeoutError):
            await em.submit(
                an.Tasklet(sleep_then_mark_sync, params={"seconds": 1.0, "marker": str(tmp_path / "m")}, timeout=0.2,
                           resource_tags=["gpu"])
            )  # fmt: skip
        assert time.monotonic() - t0 < 0.8  # permits returned while the thread still sleeps over there
        assert_idle(em)


@pytest.mark.anyio
async def test_a_worker_dying_mid_task_fails_the_tasklet(client: distributed.Client) -> None:
    before = set(workers(client))
    async with an.ExecutionManager(executor=DaskExecutor(client), capacities={"gpu": 1}) as em:
        with anyio.fail_after(30):
            with pytest.raises(WorkerLostError) as info:
                await em.submit(an.Tasklet(kill_own_worker, resource_tags=["gpu"]))
        err = info.value
        assert isinstance(err, an.AuraError) and isinstance(err, RuntimeError)
        assert err.worker in before
        assert err.worker in str(err) and err.tasklet_id in str(err) and "died" in str(err)
        assert_idle(em)
        # The manager keeps working (the other worker, or the restarted one, takes over).
        with anyio.fail_after(30):
            assert await em.submit(an.Tasklet(add, params={"a": 1, "b": 1}, resource_tags=["gpu"])) == 2
    runs = em.events.runs()
    assert runs["status"].tolist() == ["failed", "succeeded"]
    assert runs["error_type"].iloc[0] == "WorkerLostError"
    frame = em.events.to_frame()
    (detail,) = frame[frame["event"] == "after_task_failure"]["detail"].tolist()
    assert detail.startswith(f"worker {err.worker} (name ")  # the address it had, and its name


@pytest.mark.anyio
async def test_tagged_tasklets_run_on_workers_with_the_resource(client: distributed.Client) -> None:
    executor = DaskExecutor(client, resources={"gpu": "GPU"})
    gpu = gpu_worker(client)
    async with an.ExecutionManager(executor=executor, max_concurrency=4) as em:
        tagged = [em.start(an.Tasklet(where_am_i, resource_tags=["gpu:2"])) for _ in range(6)]
        untagged = [em.start(an.Tasklet(where_am_i)) for _ in range(6)]
        assert {await h for h in tagged} == {gpu}
        assert {await h for h in untagged} <= set(workers(client))
    frame = em.events.to_frame()
    success = frame[frame["event"] == "after_task_success"]
    assert set(success[success["resource_tags"] == "gpu:2"]["detail"]) == {f"worker {gpu} (name 0)"}


def test_resource_mapping_and_validation(client: distributed.Client) -> None:
    def call_with(resources: tuple[str, ...]) -> an.TaskCall:
        return an.TaskCall(add, {}, False, an.Tasklet(add), resources, lambda address: None)

    mapped = DaskExecutor(client, resources={"gpu": "GPU", "camera": "CAM"})
    assert mapped.dask_resources(call_with(("gpu", "db"))) == {"GPU": 1}
    assert mapped.dask_resources(call_with(("db",))) is None
    custom = DaskExecutor(client, resources=lambda call: {"GPU": 0.5} if "gpu" in call.resources else None)
    assert custom.dask_resources(call_with(("gpu",))) == {"GPU": 0.5}
    assert DaskExecutor(client).dask_resources(call_with(("gpu",))) is None
    with pytest.raises(TypeError, match="mapping like"):
        DaskExecutor(client, resources=["gpu"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="distributed.Client"):
        DaskExecutor("tcp://127.0.0.1:8786")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stop_timeout"):
        DaskExecutor(client, stop_timeout=0)
    assert isinstance(DaskExecutor(client), an.Executor)


@pytest.mark.anyio
async def test_a_body_that_cannot_pickle_fails_clearly(client: distributed.Client) -> None:
    lock = threading.Lock()

    def holds_a_lock() -> bool:
        return lock.locked()

    async with an.ExecutionManager(executor=DaskExecutor(client)) as em:
        with pytest.raises(TypeError, match=r"cannot be sent to Dask workers: cannot pickle '_thread.lock'"):
            await em.submit(an.Tasklet(holds_a_lock, resource_tags=["gpu:1"]))
        assert_idle(em)


def test_dask_is_imported_only_when_asked_for() -> None:
    code = (
        "import sys, aura_nb\n"
        "assert 'distributed' not in sys.modules and 'dask' not in sys.modules\n"
        "assert aura_nb.DaskExecutor.__module__ == 'aura_nb.dask_executor'\n"
        "assert 'distributed' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
