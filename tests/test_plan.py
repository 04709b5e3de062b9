"""Plan: registering tasks, finding them, and building a state map in code."""

from __future__ import annotations

import functools
import types

import pytest

from aura_nb.core._errors import StatesMapError, TaskNotFoundError
from aura_nb.core._plan import Plan, State, TaskSpec, Transition


@pytest.fixture
def plan() -> Plan:
    return Plan("game")


# -- tasks ----------------------------------------------------------------------------


def test_decorator_forms_register_and_return_the_function_unchanged(plan: Plan) -> None:
    async def login() -> None: ...

    def check() -> bool:
        return True

    assert plan.task(login) is login

    @plan.task(name="check_logged_in")
    def renamed() -> bool:
        return True

    decorated = plan.task(check)

    assert decorated is check
    assert renamed() is True  # still the plain function
    assert list(plan.tasks) == ["login", "check_logged_in", "check"]
    assert plan.tasks["login"] == TaskSpec("login", "game", login, True)
    assert plan.tasks["check_logged_in"].fn is renamed
    assert plan.tasks["check_logged_in"].is_async is False


def test_bare_decorator_syntax(plan: Plan) -> None:
    @plan.task
    async def do_login() -> None: ...

    assert plan.get_task("do_login").fn is do_login
    assert plan.get_task("do_login").qualified == "game/do_login"


def test_add_task_returns_the_spec(plan: Plan) -> None:
    spec = plan.add_task(print, name="say")
    assert spec.qualified == "game/say"
    assert repr(spec) == "<TaskSpec game/say (sync)>"


def test_is_async_sees_through_partials_and_async_callables(plan: Plan) -> None:
    async def work(x: int) -> int:
        return x

    class AsyncCallable:
        async def __call__(self) -> None: ...

    class SyncCallable:
        def __call__(self) -> None: ...

    assert plan.add_task(functools.partial(work, 1), name="partial").is_async
    assert plan.add_task(functools.partial(functools.partial(work), 1), name="nested").is_async
    assert plan.add_task(AsyncCallable(), name="obj").is_async
    assert not plan.add_task(SyncCallable(), name="sync_obj").is_async
    assert not plan.add_task(len).is_async


def test_duplicate_task_names_are_refused(plan: Plan) -> None:
    @plan.task
    def login() -> None: ...

    with pytest.raises(ValueError, match="plan 'game' already has a task named 'login'"):

        @plan.task(name="login")
        def other() -> None: ...

    assert plan.tasks["login"].fn is login


def test_non_callables_and_unnamed_callables_are_refused(plan: Plan) -> None:
    with pytest.raises(TypeError, match="a task must be callable, got int"):
        plan.task(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="pass name="):
        plan.add_task(functools.partial(print))
    with pytest.raises(ValueError, match="invalid task name 'a/b'"):
        plan.add_task(print, name="a/b")
    assert plan.tasks == {}


@pytest.mark.parametrize("name", ["", "a/b", "a b", "tab\there"])
def test_bad_plan_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid plan name"):
        Plan(name)


def test_plan_name_must_be_a_str() -> None:
    with pytest.raises(TypeError):
        Plan(3)  # type: ignore[arg-type]


def test_get_task_by_bare_and_qualified_name(plan: Plan) -> None:
    spec = plan.add_task(print, name="login")
    assert plan.get_task("login") is spec
    assert plan.get_task("game/login") is spec


def test_get_task_of_another_plan_or_unknown(plan: Plan) -> None:
    plan.add_task(print, name="zeta")
    plan.add_task(print, name="alpha")

    with pytest.raises(TaskNotFoundError) as info:
        plan.get_task("other/zeta")
    assert str(info.value) == "task 'other/zeta' belongs to plan 'other', not to plan 'game' (known tasks of plan 'game': alpha, zeta)"

    with pytest.raises(LookupError) as lookup:
        plan.get_task("login")
    assert str(lookup.value) == "unknown task 'login' in plan 'game' (known: alpha, zeta)"

    with pytest.raises(TaskNotFoundError, match="unknown task 'game/login'"):
        plan.get_task("game/login")


def test_spec_for_is_by_identity(plan: Plan) -> None:
    def check() -> bool:
        return True

    def lookalike() -> bool:
        return True

    spec = plan.add_task(check)
    plan.add_task(check, name="check_again")

    assert plan.spec_for(check) is spec  # the first registration wins
    assert plan.spec_for(lookalike) is None


def test_tasks_and_states_are_read_only_views(plan: Plan) -> None:
    plan.add_task(print, name="check")
    plan.add_state("a", check="check")

    assert isinstance(plan.tasks, types.MappingProxyType)
    assert isinstance(plan.states, types.MappingProxyType)
    with pytest.raises(TypeError):
        plan.tasks["x"] = plan.tasks["check"]  # type: ignore[index]
    with pytest.raises(TypeError):
        plan.states["b"] = plan.states["a"]  # type: ignore[index]
    assert isinstance(plan.transitions, tuple)


def test_repr(plan: Plan) -> None:
    assert repr(plan) == "<Plan 'game': 0 tasks, 0 states, 0 transitions>"
    plan.add_task(print, name="check")
    plan.add_task(print, name="go")
    plan.add_state("a", check="check")
    plan.add_state("b", check="check")
    plan.add_transition("a", "b", task="go")
    assert repr(plan) == "<Plan 'game': 2 tasks, 2 states, 1 transition>"


