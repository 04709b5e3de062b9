"""Graphviz drawings of a plan's state map and of a planned path, and how to show them.

Mental model: the state map is a road map (states are towns, transitions one-way
roads); a planned :class:`~aura_nb.core.Path` is a route drawn over it, and
``progress`` paints each leg of the route as it is driven: ``pending`` (dashed blue),
``running`` (bold orange), ``done`` (green) or ``failed`` (vermillion, with a bar at
the arrow's end). Every leg of the route also says its number and status in words,
so the drawing reads without colour too. The colours are the Okabe-Ito palette,
which people with the common colour-vision deficiencies can tell apart.

Rendering is a pure function, ``(plan, path, progress) -> graphviz.Digraph``: the same
inputs give the same DOT text, byte for byte, and nothing is drawn until the result
is displayed. Every user string (state names, descriptions, task names) goes into an
HTML-like label through :func:`html.escape`, and nodes get identifiers of their own
when a name is not a plain identifier, so no name can break the DOT source or inject
markup into the SVG.

Showing a drawing needs Graphviz's ``dot`` program. The digraphs returned here (and
:class:`GraphView`, for any digraph) show the SVG when ``dot`` is installed and,
without it, the DOT text with the command that installs it, instead of failing.
"""

from __future__ import annotations

import functools
import html
import os
import re
import shutil
import textwrap
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import graphviz

from ..core._text import display_text

if TYPE_CHECKING:  # pragma: no cover
    from ..core import Path, Plan

__all__ = [
    "INSTALL_HINTS",
    "PROGRESS",
    "STYLES",
    "GraphView",
    "StateDiagram",
    "display_graph",
    "dot_available",
    "render_path",
    "render_state_map",
    "to_svg",
]

#: The statuses a step of a path can have, in the order a step goes through them.
PROGRESS: tuple[str, ...] = ("pending", "running", "done", "failed")

# Okabe-Ito colours (distinguishable with deuteranopia, protanopia and tritanopia);
# text colours are darker shades of the same hue, readable on white.
_BLUE, _ORANGE, _GREEN, _VERMILLION = "#0072B2", "#E69F00", "#009E73", "#D55E00"
# A list, not plain "Helvetica": dot maps that one name to its generic sans-serif to
# measure text (DejaVu Sans on Debian), while the browser draws Helvetica or its metric
# twin Arial/Liberation Sans, narrower: labels sat off-centre, with gaps between font
# runs. Given as a list, dot and the browser resolve the same font.
_FONTS = "Helvetica,Arial,sans-serif"


#: Style name -> ``{"node": attrs, "edge": attrs}`` (``"base"`` also has ``"graph"``).
StyleMap = Mapping[str, Mapping[str, Mapping[str, str]]]


def _frozen(styles: StyleMap) -> StyleMap:
    return MappingProxyType(
        {name: MappingProxyType({kind: MappingProxyType(dict(attrs)) for kind, attrs in parts.items()})
         for name, parts in styles.items()}  # fmt: skip
    )


