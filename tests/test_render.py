"""Graphviz drawings: tested on their DOT text, and rendered by the real `dot` where it matters."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import graphviz
import pytest
from conftest import require_or_skip

import aura_nb as an
from aura_nb.examples import make_game_plan
from aura_nb.notebook._render import (
    PROGRESS,
    STYLES,
    GraphView,
    dot_available,
    render_path,
    render_state_map,
    to_svg,
)

EDGE = re.compile(r"^\t(\S+) -> (\S+) \[(.*)\]$", re.MULTILINE)
NODE = re.compile(r"^\t(\S+) \[(.*)\]$", re.MULTILINE)
WEIRD = 'a"b<script>{x}\nnewline'


def edges(source: str) -> dict[tuple[str, str], str]:
    """(tail, head) -> the attribute text of that edge."""
    return {(tail, head): attrs for tail, head, attrs in EDGE.findall(source)}


def nodes(source: str) -> dict[str, str]:
    return {name: attrs for name, attrs in NODE.findall(source) if name not in ("graph", "node", "edge")}


def has_style(attrs: str, style: dict[str, str]) -> bool:
    """Whether every attribute of *style* appears in *attrs* (quoted or not)."""
    return all(re.search(rf'(^|\s){key}=("{re.escape(v)}"|{re.escape(v)})(\s|$)', attrs) for key, v in style.items())


@pytest.fixture
def game() -> an.Plan:
    return make_game_plan()


@pytest.fixture
def home_path(game: an.Plan) -> an.Path:
    path = game.find_path("logged_out", "in_game_at_home")
    assert path.states == ("logged_out", "logged_in", "in_game_at_home")
    return path


@pytest.mark.parametrize("status", PROGRESS)
def test_each_status_colours_its_step_and_leaves_the_rest_pending(
    game: an.Plan, home_path: an.Path, status: str
) -> None:
    source = render_path(game, home_path, {0: status}).source
    drawn = edges(source)
    first = drawn[("logged_out", "logged_in")]
    second = drawn[("logged_in", "in_game_at_home")]
    assert has_style(first, STYLES[status]["edge"])
    assert f"step 1/2: {status}" in first
    assert has_style(second, STYLES["pending"]["edge"])  # missing from progress = pending
    assert "step 2/2: pending" in second
    # The state a step leads to takes the step's status; the current state is the start
    # until the step is done (then the system is where it led: see the test below).
    drawn_nodes = nodes(source)
    if status == "done":
        assert has_style(drawn_nodes["logged_in"], STYLES["current"]["node"])
        assert "<I>current</I>" in drawn_nodes["logged_in"] and "current" not in drawn_nodes["logged_out"]
    else:
        assert has_style(drawn_nodes["logged_in"], STYLES[status]["node"])
        assert has_style(drawn_nodes["logged_out"], STYLES["current"]["node"])
    assert has_style(drawn_nodes["in_game_at_home"], STYLES["target"]["node"])
    # Transitions off the path keep the base style: no attribute of their own but the label.
    for off_path in [("logged_out", "in_game_at_home"), ("in_game_at_home", "logged_out")]:
        assert re.fullmatch(r"label=<.*>", drawn[off_path])


def current_of(source: str) -> list[str]:
    """The states marked as the system's current state in a drawing."""
    return [name for name, attrs in nodes(source).items() if "<I>current" in attrs]


@pytest.mark.parametrize(
    ("progress", "current"),
    [
        ({}, "logged_out"),  # planned, nothing ran yet
        ({0: "running"}, "logged_out"),  # on the way: still where it started
        ({0: "done"}, "logged_in"),
        ({0: "done", 1: "running"}, "logged_in"),
        ({0: "done", 1: "done"}, "in_game_at_home"),  # finished: at the target
        ({0: "failed"}, "logged_out"),
        ({0: "done", 1: "failed"}, "logged_in"),  # stuck where the failed step started
    ],
)
def test_the_current_state_is_the_state_reached(
    game: an.Plan, home_path: an.Path, progress: dict[int, str], current: str
) -> None:
    source = render_path(game, home_path, progress).source
    assert current_of(source) == [current]
    assert has_style(nodes(source)[current], STYLES["current"]["node"])
    assert "peripheries=2" in nodes(source)["in_game_at_home"]  # the target stays marked
    # Before anything runs, the plain map with the path agrees.
    assert current_of(render_state_map(game, path=home_path).source) == ["logged_out"]


