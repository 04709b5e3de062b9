"""The Workbench dashboard, headless: widgets hold their values without a front end.

Asyncio only: the Workbench lives on the Jupyter kernel's loop, which is asyncio.
"""

from __future__ import annotations

import asyncio
import re
import shutil

import pytest

from aura_nb.core import (
    ExecutionManager,
    Plan,
    StatePlanningError,
    Tasklet,
    TaskletCancelledError,
)
from aura_nb.examples.game import GameDevice, make_game_plan
from aura_nb.notebook import Workbench
from aura_nb.notebook import _workbench

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _until(predicate, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _assert_gauges_match(wb: Workbench) -> None:
    """What the page shows for each limit is the manager's snapshot."""
    stats = wb.manager.statistics()
    page = wb.gauges_widget.value
    for limit in stats.limits:
        gauge = wb.gauges[limit.name]
        assert (gauge.in_use, gauge.capacity, gauge.waiting) == (limit.in_use, limit.capacity, limit.waiting)
        assert f"{limit.in_use} / {limit.capacity} in use · {limit.waiting} waiting" in page
        assert f'aria-valuenow="{min(limit.in_use, limit.capacity)}"' in gauge.html


def _gauge_row(wb: Workbench, name: str) -> str:
    """The HTML of one gauge's row on the page."""
    rows = re.findall(r'<div class="aura-gauge .*?</div>', wb.gauges_widget.value)
    found = [row for row in rows if f"aura-gauge-{name} " in row]
    assert len(found) == 1, rows
    return found[0]


async def test_gauges_follow_statistics_then_settle_and_the_pump_stops() -> None:
    wb = Workbench(max_concurrency=2, capacities={"gpu": 1})
    gate = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        return "ok"

    handles = [
        wb.submit(Tasklet(work)),
        wb.submit(Tasklet(work, resource_tags=["gpu"])),
        wb.submit(Tasklet(work, resource_tags=["gpu"])),
    ]
    assert wb.pumping
    await _settle()
    wb.refresh()
    _assert_gauges_match(wb)
    gpu = wb.gauges["gpu"]
    assert (gpu.in_use, gpu.capacity) == (1, 1)
    assert gpu.text == "1 / 1 in use · 1 waiting"
    # Full is said in words, not only by colour.
    assert gpu.level == "full" and "aura-load-full" in _gauge_row(wb, "gpu")
    assert '<span class="aura-gauge-state">full</span>' in _gauge_row(wb, "gpu")
    glob = wb.gauges["global"]
    assert glob.in_use == 2 and glob.level == "full"
    assert "waiting <b>1</b>" in wb.counters.value and "running <b>2</b>" in wb.counters.value
    assert handles[2].id in wb.running_table.value
    # Running first, then the queue; nothing chosen until the user chooses.
    assert [value for _, value in wb.tasklet_select.options] == [handles[0].id, handles[1].id, handles[2].id]
    assert wb.tasklet_select.value is None

    gate.set()
    assert await asyncio.gather(*handles) == ["ok", "ok", "ok"]
    # The pump notices the manager is idle, shows the final numbers and stops by itself.
    await _until(lambda: not wb.pumping)
    for name in ("global", "gpu"):
        assert wb.gauges[name].in_use == 0
        assert "0 waiting" in wb.gauges[name].text
        assert "aura-load-ok" in _gauge_row(wb, name) and "aura-gauge-state" not in _gauge_row(wb, name)
    _assert_gauges_match(wb)
    assert "succeeded <b>3</b>" in wb.counters.value
    assert "No tasklet is waiting" in wb.running_table.value
    assert wb.tasklet_select.options == () and wb.tasklet_select.value is None
    # A new submit restarts it.
    wb.submit(Tasklet(work))
    assert wb.pumping
    await wb.aclose()
    assert not wb.pumping


async def test_pump_updates_the_widgets_by_itself() -> None:
    wb = Workbench(max_concurrency=4, capacities={"gpu": 2})
    gate = asyncio.Event()

    async def work() -> None:
        await gate.wait()

    handles = wb.submit_many([Tasklet(work, resource_tags=["gpu"]) for _ in range(3)])
    await _until(lambda: "2 / 2 in use · 1 waiting" in wb.gauges_widget.value)  # no refresh(): the pump did it
    assert wb.gauges["gpu"].level == "full"
    gate.set()
    await asyncio.gather(*handles)
    await _until(lambda: not wb.pumping)
    assert wb.gauges["gpu"].in_use == 0 and "0 / 2 in use · 0 waiting" in wb.gauges_widget.value


async def test_the_dashboard_watches_only_the_planning_events() -> None:
    wb = Workbench(max_concurrency=2)
    hooks = wb.manager.hooks
    # ... and the failures, to count retries: they fire only when an attempt fails.
    watched = {"state_path_planned", "state_transition_started", "state_transition_finished", "after_task_failure"}
    for event in ("tasklet_submitted", "resources_acquired", "before_task_run", "after_task_success",
                  "resources_released", "after_task_run", "state_check"):  # fmt: skip
        assert hooks.registered(event) == [], event
    for event in watched:
        assert len(hooks.registered(event)) == 1
    await wb.aclose()
    for event in watched:
        assert hooks.registered(event) == []


async def test_a_background_failure_shows_in_the_error_area() -> None:
    wb = Workbench(max_concurrency=2)

    async def boom() -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("disk on fire")

    async def slow() -> None:
        await asyncio.sleep(10)

    assert "No errors" in wb.errors_widget.value
    handle = wb.submit(Tasklet(boom, name="backup"))
    with pytest.raises(RuntimeError, match="disk on fire"):
        await handle
    text = wb.errors_widget.value
    assert "RuntimeError" in text and "disk on fire" in text and handle.id in text and "backup" in text
    assert "aura-errors" in wb.errors_widget._dom_classes
    assert len(wb.errors) == 1 and "RuntimeError: disk on fire" in wb.errors[0]

    # A cancellation was asked for: it is not an error.
    other = wb.submit(Tasklet(slow))
    await _settle()
    wb.cancel(other)
    with pytest.raises(TaskletCancelledError):
        await other
    assert len(wb.errors) == 1

    wb.clear_errors()
    assert wb.errors == [] and "No errors" in wb.errors_widget.value
    await wb.aclose()


async def test_a_timeout_shows_in_the_error_area() -> None:
    wb = Workbench(max_concurrency=1)

    async def slow() -> None:
        await asyncio.sleep(10)

    handle = wb.submit(Tasklet(slow, timeout=0.05))
    with pytest.raises(TimeoutError):
        await handle
    assert "TaskletTimeoutError" in wb.errors_widget.value and "timeout" in wb.errors[0]
    await wb.aclose()


async def test_a_resource_declared_later_gets_a_gauge() -> None:
    wb = Workbench(max_concurrency=3)
    assert list(wb.gauges) == ["global"]
    gate = asyncio.Event()

    async def work() -> None:
        await gate.wait()

    handle = wb.submit(Tasklet(work, resource_tags=["api_key_A:5"]))
    await _settle()
    wb.refresh()
    assert list(wb.gauges) == ["global", "api_key_A"]
    gauge = wb.gauges["api_key_A"]
    page = wb.gauges_widget.value
    assert page.index("aura-gauge-global") < page.index("aura-gauge-api_key_A")
    assert (gauge.in_use, gauge.capacity) == (1, 5)
    assert gauge.level == "ok" and "aura-load-ok" in _gauge_row(wb, "api_key_A")  # 20 % load
    gate.set()
    await handle
    await wb.aclose()
    assert wb.gauges["api_key_A"].in_use == 0


async def test_cancel_from_the_dashboard() -> None:
    wb = Workbench(max_concurrency=2, capacities={"gpu": 1})

    async def forever() -> None:
        await asyncio.sleep(3600)

    handle = wb.submit(Tasklet(forever, resource_tags=["gpu"], name="stuck"))
    await _settle()
    wb.refresh()
    assert wb.gauges["gpu"].in_use == 1
    wb.tasklet_select.value = handle.id
    wb.cancel_button.click()
    assert "Cancel requested" in wb.why_area.value
    with pytest.raises(TaskletCancelledError):
        await handle
    assert handle.status == "cancelled"
    wb.refresh()
    stats = wb.statistics()
    assert stats.idle and stats.global_limit.in_use == 0 and stats.resources["gpu"].in_use == 0
    assert wb.gauges["gpu"].in_use == 0 and wb.gauges["global"].in_use == 0
    assert "cancelled <b>1</b>" in wb.counters.value
    assert wb.errors == []
    # The choice stays where the user put it, marked as ended; nothing to cancel any more.
    assert wb.tasklet_select.value == handle.id
    assert wb.tasklet_select.label.endswith("ended (cancelled)")
    assert wb.cancel_button.disabled and "has ended" in wb.cancel_button.tooltip
    wb.cancel_button.click()
    assert "has finished" in wb.why_area.value
    await wb.aclose()


async def test_cancel_by_id_and_not_ours() -> None:
    manager = ExecutionManager(max_concurrency=2)
    wb = Workbench(manager)
    assert wb.manager is manager

    async def forever() -> None:
        await asyncio.sleep(3600)

    ours = wb.submit(Tasklet(forever))
    theirs = manager.start(Tasklet(forever))  # not through the workbench: no handle here
    await _settle()
    assert wb.cancel(theirs.id) is False
    wb.refresh()
    wb.tasklet_select.value = theirs.id
    wb.cancel_button.click()
    assert "not submitted through this workbench" in wb.why_area.value
    assert wb.cancel(ours.id) is True
    theirs.cancel()
    await asyncio.gather(ours, theirs, return_exceptions=True)
    assert wb.cancel(ours) is False  # finished
    await wb.aclose()


async def test_why_names_the_holder() -> None:
    wb = Workbench(max_concurrency=4, capacities={"gpu": 1})
    gate = asyncio.Event()

    async def work() -> None:
        await gate.wait()

    holder = wb.submit(Tasklet(work, resource_tags=["gpu"], name="trainer"))
    waiter = wb.submit(Tasklet(work, resource_tags=["gpu"], name="evaluator"))
    await _settle()
    report = wb.why(waiter)
    assert report.position == 0
    assert f"{holder.id} (trainer)" in str(report)
    # The same answer from the dashboard's button.
    wb.refresh()
    wb.tasklet_select.value = waiter.id
    wb.why_button.click()
    assert f"{holder.id} (trainer)" in wb.why_area.value and "gpu" in wb.why_area.value
    assert "aura-why" in wb.why_area._dom_classes
    gate.set()
    await asyncio.gather(holder, waiter)
    await wb.aclose()


def _door_plan(record: list[str], wb_box: list[Workbench], *, fail: str | None = None) -> Plan:
    """outside --open_door--> hall --enter_room--> room; each transition records the path widget."""
    plan = Plan("house")
    where = {"now": "outside"}
    for state in ("outside", "hall", "room"):
        plan.add_task(lambda state=state: where["now"] == state, name=f"check_{state}")
        plan.add_state(state, check=f"check_{state}")

    def transition(name: str, to: str):
        async def move() -> None:
            wb = wb_box[0]
            record.append(wb.path_widget.value)
            await asyncio.sleep(0.01)
            if name == fail:
                raise RuntimeError(f"{name}: door stuck")
            where["now"] = to

        return move

    plan.add_task(transition("open_door", "hall"), name="open_door")
    plan.add_task(transition("enter_room", "room"), name="enter_room")
    plan.add_transition("outside", "hall", task="open_door", cost=1)
    plan.add_transition("hall", "room", task="enter_room", cost=1)

    @plan.task
    async def tidy() -> str:
        return "tidy"

    return plan


async def test_the_path_is_drawn_before_its_transitions_run_then_coloured() -> None:
    seen: list[str] = []
    box: list[Workbench] = []
    plan = _door_plan(seen, box)
    wb = Workbench(plans=[plan], max_concurrency=2)
    box.append(wb)
    assert "No state path planned yet" in wb.path_widget.value
    assert await wb.run(Tasklet("house/tidy", required_initial_state="room")) == "tidy"
    # When the first transition started, the drawing of the whole path was already there.
    first = seen[0]
    assert "outside → hall → room" in first
    assert "step 1/2" in first and "step 2/2" in first
    if shutil.which("dot"):
        assert "<svg" in first
    # After the run, every step shows as done (the DOT source and the widget).
    assert wb.path_source is not None
    assert "step 1/2: done" in wb.path_source and "step 2/2: done" in wb.path_source
    assert "step 1/2: done" in wb.path_widget.value and "step 2/2: done" in wb.path_widget.value
    assert wb.path_widget.value.count("aura-step-done") == 2
    assert "aura-path" in wb.path_widget._dom_classes
    await wb.aclose()


async def test_a_failing_transition_shows_failed() -> None:
    seen: list[str] = []
    box: list[Workbench] = []
    wb = Workbench(plans=[_door_plan(seen, box, fail="enter_room")], max_concurrency=2)
    box.append(wb)
    with pytest.raises(StatePlanningError):
        await wb.run(Tasklet("house/tidy", required_initial_state="room"))
    assert "step 1/2: done" in wb.path_source and "step 2/2: failed" in wb.path_source
    assert "aura-step-failed" in wb.path_widget.value and "door stuck" in wb.path_widget.value
    assert "StatePlanningError" in wb.errors_widget.value and "planning_failed" in wb.errors_widget.value
    await wb.aclose()


async def test_background_path_updates_arrive_through_refresh() -> None:
    plan = make_game_plan(GameDevice(delay=0.01))
    wb = Workbench(plans=[plan], max_concurrency=2)
    handle = wb.submit(Tasklet("game/daily_quests", params={"rounds": 1}, required_initial_state="in_game_at_home"))
    await handle
    wb.refresh()  # draws whatever the background drawing had not drawn yet
    assert "logged_out → logged_in → in_game_at_home" in wb.path_widget.value
    assert wb.path_source.count(": done") == 2
    await wb.aclose()


async def test_without_dot_the_path_shows_dot_text_and_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_workbench, "to_svg", lambda digraph: None)
    plan = make_game_plan(GameDevice(delay=0.0))
    wb = Workbench(plans=[plan], max_concurrency=2)
    await wb.run(Tasklet("game/collect_rewards", required_initial_state="in_game_at_home"))
    value = wb.path_widget.value
    assert "<svg" not in value
    assert "aura-path-dot" in value and "digraph state_map" in value
    assert "not installed" in value and "apt-get install graphviz" in value
    await wb.aclose()


