"""Loading Aura's states_map.yaml: every malformed input names its source and key path."""

from __future__ import annotations

import pathlib
import time
from typing import Any

import pytest

from aura_nb.core._errors import StatesMapError
from aura_nb.core._plan import Plan, State, Transition
from aura_nb.core._statesmap import MAX_ALIASES, MAX_BYTES

GOOD = """\
states:
  logged_out: {description: "Game started, not logged in", check_task: check_logged_out}
  logged_in:  {check_task: check_logged_in}
transitions:
  - {from: logged_out, to: logged_in, transition_task: do_login, cost: 1}
"""


@pytest.fixture
def plan() -> Plan:
    plan = Plan("game")
    for name in ("check_logged_out", "check_logged_in", "check_home", "do_login", "go_home", "logout"):
        plan.add_task(lambda: True, name=name)
    return plan


def snapshot(plan: Plan) -> tuple[Any, ...]:
    return (dict(plan.tasks), dict(plan.states), plan.transitions)


def load_error(plan: Plan, source: object) -> str:
    """Load *source*, expect a StatesMapError, check nothing changed, return the message."""
    before = snapshot(plan)
    with pytest.raises(StatesMapError) as info:
        plan.load_states_map(source)
    assert snapshot(plan) == before
    return str(info.value)


def write(tmp_path: pathlib.Path, text: str, name: str = "states_map.yaml") -> pathlib.Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- the accepted forms ---------------------------------------------------------------


def test_text_form(plan: Plan) -> None:
    plan.load_states_map(GOOD)

    assert plan.states["logged_out"] == State("logged_out", "check_logged_out", "Game started, not logged in")
    assert plan.states["logged_in"] == State("logged_in", "check_logged_in", "")
    assert plan.transitions == (Transition("logged_out", "logged_in", "do_login", 1.0),)
    assert plan.find_path("logged_out", "logged_in").tasks == ("do_login",)


@pytest.mark.parametrize("name", ["states_map.yaml", "MAP.YML", "map.Yaml"])
def test_file_form_as_str_and_as_path(plan: Plan, tmp_path: pathlib.Path, name: str) -> None:
    path = write(tmp_path, GOOD, name)
    plan.load_states_map(str(path))
    assert list(plan.states) == ["logged_out", "logged_in"]

    other = Plan("game")
    for task in plan.tasks.values():
        other.add_task(task.fn, name=task.name)
    other.load_states_map(path)
    assert other.states == plan.states and other.transitions == plan.transitions


def test_dict_form_with_a_list_of_states_and_qualified_tasks(plan: Plan) -> None:
    plan.load_states_map(
        {
            "states": [
                {"name": "logged_out", "check_task": "game/check_logged_out"},
                {"name": "logged_in", "check_task": "check_logged_in", "description": "ready"},
            ],
            "transitions": [
                {"from": "logged_out", "to": "logged_in", "transition_task": "game/do_login"},
                {"from": "logged_in", "to": "logged_out", "transition_task": "logout", "cost": 0.5},
            ],
        }
    )
    assert plan.states["logged_in"].description == "ready"
    assert plan.states["logged_out"].check == "check_logged_out"
    # cost defaults to 1; ints and floats are both fine
    assert [(t.task, t.cost) for t in plan.transitions] == [("do_login", 1.0), ("logout", 0.5)]


def test_a_str_with_a_newline_is_text_even_if_it_ends_in_yaml(plan: Plan) -> None:
    plan.load_states_map("states:\n  a: {check_task: check_home}\n# see other.yaml")
    assert list(plan.states) == ["a"]


def test_a_dead_end_state_and_no_transitions_are_valid(plan: Plan) -> None:
    plan.load_states_map("states: {maintenance: {check_task: check_home}}")
    assert plan.transitions == ()


def test_maps_can_be_loaded_in_parts(plan: Plan) -> None:
    plan.load_states_map("states: {logged_out: {check_task: check_logged_out}}")
    plan.add_state("home", check="check_home")
    plan.load_states_map(
        "states: {logged_in: {check_task: check_logged_in}}\n"
        "transitions:\n"
        "  - {from: logged_out, to: logged_in, transition_task: do_login}\n"
        "  - {from: logged_in, to: home, transition_task: go_home}\n"
    )
    assert plan.find_path("logged_out", "home").states == ("logged_out", "logged_in", "home")


