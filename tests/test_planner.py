"""StatePlanner: cheapest paths, the documented tie-break, and clear failures."""

from __future__ import annotations

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aura_nb.core._errors import StatePlanningError, StatesMapError
from aura_nb.core._plan import Transition
from aura_nb.core._planner import Path, StatePlanner, Step
from aura_nb.examples import make_game_plan


def planner(states: str, *edges: tuple[str, str, str, float]) -> StatePlanner:
    """``planner("a b c", ("a", "b", "t1", 1), ...)``."""
    return StatePlanner(states.split(), [Transition(*edge) for edge in edges], plan="p")


# -- the example plan -----------------------------------------------------------------


def test_login_then_enter_beats_the_expensive_shortcut() -> None:
    path = make_game_plan().find_path("logged_out", "in_game_at_home")

    assert [step.task for step in path] == ["do_login", "select_character_and_enter_game"]
    assert path.total_cost == 6
    assert path.states == ("logged_out", "logged_in", "in_game_at_home")
    assert path.steps[0] == Step(0, "logged_out", "logged_in", "do_login", 1.0)
    assert path.steps[1].index == 1
    assert repr(path) == "<Path game: logged_out -> logged_in -> in_game_at_home (cost 6)>"


def test_same_state_is_an_empty_falsy_path() -> None:
    path = make_game_plan().find_path("logged_in", "logged_in")

    assert len(path) == 0
    assert not path
    assert path.states == ("logged_in",)
    assert path.total_cost == 0
    assert list(path) == []
    assert "already there" in repr(path)


def test_dead_end_is_a_no_path_error_naming_it() -> None:
    with pytest.raises(StatePlanningError) as info:
        make_game_plan().find_path("maintenance", "in_game_at_home")

    error = info.value
    assert error.reason == "no_path"
    assert (error.plan, error.current, error.target, error.path) == ("game", "maintenance", "in_game_at_home", None)
    assert str(error) == (
        "no path from 'maintenance' to 'in_game_at_home' in plan 'game':"
        " 'maintenance' is a dead end (no outgoing transitions)"
    )


def test_no_path_says_nothing_leads_to_the_target() -> None:
    p = planner("a b c", ("a", "b", "t", 1))
    with pytest.raises(StatePlanningError, match="no transition leads to 'c'"):
        p.find_path("a", "c")


def test_no_path_counts_the_reachable_states() -> None:
    p = planner("a b c d e", ("a", "b", "t1", 1), ("b", "c", "t2", 1), ("e", "d", "t3", 1))
    with pytest.raises(StatePlanningError, match="none of the 2 states reachable from 'a' is 'd'"):
        p.find_path("a", "d")


def test_a_state_whose_only_transition_loops_back_is_a_dead_end() -> None:
    p = planner("a b", ("a", "a", "spin", 1), ("b", "a", "t", 1))
    with pytest.raises(StatePlanningError, match="'a' is a dead end .its only transitions lead back to itself"):
        p.find_path("a", "b")


def test_unknown_states_list_the_known_ones() -> None:
    p = make_game_plan().planner
    with pytest.raises(StatesMapError) as info:
        p.find_path("loged_in", "logged_out")
    assert "unknown state 'loged_in' (known: in_game_at_home, logged_in, logged_out, maintenance)" in str(info.value)
    with pytest.raises(StatesMapError, match="unknown state 'nowhere'"):
        p.find_path("logged_in", "nowhere")


def test_a_huge_known_list_is_truncated_with_a_suggestion() -> None:
    names = [f"state_{i:03}" for i in range(500)]
    message = str(pytest.raises(StatesMapError, StatePlanner(names, []).find_path, "state_4200", "state_001").value)

    assert "(480 more)" in message
    assert "did you mean 'state_420'?" in message
    assert len(message) < 600


# -- the tie-break rule ---------------------------------------------------------------


def test_fewest_transitions_wins_among_equally_cheap_paths() -> None:
    p = planner("a b c", ("a", "b", "ab", 1), ("b", "c", "bc", 1), ("a", "c", "ac", 2))
    assert p.find_path("a", "c").tasks == ("ac",)

    free = planner("a b c", ("a", "b", "ab", 0), ("b", "c", "bc", 0), ("a", "c", "ac", 0))
    assert free.find_path("a", "c").tasks == ("ac",)


def test_remaining_ties_follow_the_declaration_order_of_states() -> None:
    edges = [("a", "b", "ab", 1), ("a", "c", "ac", 1), ("b", "d", "bd", 1), ("c", "d", "cd", 1)]

    assert planner("a b c d", *edges).find_path("a", "d").tasks == ("ab", "bd")
    assert planner("a c b d", *edges).find_path("a", "d").tasks == ("ac", "cd")
    # The order of the transitions does not matter, only the states'.
    assert planner("a b c d", *reversed(edges)).find_path("a", "d").tasks == ("ab", "bd")


def test_parallel_transitions_keep_the_cheapest_then_the_first() -> None:
    p = planner("a b", ("a", "b", "slow", 3), ("a", "b", "fast", 1), ("a", "b", "also_fast", 1))
    path = p.find_path("a", "b")
    assert path.tasks == ("fast",)
    assert path.total_cost == 1