async def test_run_and_submit_many() -> None:
    wb = Workbench(max_concurrency=3)

    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    assert await wb.run(Tasklet(double, params={"x": 21})) == 42
    with pytest.raises(ValueError):
        await wb.run(Tasklet(lambda: int("x")))
    handles = wb.submit_many([Tasklet(double, params={"x": i}) for i in range(5)])
    assert await asyncio.gather(*handles) == [0, 2, 4, 6, 8]
    # One bad tasklet: none is started.
    before = len(wb.manager.events)
    with pytest.raises(Exception, match="no capacity is declared"):
        wb.submit_many([Tasklet(double, params={"x": 1}), Tasklet(double, params={"x": 2}, resource_tags=["nope"])])
    assert len(wb.manager.events) == before
    assert list(wb.runs["status"]) == ["succeeded", "failed", *["succeeded"] * 5]
    assert {"event", "tasklet_id", "status"} <= set(wb.events.columns)
    await wb.aclose()


async def test_run_many_with_the_dashboard_live() -> None:
    wb = Workbench(max_concurrency=2, capacities={"gpu": 1})
    release = asyncio.Event()

    async def job(x: int) -> int:
        await release.wait()
        return x * x

    batch = asyncio.ensure_future(wb.run_many([Tasklet(job, params={"x": i}, resource_tags=["gpu"]) for i in range(4)]))
    await _until(lambda: wb.manager.statistics().resources["gpu"].in_use == 1)
    wb.refresh()
    _assert_gauges_match(wb)  # the gauges follow the batch
    wb.tasklet_select.value = wb.tasklet_select.options[0][1]
    wb.cancel_button.click()  # a batch tasklet has no handle: the dashboard says what to do
    assert "part of a run_many batch" in wb.why_area.value and "interrupt the cell" in wb.why_area.value
    release.set()
    assert await batch == [0, 1, 4, 9]
    assert wb._batch_ids == set()
    assert list(wb.runs["status"]) == ["succeeded"] * 4
    await wb.aclose()