def test_anchors_and_merge_keys_within_the_limits_work(plan: Plan) -> None:
    aliases = "\n".join(
        f"  - {{<<: *step, from: s{i}, to: s{i + 1}}}" for i in range(MAX_ALIASES - 1)
    )
    states = "\n".join(f"  s{i}: {{check_task: check_home}}" for i in range(MAX_ALIASES + 1))
    plan.load_states_map(
        f"states:\n{states}\n"
        "transitions:\n"
        "  - &step {from: s99, to: s100, transition_task: go_home, cost: 2}\n"
        f"{aliases}\n"
    )
    assert len(plan.transitions) == MAX_ALIASES
    assert plan.find_path("s0", "s100").total_cost == 2 * MAX_ALIASES


# -- every malformed input ------------------------------------------------------------


def test_message_starts_with_the_file_and_the_key_path(plan: Plan, tmp_path: pathlib.Path) -> None:
    path = write(
        tmp_path,
        GOOD
        + "  - {from: logged_in, to: logged_out, transition_task: logout}\n"
        + "  - {from: logged_out, to: loged_in, transition_task: do_login}\n",
    )
    message = load_error(plan, str(path))
    assert message == (
        f"{path}: transitions[2].to: unknown state 'loged_in' (known: logged_in, logged_out)"
    )


def test_unknown_from_state(plan: Plan) -> None:
    message = load_error(plan, GOOD + "  - {from: nowhere, to: logged_in, transition_task: do_login}\n")
    assert message.startswith("<text>: transitions[1].from: unknown state 'nowhere' (known: logged_in, logged_out)")


def test_state_without_check_task(plan: Plan) -> None:
    message = load_error(plan, "states:\n  logged_out: {description: x}\n")
    assert message == (
        "<text>: states.logged_out: missing required key 'check_task' (valid keys: check_task, description)"
    )
    message = load_error(plan, "states:\n  logged_out:\n")
    assert message.startswith("<text>: states.logged_out: missing required key 'check_task'")
    message = load_error(plan, {"states": [{"name": "a"}]})
    assert message.startswith("<dict>: states[0]: missing required key 'check_task'")


def test_unknown_check_task(plan: Plan) -> None:
    message = load_error(plan, "states: {a: {check_task: check_lgged_in}}")
    assert message.startswith("<text>: states.a.check_task: unknown task 'check_lgged_in' in plan 'game' (known: ")
    assert "check_logged_in, check_logged_out" in message


def test_unknown_transition_task(plan: Plan) -> None:
    message = load_error(plan, GOOD.replace("transition_task: do_login", "transition_task: do_logn"))
    assert message.startswith("<text>: transitions[0].transition_task: unknown task 'do_logn' in plan 'game'")
    assert "do_login" in message


def test_a_task_of_another_plan(plan: Plan) -> None:
    message = load_error(plan, GOOD.replace("transition_task: do_login", "transition_task: other/do_login"))
    assert message.startswith(
        "<text>: transitions[0].transition_task: task 'other/do_login' belongs to plan 'other', not to plan 'game'"
    )


@pytest.mark.parametrize(
    ("yaml_cost", "shown"),
    [
        ("-1", "got -1"),
        ("-0.5", "got -0.5"),
        (".nan", "got nan"),
        (".inf", "got inf"),
        ("-.inf", "got -inf"),
        ("'1'", "got a string '1'"),
        ("one", "got a string 'one'"),
        ("true", "got a boolean (True)"),
        ("yes", "got a boolean (True)"),
        ("null", "got null"),
        ("[1]", "got a list [1]"),
    ],
)
def test_bad_costs(plan: Plan, yaml_cost: str, shown: str) -> None:
    message = load_error(plan, GOOD.replace("cost: 1", f"cost: {yaml_cost}"))
    assert message == f"<text>: transitions[0].cost: cost must be a finite number >= 0, {shown}"


@pytest.mark.parametrize("cost", [float("nan"), float("inf"), -1, "1", True, False])
def test_bad_costs_in_a_dict(plan: Plan, cost: object) -> None:
    source = {
        "states": {"a": {"check_task": "check_home"}, "b": {"check_task": "check_home"}},
        "transitions": [{"from": "a", "to": "b", "transition_task": "go_home", "cost": cost}],
    }
    message = load_error(plan, source)
    assert message.startswith("<dict>: transitions[0].cost: cost must be a finite number >= 0, got ")
    assert repr(cost) in message


def test_duplicate_state_in_the_yaml_mapping(plan: Plan, tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, GOOD.replace("transitions:", "  logged_out: {check_task: check_home}\ntransitions:"))
    message = load_error(plan, path)
    assert message == f"{path}: states.logged_out: duplicate state 'logged_out' (line 4; first on line 2)"


def test_duplicate_state_in_a_list(plan: Plan) -> None:
    message = load_error(plan, {"states": [{"name": "a", "check_task": "check_home"}, {"name": "a", "check_task": "check_home"}]})
    assert message == "<dict>: states[1].name: duplicate state 'a' (first declared at states[0])"


