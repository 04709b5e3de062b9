"""The example game plan and its simulated device."""

from __future__ import annotations

import inspect
import time

import anyio
import pytest
import yaml

from aura_nb.core._plan import Plan
from aura_nb.examples import GAME_STATES_MAP, GameDevice, make_game_plan

STATES = ("logged_out", "logged_in", "in_game_at_home", "maintenance")


def test_the_plan_is_loaded_from_the_yaml_next_to_the_module() -> None:
    plan = make_game_plan()

    assert GAME_STATES_MAP.name == "game_states_map.yaml"
    raw = yaml.safe_load(GAME_STATES_MAP.read_text(encoding="utf-8"))
    assert tuple(raw["states"]) == STATES
    assert tuple(plan.states) == STATES
    assert {name: state.check for name, state in plan.states.items()} == {s: f"check_{s}" for s in STATES}
    assert [(t.from_state, t.to_state, t.task, t.cost) for t in plan.transitions] == [
        ("logged_out", "logged_in", "do_login", 1),
        ("logged_in", "in_game_at_home", "select_character_and_enter_game", 5),
        ("logged_out", "in_game_at_home", "quick_start", 10),
        ("in_game_at_home", "logged_out", "logout", 1),
    ]
    assert plan.states["maintenance"].description
    assert repr(plan) == "<Plan 'game': 10 tasks, 4 states, 4 transitions>"


def test_checks_are_sync_and_transitions_and_quests_async() -> None:
    tasks = make_game_plan().tasks
    assert {name for name, spec in tasks.items() if spec.is_async} == {
        "do_login",
        "select_character_and_enter_game",
        "quick_start",
        "logout",
        "daily_quests",
    }
    assert inspect.signature(tasks["daily_quests"].fn).parameters["rounds"].default == 3


def test_maintenance_is_a_dead_end_and_every_other_state_reaches_every_other() -> None:
    planner = make_game_plan().planner
    assert planner.reachable("maintenance") == {"maintenance": 0}
    for start in STATES[:3]:
        assert set(planner.reachable(start)) == set(STATES[:3])


def test_device_lives_in_the_context_and_plans_are_independent() -> None:
    device = GameDevice(state="in_game_at_home")
    plan = make_game_plan(device, name="alt")
    other = make_game_plan()

    assert plan.name == "alt"
    assert plan.context["device"] is device
    assert other.context["device"] is not device
    assert plan.tasks["check_in_game_at_home"].fn() is True
    assert other.tasks["check_in_game_at_home"].fn() is False


def test_checks_return_real_bools_for_the_current_screen() -> None:
    device = GameDevice(state="maintenance")
    plan = make_game_plan(device)
    answers = {s: plan.tasks[f"check_{s}"].fn() for s in STATES}
    assert answers == {"logged_out": False, "logged_in": False, "in_game_at_home": False, "maintenance": True}
    assert all(type(value) is bool for value in answers.values())

    device.state = "loading"  # a screen the map does not know: nothing matches
    assert not any(plan.tasks[f"check_{s}"].fn() for s in STATES)


@pytest.mark.anyio
async def test_transitions_take_the_delay_and_move_the_screen() -> None:
    device = GameDevice(delay=0.05)
    plan = make_game_plan(device)

    started = time.monotonic()
    for step in plan.find_path("logged_out", "in_game_at_home"):
        await plan.tasks[step.task].fn()
    assert time.monotonic() - started >= 0.1
    assert device.state == "in_game_at_home"
    assert device.log == ["do_login", "select_character_and_enter_game"]


@pytest.mark.anyio
async def test_fail_transitions_raise_and_leave_the_screen_unchanged() -> None:
    device = GameDevice(delay=0, fail_transitions={"do_login"})
    plan = make_game_plan(device)

    with pytest.raises(RuntimeError, match="^simulated failure in do_login$"):
        await plan.tasks["do_login"].fn()
    assert device.state == "logged_out"
    assert device.log == ["do_login failed"]

    await plan.tasks["quick_start"].fn()  # other transitions still work
    assert device.state == "in_game_at_home"


@pytest.mark.anyio
async def test_noop_transitions_succeed_without_moving() -> None:
    device = GameDevice(delay=0, noop_transitions={"do_login"})
    await make_game_plan(device).tasks["do_login"].fn()
    assert device.state == "logged_out"
    assert device.log == ["do_login"]


@pytest.mark.anyio
async def test_task_bodies() -> None:
    device = GameDevice(delay=0.01, state="in_game_at_home")
    plan = make_game_plan(device)

    started = time.monotonic()
    assert await plan.tasks["daily_quests"].fn(rounds=4) == 4
    assert time.monotonic() - started >= 0.04
    assert await plan.tasks["daily_quests"].fn() == 3
    assert plan.tasks["collect_rewards"].fn() == {"gold": 100, "gems": 5}
    assert device.log == ["daily_quests(4)", "daily_quests(3)", "collect_rewards"]
    with pytest.raises(ValueError, match="rounds must be an integer >= 0"):
        await plan.tasks["daily_quests"].fn(rounds=-1)


@pytest.mark.anyio
async def test_hang_checks_block_until_released() -> None:
    device = GameDevice(hang_checks={"check_logged_out"})
    check = make_game_plan(device).tasks["check_logged_out"].fn
    results: list[bool] = []

    async def run_check() -> None:
        results.append(await anyio.to_thread.run_sync(check))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_check)
        try:
            with anyio.fail_after(5):
                while device.hanging == 0:
                    await anyio.sleep(0.01)
            await anyio.sleep(0.05)
            assert results == []  # still hanging
        finally:
            device.release_hangs()  # a worker thread cannot be cancelled: always free it

    assert results == [True]
    assert device.hanging == 0
    assert device.hang_checks == set()
    assert check() is True  # released: no more hanging


def test_only_the_named_checks_hang() -> None:
    device = GameDevice(hang_checks={"check_maintenance"})
    plan = make_game_plan(device)
    started = time.monotonic()
    assert plan.tasks["check_logged_out"].fn() is True
    assert time.monotonic() - started < 1


def test_a_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="delay must be >= 0"):
        GameDevice(delay=-1)


def test_the_yaml_is_a_plain_aura_map_usable_by_any_plan() -> None:
    source = make_game_plan()
    plan = Plan("copy")
    for spec in source.tasks.values():
        plan.add_task(spec.fn, name=spec.name)
    plan.load_states_map(str(GAME_STATES_MAP))
    assert plan.states == source.states
    assert plan.transitions == source.transitions
