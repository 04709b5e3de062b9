"""The event log: stable frames, runs(), and the import boundary of the core."""

from __future__ import annotations

import subprocess
import sys

import anyio
import pandas as pd
import pytest

import aura_nb as an


def test_empty_frames_have_stable_columns_and_dtypes() -> None:
    log = an.EventLog()
    frame = log.to_frame()
    assert list(frame.columns) == list(an.COLUMNS)
    assert len(frame) == 0
    assert str(frame["t"].dtype) == "float64"
    assert str(frame["at"].dtype).startswith("datetime64") and "UTC" in str(frame["at"].dtype)
    assert isinstance(frame["event"].dtype, pd.CategoricalDtype)
    assert list(frame["event"].cat.categories) == list(an.EVENT_NAMES)
    assert str(frame["step"].dtype) == "Int64"
    runs = log.runs()
    assert list(runs.columns) == list(an.RUN_COLUMNS)
    assert len(runs) == 0


@pytest.mark.anyio
async def test_frames_after_a_run_keep_the_same_dtypes() -> None:
    async def ok(x: int) -> int:
        await anyio.sleep(0.01)
        return x

    async def bad() -> None:
        raise ValueError("broken")

    async with an.ExecutionManager(capacities={"gpu": 1}) as em:
        await em.submit(an.Tasklet(ok, params={"x": 1}, resource_tags=["gpu"], name="first"))
        with pytest.raises(ValueError):
            await em.submit(an.Tasklet(bad))
    empty = an.EventLog().to_frame()
    frame = em.events.to_frame()
    assert list(frame.dtypes.astype(str)) == list(empty.dtypes.astype(str))
    assert frame["seq"].tolist() == list(range(len(frame)))
    assert frame["t"].is_monotonic_increasing
    assert (frame["at"].diff().dropna() >= pd.Timedelta(0)).all()
    failure = frame[frame["event"] == "after_task_failure"].iloc[0]
    assert (failure["status"], failure["error_type"], failure["error_message"]) == ("failed", "ValueError", "broken")
    runs = em.events.runs()
    assert runs["name"].tolist() == ["first", "bad"]
    assert runs["status"].tolist() == ["succeeded", "failed"]
    assert runs["resource_tags"].tolist() == ["gpu", ""]
    first = runs.iloc[0]
    assert first["run_s"] >= 0.009 and first["queue_s"] >= 0 and first["planning_s"] == pytest.approx(0, abs=0.01)
    assert first["total_s"] >= first["run_s"]
    assert list(runs.dtypes.astype(str)) == list(an.EventLog().runs().dtypes.astype(str))


def test_importing_the_core_loads_no_front_end() -> None:
    code = (
        "import sys, aura_nb.core, aura_nb\n"
        "bad = [m for m in ('ipywidgets', 'IPython', 'graphviz', 'pandas', 'nest_asyncio2', 'nest_asyncio',"
        " 'matplotlib') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_api_is_explicit() -> None:
    import aura_nb.core

    assert sorted(an.__all__) == sorted(set(an.__all__))
    for name in an.__all__:
        assert getattr(an, name) is not None, name
    for name in aura_nb.core.__all__:
        assert name in an.__all__


@pytest.mark.anyio
async def test_a_cancellation_reads_the_same_on_asyncio_and_trio() -> None:
    """One vocabulary in the log, whatever the backend calls its cancellation."""

    async def forever() -> None:
        await anyio.sleep_forever()

    async with an.ExecutionManager() as em:
        with anyio.move_on_after(0.05):
            await em.submit(an.Tasklet(forever))
    frame = em.events.to_frame()
    ended = frame[frame["event"].isin(["after_task_failure", "after_task_run"])]
    assert list(ended["status"]) == ["cancelled", "cancelled"]
    assert list(ended["error_type"]) == ["Cancelled", "Cancelled"]
    assert list(ended["error_message"]) == ["the tasklet was cancelled"] * 2