def test_context_is_free_for_the_user(plan: Plan) -> None:
    plan.context["device"] = "anything"
    assert plan.context == {"device": "anything"}


# -- the state map in code ------------------------------------------------------------


def test_add_state_with_a_reference_or_a_function(plan: Plan) -> None:
    plan.add_task(print, name="check_out")

    def check_in() -> bool:
        return True

    out = plan.add_state("logged_out", check="game/check_out", description="start")
    inside = plan.add_state("logged_in", check=check_in)

    assert out == State("logged_out", "check_out", "start")
    assert inside == State("logged_in", "check_in")
    assert plan.spec_for(check_in) is plan.tasks["check_in"]  # registered on the way
    assert plan.add_state("again", check=check_in).check == "check_in"  # not registered twice


def test_add_state_errors(plan: Plan) -> None:
    plan.add_task(print, name="check")
    plan.add_state("a", check="check")

    with pytest.raises(StatesMapError, match="plan 'game': state 'a': duplicate state 'a'"):
        plan.add_state("a", check="check")
    with pytest.raises(StatesMapError, match=r"plan 'game': state 'b': check: unknown task 'chek' in plan 'game' \(known: check\)"):
        plan.add_state("b", check="chek")
    with pytest.raises(StatesMapError, match="a state name must be a non-empty string"):
        plan.add_state("", check="check")
    assert list(plan.states) == ["a"]


def test_add_state_duplicate_does_not_register_the_function(plan: Plan) -> None:
    plan.add_task(print, name="check")
    plan.add_state("a", check="check")

    def check_a() -> bool:
        return True

    with pytest.raises(StatesMapError):
        plan.add_state("a", check=check_a)
    assert "check_a" not in plan.tasks


def test_add_transition(plan: Plan) -> None:
    plan.add_task(print, name="check")
    plan.add_state("a", check="check")
    plan.add_state("b", check="check")

    async def go() -> None: ...

    transition = plan.add_transition("a", "b", task=go, cost=0)
    assert transition == Transition("a", "b", "go", 0.0)
    assert repr(transition) == "<Transition a -> b via go (cost 0)>"
    assert plan.tasks["go"].is_async
    assert plan.transitions == (transition,)
    assert plan.add_transition("b", "a", task="game/go").cost == 1.0


def test_add_transition_errors(plan: Plan) -> None:
    plan.add_task(print, name="check")
    plan.add_task(print, name="go")
    plan.add_state("a", check="check")
    plan.add_state("b", check="check")
    plan.add_transition("a", "b", task="go")

    with pytest.raises(StatesMapError, match=r"transition 'a' -> 'c': to: unknown state 'c' \(known: a, b\)"):
        plan.add_transition("a", "c", task="go")
    with pytest.raises(StatesMapError, match=r"transition 'x' -> 'b': from: unknown state 'x'"):
        plan.add_transition("x", "b", task="go")
    with pytest.raises(StatesMapError, match="task: unknown task 'gone'"):
        plan.add_transition("b", "a", task="gone")
    with pytest.raises(StatesMapError, match="task: task 'other/go' belongs to plan 'other'"):
        plan.add_transition("b", "a", task="other/go")
    for cost in (-1, float("nan"), float("inf"), "1", True):
        with pytest.raises(StatesMapError, match="cost: cost must be a finite number >= 0"):
            plan.add_transition("b", "a", task="go", cost=cost)  # type: ignore[arg-type]
    with pytest.raises(StatesMapError, match="duplicate transition via 'go'"):
        plan.add_transition("a", "b", task="go", cost=5)
    assert len(plan.transitions) == 1


# -- planning -------------------------------------------------------------------------


def test_the_planner_is_cached_and_rebuilt_after_a_change(plan: Plan) -> None:
    plan.add_task(lambda: True, name="check")
    for name in "abc":
        plan.add_state(name, check="check")
    plan.add_transition("a", "b", task=print, cost=1)
    plan.add_transition("b", "c", task=len, cost=1)

    planner = plan.planner
    assert plan.planner is planner
    assert plan.find_path("a", "c").tasks == ("print", "len")

    plan.add_transition("a", "c", task=repr, cost=0.5)
    assert plan.planner is not planner
    assert plan.find_path("a", "c").tasks == ("repr",)

    rebuilt = plan.planner
    plan.add_state("d", check="check")
    assert plan.planner is not rebuilt
    assert plan.planner.states == ("a", "b", "c", "d")

    rebuilt = plan.planner
    plan.load_states_map({"states": {}, "transitions": [{"from": "c", "to": "d", "transition_task": "check"}]})
    assert plan.planner is not rebuilt
    assert plan.find_path("a", "d").states == ("a", "c", "d")


def test_a_failed_load_keeps_the_cached_planner(plan: Plan) -> None:
    plan.add_task(print, name="check")
    plan.add_state("a", check="check")
    planner = plan.planner
    with pytest.raises(StatesMapError):
        plan.load_states_map({"states": {"b": {"check_task": "nope"}}})
    assert plan.planner is planner