#: The look of every part of a drawing, by name (read-only; pass ``styles=`` to the
#: render functions to override parts). ``pending`` / ``running`` / ``done`` /
#: ``failed`` style a path's steps (``edge``) and the states they lead to (``node``);
#: ``current`` and ``target`` mark the states where the system is and must get to.
STYLES: StyleMap = _frozen(
    {
        # Every state and transition starts from "base"; the others are drawn over it.
        "base": {
            "graph": {
                "rankdir": "LR",
                # Transparent: no white slab in a dark theme. Text outside the nodes
                # (the title, the edge labels) is in mid-tones that read on both.
                "bgcolor": "transparent",
                "fontcolor": "#808080",
                "fontname": _FONTS,
                "fontsize": "12",
                "labelloc": "t",
                "labeljust": "l",
                "pad": "0.2",
                "nodesep": "0.45",
                "ranksep": "0.7",
            },
            "node": {
                "shape": "box",
                "style": "rounded,filled",
                "fillcolor": "#FFFFFF",
                "color": "#555555",
                "fontcolor": "#222222",
                "fontname": _FONTS,
                "fontsize": "12",
                "penwidth": "1",
                "margin": "0.15,0.07",
            },
            "edge": {
                "color": "#8C8C8C",
                "fontcolor": "#808080",
                "fontname": _FONTS,
                "fontsize": "10",
                "penwidth": "1",
                "arrowsize": "0.8",
            },
        },
        "pending": {
            "node": {"color": _BLUE, "fillcolor": "#E5F0F8", "style": "rounded,filled,dashed", "penwidth": "1.5"},
            "edge": {"color": _BLUE, "fontcolor": "#3A8FD0", "style": "dashed", "penwidth": "2.5"},
        },
        "running": {
            "node": {"color": _ORANGE, "fillcolor": "#FDF0D5", "style": "rounded,filled,bold", "penwidth": "3"},
            "edge": {"color": _ORANGE, "fontcolor": "#C88A00", "style": "bold", "penwidth": "3.5"},
        },
        "done": {
            "node": {"color": _GREEN, "fillcolor": "#DCF2EB", "style": "rounded,filled", "penwidth": "2"},
            "edge": {"color": _GREEN, "fontcolor": "#00A078", "style": "solid", "penwidth": "3"},
        },
        "failed": {
            "node": {"color": _VERMILLION, "fillcolor": "#F9E1D4", "style": "rounded,filled,bold", "penwidth": "3"},
            "edge": {
                "color": _VERMILLION,
                "fontcolor": "#E0661A",
                "style": "bold",
                "penwidth": "3.5",
                "arrowhead": "tee",
            },
        },
        # Where the system is, and where the tasklet needs it: drawn over the statuses.
        "current": {"node": {"color": "#000000", "fillcolor": "#E8E8E8", "penwidth": "2.5"}},
        "target": {"node": {"peripheries": "2"}},
    }
)

#: How to install Graphviz's ``dot`` program, shown when it is missing.
INSTALL_HINTS: tuple[tuple[str, str], ...] = (
    ("Debian/Ubuntu", "apt-get install graphviz"),
    ("macOS", "brew install graphviz"),
    ("conda", "conda install -c conda-forge graphviz"),
)

# A name that DOT reads as an identifier without quotes, and that is not a keyword.
_PLAIN_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOT_KEYWORDS = frozenset({"node", "edge", "graph", "digraph", "subgraph", "strict"})
# Control characters other than tab and newline: shown as escapes, never sent to dot.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_DESCRIPTION_WIDTH = 34
#: Names longer than this are shortened in labels (their full text is the tooltip), and
#: descriptions are cut after this many characters: a drawing stays readable.
_NAME_LIMIT = 40
_DESCRIPTION_LIMIT = 160


# -- showing ------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _dot_on_path(path_env: str | None) -> bool:
    return shutil.which("dot", path=path_env) is not None


def dot_available() -> bool:
    """Whether Graphviz's ``dot`` program is on ``PATH`` (cached per ``PATH`` value)."""
    return _dot_on_path(os.environ.get("PATH"))


def to_svg(digraph: graphviz.Graph | graphviz.Digraph) -> str | None:
    """The drawing as SVG text, or None when the ``dot`` program is not installed.

    Any other failure of ``dot`` (which would be a bug in the DOT text) is raised.
    """
    if not dot_available():
        return None
    try:
        return digraph.pipe(format="svg", encoding="utf-8")
    except graphviz.ExecutableNotFound:
        return None


def _fallback_html(source: str) -> str:
    commands = "".join(
        f"<li>{html.escape(where)}: <code>{html.escape(command)}</code></li>" for where, command in INSTALL_HINTS
    )
    return (
        '<div class="aura-nb-dot-missing">'
        "<p><b>Graphviz's <code>dot</code> program is not installed</b>, so this drawing is shown as its DOT "
        "text. Install it, then run the cell again:</p>"
        f"<ul>{commands}</ul>"
        f'<pre style="max-height: 24em; overflow: auto">{html.escape(source)}</pre>'
        "</div>"
    )


def _fallback_text(source: str) -> str:
    commands = "; ".join(f"{where}: {command}" for where, command in INSTALL_HINTS)
    return f"Graphviz's dot program is not installed ({commands}). The drawing as DOT text:\n{source}"


def _mimebundle(digraph: graphviz.Graph | graphviz.Digraph) -> dict[str, str]:
    source = digraph.source
    svg = to_svg(digraph)
    if svg is not None:
        return {"image/svg+xml": svg, "text/plain": f"<{type(digraph).__name__}: {len(source)} characters of DOT>"}
    return {"text/html": _fallback_html(source), "text/plain": _fallback_text(source)}


