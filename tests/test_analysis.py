"""Utilization over time and the plots, from the event log of a real ExecutionManager run."""

from __future__ import annotations

import random

import anyio
import matplotlib
import numpy as np
import pandas as pd
import pytest

import aura_nb as an
from aura_nb.notebook._analysis import STATUS_COLORS, plot_timeline, plot_utilization, utilization

matplotlib.use("Agg")

MAX_CONCURRENCY = 4
GPU = 2


async def gpu_workload(em: an.ExecutionManager) -> None:
    """20 gpu tasklets (2 of them fail, 1 times out) and 5 untagged ones, all at once."""
    rng = random.Random(7)

    async def work(seconds: float) -> float:
        await anyio.sleep(seconds)
        return seconds

    async def broken() -> None:
        await anyio.sleep(0.005)
        raise RuntimeError("simulated failure")

    async def one(i: int) -> None:
        tags = [f"gpu:{GPU}"] if i < 20 else []
        if i in (3, 11):
            tasklet = an.Tasklet(broken, resource_tags=tags, name=f"t{i}")
        elif i == 7:
            tasklet = an.Tasklet(work, params={"seconds": 1.0}, resource_tags=tags, timeout=0.02, name=f"t{i}")
        else:
            tasklet = an.Tasklet(work, params={"seconds": rng.uniform(0.005, 0.02)}, resource_tags=tags, name=f"t{i}")
        try:
            await em.submit(tasklet)
        except (RuntimeError, an.TaskletTimeoutError):
            pass

    async with anyio.create_task_group() as tg:
        for i in range(25):
            tg.start_soon(one, i)


@pytest.fixture
async def finished_manager(anyio_backend: str) -> an.ExecutionManager:
    async with an.ExecutionManager(max_concurrency=MAX_CONCURRENCY) as em:
        await gpu_workload(em)
    return em


@pytest.mark.anyio
async def test_utilization_respects_capacities_ends_at_zero_and_peaks(finished_manager: an.ExecutionManager) -> None:
    em = finished_manager
    data = utilization(em.events)
    assert list(data.columns) == ["t", "global", "gpu"]
    assert data["t"].iloc[0] == 0 and data["t"].is_monotonic_increasing and data["t"].is_unique
    assert (data.iloc[0, 1:] == 0).all()
    assert (data.iloc[-1, 1:] == 0).all()  # every token came back
    assert (data[["global", "gpu"]] >= 0).all().all()
    assert data["gpu"].max() == GPU  # 20 gpu tasklets at once: the gpu limit filled
    assert data["global"].max() <= MAX_CONCURRENCY
    assert data["gpu"].le(data["global"]).all()  # a gpu holder also holds a global slot
    # Each change is one tasklet acquiring or releasing, or several at the same instant.
    acquired = em.events.count("resources_acquired")
    assert acquired == 25
    assert len(data) <= 1 + 2 * acquired


@pytest.mark.anyio
async def test_the_frame_the_log_and_the_manager_give_the_same_curve(finished_manager: an.ExecutionManager) -> None:
    em = finished_manager
    from_log = utilization(em.events)
    pd.testing.assert_frame_equal(from_log, utilization(em.events.to_frame()))
    pd.testing.assert_frame_equal(from_log, utilization(em))
    shuffled = em.events.to_frame().sample(frac=1.0, random_state=1)  # order comes from seq
    pd.testing.assert_frame_equal(from_log, utilization(shuffled))