async def test_run_many_of_quick_tasklets_keeps_the_dashboard_current() -> None:
    wb = Workbench(max_concurrency=4)

    async def quick() -> None:
        return None

    await wb.run_many([Tasklet(quick) for _ in range(20_000)])
    # The batch looked idle between tasklets at every tick; the counters still end right.
    assert "succeeded <b>20,000</b>" in wb.counters.value
    # The header counts batch tasklets as submitted here too.
    assert "20,000 submitted here" in wb.header.value
    with pytest.raises(TypeError, match="iterable of Tasklets"):
        await wb.run_many(Tasklet(quick))  # type: ignore[arg-type]
    await wb.aclose()


async def test_a_rejected_batch_does_not_forget_a_running_ones_tasklets() -> None:
    wb = Workbench(max_concurrency=2)
    release = asyncio.Event()

    async def job() -> None:
        await release.wait()

    t = Tasklet(job)
    first = asyncio.ensure_future(wb.run_many([t]))
    await _until(lambda: wb.manager.statistics().running == 1)
    with pytest.raises(Exception, match="already submitted"):
        await wb.run_many([t])  # the same tasklet again: rejected
    wb.refresh()
    wb.tasklet_select.value = t.id
    wb.cancel_button.click()
    assert "part of a run_many batch" in wb.why_area.value
    release.set()
    await first
    await wb.aclose()