class GraphView:
    """Shows any graphviz graph in Jupyter: its SVG, or its DOT text without ``dot``.

    ``display(GraphView(g))`` never fails for a missing ``dot`` program, unlike
    displaying ``g`` itself.
    """

    __slots__ = ("digraph",)

    def __init__(self, digraph: graphviz.Graph | graphviz.Digraph) -> None:
        self.digraph = digraph

    @property
    def source(self) -> str:
        return self.digraph.source

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **_: Any) -> dict[str, str]:
        return _mimebundle(self.digraph)

    def __repr__(self) -> str:
        return f"<GraphView of {type(self.digraph).__name__} ({len(self.digraph.source)} characters of DOT)>"


def display_graph(digraph: graphviz.Graph | graphviz.Digraph, **kwargs: Any) -> Any:
    """Display *digraph* in the notebook (the DOT text and install hint without ``dot``).

    Keyword arguments go to :func:`IPython.display.display`: ``display_id=True``
    returns a handle whose ``update(GraphView(new_digraph))`` redraws in place.
    """
    from IPython.display import display

    return display(GraphView(digraph), **kwargs)


class StateDiagram(graphviz.Digraph):
    """A :class:`graphviz.Digraph` that, displayed without ``dot``, shows its DOT text.

    What :func:`render_state_map` and :func:`render_path` return; everything else is
    the plain ``graphviz.Digraph`` API (``.source``, ``.pipe()``, ``.render()``).
    """

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **_: Any) -> dict[str, str]:
        return _mimebundle(self)


# -- labels -------------------------------------------------------------------------


def _text(value: object) -> str:
    """*value* as text for an HTML-like label: escaped, newlines as line breaks.

    Control and bidirectional characters are shown as escapes (a right-to-left override
    cannot reverse the rest of the label).
    """
    lines = str(value).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "<BR/>".join(html.escape(display_text(line), quote=True) for line in lines)


def _name(value: object, limit: int = _NAME_LIMIT) -> str:
    """A name in a label: one line, escaped, shortened in the middle when long."""
    return html.escape(display_text(value, limit), quote=True)


def _tooltip(value: object) -> str | None:
    """The full name for a hover, when the label had to shorten it (None otherwise)."""
    text = str(value)
    if len(display_text(text)) <= _NAME_LIMIT:
        return None
    # A tooltip is an escString: backslashes would start escapes such as \N.
    return display_text(text, 1_000).replace("\\", "\\\\")


def _small(text: str, *, size: int = 10, italic: bool = False) -> str:
    body = f"<I>{text}</I>" if italic else text
    return f'<FONT POINT-SIZE="{size}">{body}</FONT>'


def _cost(cost: float) -> str:
    return f"{cost:g}"


def _state_label(name: str, description: str, marks: list[str]) -> str:
    lines = [f"<B>{_name(name)}</B>"]
    if description:
        if len(description) > _DESCRIPTION_LIMIT:
            description = description[: _DESCRIPTION_LIMIT - 1] + "…"
        wrapped = textwrap.wrap(description, _DESCRIPTION_WIDTH) or [description]
        lines.append(_small("<BR/>".join(_text(line) for line in wrapped)))
    if marks:
        lines.append(_small(", ".join(marks), size=9, italic=True))
    return "<" + "<BR/>".join(lines) + ">"


def _transition_label(task: str, cost: float, step: tuple[int, int, str] | None) -> str:
    if step is None:
        return f"<{_name(task)}<BR/>{_small(f'cost {_cost(cost)}', size=9)}>"
    number, total, status = step
    detail = _small(f"cost {_cost(cost)}, step {number}/{total}: {status}", size=9)
    return f"<<B>{number}. {_name(task)}</B><BR/>{detail}>"


def _node_ids(states: list[str]) -> dict[str, str]:
    """A DOT identifier per state: the name itself when DOT can read it unquoted.

    Other names get ``#<index>`` (``#`` never occurs in a plain identifier, so the two
    kinds cannot collide); their text lives only in the escaped label.
    """
    return {
        name: name if _PLAIN_ID.fullmatch(name) and name.lower() not in _DOT_KEYWORDS else f"#{i}"
        for i, name in enumerate(states)
    }


# -- rendering ----------------------------------------------------------------------


