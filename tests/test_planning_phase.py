"""The planning phase of submit(): checks, the cheapest path, transitions, and every failure."""

from __future__ import annotations

import anyio
import pytest

import aura_nb as an
from aura_nb.examples.game import GameDevice, make_game_plan

pytestmark = pytest.mark.anyio


def game(**device_kwargs: object) -> tuple[an.Plan, GameDevice]:
    device = GameDevice(delay=0.005, **device_kwargs)
    return make_game_plan(device), device


def hooks_seen(em: an.ExecutionManager) -> list[tuple[str, str | None]]:
    seen: list[tuple[str, str | None]] = []
    for name in an.AURA_HOOKS:
        em.hooks.on(name, lambda ev: seen.append((ev.event, ev.status)))
    return seen


def assert_idle(em: an.ExecutionManager) -> None:
    stats = em.statistics()
    assert stats.idle, stats


async def test_the_cheapest_path_runs_before_the_task() -> None:
    plan, device = game()
    paths: list[an.Path] = []
    async with an.ExecutionManager(plans=[plan], capacities={"gpu": 1}) as em:
        em.hooks.on("state_path_planned", lambda ev: paths.append(ev.path))
        rounds = await em.submit(
            an.Tasklet("game/daily_quests", params={"rounds": 2}, required_initial_state="in_game_at_home",
                       resource_tags=["gpu"])  # fmt: skip
        )
        assert rounds == 2
        assert_idle(em)
    assert device.log == ["do_login", "select_character_and_enter_game", "daily_quests(2)"]
    (path,) = paths
    assert path.total_cost == 6
    assert [s.task for s in path.steps] == ["do_login", "select_character_and_enter_game"]
    events = [ev.event for ev in em.events]
    assert events.index("state_path_planned") < events.index("state_transition_started")
    assert events.index("state_planning_finished") < events.index("before_task_run")
    assert events.count("state_transition_finished") == 2
    runs = em.events.runs()
    assert runs.loc[0, "transitions"] == 2 and runs.loc[0, "planning_s"] > 0


async def test_already_in_the_state_runs_no_transition() -> None:
    plan, device = game(state="in_game_at_home")
    async with an.ExecutionManager(plans=[plan]) as em:
        await em.submit(an.Tasklet("game/daily_quests", required_initial_state="in_game_at_home"))
    assert device.log == ["daily_quests(3)"]
    frame = em.events.to_frame()
    checks = frame[frame["event"] == "state_check"]
    assert len(checks) == 1 and checks.iloc[0]["detail"] == "true"
    assert "state_path_planned" not in set(frame["event"])


async def test_no_required_state_skips_planning() -> None:
    plan, device = game(state="maintenance")  # would be a dead end
    async with an.ExecutionManager(plans=[plan]) as em:
        assert await em.submit(an.Tasklet("game/collect_rewards")) == {"gold": 100, "gems": 5}
    assert device.log == ["collect_rewards"]
    assert not any(ev.event.startswith("state_") for ev in em.events)


async def test_a_path_in_progress_is_visible_to_hooks_before_each_step() -> None:
    plan, device = game()
    order: list[str] = []
    async with an.ExecutionManager(plans=[plan]) as em:
        em.hooks.on("state_path_planned", lambda ev: order.append(f"planned {ev.detail}"))
        em.hooks.on("state_transition_started", lambda ev: order.append(f"start {ev.step} {device.state}"))
        em.hooks.on("state_transition_finished", lambda ev: order.append(f"end {ev.step} {ev.detail}"))
        await em.submit(an.Tasklet("game/daily_quests", required_initial_state="in_game_at_home"))
    assert order == [
        "planned logged_out -> logged_in -> in_game_at_home",
        "start 0 logged_out",
        "end 0 done",
        "start 1 logged_in",
        "end 1 done",
    ]


# -- every planning failure -------------------------------------------------------------
async def planning_failure(plan: an.Plan, **tasklet_kwargs: object) -> tuple[an.StatePlanningError, list, an.ExecutionManager]:
    async with an.ExecutionManager(plans=[plan], capacities={"gpu": 1}) as em:
        seen = hooks_seen(em)
        with pytest.raises(an.StatePlanningError) as info:
            await em.submit(
                an.Tasklet("game/daily_quests", required_initial_state="in_game_at_home", resource_tags=["gpu"],
                           **tasklet_kwargs)  # fmt: skip
            )
        assert_idle(em)
    assert seen[-2:] == [("after_task_failure", "planning_failed"), ("after_task_run", "planning_failed")]
    assert ("before_task_run", None) not in seen  # the body never started
    assert em.events.runs()["status"].tolist() == ["planning_failed"]
    err = info.value
    assert (err.plan, err.target) == ("game", "in_game_at_home")
    return err, seen, em


async def test_no_current_state() -> None:
    plan, device = game(state="loading_screen")
    err, _, _ = await planning_failure(plan)
    assert err.reason == "no_current_state"
    assert "every check returned False" in str(err)
    assert device.log == []


async def test_several_current_states() -> None:
    plan = an.Plan("game")

    @plan.task
    def yes() -> bool:
        return True

    @plan.task
    def no() -> bool:
        return False

    @plan.task
    async def daily_quests() -> None:
        pass

    @plan.task
    async def go() -> None:
        pass

    plan.add_state("a", check="yes")
    plan.add_state("b", check="yes")
    plan.add_state("in_game_at_home", check="no")
    plan.add_transition("a", "in_game_at_home", task="go")
    err, _, _ = await planning_failure(plan)
    assert err.reason == "several_current_states"
    assert err.current == ("a", "b")
    assert "a, b" in str(err)