async def test_cancelling_the_awaiting_cell_cancels_the_tasklet() -> None:
    wb = Workbench(max_concurrency=1)

    async def forever() -> None:
        await asyncio.sleep(3600)

    cell = asyncio.get_running_loop().create_task(wb.run(Tasklet(forever)))
    await _settle()
    cell.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cell
    await _until(lambda: wb.statistics().idle)
    assert wb.statistics().by_status["cancelled"] == 1
    await wb.aclose()


async def test_display_repr_and_arguments() -> None:
    wb = Workbench(max_concurrency=2, capacities={"gpu": 1})
    bundle = wb._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == wb.widget.model_id
    assert "aura-workbench" in wb.widget._dom_classes
    assert repr(wb) == (
        "<Workbench idle: global 0/2, gpu 0/1; waiting 0, planning 0, running 0; none finished; 0 errors>"
    )
    assert bundle["text/plain"] == repr(wb)
    with pytest.raises(TypeError, match="only used to create a new manager"):
        Workbench(wb.manager, max_concurrency=3)
    with pytest.raises(ValueError, match="at most 10 updates"):
        Workbench(max_concurrency=1, refresh_interval=0.01)
    await wb.aclose()
    assert repr(wb).startswith("<Workbench closed:")


async def test_aclose_keeps_the_final_dashboard() -> None:
    async with Workbench(max_concurrency=2, capacities={"gpu": 1}) as wb:
        async def work() -> int:
            await asyncio.sleep(0.02)
            return 1

        handles = wb.submit_many([Tasklet(work, resource_tags=["gpu"]) for _ in range(3)])
        await asyncio.gather(*handles)
    assert wb.manager.closed and not wb.pumping
    assert "succeeded <b>3</b>" in wb.counters.value
    assert wb.gauges["gpu"].capacity == 1 and wb.gauges["gpu"].in_use == 0
    assert "closed" in wb.header.value