def test_duplicate_state_already_in_the_plan(plan: Plan) -> None:
    plan.add_state("logged_in", check="check_logged_in")
    message = load_error(plan, GOOD)
    assert message == "<text>: states.logged_in: duplicate state 'logged_in': plan 'game' already has it"


def test_duplicate_key_anywhere(plan: Plan) -> None:
    message = load_error(plan, GOOD.replace("cost: 1}", "cost: 1, cost: 2}"))
    assert message.startswith("<text>: transitions[0].cost: duplicate key 'cost' (line 5")


def test_duplicate_transition(plan: Plan) -> None:
    message = load_error(plan, GOOD + "  - {from: logged_out, to: logged_in, transition_task: do_login, cost: 3}\n")
    assert message == (
        "<text>: transitions[1]: duplicate transition 'logged_out' -> 'logged_in' via 'do_login'"
        " (first declared at transitions[0])"
    )


@pytest.mark.parametrize(
    ("text", "shown"),
    [("- a\n- b\n", "got a list ['a', 'b']"), ("just words", "got a string 'just words'"), ("", "got null"), ("42", "got 42")],
)
def test_top_level_not_a_mapping(plan: Plan, text: str, shown: str) -> None:
    message = load_error(plan, text)
    assert message.startswith(f"<text>: top level: expected a mapping with the keys states, transitions, {shown}")


def test_a_str_that_looks_like_a_path_without_the_suffix_gets_a_hint(plan: Plan) -> None:
    assert "pass a pathlib.Path" in load_error(plan, "states_map.txt")


def test_states_missing(plan: Plan) -> None:
    message = load_error(plan, "transitions: []")
    assert message == "<text>: states: missing required key 'states' (valid keys: states, transitions)"


@pytest.mark.parametrize(("value", "shown"), [("logged_in", "a string 'logged_in'"), ("3", "3"), ("null", "null")])
def test_states_wrong_type(plan: Plan, value: str, shown: str) -> None:
    message = load_error(plan, f"states: {value}")
    assert message.startswith("<text>: states: expected a mapping of state name -> {check_task, description}")
    assert message.endswith(f"got {shown}")


def test_a_state_entry_of_the_wrong_type(plan: Plan) -> None:
    message = load_error(plan, "states: {a: check_home}")
    assert message == "<text>: states.a: expected a mapping with the keys check_task, description, got a string 'check_home'"


def test_state_names_must_be_strings(plan: Plan) -> None:
    message = load_error(plan, "states: {on: {check_task: check_home}}")
    assert message.startswith("<text>: states.True: a state name must be a non-empty string, got a boolean (True)")
    assert "quote the name" in message


def test_transitions_wrong_type(plan: Plan) -> None:
    message = load_error(plan, "states: {}\ntransitions: {from: a}")
    assert message.startswith("<text>: transitions: expected a list of mappings with the keys from, to, transition_task, cost")


@pytest.mark.parametrize("key", ["from", "to", "transition_task"])
def test_transition_missing_a_key(plan: Plan, key: str) -> None:
    entry = {"from": "logged_out", "to": "logged_in", "transition_task": "do_login"}
    del entry[key]
    text = GOOD.split("transitions:")[0] + "transitions:\n  - " + str(entry).replace("'", "") + "\n"
    message = load_error(plan, text)
    assert message == (
        f"<text>: transitions[0]: missing required key {key!r} (valid keys: from, to, transition_task, cost)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD + "transitons: []\n", "<text>: transitons: unknown key 'transitons' (valid keys: states, transitions); did you mean 'transitions'?"),
        (
            GOOD.replace("check_task: check_logged_in", "check_tsak: check_logged_in"),
            "<text>: states.logged_in.check_tsak: unknown key 'check_tsak' (valid keys: check_task, description); did you mean 'check_task'?",
        ),
        (
            GOOD.replace("cost: 1", "cots: 1"),
            "<text>: transitions[0].cots: unknown key 'cots' (valid keys: from, to, transition_task, cost); did you mean 'cost'?",
        ),
        (
            "states: [{name: a, check_task: check_home, priority: 3}]",
            "<text>: states[0].priority: unknown key 'priority' (valid keys: name, check_task, description)",
        ),
    ],
)
def test_unknown_keys_are_rejected(plan: Plan, text: str, expected: str) -> None:
    assert load_error(plan, text) == expected