async def test_dead_end() -> None:
    plan, device = game(state="maintenance")
    err, _, _ = await planning_failure(plan)
    assert err.reason == "no_path"
    assert err.current == "maintenance"
    assert "dead end" in str(err)


async def test_a_failing_transition() -> None:
    plan, device = game(fail_transitions={"select_character_and_enter_game"})
    err, _, em = await planning_failure(plan)
    assert err.reason == "transition_failed"
    assert err.failed_step == 1
    assert err.path is not None and err.path.total_cost == 6
    assert isinstance(err.__cause__, RuntimeError)
    assert "transition 2 of 2" in str(err) and "simulated failure" in str(err)
    assert device.log == ["do_login", "select_character_and_enter_game failed"]
    frame = em.events.to_frame()
    finished = frame[frame["event"] == "state_transition_finished"]
    assert finished["detail"].tolist() == ["done", "failed"]


async def test_the_final_check_fails() -> None:
    plan, device = game(noop_transitions={"select_character_and_enter_game"})
    err, _, _ = await planning_failure(plan)
    assert err.reason == "final_check_failed"
    assert err.path is not None


async def test_a_check_must_return_a_bool() -> None:
    plan = make_game_plan(GameDevice(delay=0))

    @plan.task(name="check_weird")
    def check_weird() -> str:
        return "yes"

    plan.add_state("weird", check="check_weird")
    plan.add_transition("weird", "in_game_at_home", task="quick_start")
    err, _, _ = await planning_failure(plan)
    assert err.reason == "check_failed"
    assert "returned 'yes' (str)" in str(err)


async def test_a_check_that_raises() -> None:
    plan = make_game_plan(GameDevice(delay=0))

    @plan.task(name="check_broken")
    def check_broken() -> bool:
        raise OSError("screen capture failed")

    plan.add_state("broken", check="check_broken")
    err, _, _ = await planning_failure(plan)
    assert err.reason == "check_failed"
    assert isinstance(err.__cause__, OSError)


async def test_planning_timeout_bounds_a_hanging_check() -> None:
    plan, device = game(hang_checks={"check_logged_out"})
    try:
        async with an.ExecutionManager(plans=[plan], planning_timeout=0.3) as em:
            seen = hooks_seen(em)
            with anyio.fail_after(10):
                with pytest.raises(an.TaskletTimeoutError) as info:
                    await em.submit(an.Tasklet("game/daily_quests", required_initial_state="in_game_at_home"))
            assert (info.value.phase, info.value.limit) == ("planning", 0.3)
            assert_idle(em)
    finally:
        device.release_hangs()
    assert seen[-2:] == [("after_task_failure", "timeout"), ("after_task_run", "timeout")]


async def test_cancellation_while_planning_returns_everything() -> None:
    plan, device = game()
    device.delay = 10  # transitions take forever
    async with an.ExecutionManager(plans=[plan], capacities={"gpu": 1}) as em:
        seen = hooks_seen(em)
        handle = em.start(
            an.Tasklet("game/daily_quests", required_initial_state="in_game_at_home", resource_tags=["gpu"])
        )
        await anyio.sleep(0.1)
        assert handle.status == "planning"
        assert em.statistics().planning == 1
        handle.cancel()
        with pytest.raises(an.TaskletCancelledError):
            await handle
        assert_idle(em)
    assert seen == [("after_task_failure", "cancelled"), ("after_task_run", "cancelled")]


# -- validation at submit time ------------------------------------------------------------
async def test_an_unknown_required_state_is_refused_at_once() -> None:
    plan, _ = game()
    async with an.ExecutionManager(plans=[plan]) as em:
        with pytest.raises(an.TaskletError, match=r"'in_gmae' is not a state of plan 'game' \(known: logged_out"):
            await em.submit(an.Tasklet("game/daily_quests", required_initial_state="in_gmae"))
        assert len(em.events) == 0


async def test_a_required_state_needs_a_plan() -> None:
    async def loose() -> None:
        pass

    plan, _ = game()
    async with an.ExecutionManager(plans=[plan]) as em:
        with pytest.raises(an.TaskletError, match="needs a plan"):
            await em.submit(an.Tasklet(loose, required_initial_state="logged_in"))


async def test_tasks_are_found_by_qualified_name_bare_name_or_function() -> None:
    plan, device = game(state="in_game_at_home")
    async with an.ExecutionManager(plans=[plan]) as em:
        assert await em.submit(an.Tasklet("daily_quests", params={"rounds": 1})) == 1
        fn = plan.tasks["daily_quests"].fn
        assert await em.submit(an.Tasklet(fn, params={"rounds": 1}, required_initial_state="in_game_at_home")) == 1
        with pytest.raises(an.TaskNotFoundError, match="no plan named 'gmae'"):
            await em.submit(an.Tasklet("gmae/daily_quests"))
        with pytest.raises(an.TaskNotFoundError, match="no task named 'nothing'"):
            await em.submit(an.Tasklet("nothing"))
    assert em.events.runs()["task"].tolist() == ["game/daily_quests", "game/daily_quests"]
