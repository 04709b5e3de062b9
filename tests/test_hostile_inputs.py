"""Hostile and wrong inputs: each is refused with a clear error, and nothing leaks.

Every case checks three things a user relies on when they get an input wrong:

1. the error's type (an ``an.AuraError`` subclass, or ``TypeError`` where the API
   documents it) and a message that names the offending value and says what would be
   valid;
2. nothing leaked: a refused tasklet was not queued, acquired, recorded or allowed to
   declare a capacity; a refused hook was not registered; a refused states map left
   the plan unchanged; a thread that ran a hung check finishes once the hang ends;
3. bounded time and memory where an input is built to exhaust them (YAML alias bombs,
   huge texts, deep nesting), and YAML Python tags are refused without running.

Every case here once exposed or guards against a real gap (raw OverflowError, raw
yaml ReaderError, unbounded names and messages, a 16 MiB map taking a minute to load).
"""

from __future__ import annotations

import math
import pathlib
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest
import yaml

import aura_nb as an
from aura_nb.core._statesmap import MAX_ALIASES, MAX_BYTES
from aura_nb.examples.game import GameDevice, make_game_plan

AURA_DIR = str(pathlib.Path(an.__file__).parent)
MiB = 2**20


async def noop() -> None:
    return None


# -- helpers --------------------------------------------------------------------------


def assert_names(message: str, *fragments: str) -> None:
    """Every fragment (the offending value, what would be valid) is in the message."""
    missing = [f for f in fragments if f not in message]
    assert not missing, f"message {message!r} does not mention {missing!r}"


def assert_untouched(em: an.ExecutionManager, capacities: dict[str, int], *, events: int = 0) -> None:
    """Nothing in use, nothing waiting, no tasklet recorded, no capacity declared."""
    stats = em.statistics()
    assert stats.idle, stats
    assert stats.waiting == 0 and stats.planning == 0 and stats.running == 0, stats
    assert all(lim.in_use == 0 and lim.waiting == 0 for lim in stats.limits), stats
    assert stats.finished == 0, stats
    assert len(em.events) == events
    assert dict(em.capacities) == capacities


@contextmanager
def bounded(*, seconds: float = 5.0, peak_mib: float | None = 100.0) -> Iterator[None]:
    """Assert the block takes less than ``seconds`` and allocates at most ``peak_mib`` at peak."""
    if peak_mib is not None:
        tracemalloc.start()
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        peak = 0
        if peak_mib is not None:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.2f} s (limit {seconds} s)"
    if peak_mib is not None:
        assert peak < peak_mib * MiB, f"peak allocation {peak / MiB:.1f} MiB (limit {peak_mib} MiB)"


def threads_in_user_code(exclude: set[threading.Thread]) -> list[str]:
    """Threads started since ``exclude`` whose stack is still inside aura_nb or this file.

    An idle pooled worker thread (anyio's or trio's) waits in its queue and has no such
    frame; a thread still running a task or check does.
    """
    frames = sys._current_frames()
    busy = []
    for thread in threading.enumerate():
        if thread in exclude or thread is threading.current_thread():
            continue
        frame = frames.get(thread.ident)  # type: ignore[arg-type]
        while frame is not None:
            filename = frame.f_code.co_filename
            if filename.startswith(AURA_DIR) or filename == __file__:
                busy.append(f"{thread.name} in {frame.f_code.co_name}")
                break
            frame = frame.f_back
    return busy