def _merged_styles(styles: StyleMap | None) -> dict[str, dict[str, dict[str, str]]]:
    out = {name: {kind: dict(attrs) for kind, attrs in parts.items()} for name, parts in STYLES.items()}
    for name, parts in (styles or {}).items():
        for kind, attrs in parts.items():
            out.setdefault(name, {}).setdefault(kind, {}).update({k: str(v) for k, v in attrs.items()})
    return out


def _check_state(plan: Plan, state: str | None, what: str) -> None:
    if state is not None and state not in plan.states:
        known = ", ".join(repr(s) for s in plan.states) or "none"
        raise ValueError(f"{what} {state!r} is not a state of plan {plan.name!r} (known: {known})")


def _check_progress(progress: Mapping[int, str] | None, n_steps: int) -> dict[int, str]:
    if progress is None:
        return {}
    if not isinstance(progress, Mapping):
        raise TypeError(
            f"progress must be a mapping of step index -> status, like {{0: 'done', 1: 'running'}}, "
            f"not {type(progress).__name__}"
        )
    out: dict[int, str] = {}
    for index, status in progress.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_steps:
            raise ValueError(
                f"progress key {index!r}: a step index of the path must be an int in 0..{n_steps - 1}"
                if n_steps
                else f"progress key {index!r}: the path has no steps"
            )
        if status not in PROGRESS:
            raise ValueError(f"progress[{index}] = {status!r}: a step's status is one of {', '.join(PROGRESS)}")
        out[index] = status
    return out


def _draw(
    plan: Plan,
    path: Path | None,
    progress: Mapping[int, str] | None,
    current: str | None,
    target: str | None,
    styles: StyleMap | None,
    compact: bool = False,
) -> StateDiagram:
    style = _merged_styles(styles)
    states = list(plan.states)
    transitions = list(plan.transitions)
    steps = list(path.steps) if path is not None else []
    if path is not None:
        if getattr(path, "plan", plan.name) not in (plan.name, "", None):
            raise ValueError(f"the path belongs to plan {path.plan!r}, not to plan {plan.name!r}")
        _check_state(plan, path.start, "the path's start")
        _check_state(plan, path.target, "the path's target")
    status_of = _check_progress(progress, len(steps))
    if path is not None:
        current = _reached(path.start, steps, status_of) if current is None else current
        target = path.target if target is None else target
    _check_state(plan, current, "current state")
    _check_state(plan, target, "target state")

    # Which transition each step drives (from, to and task identify it in a plan).
    index_of = {(t.from_state, t.to_state, t.task): i for i, t in enumerate(transitions)}
    edge_step: dict[int, tuple[int, str]] = {}
    node_status: dict[str, str] = {}
    for position, step in enumerate(steps):
        key = (step.from_state, step.to_state, step.task)
        if key not in index_of:
            raise ValueError(
                f"step {position} of the path ({step.from_state} -> {step.to_state} via {step.task}) "
                f"is not a transition of plan {plan.name!r}"
            )
        status = status_of.get(position, "pending")
        edge_step[index_of[key]] = (position, status)
        node_status[step.to_state] = status

    ids = _node_ids(states)
    shown = set(states)
    if compact and path is not None:
        # The states on the path and their neighbours: where the route goes, and the
        # roads it did not take; the rest of a large map would only shrink the drawing.
        on_path = set(path.states)
        shown = set(on_path)
        for t in transitions:
            if t.from_state in on_path or t.to_state in on_path:
                shown.update((t.from_state, t.to_state))
    hidden = len(states) - len(shown)
    g = StateDiagram(name="state_map", graph_attr=style["base"]["graph"], node_attr=style["base"]["node"],
                     edge_attr=style["base"]["edge"])  # fmt: skip
    title = _title(plan, path, status_of)
    if hidden:
        title = title[:-1] + f"; {hidden} more state{'' if hidden == 1 else 's'} not shown>"
    g.attr(label=title)
    if compact and "rankdir" not in (styles or {}).get("base", {}).get("graph", {}):
        # A path is a sequence: top to bottom it grows in the direction a notebook
        # scrolls, and stays narrow enough to be read at full size.
        g.attr(rankdir="TB")

    for name, state in plan.states.items():
        if name not in shown:
            continue
        attrs: dict[str, str] = {}
        marks: list[str] = []
        if name in node_status:
            attrs.update(style[node_status[name]]["node"])
        if name == current:
            attrs.update(style["current"]["node"])
            marks.append("current")
        if name == target:
            attrs.update(style["target"]["node"])
            marks.append("target")
        tip = _tooltip(name)
        if tip is not None:
            attrs["tooltip"] = tip
        g.node(ids[name], label=_state_label(name, state.description, marks), **attrs)

    for i, transition in enumerate(transitions):
        if transition.from_state not in shown or transition.to_state not in shown:
            continue
        on_path = edge_step.get(i)
        attrs = {}
        step_info = None
        if on_path is not None:
            position, status = on_path
            attrs.update(style[status]["edge"])
            step_info = (position + 1, len(steps), status)
        tip = _tooltip(transition.task)
        if tip is not None:
            attrs["tooltip"] = tip
        g.edge(
            ids[transition.from_state],
            ids[transition.to_state],
            label=_transition_label(transition.task, transition.cost, step_info),
            **attrs,
        )
    return g