def test_the_title_is_one_run_of_text_without_gaps(game: an.Plan, home_path: an.Path) -> None:
    # dot places each font run of an HTML label by its own measure of the text: with a
    # bold "plan game" the browser showed "plan game   : logged_out ...". One run cannot.
    source = render_path(game, home_path, {0: "done"}).source
    assert "label=<plan game: logged_out to in_game_at_home in 2 steps, cost 6 (1 pending, 1 done)>" in source
    assert STYLES["base"]["graph"]["fontname"].split(",")[-1].strip() == "sans-serif"  # a fallback list
    require_or_skip(dot_available(), "Graphviz's dot program")
    root = ET.fromstring(to_svg(render_path(game, home_path, {0: "done"})))
    graph = next(g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "graph")
    title = [element.text or "" for element in graph.findall("{http://www.w3.org/2000/svg}text")]
    assert title == ["plan game: logged_out to in_game_at_home in 2 steps, cost 6 (1 pending, 1 done)"]
    assert not re.search(r"\s{3,}", title[0])
    for plan_only in (render_state_map(game), render_path(game, game.find_path("logged_in", "logged_in"))):
        svg_root = ET.fromstring(to_svg(plan_only))
        top = next(g for g in svg_root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "graph")
        assert len(top.findall("{http://www.w3.org/2000/svg}text")) == 1


def test_the_four_statuses_look_different() -> None:
    looks = {status: tuple(sorted(STYLES[status]["edge"].items())) for status in PROGRESS}
    assert len(set(looks.values())) == 4
    colours = {STYLES[status]["edge"]["color"] for status in PROGRESS}
    assert len(colours) == 4
    # Not by colour alone: dashes, weight or the arrowhead differ too.
    shapes = {(STYLES[s]["edge"].get("style"), STYLES[s]["edge"].get("arrowhead")) for s in PROGRESS}
    assert len(shapes) == 4


def test_a_whole_run_done_then_a_failure(game: an.Plan, home_path: an.Path) -> None:
    done = render_path(game, home_path, {0: "done", 1: "done"}).source
    assert "2 done" in done
    assert all(has_style(attrs, STYLES["done"]["edge"]) for attrs in list(edges(done).values())[:2])
    failed = render_path(game, home_path, {0: "done", 1: "failed"}).source
    assert "arrowhead=tee" in edges(failed)[("logged_in", "in_game_at_home")]
    assert "1 done, 1 failed" in failed


def test_the_state_map_shows_every_state_and_transition(game: an.Plan) -> None:
    source = render_state_map(game).source
    assert set(nodes(source)) == set(game.states)
    drawn = edges(source)
    assert len(drawn) == len(game.transitions)
    for transition in game.transitions:
        attrs = drawn[(transition.from_state, transition.to_state)]
        assert transition.task in attrs and f"cost {transition.cost:g}" in attrs
    assert "Game started, not logged in" in source  # descriptions, in smaller text
    assert '<FONT POINT-SIZE="10">Game started, not logged in</FONT>' in source
    assert "current" not in source and "peripheries" not in source


def test_state_map_with_a_path_current_and_target(game: an.Plan, home_path: an.Path) -> None:
    source = render_state_map(game, path=home_path).source
    drawn = edges(source)
    assert has_style(drawn[("logged_out", "logged_in")], STYLES["pending"]["edge"])
    assert has_style(drawn[("logged_in", "in_game_at_home")], STYLES["pending"]["edge"])
    alone = render_state_map(game, current="maintenance", target="logged_in").source
    drawn_nodes = nodes(alone)
    assert has_style(drawn_nodes["maintenance"], STYLES["current"]["node"])
    assert "<I>current</I>" in drawn_nodes["maintenance"]
    assert "peripheries=2" in drawn_nodes["logged_in"] and "<I>target</I>" in drawn_nodes["logged_in"]
    with pytest.raises(ValueError, match="'nowhere' is not a state of plan 'game'"):
        render_state_map(game, current="nowhere")


def test_rendering_is_deterministic(home_path: an.Path) -> None:
    # Two plans built the same way, progress given in different orders: the same text.
    plan_a, plan_b = make_game_plan(), make_game_plan()
    a = render_path(plan_a, home_path, {0: "done", 1: "running"}).source
    b = render_path(plan_b, plan_b.find_path("logged_out", "in_game_at_home"), {1: "running", 0: "done"}).source
    assert a == b
    assert render_state_map(plan_a).source == render_state_map(plan_b).source
    # States and transitions appear in declaration order.
    assert [name for name in nodes(a)] == list(plan_a.states)
    assert list(edges(a)) == [(t.from_state, t.to_state) for t in plan_a.transitions]


def weird_plan() -> tuple[an.Plan, an.Path]:
    plan = an.Plan("esc")

    @plan.task(name="check<b>")
    def check() -> bool:
        return True

    @plan.task(name='go"&<i>')
    async def go() -> None:
        pass

    plan.add_state(WEIRD, check="check<b>", description='<img src=x onerror="a"> & \\ b\\')
    plan.add_state("node", check="check<b>")  # a DOT keyword
    plan.add_state("ends with backslash\\", check="check<b>")
    plan.add_transition(WEIRD, "node", task='go"&<i>')
    plan.add_transition("node", "ends with backslash\\", task='go"&<i>', cost=2.5)
    return plan, plan.find_path(WEIRD, "ends with backslash\\")