async def wait_until(condition: Callable[[], bool], *, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


# -- tags -----------------------------------------------------------------------------

BAD_TAGS = [
    pytest.param("", ["empty tag", "'gpu:1'"], id="empty"),
    pytest.param("gpu:", ["missing capacity", "'gpu:1'", "bare tag 'gpu'"], id="no-capacity"),
    pytest.param(":3", ["missing resource name", "'gpu:3'"], id="no-name"),
    pytest.param("gpu:0", ["capacity 0", "positive integer"], id="zero"),
    pytest.param("gpu:-1", ["'-1'", "positive integer"], id="negative"),
    pytest.param("gpu:x", ["'x'", "positive integer"], id="letter"),
    pytest.param("gpu:1.5", ["'1.5'", "positive integer"], id="float"),
    pytest.param("g pu:1", ["'g pu' is not valid", "letters, digits"], id="space-in-name"),
    pytest.param("gpu:1e3", ["'1e3'", "positive integer"], id="exponent"),
    pytest.param("gpu: 1", ["' 1'", "positive integer"], id="space-before-capacity"),
    pytest.param("ＧＰＵ:1", ["'ＧＰＵ' is not valid", "letters, digits"], id="fullwidth-unicode-name"),
    pytest.param("gpu:٣", ["'٣'", "positive integer"], id="arabic-indic-digit"),
    pytest.param("gpu\n:1", ["'gpu\\n' is not valid", "letters, digits"], id="newline"),
]


@pytest.mark.parametrize(("tag", "fragments"), BAD_TAGS)
def test_a_malformed_tag_is_refused_naming_it(tag: str, fragments: list[str]) -> None:
    em = an.ExecutionManager(capacities={"gpu": 1})
    with pytest.raises(an.ResourceTagError) as info:
        em.validate(an.Tasklet(noop, resource_tags=["db:1", tag]))
    assert isinstance(info.value, ValueError)
    assert_names(str(info.value), f"resource tag {tag!r}", *fragments)
    assert_untouched(em, {"gpu": 1})


@pytest.mark.parametrize("tag", [3, None, b"gpu:1", ("gpu", 1), 1.5], ids=repr)
def test_a_tag_that_is_not_a_string_is_refused(tag: object) -> None:
    with pytest.raises(an.ResourceTagError) as info:
        an.Tasklet(noop, resource_tags=[tag])
    assert_names(str(info.value), f"resource tag {tag!r}", "must be a string like 'gpu:1'")


def test_a_10000_char_resource_name_is_refused_with_a_bounded_message() -> None:
    name = "x" * 10_000
    with pytest.raises(an.ResourceTagError) as info:
        an.Tasklet(noop, resource_tags=[f"{name}:1"])
    message = str(info.value)
    assert "'xxxxxxxxxx" in message
    assert len(message) < 1000


@pytest.mark.parametrize(
    "tags", [["gpu:1", "gpu"], ["gpu:1", "gpu:1"], ["gpu", "db:1", "gpu:2"]], ids=["declared+bare", "same", "apart"]
)
def test_the_same_resource_twice_is_refused(tags: list[str]) -> None:
    with pytest.raises(an.ResourceTagError) as info:
        an.Tasklet(noop, resource_tags=tags)
    assert_names(str(info.value), "resource 'gpu' is tagged twice", "one unit of each resource")


@pytest.mark.parametrize("tags", ["gpu:1", 42, None], ids=repr)
def test_resource_tags_that_are_not_a_list_are_refused(tags: object) -> None:
    with pytest.raises(an.TaskletError) as info:
        an.Tasklet(noop, resource_tags=tags)  # type: ignore[arg-type]
    assert_names(str(info.value), f"resource_tags {tags!r}", "must be a list of tags like ['gpu:1'")


@pytest.mark.anyio
async def test_a_tag_contradicting_a_declared_capacity_is_refused() -> None:
    async with an.ExecutionManager(capacities={"gpu": 1}) as em:
        t = an.Tasklet(noop, resource_tags=["tpu:2", "gpu:2"])
        with pytest.raises(an.ResourceTagError) as info:
            await em.submit(t)
        assert_names(
            str(info.value),
            "resource tag 'gpu:2'",
            t.id,
            "capacity 2 contradicts the capacity 1 of 'gpu'",
            "use the bare tag 'gpu'",
            "set_capacity('gpu', 2)",
        )
        assert_untouched(em, {"gpu": 1})  # the new tpu:2 of the refused tasklet was not declared


@pytest.mark.anyio
async def test_a_bare_tag_without_a_declared_capacity_is_refused() -> None:
    async with an.ExecutionManager(capacities={"gpu": 1}) as em:
        with pytest.raises(an.ResourceTagError) as info:
            await em.submit(an.Tasklet(noop, resource_tags=["tpu:2", "db"]))
        assert_names(str(info.value), "resource tag 'db'", "no capacity is declared for 'db'", "'db:N'", "capacities=")
        assert_untouched(em, {"gpu": 1})


# -- tasklet fields ---------------------------------------------------------------------

BAD_FIELDS = [
    pytest.param({"task": 42}, ["Tasklet(42)", "'plan/task' name or a callable", "not int"], id="task-42"),
    pytest.param({"task": None}, ["Tasklet(None)", "'plan/task' name or a callable"], id="task-None"),
    pytest.param({"task": ""}, ["Tasklet('')", "non-empty 'plan/task'"], id="task-empty"),
    pytest.param({"params": [1, 2]}, ["params [1, 2]", "must be a mapping", "{'rounds': 3}"], id="params-list"),
    pytest.param({"params": "rounds=3"}, ["params 'rounds=3'", "must be a mapping"], id="params-str"),
    pytest.param({"params": {"not id": 1}}, ["['not id']", "keyword-argument names"], id="params-bad-key"),
    pytest.param({"params": {1: 2}}, ["[1]", "keyword-argument names"], id="params-int-key"),
    pytest.param({"timeout": -1}, ["timeout -1", "finite number of seconds > 0"], id="timeout--1"),
    pytest.param({"timeout": 0}, ["timeout 0", "finite number of seconds > 0"], id="timeout-0"),
    pytest.param({"timeout": math.nan}, ["timeout nan", "finite number of seconds > 0"], id="timeout-nan"),
    pytest.param({"timeout": math.inf}, ["timeout inf", "use None for no limit"], id="timeout-inf"),
    pytest.param({"timeout": -math.inf}, ["timeout -inf", "finite number of seconds > 0"], id="timeout--inf"),
    pytest.param({"timeout": "5"}, ["timeout '5'", "number of seconds > 0, or None"], id="timeout-str"),
    pytest.param({"timeout": True}, ["timeout True", "number of seconds > 0, or None"], id="timeout-True"),
    pytest.param({"planning_timeout": -0.5}, ["planning_timeout -0.5", "seconds > 0"], id="planning_timeout-neg"),
    pytest.param({"planning_timeout": math.nan}, ["planning_timeout nan", "seconds > 0"], id="planning_timeout-nan"),
    pytest.param({"required_initial_state": ""}, ["required_initial_state ''", "a state name or None"], id="state-empty"),
    pytest.param({"required_initial_state": 5}, ["required_initial_state 5", "a state name or None"], id="state-int"),
    pytest.param(
        {"required_initial_state": ["logged_in"]}, ["required_initial_state ['logged_in']", "state name"], id="state-list"
    ),
    pytest.param({"name": 5}, ["name 5", "must be a string"], id="name-int"),
]


@pytest.mark.parametrize(("fields", "fragments"), BAD_FIELDS)
def test_a_wrong_tasklet_field_is_refused_at_construction(fields: dict[str, Any], fragments: list[str]) -> None:
    kwargs = {"task": noop, **fields}
    with pytest.raises(an.TaskletError) as info:
        an.Tasklet(**kwargs)
    assert isinstance(info.value, ValueError)
    assert_names(str(info.value), *fragments)


@pytest.mark.parametrize("field", ["timeout", "planning_timeout"])
def test_a_timeout_too_large_for_a_float_is_refused(field: str) -> None:
    with pytest.raises(an.TaskletError) as info:
        an.Tasklet(noop, **{field: 10**400})
    assert_names(str(info.value), field, "finite number of seconds > 0")


# -- tasklets refused by the manager ------------------------------------------------------


@pytest.fixture
def two_plans() -> list[an.Plan]:
    """Two game plans: every task name exists twice, so a bare name is ambiguous."""
    return [make_game_plan(GameDevice(), name="game"), make_game_plan(GameDevice(), name="game2")]


SUBMIT_REFUSALS = [
    pytest.param(
        {"task": "nope/daily_quests"},
        an.TaskNotFoundError,
        ["'nope/daily_quests'", "no plan named 'nope'", "plans: game, game2", "add_plan"],
        id="unknown-plan",
    ),
    pytest.param(
        {"task": "game/daily_quest"},
        an.TaskNotFoundError,
        ["'daily_quest'", "in plan 'game'", "daily_quests"],
        id="unknown-task",
    ),
    pytest.param(
        {"task": "daily_quest"},
        an.TaskNotFoundError,
        ["no task named 'daily_quest'", "game/daily_quests"],
        id="unknown-bare-task",
    ),
    pytest.param(
        {"task": "daily_quests"},
        an.TaskNotFoundError,
        ["'daily_quests' is ambiguous", "'game/daily_quests'", "'game2/daily_quests'"],
        id="ambiguous-bare-task",
    ),
    pytest.param(
        {"task": "game/daily_quests", "required_initial_state": "in_gmae_at_home"},
        an.TaskletError,
        ["required_initial_state 'in_gmae_at_home'", "plan 'game'", "known: logged_out, logged_in, in_game_at_home"],
        id="unknown-required-state",
    ),
    pytest.param(
        {"task": noop, "required_initial_state": "logged_in"},
        an.TaskletError,
        ["required_initial_state 'logged_in'", "needs a plan", "@plan.task"],
        id="required-state-without-a-plan",
    ),
    pytest.param(
        {"task": "game/"},
        an.TaskNotFoundError,
        ["'game/'", "write 'plan/task' with both parts", "known: "],
        id="empty-task-after-plan",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("fields", "error", "fragments"), SUBMIT_REFUSALS)
async def test_a_tasklet_naming_nothing_known_is_refused_before_anything_happens(
    two_plans: list[an.Plan], fields: dict[str, Any], error: type[Exception], fragments: list[str]
) -> None:
    async with an.ExecutionManager(plans=two_plans, capacities={"gpu": 1}) as em:
        tasklet = an.Tasklet(**fields, resource_tags=["gpu", "tpu:2"])
        with pytest.raises(error) as info:
            await em.submit(tasklet)
        assert_names(str(info.value), *fragments)
        assert_untouched(em, {"gpu": 1})  # tpu:2 was not declared by the refused tasklet
        with pytest.raises(error):
            em.start(tasklet)
        assert_untouched(em, {"gpu": 1})
    assert all(device.log == [] for device in (p.context["device"] for p in two_plans))


@pytest.mark.anyio
@pytest.mark.parametrize("thing", [42, "game/daily_quests", noop, None], ids=["int", "str", "function", "None"])
async def test_submitting_something_that_is_not_a_tasklet_is_a_type_error(thing: object) -> None:
    async with an.ExecutionManager(capacities={"gpu": 1}) as em:
        with pytest.raises(TypeError) as info:
            await em.submit(thing)  # type: ignore[arg-type]
        assert_names(str(info.value), "expected an aura_nb Tasklet", f"{type(thing).__name__} {thing!r}", "an.Tasklet(")
        with pytest.raises(TypeError, match="expected an aura_nb Tasklet"):
            em.start(thing)  # type: ignore[arg-type]
        assert_untouched(em, {"gpu": 1})


@pytest.mark.anyio
async def test_resubmitting_a_tasklet_that_is_still_running_is_refused() -> None:
    gate = anyio.Event()

    async def hold() -> str:
        await gate.wait()
        return "done"

    async with an.ExecutionManager(capacities={"gpu": 1}) as em:
        tasklet = an.Tasklet(hold, resource_tags=["gpu"])
        handle = em.start(tasklet)
        await wait_until(lambda: handle.status == "running")
        events = len(em.events)
        for again in (em.submit, em.start):
            with pytest.raises(an.TaskletError) as info:
                result = again(tasklet)
                if not isinstance(result, an.TaskletHandle):
                    await result
            assert_names(str(info.value), f"tasklet {tasklet.id}", "already submitted and not finished", "new Tasklet")
        stats = em.statistics()  # only the original run holds anything
        assert (stats.global_limit.in_use, stats.resources["gpu"].in_use, stats.running) == (1, 1, 1)
        assert stats.waiting == 0 and stats.resources["gpu"].waiting == 0
        assert len(em.events) == events
        gate.set()
        assert await handle == "done"
        stats = em.statistics()
        assert stats.idle and dict(stats.by_status)["succeeded"] == 1


# -- manager arguments --------------------------------------------------------------------

BAD_MANAGER_ARGS = [
    pytest.param({"max_concurrency": 0}, an.ArgumentError, ["max_concurrency", "max_concurrency 0", "positive integer"]),
    pytest.param({"max_concurrency": -1}, an.ArgumentError, ["max_concurrency", "max_concurrency -1", "positive integer"]),
    pytest.param({"max_concurrency": 1.5}, an.ArgumentError, ["max_concurrency", "1.5", "positive integer"]),
    pytest.param({"max_concurrency": "8"}, an.ArgumentError, ["max_concurrency", "'8'", "positive integer"]),
    pytest.param({"max_concurrency": None}, an.ArgumentError, ["max_concurrency", "None", "positive integer"]),
    pytest.param({"capacities": ["gpu"]}, an.ArgumentTypeError, ["capacities ['gpu']", "mapping like {'gpu': 1}"]),
    pytest.param({"capacities": "gpu:1"}, an.ArgumentTypeError, ["capacities 'gpu:1'", "mapping like {'gpu': 1}"]),
    pytest.param({"capacities": {"g pu": 1}}, an.ResourceTagError, ["resource name 'g pu'", "letters, digits"]),
    pytest.param({"capacities": {"": 1}}, an.ResourceTagError, ["resource name ''", "letters, digits"]),
    pytest.param({"capacities": {3: 1}}, an.ResourceTagError, ["capacities[3]", "resource name 3", "letters"]),
    pytest.param({"capacities": {"gpu": 0}}, an.ResourceTagError, ["capacities['gpu']", "capacity 0", "positive"]),
    pytest.param({"capacities": {"gpu": -2}}, an.ResourceTagError, ["capacities['gpu']", "capacity -2", "positive"]),
    pytest.param({"capacities": {"gpu": True}}, an.ResourceTagError, ["capacities['gpu']", "True", "positive integer"]),
    pytest.param({"planning_timeout": math.nan}, an.ArgumentError, ["planning_timeout nan", "finite", "> 0"]),
    pytest.param({"planning_timeout": -1}, an.ArgumentError, ["planning_timeout -1", "finite", "> 0"]),
    pytest.param({"planning_timeout": math.inf}, an.ArgumentError, ["planning_timeout inf", "use None for no limit"]),
    pytest.param({"planning_timeout": "1"}, an.ArgumentError, ["planning_timeout '1'", "number of seconds"]),
]


@pytest.mark.parametrize(("kwargs", "error", "fragments"), BAD_MANAGER_ARGS, ids=lambda v: repr(v)[:40])
def test_wrong_manager_arguments_are_refused(kwargs: dict[str, Any], error: type[Exception], fragments: list[str]) -> None:
    before = set(threading.enumerate())
    with pytest.raises(error) as info:
        an.ExecutionManager(**kwargs)
    assert isinstance(info.value, an.AuraError) and isinstance(info.value, ValueError)
    assert_names(str(info.value), *fragments)
    assert set(threading.enumerate()) <= before  # e.g. no event-log flush thread was started


@pytest.mark.parametrize(
    ("name", "capacity", "fragments"),
    [
        ("gpu", 0, ["capacity 0", "positive integer"]),
        ("gpu", -1, ["capacity -1", "positive integer"]),
        ("gpu", 1.5, ["capacity 1.5", "positive integer"]),
        ("gpu", "2", ["capacity '2'", "positive integer"]),
        ("gpu", None, ["capacity None", "positive integer"]),
        ("g pu", 1, ["resource name 'g pu'", "letters, digits"]),
        ("", 1, ["resource name ''", "letters, digits"]),
        (None, 1, ["resource name None", "letters, digits"]),
    ],
)
def test_set_capacity_refuses_bad_values_and_changes_nothing(name: Any, capacity: Any, fragments: list[str]) -> None:
    em = an.ExecutionManager(capacities={"gpu": 1})
    with pytest.raises(an.ResourceTagError) as info:
        em.set_capacity(name, capacity)
    assert_names(str(info.value), f"set_capacity({name!r}, {capacity!r})", *fragments)
    assert_untouched(em, {"gpu": 1})


@pytest.mark.parametrize("n", [0, -3, 2.5, "4"], ids=repr)
def test_set_max_concurrency_refuses_bad_values(n: Any) -> None:
    em = an.ExecutionManager(max_concurrency=3)
    with pytest.raises(an.ArgumentError) as info:
        em.set_max_concurrency(n)
    assert_names(str(info.value), f"set_max_concurrency({n!r})", "positive integer")
    assert em.max_concurrency == 3


# -- hooks --------------------------------------------------------------------------------


# Unannotated on purpose: the refusal shows the signature, e.g. "(event, extra)".
def two_args(event, extra): ...  # type: ignore[no-untyped-def]


def no_args(): ...  # type: ignore[no-untyped-def]


def keyword_only(event, *, extra): ...  # type: ignore[no-untyped-def]


async def async_two_args(event, extra): ...  # type: ignore[no-untyped-def]


class CallableWithoutArgs:
    def __call__(self): ...  # type: ignore[no-untyped-def]


@pytest.mark.parametrize("name", ["after_task_sucess", "after_run", "AFTER_TASK_RUN", "", None], ids=repr)
def test_a_hook_for_an_unknown_event_is_refused(name: Any) -> None:
    em = an.ExecutionManager()
    with pytest.raises(an.HookError) as info:
        em.hooks.on(name, print)
    assert isinstance(info.value, ValueError)
    assert_names(str(info.value), f"unknown event name {name!r}", "after_task_success", "after_task_run")
    with pytest.raises(an.HookError, match="unknown event name"):
        em.hooks.off(name, print)
    assert all(em.hooks.registered(event) == [] for event in an.EVENT_NAMES)


def test_the_decorator_form_checks_the_event_name_at_once() -> None:
    em = an.ExecutionManager()
    with pytest.raises(an.HookError, match="unknown event name 'after_task_sucess'"):
        em.hooks.on("after_task_sucess")


@pytest.mark.parametrize(
    ("fn", "fragments"),
    [
        (42, ["42 is not callable"]),
        ("print", ["'print' is not callable"]),
        (two_args, ["two_args", "(event, extra)", "cannot take the one argument (the Event)"]),
        (no_args, ["no_args", "()", "cannot take the one argument (the Event)"]),
        (keyword_only, ["keyword_only", "(event, *, extra)", "cannot take the one argument"]),
        (async_two_args, ["async_two_args", "(event, extra)", "cannot take the one argument"]),
        (CallableWithoutArgs(), ["CallableWithoutArgs", "()", "cannot take the one argument"]),
    ],
    ids=["int", "str", "two-args", "zero-args", "keyword-only", "async-two-args", "callable-object"],
)
def test_a_hook_that_cannot_receive_an_event_is_refused(fn: Any, fragments: list[str]) -> None:
    em = an.ExecutionManager()
    with pytest.raises(an.HookError) as info:
        em.hooks.on("after_task_run", fn)
    assert_names(str(info.value), "'after_task_run'", *fragments)
    assert em.hooks.registered("after_task_run") == []
    with pytest.raises(an.HookError):  # the decorator form checks the same
        em.hooks.on("after_task_run")(fn)
    assert em.hooks.registered("after_task_run") == []


# -- states maps --------------------------------------------------------------------------


@pytest.fixture
def plan() -> an.Plan:
    plan = an.Plan("game")
    for name in ("check_a", "check_b", "go"):
        plan.add_task(lambda: True, name=name)
    return plan


def snapshot(plan: an.Plan) -> tuple[Any, ...]:
    return (dict(plan.tasks), dict(plan.states), plan.transitions)


def load_error(plan: an.Plan, source: object) -> str:
    """Load *source*, expect a StatesMapError, check the plan is unchanged, return the message."""
    before = snapshot(plan)
    with pytest.raises(an.StatesMapError) as info:
        plan.load_states_map(source)
    assert isinstance(info.value, ValueError)
    assert snapshot(plan) == before
    return str(info.value)


def python_tag_payloads(marker: pathlib.Path) -> list[tuple[str, str]]:
    """(payload, the tag as the message shows it): each would touch *marker* under yaml.unsafe_load."""
    return [
        (f'!!python/object/apply:os.system ["touch {marker}"]', "!!python/object/apply:os.system"),
        (f'states: !!python/object/apply:os.system ["touch {marker}"]', "!!python/object/apply:os.system"),
        (f'states: !!python/object/new:os.system ["touch {marker}"]', "!!python/object/new:os.system"),
        (f'states: !!python/object/new:builtins.open ["{marker}", "w"]', "!!python/object/new:builtins.open"),
        (
            f'states:\n  ? !!python/object/new:builtins.open ["{marker}", "w"]\n  : {{check_task: check_a}}\n',
            "!!python/object/new:builtins.open",
        ),
        (
            f'states: {{a: {{check_task: check_a, description: !!python/object/apply:builtins.open ["{marker}", "a"]}}}}',
            "!!python/object/apply:builtins.open",
        ),
    ]


@pytest.mark.parametrize("index", range(6))
@pytest.mark.parametrize("as_file", [False, True], ids=["text", "file"])
def test_a_yaml_python_tag_is_refused_and_never_executed(
    plan: an.Plan, tmp_path: pathlib.Path, index: int, as_file: bool
) -> None:
    marker = tmp_path / "pwned"
    payload, tag = python_tag_payloads(marker)[index]
    source: object = payload
    if as_file:
        source = tmp_path / "states_map.yaml"
        source.write_text(payload, encoding="utf-8")
    message = load_error(plan, source)
    assert_names(message, f"tag {tag!r} is not allowed", "plain data", "line ")
    assert message.startswith(f"{source}: " if as_file else "<text>: ")
    assert not marker.exists()


def test_the_open_payload_is_live_so_refusing_it_matters(tmp_path: pathlib.Path) -> None:
    """Control: the same YAML under PyYAML's unsafe loader does create the marker."""
    marker = tmp_path / "pwned"
    payload, _ = python_tag_payloads(marker)[3]
    yaml.unsafe_load(payload)["states"].close()
    assert marker.exists()


def billion_laughs(levels: int, fan_out: int) -> str:
    """The classic alias bomb: fan_out ** levels leaves if anything expanded it."""
    lines = [f"lol0: &lol0 [{', '.join(['lol'] * fan_out)}]"]
    lines += [f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * fan_out)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nstates: *lol{levels - 1}\n"


def test_a_billion_laughs_bomb_under_the_alias_limit_is_refused_quickly(plan: an.Plan) -> None:
    bomb = billion_laughs(9, 9)  # 9 ** 9 = 387 million leaves, 72 + 1 aliases
    with bounded():
        message = load_error(plan, bomb)
    assert_names(message, "unknown key 'lol0'", "valid keys: states, transitions")
    assert len(message) < 300


def test_a_billion_laughs_bomb_over_the_alias_limit_is_refused_quickly(plan: an.Plan) -> None:
    bomb = billion_laughs(12, 10)  # 10 ** 12 leaves, 110 + 1 aliases
    with bounded():
        message = load_error(plan, bomb)
    assert_names(message, f"more than {MAX_ALIASES} aliases", "billion laughs", "line ")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("states: " + "[" * 100_000 + "]" * 100_000, id="flow-lists"),
        pytest.param("states: " + "{a: " * 20_000 + "1" + "}" * 20_000, id="flow-mappings"),
        pytest.param("states:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(900)), id="block-mappings"),
        pytest.param("states:\n" + "- " * 200_000 + "x\n", id="block-lists"),
    ],
)
def test_deeply_nested_yaml_is_refused_quickly(plan: an.Plan, text: str) -> None:
    # No tracemalloc here: tracing a 1000-frame-deep RecursionError is itself slow.
    with bounded(peak_mib=None):
        message = load_error(plan, text)
    assert_names(message, "<text>", "nested too deeply")


def test_a_20_mib_yaml_string_is_refused_before_parsing(plan: an.Plan) -> None:
    text = "states: {}\n# " + "x" * (20 * MiB)
    with bounded():
        message = load_error(plan, text)
    assert_names(message, "<text>: the states map is too large", f"{len(text)} bytes", "the limit is 512 KiB")


def test_a_20_mib_yaml_file_is_refused_before_reading(plan: an.Plan, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"states: {}\n" + b"# " + b"x" * (20 * MiB) + b"\n")
    with bounded(peak_mib=1):
        message = load_error(plan, path)
    assert_names(message, str(path), "too large", f"{path.stat().st_size} bytes", f"{MAX_BYTES} bytes")


@pytest.mark.slow
def test_a_states_map_just_under_the_size_limit_stays_bounded(tmp_path: pathlib.Path) -> None:
    line = "  s{}: {{check_task: check_a}}\n"
    parts, size, i = ["states:\n"], 8, 0
    while size < MAX_BYTES - 1024:
        parts.append(line.format(i))
        size += len(parts[-1])
        i += 1
    path = tmp_path / "big_but_allowed.yaml"
    path.write_text("".join(parts), encoding="ascii")
    child = textwrap.dedent(
        """
        import resource, sys, time
        import aura_nb as an
        plan = an.Plan("game")
        plan.add_task(lambda: True, name="check_a")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        try:
            plan.load_states_map(sys.argv[1])
        except an.StatesMapError:
            pass
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
        print(time.perf_counter() - started, grown)
        """
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", child, str(path)], capture_output=True, text=True, timeout=60, check=True
        )
    except subprocess.TimeoutExpired:  # a super-linear blow-up; about 1 s when idle, more on a busy machine
        pytest.fail(f"loading a {size / MiB:.1f} MiB states map ({i} states) took more than 60 s")
    elapsed, grown_mib = map(float, done.stdout.split())
    assert grown_mib < 100, f"peak memory grew by {grown_mib:.0f} MiB"




@pytest.mark.parametrize(
    "data",
    [
        pytest.param(bytes(range(128, 256)) * 32, id="invalid-utf8"),
        pytest.param(b"states: {}\n\x00\x01\x02\x03" * 8, id="nul-bytes"),
        pytest.param(b"states: {}\n# " + b"ok " * 2000 + b"\n\xff\xfe\x80", id="garbage-after-6k"),
    ],
)
def test_binary_garbage_in_a_file_is_a_states_map_error(plan: an.Plan, tmp_path: pathlib.Path, data: bytes) -> None:
    path = tmp_path / "garbage.yaml"
    path.write_bytes(data)
    with bounded():
        message = load_error(plan, path)
    assert_names(message, str(path), "invalid YAML", "unacceptable character")


def test_a_control_character_in_yaml_text_is_a_states_map_error(plan: an.Plan) -> None:
    message = load_error(plan, "states: {}\n\x00")
    assert_names(message, "<text>", "invalid YAML", "#x0000")


def test_a_yaml_that_is_a_bare_list_of_states_is_refused(plan: an.Plan) -> None:
    message = load_error(plan, "- {name: a, check_task: check_a}\n- {name: b, check_task: check_b}\n")
    assert_names(message, "<text>: top level", "expected a mapping with the keys states, transitions", "got a list [")


LONG_NAME = "s" * 100_000


def test_a_100k_char_plain_yaml_key_is_refused_by_the_parser(plan: an.Plan) -> None:
    # PyYAML refuses a plain (implicit) key longer than 1024 characters.
    with bounded():
        message = load_error(plan, f"states:\n  {LONG_NAME}: {{check_task: check_a}}\n")
    assert_names(message, "<text>: line 2, column ", "invalid YAML")
    assert len(message) < 300


@pytest.mark.parametrize(
    "source",
    [
        pytest.param({"states": {LONG_NAME: {"check_task": "check_a"}}}, id="dict"),
        pytest.param(f"states:\n  ? {LONG_NAME}\n  : {{check_task: check_a}}\n", id="yaml-explicit-key"),
        pytest.param([{"name": LONG_NAME, "check_task": "check_a"}], id="dict-list"),
    ],
)
def test_a_100k_char_state_name_is_refused(plan: an.Plan, source: object) -> None:
    if isinstance(source, list):
        source = {"states": source}
    message = load_error(plan, source)
    assert_names(message, "'ssssssssss")
    assert len(message) < 1000


def test_an_unknown_100k_char_name_gives_a_bounded_message(plan: an.Plan) -> None:
    text = f"states: {{a: {{check_task: check_a}}}}\ntransitions:\n  - {{from: a, to: {LONG_NAME}, transition_task: go}}\n"
    message = load_error(plan, text)
    assert_names(message, "transitions[0].to:", "at most 200 characters", "100000 characters")
    assert len(message) < 1000


@pytest.mark.parametrize(
    ("cost", "shown"),
    [
        pytest.param("1e309", "got a string '1e309'", id="yaml-1e309-is-a-string"),
        pytest.param("1.0e+309", "got inf", id="yaml-1.0e+309-overflows"),
        pytest.param(1e309, "got inf", id="dict-float"),
        pytest.param(10**400, "(too large)", id="dict-int-10**400"),
    ],
)
def test_a_cost_of_1e309_is_refused(plan: an.Plan, cost: object, shown: str) -> None:
    states = {"a": {"check_task": "check_a"}, "b": {"check_task": "check_b"}}
    source: object
    if isinstance(cost, str):
        source = f"states: {{a: {{check_task: check_a}}, b: {{check_task: check_b}}}}\ntransitions:\n  - {{from: a, to: b, transition_task: go, cost: {cost}}}\n"
    else:
        source = {"states": states, "transitions": [{"from": "a", "to": "b", "transition_task": "go", "cost": cost}]}
    message = load_error(plan, source)
    assert_names(message, "transitions[0].cost: cost must be a finite number >= 0", shown)
    assert len(message) < 300


# -- a closed manager ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_submit_after_aclose_is_refused() -> None:
    em = an.ExecutionManager(capacities={"gpu": 1})
    await em.aclose()
    tasklet = an.Tasklet(noop, resource_tags=["gpu", "tpu:2"])
    with pytest.raises(an.ManagerClosedError) as info:
        await em.submit(tasklet)
    assert isinstance(info.value, an.ManagerUsageError) and isinstance(info.value, RuntimeError)
    assert_names(str(info.value), f"tasklet {tasklet.id}", "ExecutionManager is closed")
    assert_untouched(em, {"gpu": 1})


@pytest.mark.anyio
async def test_start_after_aclose_is_refused() -> None:
    em = an.ExecutionManager(capacities={"gpu": 1})
    await em.aclose()
    tasklet = an.Tasklet(noop, resource_tags=["gpu", "tpu:2"])
    with pytest.raises(an.ManagerClosedError) as info:
        em.start(tasklet)
    assert_names(str(info.value), f"tasklet {tasklet.id}", "ExecutionManager is closed")
    assert_untouched(em, {"gpu": 1})


@pytest.mark.anyio
async def test_submit_and_start_after_leaving_async_with_are_refused() -> None:
    async with an.ExecutionManager(capacities={"gpu": 1}) as em:
        await em.submit(an.Tasklet(noop, resource_tags=["gpu"]))
        await em.aclose()  # closed while still inside: start() has its task group
        with pytest.raises(an.ManagerClosedError, match="is closed"):
            em.start(an.Tasklet(noop))
    events = len(em.events)
    with pytest.raises(an.ManagerClosedError, match="is closed"):
        await em.submit(an.Tasklet(noop, resource_tags=["tpu:2"]))
    with pytest.raises(an.ManagerClosedError, match="closed; create a new one"):
        async with em:
            pass
    stats = em.statistics()
    assert stats.idle and stats.finished == 1
    assert len(em.events) == events and dict(em.capacities) == {"gpu": 1}


# -- a check that hangs -------------------------------------------------------------------


def hanging_setup(limit_on: str) -> tuple[GameDevice, an.ExecutionManager, an.Tasklet]:
    """The system is logged out and its check hangs; the tasklet needs it in the game."""
    device = GameDevice(hang_checks={"check_logged_out"})
    em = an.ExecutionManager(plans=[make_game_plan(device)], planning_timeout=0.3 if limit_on == "manager" else None)
    tasklet = an.Tasklet(
        "game/daily_quests",
        required_initial_state="in_game_at_home",
        resource_tags=["device:1"],
        planning_timeout=0.3 if limit_on == "tasklet" else None,
    )
    return device, em, tasklet


@pytest.mark.anyio
@pytest.mark.parametrize("limit_on", ["manager", "tasklet"])
async def test_a_hanging_check_is_bounded_by_planning_timeout(limit_on: str) -> None:
    threads_before = set(threading.enumerate())
    count_before = threading.active_count()
    device, em, tasklet = hanging_setup(limit_on)
    seen: list[tuple[str, str | None]] = []
    em.hooks.on("after_task_run", lambda ev: seen.append((ev.status, ev.error_type)))
    try:
        started = time.monotonic()
        with pytest.raises(an.TaskletTimeoutError) as info:
            await em.submit(tasklet)
        elapsed = time.monotonic() - started
        assert isinstance(info.value, TimeoutError)
        assert (info.value.phase, info.value.limit, info.value.tasklet_id) == ("planning", 0.3, tasklet.id)
        assert_names(str(info.value), f"tasklet {tasklet.id}", "planning", "0.3 s")
        assert elapsed < 3  # the planning limit, not the check's own 30 s hang
        assert device.hanging == 1  # the hung check was abandoned, not waited for
        stats = em.statistics()
        assert (stats.waiting, stats.planning, stats.running) == (0, 0, 0), stats
        assert stats.resources["device"].waiting == 0 and dict(stats.by_status)["timeout"] == 1
        assert seen == [("timeout", "TaskletTimeoutError")]
        assert device.log == []  # planning never moved the device
    finally:
        device.release_hangs()
    # Once the hang ends, the worker thread finishes the check and runs nothing of ours.
    await wait_until(lambda: device.hanging == 0)
    await wait_until(lambda: not threads_in_user_code(threads_before))
    # What may remain are idle pooled workers: one for the target check, three probes.
    assert threading.active_count() <= count_before + 4
    await em.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("limit_on", ["manager", "tasklet"])
async def test_a_planning_timeout_returns_every_token(limit_on: str) -> None:
    device, em, tasklet = hanging_setup(limit_on)
    try:
        with pytest.raises(an.TaskletTimeoutError):
            await em.submit(tasklet)
        stats = em.statistics()
        assert stats.idle, stats
        assert stats.global_limit.in_use == 0 and stats.resources["device"].in_use == 0, stats
        assert "resources_released" in list(em.events.to_frame()["event"])
        # The freed device is usable again at once (the check no longer hangs).
        device.release_hangs()
        with anyio.fail_after(5):
            assert await em.submit(an.Tasklet("game/daily_quests", params={"rounds": 1}, resource_tags=["device"])) == 1
    finally:
        device.release_hangs()
        await em.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("sync", [False, True], ids=["async-body", "sync-body"])
async def test_a_body_timeout_returns_every_token(sync: bool) -> None:
    def slow_sync() -> None:
        time.sleep(0.3)

    async def slow_async() -> None:
        await anyio.sleep(5)

    async with an.ExecutionManager(max_concurrency=1, capacities={"gpu": 1}) as em:
        with pytest.raises(an.TaskletTimeoutError) as info:
            await em.submit(an.Tasklet(slow_sync if sync else slow_async, resource_tags=["gpu"], timeout=0.1))
        assert info.value.phase == "run"
        stats = em.statistics()
        assert stats.idle, stats
        with anyio.fail_after(5):  # the only slot and the only gpu are free again
            await em.submit(an.Tasklet(noop, resource_tags=["gpu"]))


def test_a_hanging_check_leaves_no_thread_once_the_run_ends() -> None:
    """On asyncio, anyio stops its worker threads with the run: every thread it started ends."""

    async def main() -> None:
        device, em, tasklet = hanging_setup("manager")
        async with em:
            with pytest.raises(an.TaskletTimeoutError):
                await em.submit(tasklet)
            assert set(threading.enumerate()) - before  # the hung check still holds a thread
            device.release_hangs()
            await wait_until(lambda: device.hanging == 0)

    before = set(threading.enumerate())
    anyio.run(main, backend="asyncio")
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not set(threading.enumerate()) - before, [t.name for t in threading.enumerate()]