def _reached(start: str, steps: list[Any], status_of: Mapping[int, str]) -> str:
    """The state the system is in: where the last ``done`` step led, else the start.

    A ``failed`` step leaves the system where that step started (and ends the path).
    """
    state = start
    for position, step in enumerate(steps):
        status = status_of.get(position, "pending")
        if status == "failed":
            return step.from_state
        if status == "done":
            state = step.to_state
    return state


def _title(plan: Plan, path: Path | None, status_of: Mapping[int, str]) -> str:
    # One font run on purpose: dot places each run of an HTML label by its own measure
    # of the text before it, and a browser whose font differs shows a gap between runs
    # ("plan game   : ..."). A single run is one <text> element that cannot split.
    head = f"plan {_name(plan.name, 24)}"
    if path is None:
        n_states, n_transitions = len(plan.states), len(plan.transitions)
        return (
            f"<{head}: {n_states} state{'' if n_states == 1 else 's'}, "
            f"{n_transitions} transition{'' if n_transitions == 1 else 's'}>"
        )
    n = len(path.steps)
    if n == 0:
        return f"<{head}: already in {_name(path.target, 24)}, nothing to do>"
    counts = [status_of.get(i, "pending") for i in range(n)]
    summary = ", ".join(f"{counts.count(s)} {s}" for s in PROGRESS if counts.count(s))
    return (
        f"<{head}: {_name(path.start, 24)} to {_name(path.target, 24)} in {n} step{'' if n == 1 else 's'}, "
        f"cost {_cost(path.total_cost)} ({summary})>"
    )


def render_state_map(
    plan: Plan,
    *,
    path: Path | None = None,
    current: str | None = None,
    target: str | None = None,
    styles: StyleMap | None = None,
) -> StateDiagram:
    """Draw every state and transition of *plan*'s state map.

    States show their name and, in smaller text, their description; transitions show
    their task and cost. A *path* (a :class:`~aura_nb.core.Path` of this plan) is
    highlighted as planned (every step ``pending``), its start marked ``current`` and
    its end ``target`` unless *current* / *target* say otherwise. *styles* overrides
    parts of :data:`STYLES` (``{"done": {"edge": {"color": "black"}}}``).

    Raises:
        ValueError: *current*, *target* or a step of *path* is not part of the map.
    """
    return _draw(plan, path, None, current, target, styles)


def render_path(
    plan: Plan,
    path: Path,
    progress: Mapping[int, str] | None = None,
    *,
    styles: StyleMap | None = None,
    compact: bool = False,
) -> StateDiagram:
    """Draw *plan*'s state map with *path* on it, each step coloured by its progress.

    *progress* maps a step's index (``step.index``, from 0) to ``"pending"``,
    ``"running"``, ``"done"`` or ``"failed"``; a missing step is ``pending``. The
    path's end is marked ``target``, and the state the system has reached is marked
    ``current``: where the last ``done`` step led (the start while no step is done),
    or the start of a ``failed`` step. Pure: the same arguments always give the same
    DOT text.

    With ``compact=True`` only the states on the path and their neighbours are drawn
    (the title says how many others are left out), top to bottom unless *styles* set a
    ``rankdir``: a large map's path stays narrow enough to read at full size.

    Raises:
        ValueError: a step of *path* is not a transition of the map, or *progress*
            names a step the path does not have or an unknown status.
    """
    if path is None:
        raise TypeError("render_path() needs a Path; to draw the map alone use render_state_map(plan)")
    return _draw(plan, path, progress, None, None, styles, bool(compact))