async def test_a_gauge_says_whether_its_own_limit_holds_the_queue_up() -> None:
    # Two tasklets fill the global limit; three more need api_key_A too, which has room.
    # The key's gauge must not read as the bottleneck: they are blocked by "global".
    wb = Workbench(max_concurrency=2, capacities={"api_key_A": 5, "gpu": 1})
    gate = asyncio.Event()

    async def work() -> None:
        await gate.wait()

    handles = wb.submit_many([Tasklet(work, resource_tags=["api_key_A"]) for _ in range(5)])
    await _settle()
    wb.refresh()
    _assert_gauges_match(wb)
    key, glob = wb.gauges["api_key_A"], wb.gauges["global"]
    assert key.text == "2 / 5 in use · 3 waiting"
    assert key.blocked == 0 and "0 blocked here" in _gauge_row(wb, "api_key_A")
    assert key.level == "ok"  # by its own load
    assert glob.text == "2 / 2 in use · 3 waiting"
    assert glob.blocked == 3 and "3 blocked here" in _gauge_row(wb, "global")
    # The hints are title attributes: the page shows them on hover.
    assert re.search(r'class="aura-gauge-text" title="[^"]*another limit', _gauge_row(wb, "api_key_A"))
    assert re.search(r'class="aura-gauge-blocked" title="[^"]*full', _gauge_row(wb, "api_key_A"))
    assert "3 blocked here" in repr(glob)
    gate.set()
    await asyncio.gather(*handles)

    # The other way round: the GPU is full, the global limit has room.
    gate = asyncio.Event()
    wb2 = Workbench(max_concurrency=4, capacities={"gpu": 1})
    handles = wb2.submit_many([Tasklet(work, resource_tags=["gpu"]) for _ in range(3)])
    await _settle()
    wb2.refresh()
    assert "2 blocked here" in _gauge_row(wb2, "gpu")
    assert "0 blocked here" in _gauge_row(wb2, "global")
    gate.set()
    await asyncio.gather(*handles)
    await _until(lambda: not wb2.pumping)
    assert [g.blocked for g in wb2.gauges.values()] == [0, 0]
    await wb.aclose()
    await wb2.aclose()


async def test_cancel_and_why_are_disabled_while_no_tasklet_is_live() -> None:
    wb = Workbench(max_concurrency=2)
    assert wb.cancel_button.disabled and wb.why_button.disabled
    assert "No tasklet" in wb.cancel_button.tooltip

    async def forever() -> None:
        await asyncio.sleep(3600)

    handle = wb.submit(Tasklet(forever))
    await _until(lambda: len(wb.tasklet_select.options) == 1)  # the pump listed it ...
    assert wb.cancel_button.disabled and "Choose a tasklet" in wb.cancel_button.tooltip  # ... nobody chose it
    wb.tasklet_select.value = handle.id
    assert not wb.cancel_button.disabled and not wb.why_button.disabled
    assert "Cancel the chosen tasklet" in wb.cancel_button.tooltip
    wb.cancel_button.click()
    with pytest.raises(TaskletCancelledError):
        await handle
    await _until(lambda: not wb.pumping)
    assert wb.cancel_button.disabled and wb.why_button.disabled
    await wb.aclose()
    assert wb.cancel_button.disabled


async def test_after_a_run_the_drawing_marks_the_target_as_current() -> None:
    box: list[Workbench] = []
    wb = Workbench(plans=[_door_plan([], box)], max_concurrency=2)
    box.append(wb)
    await wb.run(Tasklet("house/tidy", required_initial_state="room"))
    room = next(line for line in wb.path_source.splitlines() if line.startswith("\troom "))
    outside = next(line for line in wb.path_source.splitlines() if line.startswith("\toutside "))
    assert "<I>current, target</I>" in room and "current" not in outside
    await wb.aclose()
    # A failed step leaves the system where that step started.
    box = []
    wb = Workbench(plans=[_door_plan([], box, fail="enter_room")], max_concurrency=2)
    box.append(wb)
    with pytest.raises(StatePlanningError):
        await wb.run(Tasklet("house/tidy", required_initial_state="room"))
    hall = next(line for line in wb.path_source.splitlines() if line.startswith("\thall "))
    assert "<I>current</I>" in hall
    await wb.aclose()


# -- v2: what a user sees changes only when it should ------------------------------------

from aura_nb import LimitStatistics, LogHealth  # noqa: E402
from aura_nb.notebook import _dashboard  # noqa: E402


def test_a_held_back_token_is_its_own_segment_with_a_caption() -> None:
    row = _dashboard.gauge_html(LimitStatistics("global", 8, 7, 201, held_back=1, held_for="12 (render-1)"))
    assert "7 / 8 in use · 201 waiting" in row
    assert re.search(r'aura-seg-used" style="width: 87.5%', row)
    assert re.search(r'aura-seg-held" style="width: 12.5%', row)
    assert "1 held for" in row and "12 (render-1)" in row and "the oldest waiter" in row
    # Not full: not a word of "full", nobody "blocked here" by this limit.
    assert "aura-load-busy" in row and "0 blocked here" in row
    # Nothing held back: no held segment and no caption.
    plain = _dashboard.gauge_html(LimitStatistics("gpu", 1, 1, 2))
    assert "aura-seg-held" not in plain and "held for" not in plain and "2 blocked here" in plain
    assert '<span class="aura-gauge-state">full</span>' in plain


def _note(row: str) -> str:
    """The text of a gauge row's note."""
    return re.sub(r"<[^>]+>", "", re.search(r'<span class="aura-gauge-note">(.*)</span></div>', row)[1])