@pytest.mark.anyio
async def test_binned_utilization_is_the_mean_over_each_bin(finished_manager: an.ExecutionManager) -> None:
    exact = utilization(finished_manager)
    binned = utilization(finished_manager, resolution=0.01)
    assert list(binned.columns) == list(exact.columns)
    assert np.allclose(np.diff(binned["t"]), 0.01)
    assert binned["t"].iloc[0] == 0
    assert (binned["gpu"] <= GPU + 1e-9).all() and (binned["global"] <= MAX_CONCURRENCY + 1e-9).all()
    # The integral (token-seconds) is the same either way.
    end = finished_manager.events.to_frame()["t"].pipe(lambda t: t.max() - t.min())
    widths = np.diff(np.r_[binned["t"], end])
    exact_widths = np.diff(np.r_[exact["t"], end])
    assert (binned["gpu"] * widths).sum() == pytest.approx((exact["gpu"] * exact_widths).sum())
    with pytest.raises(ValueError, match="resolution"):
        utilization(finished_manager, resolution=0)


@pytest.mark.anyio
async def test_plots_have_a_bar_per_holding_and_a_line_per_limit(finished_manager: an.ExecutionManager) -> None:
    em = finished_manager
    ax = plot_timeline(em.events)
    assert len(ax.patches) == 25  # 20 bars in the gpu row, 5 in the untagged row
    labels = [tick.get_text() for tick in ax.get_yticklabels()]
    assert labels[0] == "gpu\n(2 lanes)" and labels[1].startswith("untagged\n(")
    colours = {matplotlib.colors.to_hex(patch.get_facecolor()).upper() for patch in ax.patches}
    assert colours == {STATUS_COLORS["succeeded"], STATUS_COLORS["failed"], STATUS_COLORS["timeout"]}
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["succeeded", "failed", "timeout"]

    ax = plot_utilization(em)  # capacities from the manager: global 4, gpu 2
    assert len(ax.lines) == 4  # two step curves and two capacity lines
    capacity_lines = [line for line in ax.lines if "capacity" in line.get_label()]
    assert sorted(line.get_ydata()[0] for line in capacity_lines) == [GPU, MAX_CONCURRENCY]
    ax = plot_utilization(em.events.to_frame(), capacities={"global": MAX_CONCURRENCY})
    assert len(ax.lines) == 4  # gpu's capacity comes from its tag "gpu:2"
    ax.figure.canvas.draw()  # the figure renders


@pytest.mark.anyio
async def test_a_log_reopened_from_sqlite_gives_the_same_analysis(anyio_backend: str, tmp_path) -> None:
    path = tmp_path / "runs.sqlite"
    em = an.ExecutionManager(max_concurrency=MAX_CONCURRENCY, event_log=path)
    async with em:
        await gpu_workload(em)
    reopened = an.EventLog.open(path)
    pd.testing.assert_frame_equal(utilization(reopened), utilization(em.events), atol=1e-6)
    assert len(plot_timeline(reopened).patches) == 25


def test_an_empty_log_and_wrong_sources() -> None:
    data = utilization(an.EventLog())
    assert data.to_dict("list") == {"t": [0.0], "global": [0]}
    ax = plot_timeline(an.EventLog())
    assert len(ax.patches) == 0
    assert len(plot_utilization(an.EventLog()).lines) == 1
    with pytest.raises(ValueError, match="runs"):
        utilization(an.EventLog().runs())
    with pytest.raises(TypeError, match="EventLog"):
        utilization([1, 2, 3])


@pytest.mark.anyio
async def test_still_holding_tasklets_show_as_holding(anyio_backend: str) -> None:
    async with an.ExecutionManager(max_concurrency=2) as em:
        gate = anyio.Event()

        async def wait_for_gate() -> None:
            await gate.wait()

        handle = em.start(an.Tasklet(wait_for_gate, resource_tags=["db:1"]))
        while em.statistics().running == 0:
            await anyio.sleep(0.001)
        data = utilization(em)
        assert data.iloc[-1][["global", "db"]].tolist() == [1, 1]
        ax = plot_timeline(em)
        assert [matplotlib.colors.to_hex(p.get_facecolor()).upper() for p in ax.patches] == [STATUS_COLORS["holding"]]
        gate.set()
        await handle
    assert utilization(em).iloc[-1][["global", "db"]].tolist() == [0, 0]