def test_missing_file(plan: Plan, tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nope" / "states_map.yaml"
    assert load_error(plan, missing).startswith(f"{missing}: file not found")
    assert load_error(plan, "nope.yml").startswith("nope.yml: file not found (looked for ")


def test_a_directory_is_not_a_file(plan: Plan, tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "maps.yaml"
    folder.mkdir()
    assert load_error(plan, folder).startswith(f"{folder}: cannot read the states map: ")


def test_invalid_yaml_names_the_line(plan: Plan, tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "states:\n  a: {check_task: check_home}\n  b: {check_task: [unclosed}\n")
    message = load_error(plan, path)
    assert message.startswith(f"{path}: line 3, column ")
    assert "invalid YAML" in message


def test_several_documents_are_refused(plan: Plan) -> None:
    assert "expected a single document" in load_error(plan, GOOD + "---\n" + GOOD)


def test_python_tags_are_refused_and_never_run(plan: Plan, tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "pwned"
    payloads = [
        f'!!python/object/apply:os.system ["touch {marker}"]',
        f'states: !!python/object/apply:subprocess.check_call [["touch", "{marker}"]]',
        f'states: {{a: {{check_task: !!python/object/apply:os.system ["touch {marker}"]}}}}',
        "states: !!python/name:os.system",
        "states: !custom {a: 1}",
    ]
    for payload in payloads:
        message = load_error(plan, payload)
        assert "is not allowed: a states map is plain data" in message
        assert message.startswith("<text>: line 1, column ")
        assert load_error(plan, write(tmp_path, payload)).startswith(str(tmp_path / "states_map.yaml"))
    assert not marker.exists()


def test_more_than_100_aliases_are_refused(plan: Plan) -> None:
    levels = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]
    bomb = "\n".join(levels) + "\nstates: *a11\n"
    started = time.perf_counter()
    message = load_error(plan, bomb)
    assert time.perf_counter() - started < 5
    assert message.startswith("<text>: line ")
    assert f"more than {MAX_ALIASES} aliases" in message
    assert "billion laughs" in message


def test_a_small_alias_bomb_under_the_limit_stays_harmless(plan: Plan) -> None:
    # 9 levels x 10 aliases = 90 aliases: a billion leaves if anything expanded them.
    levels = ["&a0 [" + ", ".join(["lol"] * 10) + "]"]
    levels += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    bomb = "states:\n  x:\n    check_task: check_home\n    description: [" + ", ".join(levels) + "]\n"
    started = time.perf_counter()
    message = load_error(plan, bomb)
    assert time.perf_counter() - started < 5
    assert message.startswith("<text>: states.x.description: a description must be a string, got a list [")
    assert len(message) < 300


def test_a_merge_key_bomb_stays_harmless(plan: Plan) -> None:
    levels = ["m0: &m0 {" + ", ".join(f"k{j}: v" for j in range(10)) + "}"]
    levels += [f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}]}}" for i in range(1, 10)]
    bomb = "\n".join(levels) + "\nstates: {a: {<<: *m9, check_task: check_home}}\n"
    started = time.perf_counter()
    message = load_error(plan, bomb)
    assert time.perf_counter() - started < 5
    assert message.startswith("<text>: ")


def test_huge_text_is_refused_before_parsing(plan: Plan) -> None:
    text = "# " + "x" * MAX_BYTES + "\nstates: {}\n"
    started = time.perf_counter()
    message = load_error(plan, text)
    assert time.perf_counter() - started < 2  # parsing it in pure Python would take far longer
    assert message.startswith(f"<text>: the states map is too large: {len(text)} bytes (0.5 MiB)")
    assert f"the limit is 512 KiB ({MAX_BYTES} bytes)" in message


def test_multibyte_text_is_measured_in_bytes(plan: Plan) -> None:
    text = "# " + "é" * (MAX_BYTES // 2) + "\n"
    assert "too large: " + str(len(text.encode())) in load_error(plan, text)


def test_huge_file_is_refused_before_reading(plan: Plan, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as file:
        file.truncate(MAX_BYTES + 1)  # sparse: costs no disk
    message = load_error(plan, path)
    assert message == (
        f"{path}: the states map is too large: {MAX_BYTES + 1} bytes (0.5 MiB);"
        f" the limit is 512 KiB ({MAX_BYTES} bytes)"
    )


def test_loading_is_atomic(plan: Plan) -> None:
    plan.add_state("existing", check="check_home")
    bad = GOOD + "  - {from: logged_in, to: existing, transition_task: go_home, cost: -3}\n"
    message = load_error(plan, bad)  # load_error checks that nothing changed
    assert message.startswith("<text>: transitions[1].cost: ")
    assert list(plan.states) == ["existing"]
    assert plan.transitions == ()


def test_other_source_types_are_a_type_error(plan: Plan) -> None:
    with pytest.raises(TypeError, match="states map source must be"):
        plan.load_states_map(42)
    with pytest.raises(TypeError):
        plan.load_states_map(GOOD.encode())