def test_a_shared_limit_names_the_other_managers_holding_it() -> None:
    """Shared limits: who else holds the tokens, after the state and the counts (the note
    is cut with an ellipsis where it is too long: the labels, not the counts); the first
    two shown, all on hover."""
    others = ("vm:101 train.ipynb (1 tasklet)", "vm:102 <b>eval</b> (2 tasklets)", "gpu-box:7 nightly.py (1 tasklet)")
    row = _dashboard.gauge_html(LimitStatistics("gpu", 4, 4, 1, held_elsewhere=others))
    note = _note(row)
    assert note.startswith("full · 1 blocked here · held elsewhere: vm:101 train.ipynb (1 tasklet), vm:102 &lt;b&gt;eval")
    assert "+1 more" in note and "<b>eval</b>" not in row  # a label is text, never markup
    assert "gpu-box:7 nightly.py (1 tasklet)" in row  # on hover
    assert "held by vm:101 train.ipynb (1 tasklet)" in repr(LimitStatistics("gpu", 4, 4, 1, held_elsewhere=others))
    assert "held elsewhere" not in _dashboard.gauge_html(LimitStatistics("gpu", 4, 4, 1))  # a manager's own limits
    # A rate-only resource's row: its quota's state and countdown come first too.
    api = LimitStatistics("api", 2**63 - 1, 3, 5, rate=10, per=1.0, rate_used=10, next_token_in=0.2, held_elsewhere=others)
    assert _note(_dashboard.gauge_html(api)).startswith("quota used · next token in 0.2 s · 5 blocked here · held elsewhere: ")


def test_the_gauges_share_their_columns() -> None:
    """All the rows are in one grid: the bars line up whatever a caption's length (a paced
    quota's caption is twice a plain one's; a flex row each shrank its bar by as much)."""
    limits = [LimitStatistics("global", 40, 3, 2000), LimitStatistics("gpu", 1, 1, 3),
              LimitStatistics("api", 2**63 - 1, 0, 1440, rate=20, per=1.0, rate_used=14, burst=1)]  # fmt: skip
    page = _dashboard.gauges_html(type("Stats", (), {"limits": limits})())
    assert page.startswith('<div class="aura-gauge-box"><div class="aura-gauge-list">') and page.endswith("</div>")
    assert len(re.findall(r'<div class="aura-gauge ', page)) == 3 and page.count("<div") == 5  # rows, directly in it
    css = re.sub(r"\s+", " ", _dashboard.CSS)
    assert "@supports (grid-template-columns: subgrid)" in css  # else the flex rows, as before
    assert ".aura-gauge-list > .aura-gauge { display: grid; grid-template-columns: subgrid; grid-column: 1 / -1; }" in css


def test_the_event_log_falling_behind_is_a_visible_warning() -> None:
    def Log(pending: int, lag: float, error: str | None) -> LogHealth:  # noqa: N802
        return LogHealth("runs.sqlite", pending, lag, error, error is None)

    stats = ExecutionManager(max_concurrency=2).statistics()

    class Stats:
        def __init__(self, log: LogHealth | None) -> None:
            self.log, self.global_limit = log, stats.global_limit

    assert "aura-badge-log" not in _dashboard.header_html("busy", 3, Stats(None), 0)
    assert "aura-badge-log" not in _dashboard.header_html("busy", 3, Stats(Log(10, 1.0, None)), 0)
    late = _dashboard.header_html("busy", 3, Stats(Log(1234, 7.4, "disk I/O error\nforged")), 0)
    assert "event log 7 s behind (1,234 events not written yet): disk I/O error\\nforged" in late


async def test_the_strip_is_live_and_errors_have_a_time_and_a_badge() -> None:
    wb = Workbench(max_concurrency=2, capacities={"gpu": 1})
    strip = wb.gauge_strip()
    assert wb.strip in strip.children and "0 / 1 in use · 0 waiting" in wb.strip.value
    gate = asyncio.Event()

    async def work() -> None:
        await gate.wait()
        raise RuntimeError("boom")

    handles = wb.submit_many([Tasklet(work, resource_tags=["gpu"]) for _ in range(2)])
    await _until(lambda: "1 / 1 in use · 1 waiting" in wb.strip.value)  # the pump updates the strip
    assert "busy" in wb.strip.value
    gate.set()
    await asyncio.gather(*handles, return_exceptions=True)
    await _until(lambda: not wb.pumping)
    assert "⚠ 2 errors" in wb.header.value and "⚠ 2 errors" in wb.strip.value
    assert re.search(r'<time class="aura-error-time">\d\d:\d\d:\d\d</time>', wb.errors_widget.value)
    # The errors come before the paths on the page.
    children = list(wb.widget.children)
    assert children.index(wb.errors_widget) < children.index(wb.path_widget)
    await wb.aclose()