def test_same_input_same_path() -> None:
    edges = [("a", "b", "ab", 1), ("a", "c", "ac", 1), ("b", "d", "bd", 1), ("c", "d", "cd", 1)]
    first = planner("a b c d", *edges)
    again = planner("a b c d", *edges)
    assert first.find_path("a", "d") == first.find_path("a", "d") == again.find_path("a", "d")


def test_fractional_costs_are_summed_exactly() -> None:
    p = planner("a b c", ("a", "b", "ab", 0.5), ("b", "c", "bc", 0.25), ("a", "c", "ac", 1))
    path = p.find_path("a", "c")
    assert path.tasks == ("ab", "bc")
    assert path.total_cost == 0.75
    assert repr(path) == "<Path p: a -> b -> c (cost 0.75)>"


def test_reachable_lists_every_reachable_state_cheapest_first() -> None:
    reachable = make_game_plan().planner.reachable("logged_in")
    assert reachable == {"logged_in": 0, "in_game_at_home": 5, "logged_out": 6}
    assert list(reachable) == ["logged_in", "in_game_at_home", "logged_out"]


def test_long_path_repr_is_elided() -> None:
    names = [f"s{i}" for i in range(40)]
    p = StatePlanner(names, [Transition(a, b, f"t{i}") for i, (a, b) in enumerate(zip(names, names[1:]))])
    path = p.find_path("s0", "s39")
    assert len(path) == 39
    assert repr(path) == "<Path s0 -> s1 -> s2 -> s3 -> s4 -> s5 -> ... (28 more) -> s34 -> s35 -> s36 -> s37 -> s38 -> s39 (cost 39)>"


# -- invalid maps ---------------------------------------------------------------------


@pytest.mark.parametrize("cost", [-1, float("nan"), float("inf"), "1", True, None])
def test_invalid_costs_are_refused(cost: object) -> None:
    with pytest.raises(StatesMapError, match=r"plan 'p': transitions\[0\]: cost must be"):
        planner("a b", ("a", "b", "t", cost))  # type: ignore[arg-type]


def test_duplicate_states_and_unknown_endpoints_are_refused() -> None:
    with pytest.raises(StatesMapError, match="duplicate state 'a'"):
        planner("a b a")
    with pytest.raises(StatesMapError, match=r"transitions\[0\]: unknown state 'x' \(known: a, b\)"):
        planner("a b", ("a", "x", "t", 1))


# -- property: agrees with networkx ---------------------------------------------------

# Multiples of 1/4 add up exactly in floating point, so costs can be compared with ==.
COSTS = st.sampled_from([0, 0, 0.25, 0.5, 1, 1, 1, 2, 3, 10])


@st.composite
def graphs(draw: st.DrawFn) -> tuple[int, list[tuple[int, int, float]]]:
    n = draw(st.integers(1, 30))
    node = st.integers(0, n - 1)
    edges = draw(st.lists(st.tuples(node, node, COSTS), max_size=4 * n))
    return n, edges


@settings(max_examples=300, deadline=None)
@given(graphs(), st.data())
def test_agrees_with_networkx(graph: tuple[int, list[tuple[int, int, float]]], data: st.DataObject) -> None:
    n, edges = graph
    names = [f"s{i}" for i in range(n)]
    transitions = [Transition(names[u], names[v], f"t{i}", cost) for i, (u, v, cost) in enumerate(edges)]
    p = StatePlanner(names, transitions, plan="g")

    # Reference: one edge per pair with the cheapest cost, and a second weight that
    # adds one hop per edge below the cost's resolution to find the fewest hops.
    reference = nx.DiGraph()
    reference.add_nodes_from(names)
    for u, v, cost in edges:
        if u != v and (not reference.has_edge(names[u], names[v]) or cost < reference[names[u]][names[v]]["cost"]):
            reference.add_edge(names[u], names[v], cost=cost, rank=cost * (n + 1) * 4 + 1)
    available = {(t.from_state, t.to_state, t.task, t.cost) for t in transitions}

    start = data.draw(st.sampled_from(names), label="start")
    expected = nx.single_source_dijkstra_path_length(reference, start, weight="cost")
    assert p.reachable(start) == expected

    for target in names:
        if target not in expected:
            with pytest.raises(StatePlanningError) as info:
                p.find_path(start, target)
            assert info.value.reason == "no_path"
            continue
        path = p.find_path(start, target)
        assert isinstance(path, Path)
        assert path.total_cost == expected[target] == sum(step.cost for step in path)
        fewest_hops = nx.dijkstra_path_length(reference, start, target, weight="rank") - expected[target] * (n + 1) * 4
        assert len(path) == fewest_hops
        assert path.states[0] == start and path.states[-1] == target
        for i, step in enumerate(path):
            assert step.index == i
            assert (step.from_state, step.to_state, step.task, step.cost) in available
            assert step.cost == reference[step.from_state][step.to_state]["cost"]
        assert p.find_path(start, target) == path