def test_user_strings_are_escaped_in_the_dot_text() -> None:
    plan, path = weird_plan()
    source = render_path(plan, path, {0: "done", 1: "failed"}).source
    assert "<script>" not in source and "<img" not in source and "<i>" not in source
    # A name is one line: its newline is shown as an escape, it cannot add a line.
    assert "a&quot;b&lt;script&gt;{x}\\nnewline" in source
    assert "go&quot;&amp;&lt;i&gt;" in source
    assert "&lt;img src=x onerror=&quot;a&quot;&gt; &amp; \\ b\\" in source
    # No user string is used as a node identifier when DOT would need it quoted.
    assert set(nodes(source)) == {'"#0"', '"#1"', '"#2"'}
    assert ("\"#0\"", "\"#1\"") in edges(source)


def test_dot_accepts_the_escaped_text_and_the_svg_shows_it_as_text() -> None:
    require_or_skip(dot_available(), "Graphviz's dot program")
    plan, path = weird_plan()
    svg = render_path(plan, path, {0: "running"}).pipe(format="svg", encoding="utf-8")
    root = ET.fromstring(svg)
    tags = {element.tag.rpartition("}")[2] for element in root.iter()}
    assert "script" not in tags and "img" not in tags
    texts = [element.text or "" for element in root.iter() if element.tag.endswith("text")]
    assert 'a"b<script>{x}\\nnewline' in texts  # one line, as text
    assert '<img src=x onerror="a"> & \\ b\\' in texts
    assert any('go"&<i>' in text for text in texts)
    assert "ends with backslash\\" in "".join(texts)


def test_with_dot_the_drawing_displays_as_svg(game: an.Plan, home_path: an.Path) -> None:
    require_or_skip(dot_available(), "Graphviz's dot program")
    diagram = render_path(game, home_path, {0: "done"})
    assert isinstance(diagram, graphviz.Digraph)
    bundle = diagram._repr_mimebundle_()
    assert bundle["image/svg+xml"].lstrip().startswith("<?xml")
    assert "text/html" not in bundle
    svg = to_svg(diagram)
    assert svg is not None and "1. do_login" in svg
    assert GraphView(graphviz.Digraph())._repr_mimebundle_()["image/svg+xml"]


def test_without_dot_the_dot_text_and_the_install_hint_are_shown(
    game: an.Plan, home_path: an.Path, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert not dot_available()
    diagram = render_path(game, home_path, {0: "running"})
    with pytest.raises(graphviz.ExecutableNotFound):  # what a plain Digraph would do
        graphviz.Digraph.pipe(diagram, format="svg")
    assert to_svg(diagram) is None
    for shown in (diagram, GraphView(diagram), GraphView(graphviz.Digraph(body=["a -> b"]))):
        bundle = shown._repr_mimebundle_()
        assert "image/svg+xml" not in bundle
        page = bundle["text/html"]
        for command in ("apt-get install graphviz", "brew install graphviz", "conda install -c conda-forge graphviz"):
            assert command in page and command in bundle["text/plain"]
        assert "<pre" in page and "-&gt;" in page  # the DOT text, escaped for HTML
    page = diagram._repr_mimebundle_()["text/html"]
    assert "logged_out -&gt; logged_in" in page and "step 1/2: running" in page
    assert "<B>" not in page  # the labels' markup is shown as text, not interpreted


def test_jupyter_shows_the_fallback_without_dot(game: an.Plan, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from IPython.core.formatters import DisplayFormatter

    monkeypatch.setenv("PATH", str(tmp_path))
    for shown in (render_state_map(game), GraphView(graphviz.Digraph(body=["a -> b"]))):
        data, _ = DisplayFormatter().format(shown)  # what Jupyter does with a cell's result
        assert "apt-get install graphviz" in data["text/html"]
        assert "image/svg+xml" not in data


def test_bad_progress_and_foreign_paths_are_refused(game: an.Plan, home_path: an.Path) -> None:
    with pytest.raises(ValueError, match="one of pending, running, done, failed"):
        render_path(game, home_path, {0: "finished"})
    with pytest.raises(ValueError, match="step index"):
        render_path(game, home_path, {2: "done"})
    with pytest.raises(TypeError, match="mapping"):
        render_path(game, home_path, ["done"])  # type: ignore[arg-type]
    other = make_game_plan(name="other")
    with pytest.raises(ValueError, match="belongs to plan 'other'"):
        render_path(game, other.find_path("logged_out", "logged_in"))
    small = an.Plan("game")
    small.add_task(lambda: True, name="yes")
    small.add_state("logged_out", check="yes")
    small.add_state("logged_in", check="yes")
    small.add_state("in_game_at_home", check="yes")
    with pytest.raises(ValueError, match="is not a transition of plan 'game'"):
        render_path(small, home_path)


def test_styles_can_be_overridden_per_call(game: an.Plan, home_path: an.Path) -> None:
    source = render_path(game, home_path, {0: "done"}, styles={"done": {"edge": {"color": "black"}}}).source
    assert "color=black" in edges(source)[("logged_out", "logged_in")]
    assert STYLES["done"]["edge"]["color"] != "black"  # the shared styles are unchanged
    with pytest.raises(TypeError):
        STYLES["done"]["edge"]["color"] = "black"  # type: ignore[index]