async def test_a_why_answer_says_when_and_follows_the_tasklet() -> None:
    wb = Workbench(max_concurrency=4, capacities={"gpu": 1})
    gate = asyncio.Event()

    async def work() -> None:
        await gate.wait()

    holder = wb.submit(Tasklet(work, resource_tags=["gpu"], name="trainer"))
    waiter = wb.submit(Tasklet(work, resource_tags=["gpu"], name="evaluator"))
    await _settle()
    wb.refresh()
    wb.tasklet_select.value = waiter.id
    wb.why_button.click()
    assert re.search(r"asked at \d\d:\d\d:\d\d", wb.why_area.value) and "number 1 of 1" in wb.why_area.value
    gate.set()
    await asyncio.gather(holder, waiter)
    await _until(lambda: not wb.pumping)
    # The answer above was about a wait that is over: it says so, and when it changed.
    assert "not waiting any more" in wb.why_area.value and "number 1 of 1" not in wb.why_area.value
    assert "updated at" in wb.why_area.value
    assert wb.tasklet_select.value == waiter.id  # still the user's choice
    await wb.aclose()


async def test_a_batch_shows_its_progress_and_counts_in_the_header() -> None:
    wb = Workbench(max_concurrency=2)
    gate = asyncio.Event()

    async def job() -> None:
        await gate.wait()

    assert "No batch running" in wb.batch_widget.value
    batch = asyncio.ensure_future(wb.run_many([Tasklet(job) for _ in range(6)]))
    await _until(lambda: "0 / 6 done" in wb.batch_widget.value)
    assert "6 submitted here" in wb.header.value and "busy" in wb.header.value
    gate.set()
    await batch
    assert "No batch running" in wb.batch_widget.value and "6 submitted here" in wb.header.value
    await wb.aclose()


async def test_the_last_paths_stay_selectable_and_the_snapshot_shows_the_last_state() -> None:
    box: list[Workbench] = []
    wb = Workbench(plans=[_door_plan([], box)], max_concurrency=2)
    box.append(wb)
    await wb.run(Tasklet("house/tidy", required_initial_state="hall"))
    await wb.run(Tasklet("house/tidy", required_initial_state="room"))
    keys = [value for _, value in wb.path_select.options]
    assert len(keys) == 3 and wb.path_select.value == keys[0]  # "the latest", then both paths
    assert "enter_room" in wb.path_widget.value  # the latest: hall -> room
    wb.path_select.value = keys[2]  # the first path, planned and walked in milliseconds
    assert "open_door" in wb.path_widget.value and "enter_room</span></code>" not in wb.path_widget.value
    wb.path_select.value = keys[0]
    assert "enter_room" in wb.path_widget.value
    snapshot = wb.snapshot_html()
    assert 'class="aura-snapshot"' in snapshot and "aura-gauge-global" in snapshot and "<svg" in snapshot
    assert "succeeded <b>2</b>" in snapshot
    await wb.aclose()


# -- rate quotas and retries ---------------------------------------------------------------

from aura_nb.core import Retry  # noqa: E402


def _quota_row(html: str, name: str) -> str:
    """The HTML of one resource's quota row on the page."""
    rows = re.findall(r'<div class="aura-gauge .*?</div>', html)
    found = [row for row in rows if f"aura-quota-{name} " in row]
    assert len(found) == 1, rows
    return found[0]


async def test_a_rate_only_resource_shows_its_quota_not_a_capacity_bar_and_why_says_when() -> None:
    wb = Workbench(max_concurrency=4, rates={"api": "2/s"})
    legend = wb.legend.value
    assert "aura-seg-quota" in legend  # the key names the quota's colour once a resource has one

    async def call() -> str:
        return "ok"

    handles = [wb.submit(Tasklet(call, resource_tags=["api"], name=f"call {i}")) for i in range(3)]
    await _until(lambda: "2 / 2 per s · 1 waiting" in wb.gauges_widget.value)  # the pump shows it by itself
    row = _quota_row(wb.gauges_widget.value, "api")
    # One row for the resource, and it is the quota: no capacity bar, no huge "capacity".
    assert row == _gauge_row(wb, "api") and "aura-gauge-quota" in row
    assert str(2**63 - 1) not in wb.gauges_widget.value and "in use (no cap)" not in wb.gauges_widget.value
    assert 'aria-valuemax="2" aria-valuenow="2"' in row and 'aura-seg-quota" style="width: 100%' in row
    # Used up: said in words, with the countdown to the next token, and who it holds up.
    assert '<span class="aura-gauge-state">quota used</span>' in row and "aura-load-full" in row
    assert re.search(r'<span class="aura-gauge-next">next token in [01]\.\d s</span>', row)
    assert "1 blocked here" in row and re.search(r"[0-2] in use \(no cap on how many at once\)", row)
    gauge = wb.gauges["api"]
    assert (gauge.rate, gauge.per, gauge.rate_used, gauge.quota_level) == (2, 1.0, 2, "full") and gauge.unlimited
    assert gauge.quota_text == "2 / 2 per s"
    # "Why waiting?" on the third call names the quota and the time left.
    wb.refresh()
    wb.tasklet_select.value = handles[2].id
    wb.why_button.click()
    assert re.search(r"api: quota used \(2/s\), next token in [01]\.\d s", wb.why_area.value)
    assert await asyncio.gather(*handles) == ["ok"] * 3
    # The pump runs on while tokens are out: the gauge drains to 0, then it stops.
    await _until(lambda: not wb.pumping, timeout=4.0)
    row = _quota_row(wb.gauges_widget.value, "api")
    assert "0 / 2 per s · 0 waiting" in row and "quota used" not in row and "next token" not in row
    assert "0 / 2 per s" in wb.snapshot_html()  # the static snapshot shows the drained quota too
    await wb.aclose()


def test_a_resource_with_a_capacity_and_a_rate_shows_both_rows() -> None:
    used_up = LimitStatistics("api", 5, 2, 3, rate=10, per=1.0, rate_used=10, next_token_in=0.34)
    html = _dashboard.gauge_html(used_up)
    capacity = re.findall(r'<div class="aura-gauge .*?</div>', html)[0]
    assert "aura-gauge-api " in capacity and "2 / 5 in use · 3 waiting" in capacity
    assert "0 blocked here" in capacity  # the capacity is not what holds them up ...
    quota = _quota_row(html, "api")
    assert "↳ quota" in quota and 'title="api: its rate quota"' in quota
    assert "10 / 10 per s" in quota and "quota used" in quota and "next token in 0.3 s" in quota
    assert "3 blocked here" in quota  # ... the quota is
    # Not used up: no countdown, the share said as for a capacity; windows in words.
    calm = _dashboard.gauge_html(LimitStatistics("api", 5, 0, 0, rate=600, per=60.0, rate_used=450, next_token_in=12.0))
    quota = _quota_row(calm, "api")
    assert "450 / 600 per min" in quota and "aura-load-busy" in quota and "next token" not in quota
    assert "per 2.5 s" in _dashboard.gauge_html(LimitStatistics("k", 1, 0, 0, rate=1, per=2.5))
    # A paced quota says so: its bar rarely fills while tasklets wait their turn.
    paced = LimitStatistics("api", 2**63 - 1, 0, 4, rate=20, per=1.0, rate_used=7, next_token_in=0.03, burst=1)
    assert "7 / 20 per s, paced 1 per 0.05 s · 4 waiting" in _quota_row(_dashboard.gauge_html(paced), "api")
    # A hostile name stays one escaped line in the quota row too.
    hostile = LimitStatistics("<b>k\u202e\n", 2**63 - 1, 0, 0, rate=3, per=1.0, rate_used=0)
    row = _dashboard.gauge_html(hostile)
    assert "<b>k" not in row and "&lt;b&gt;k" in row and "\u202e" not in row and "\n" not in row


async def test_retries_are_counted_in_the_counters_the_strip_and_a_later_workbench() -> None:
    wb = Workbench(max_concurrency=4)
    strip = wb.gauge_strip()
    tries = {"flaky": 0, "broken": 0}

    async def flaky(name: str) -> str:
        tries[name] += 1
        if name == "broken" or tries[name] < 3:
            raise ConnectionError(f"{name}: attempt {tries[name]} failed")
        return "ok"

    retry = Retry(3, backoff=0.01, jitter=0)
    ok = wb.submit(Tasklet(flaky, params={"name": "flaky"}, retry=retry))  # 2 retries, then succeeds
    bad = wb.submit(Tasklet(flaky, params={"name": "broken"}, retry=Retry(1, backoff=0.01)))  # 1, then fails
    assert await ok == "ok"
    with pytest.raises(ConnectionError):
        await bad
    await _until(lambda: not wb.pumping)
    assert wb.retries == 3
    assert re.search(r'aura-count-retries" title="retries: attempts beyond the first[^"]*">retries <b>3</b>',
                     wb.counters.value)  # fmt: skip
    assert "succeeded <b>1</b>" in wb.counters.value and "failed <b>1</b>" in wb.counters.value
    assert "3 retries" in strip.children[1].value
    assert "3 retries" in repr(wb) and "retries <b>3</b>" in wb.snapshot_html()
    # The same count as the log's, and a Workbench made later around this manager reads it.
    runs = wb.manager.events.runs().set_index("tasklet_id")
    assert runs.loc[ok.id, "attempts"] == 3 and runs.loc[bad.id, "attempts"] == 2
    later = Workbench(wb.manager)
    assert later.retries == 3 and "retries <b>3</b>" in later.counters.value
    await wb.aclose()


async def test_as_completed_shows_its_progress_and_yields_every_outcome() -> None:
    wb = Workbench(max_concurrency=2)
    gate = asyncio.Event()

    async def work(i: int) -> int:
        if i == 0:
            await gate.wait()  # the first ends last
        return i

    seen: list[int] = []
    rows: list[str] = []
    async for outcome in wb.as_completed([Tasklet(work, params={"i": i}) for i in range(6)]):
        seen.append(outcome.unwrap())
        wb.refresh()
        rows.append(wb.batch_widget.value)
        if len(seen) == 5:
            gate.set()
    assert sorted(seen) == list(range(6)) and seen[-1] == 0  # as they completed, not in order
    assert any("/ 6" in row for row in rows)  # the progress row counted this batch
    assert "No batch running." in wb.batch_widget.value  # and is gone once it ended
    assert wb.manager.statistics().by_status["succeeded"] == 6
    await wb.aclose()
