"""The Workbench: an ExecutionManager with a live dashboard for Jupyter.

Mental model: the manager is the engine, the Workbench is its instrument panel. It
submits tasklets on the kernel's own event loop and shows, in one ipywidgets box:

* a header: idle / busy / closed, how many tasklets were submitted here (batches
  included), a badge when there are errors or the event log falls behind;
* a gauge per limit (the global one, then each resource as it is declared) under a
  one-line legend: a bar of the tokens in use, then the tokens *held back* for the
  oldest waiter (orange stripes), then the free ones; ``in use / capacity · waiting``;
  the state in words ("full", "busy") and how many waiting tasklets this limit holds up
  itself ("blocked here"). Every term explains itself on hover. A resource with a rate
  quota gets a quota row (``aura-gauge-quota``): the rate tokens taken in the current
  window of the quota (``7 / 10 per s``), and once it is used up, "quota used" and the
  countdown to the next token. A rate-only resource has no capacity bar, only that row;
* counters by phase and by final status, the retries (attempts beyond the first), and
  a progress row of ``run_many`` batches (done / total, rate, time left);
* the tasklets not finished yet, running first, in a scroll box of fixed height, with
  *Cancel* and *Why waiting?* for the tasklet chosen in the list. The choice never
  changes by itself: when that tasklet ends it stays chosen, marked "ended";
* the errors of tasklets submitted here, newest first, each with its time;
* the last planned state paths (the latest five can be chosen), drawn by Graphviz
  before their transitions run, then each step coloured as it runs, succeeds or fails.

Every part of the page has a fixed height (the lists scroll inside it), so the cells
below never jump while the numbers change. :meth:`Workbench.gauge_strip` is a compact
view of the gauges to display in any later cell, where the work happens; it stays live.
Where widgets cannot run (GitHub, nbviewer, an exported HTML page opened offline) a
static HTML snapshot of the dashboard, displayed right below it and updated when the
manager goes idle, shows its last state; JupyterLab and Voilà hide it while the live
dashboard is there.

How watching stays cheap: the numbers come from ``manager.statistics()`` and
``manager.live()`` snapshots read by *one* pump task, at most every
``refresh_interval`` seconds (10 Hz), which turns them into HTML (``_dashboard``) and
only sends a widget trait when its value changed; it stops by itself when the manager
is idle (the next submit restarts it), or, while rate tokens are still out, once
they have all come back (so a quota's gauge drains to 0 and its countdown runs). Listing the live tasklets is the one costly
read with thousands queued, and a list that changes ten times a second cannot be read
anyway, so the list is refreshed at most once a second (and within 1 % of the loop's
time). The only hooks are on the planning events (``state_path_planned``,
``state_transition_started``, ``state_transition_finished``) and on
``after_task_failure``, which fires only when an attempt fails (it counts the retries);
nothing listens to the other per-tasklet events, so a tasklet that succeeds without a
required state costs the dashboard nothing but a done-callback. Redrawing a path's progress happens in a worker thread, in the
background: only the first drawing of a path is awaited before its transitions run.

CSS classes (``aura-gauge``, ``aura-gauge-<name>``, ``aura-gauge-text``,
``aura-gauge-held``, ``aura-gauge-blocked``, ``aura-gauge-quota``, ``aura-quota-<name>``,
``aura-gauge-next``, ``aura-count-retries``, ``aura-legend``, ``aura-counters``,
``aura-batch``, ``aura-running``, ``aura-path``, ``aura-errors``, ``aura-why``,
``aura-strip``, ``aura-snapshot``, ...) let a page, a theme or a browser test select
each part.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import ipywidgets as widgets

from ..core import (
    Event,
    ExecutionManager,
    LimitStatistics,
    ManagerStatistics,
    Outcome,
    Path,
    Plan,
    Tasklet,
    TaskletHandle,
    WaitReport,
)
from ..core._text import display_text
from . import _dashboard as dash
from . import _loop
from ._dashboard import LOAD_BUSY, LOAD_FULL, BatchProgress, ErrorEntry, esc, name_html
from ._frames import literal_frame
from ._render import render_path, to_svg

__all__ = ["LOAD_BUSY", "LOAD_FULL", "Workbench"]

#: Statuses of a finished tasklet that count as an error (a cancellation is asked for).
_ERROR_STATUSES = frozenset({"failed", "timeout", "planning_failed"})
#: How many rows the dashboard lists; the rest is summarised as "... N more".
_MAX_ROWS = 50
_MAX_CHOICES = 100
_MAX_ERRORS = 50
#: How many planned paths stay selectable after they ran.
_KEPT_PATHS = 5
#: The list of live tasklets is read again after this many times its last cost (1 %)...
_LIVE_BUDGET = 100.0
#: ... and at most once a second: a list that changes faster cannot be read.
_LIVE_INTERVAL = 1.0
_NOTHING_LIVE = "No tasklet is waiting, planning or running."
#: The path chooser's first entry: show each new path as it is planned.
_LATEST, _LATEST_PATH = 0, "the latest path (follows new ones)"
_CHOOSE = "Choose a tasklet in the list first."
_CANCEL_TIP = "Cancel the chosen tasklet, wherever it is: waiting, planning or running."
_WHY_TIP = "Why does the chosen tasklet wait: its place in the queue, and who holds what it needs."
_DOT_HINT = (
    "Graphviz's <code>dot</code> program is not installed, so the path is shown as DOT text. "
    "Install it to see the drawing: <code>sudo apt-get install graphviz</code> (Debian/Ubuntu), "
    "<code>brew install graphviz</code> (macOS) or <code>conda install -c conda-forge graphviz</code>."
)
#: Inline, so no page style can make an answer break inside its words.
_WRAP = "white-space: pre-wrap; word-break: normal; overflow-wrap: break-word"
_SVG_PROLOG = re.compile(r"\A\s*(<\?xml[^>]*\?>\s*)?(<!DOCTYPE[^>]*>\s*)?", re.IGNORECASE)
_SVG_SIZE = re.compile(r'<svg width="([0-9.]+)pt" height="([0-9.]+)pt"')
#: The smallest scale a drawing is shown at (its 12 pt labels stay >= 9 pt); narrower
#: boxes scroll sideways instead. A click shows it at full size.
_MIN_SCALE = 0.75


def _inline_svg(svg: str) -> str:
    """Graphviz's SVG as an element to inline: fits its box, never below a legible size."""
    svg = _SVG_PROLOG.sub("", svg, count=1)

    def size(m: re.Match[str]) -> str:
        width_px = float(m.group(1)) * 4 / 3  # pt -> CSS px
        return (
            f'<svg style="width: 100%; max-width: {width_px:.0f}px; min-width: {width_px * _MIN_SCALE:.0f}px; '
            'height: auto"'
        )

    return _SVG_SIZE.sub(size, svg, count=1)


def _weak(method: Callable[..., Any]) -> Callable[..., None]:
    """A widget callback that does not keep its Workbench alive.

    ipywidgets keeps every widget until it is closed, and a widget keeps its callbacks:
    a bound method there would keep a discarded Workbench, its manager and the whole
    event log in memory for the rest of the kernel's life.
    """
    ref = weakref.WeakMethod(method)

    def call(*args: Any) -> None:
        fn = ref()
        if fn is not None:
            fn(*args)

    return call


def _set(widget: widgets.Widget, **values: Any) -> None:
    """Set only the traits whose value changed; several in one message."""
    changed = {name: value for name, value in values.items() if getattr(widget, name) != value}
    if not changed:
        return
    if len(changed) == 1:
        ((name, value),) = changed.items()
        setattr(widget, name, value)
        return
    with widget.hold_sync():
        for name, value in changed.items():
            setattr(widget, name, value)


class _Gauge:
    """What one limit's gauge shows: the numbers of the last snapshot, and their meaning."""

    __slots__ = ("name", "_last")

    def __init__(self, name: str) -> None:
        self.name = name
        self._last: LimitStatistics | None = None

    def update(self, limit: LimitStatistics) -> None:
        self._last = limit

    @property
    def in_use(self) -> int:
        return self._last.in_use if self._last else 0

    @property
    def capacity(self) -> int:
        return self._last.capacity if self._last else 0

    @property
    def waiting(self) -> int:
        return self._last.waiting if self._last else 0

    @property
    def held_back(self) -> int:
        """Tokens held back for the oldest waiter (0 until the manager reports them)."""
        return dash.held_back(self._last)[0] if self._last else 0

    @property
    def held_elsewhere(self) -> tuple[str, ...]:
        """Shared limits: the other managers holding tokens of it (``"host:pid label (n tasklets)"``)."""
        return self._last.held_elsewhere if self._last else ()

    @property
    def level(self) -> str:
        """``"ok"``, ``"busy"`` (>= 70 % in use) or ``"full"``."""
        return dash.load_level(self._last) if self._last else "ok"

    @property
    def text(self) -> str:
        """The caption: ``2 / 5 in use · 3 waiting``."""
        return dash.caption(self._last) if self._last else ""

    @property
    def blocked(self) -> int:
        """How many of the waiting tasklets this limit holds up itself (it is full)."""
        return dash.blocked_here(self.in_use, self.capacity, self.waiting)

    @property
    def unlimited(self) -> bool:
        """No capacity (a resource with only a rate quota): no capacity bar is shown."""
        return bool(self._last and self._last.unlimited)

    @property
    def rate(self) -> int | None:
        """The quota: at most ``rate`` admissions per ``per`` seconds (None: no quota)."""
        return self._last.rate if self._last else None

    @property
    def per(self) -> float | None:
        return self._last.per if self._last else None

    @property
    def rate_used(self) -> int:
        """Rate tokens taken in the current window."""
        return self._last.rate_used if self._last else 0

    @property
    def next_token_in(self) -> float | None:
        """Seconds until the next rate token comes back (None: none is out)."""
        return self._last.next_token_in if self._last else None

    @property
    def quota_level(self) -> str:
        """``"ok"``, ``"busy"`` (>= 70 % of the quota taken) or ``"full"`` (quota used)."""
        return dash.quota_level(self._last) if self._last else "ok"

    @property
    def quota_text(self) -> str:
        """The quota's caption: ``7 / 10 per s`` ("" without a quota)."""
        return dash.quota_caption(self._last) if self._last is not None and self.rate is not None else ""

    @property
    def html(self) -> str:
        return dash.gauge_html(self._last) if self._last else ""

    def __repr__(self) -> str:
        cap = "inf" if self.unlimited else self.capacity
        quota = f", quota {self.quota_text}" if self.rate is not None else ""
        return (
            f"<gauge {self.name}: {self.in_use}/{cap} in use{quota}, {self.held_back} held back, "
            f"{self.waiting} waiting, {self.blocked} blocked here ({self.level})>"
        )


@dataclass(slots=True)
class _PathView:
    """A planned path: whose it is and how far each step got."""

    plan: Plan
    path: Path
    tasklet_id: str | None
    tasklet_name: str
    progress: dict[int, str]
    failure: str | None = None
    key: int = 0
    planned_at: float = field(default_factory=time.time)

    def label(self) -> str:
        steps = list(self.progress.values())
        state = "failed" if "failed" in steps else ("done" if steps and set(steps) == {"done"} else "in progress")
        if not steps:
            state = "nothing to do"
        who = display_text(f"{self.tasklet_id} ({self.tasklet_name})", 40) if self.tasklet_id else "a tasklet"
        target = display_text(self.path.target, 24)
        return f"{dash.clock(self.planned_at)} · {who} → {target} · {state}"


@dataclass(slots=True)
class _Why:
    """The "Why waiting?" answer on display: about whom, asked when, last text."""

    tasklet_id: str
    asked_at: float
    status: str
    text: str
    updated_at: float


class Workbench:
    """An :class:`~aura_nb.core.ExecutionManager` with a live Jupyter dashboard.

    Display it in a cell (``wb`` on the last line, or ``display(wb)``) to see the gauges,
    the counters, the live tasklets, the errors and the last planned paths; display
    ``wb.gauge_strip()`` in any later cell for a compact live view of the gauges where
    the work happens. In JupyterLab, *Create New View for Cell Output* (right-click the
    dashboard) docks the full dashboard beside the notebook.

    Submit from cells: ``handle = wb.submit(t)`` returns at once (the tasklet runs on the
    kernel's event loop), ``await wb.run(t)`` waits for the result, ``await
    wb.run_many(ts)`` runs a batch with a progress row, ``wb.run_sync(t)`` blocks in a
    plain cell (see :func:`aura_nb.notebook._loop.run_sync` for its cost).

    The dashboard updates itself while tasklets submitted here are live; after work
    started some other way (``wb.manager.start(t)``), call :meth:`refresh`.

    Args:
        manager: the manager to wrap; by default a new one is made from
            ``manager_kwargs`` (``plans=``, ``max_concurrency=``, ``capacities=``, ...).
        refresh_interval: seconds between two dashboard updates while tasklets are
            live (>= 0.1: at most 10 updates a second).

    Widgets (ipywidgets, to embed or restyle): ``widget`` (the whole dashboard),
    ``header``, ``gauges_widget``, ``counters``, ``batch_widget``, ``running_table``,
    ``tasklet_select``, ``cancel_button``, ``why_button``, ``why_area``,
    ``errors_widget``, ``path_select``, ``path_widget``. ``gauges`` maps each limit's
    name to what its gauge shows (``in_use``, ``capacity``, ``waiting``,
    ``held_back``, ``blocked``, ``level``, ``text``; with a rate quota ``rate``, ``per``,
    ``rate_used``, ``next_token_in``, ``quota_level``, ``quota_text``). ``retries``
    counts the attempts beyond the first.
    """

    def __init__(
        self, manager: ExecutionManager | None = None, *, refresh_interval: float = 0.1, **manager_kwargs: Any
    ) -> None:
        if manager is None:
            manager = ExecutionManager(**manager_kwargs)
        elif manager_kwargs:
            raise TypeError(
                f"Workbench(manager, ...): manager options {sorted(manager_kwargs)} are only used to create a new "
                "manager; pass them to ExecutionManager(...) instead"
            )
        if not isinstance(manager, ExecutionManager):
            raise TypeError(f"Workbench(manager): expected an ExecutionManager, got {type(manager).__name__}")
        if isinstance(refresh_interval, bool) or not isinstance(refresh_interval, (int, float)):
            raise TypeError(f"Workbench(refresh_interval={refresh_interval!r}): must be a number of seconds")
        if not refresh_interval >= 0.1:
            raise ValueError(
                f"Workbench(refresh_interval={refresh_interval!r}): must be >= 0.1 s (at most 10 updates a second)"
            )
        self.manager = manager
        self.refresh_interval = float(refresh_interval)
        self._handles: dict[str, TaskletHandle] = {}  # live tasklets submitted here (strong refs)
        self._batch_ids: set[str] = set()  # tasklets of run_many batches still running here
        self._batches: list[BatchProgress] = []
        self._finished_base = 0  # finished tasklets when the current batches started ...
        self._handles_done = 0  # ... and tasklets with a handle that ended since then
        self._submitted = 0
        self._pump_task: asyncio.Task[None] | None = None
        self._errors: list[ErrorEntry] = []
        self._n_errors = 0
        self._last_internal: str | None = None
        self._gauges: dict[str, _Gauge] = {}
        self._views: deque[_PathView] = deque(maxlen=_KEPT_PATHS)
        self._view: _PathView | None = None
        self._path_version = 0
        self._shown_version = 0
        self._path_source: str | None = None
        self._path_body: str | None = None  # the HTML of the latest path's drawing
        self._renderer: asyncio.Task[None] | None = None
        self._live_due = 0.0  # time.monotonic() after which the pump lists live tasklets again
        self._why: _Why | None = None
        self._ended: dict[str, str] = {}  # the chosen tasklet, once it ended: id -> status
        self._chosen: str | None = None  # tasklet_select.value, read per finished tasklet
        self._snapshots: list[Any] = []  # display handles of the static snapshots
        self._snapshot_html = ""
        self._strip_shown = False  # the compact strip is updated once someone asked for it
        self._quota_out = False  # rate tokens still out at the last update: keep pumping
        self._retries = self._past_retries(manager)  # attempts beyond the first, so far
        self._closed = False
        self._build_widgets()
        self._hooks = (
            ("state_path_planned", self._on_path_planned),
            ("state_transition_started", self._on_step_started),
            ("state_transition_finished", self._on_step_finished),
            ("after_task_failure", self._on_failure),
        )
        for event, fn in self._hooks:
            manager.hooks.on(event, fn)
        self.refresh()

    # -- retries -----------------------------------------------------------------------
    @staticmethod
    def _past_retries(manager: ExecutionManager) -> int:
        """Retries the manager made before this Workbench watched it (read once, from its log)."""
        events = manager.events
        if not events.count("after_task_failure"):
            return 0
        frame = events.to_frame()
        return int(((frame["event"] == "after_task_failure") & frame["status"].isna()).sum())

    def _on_failure(self, event: Event) -> None:
        # A failed attempt that is tried again is recorded with an empty status (the
        # final failure has one): count it. Runs inside the tasklet's task: never raise.
        if not event.status:
            self._retries += 1

    @property
    def retries(self) -> int:
        """Attempts beyond the first, of every tasklet of the manager (the counters show it)."""
        return self._retries

    # -- widgets -----------------------------------------------------------------------
    def _build_widgets(self) -> None:
        def heading(text: str) -> widgets.HTML:
            w = widgets.HTML(f"<b>{esc(text)}</b>")
            w.add_class("aura-heading")
            return w

        def html(css: str, value: str = "") -> widgets.HTML:
            # No margin: with width 100% a margin would make the dashboard wider than its cell.
            w = widgets.HTML(value, layout=widgets.Layout(width="100%", margin="0"))
            w.add_class(css)
            return w

        self._style = widgets.HTML(dash.CSS, layout=widgets.Layout(height="0px", margin="0"))
        self.header = html("aura-header")
        self.legend = html("aura-legend-box", dash.legend_html())
        self.gauges_widget = html("aura-gauges")
        self.counters = html("aura-counters")
        self.batch_widget = html("aura-batch")

        self.running_table = html("aura-running-table")
        self.tasklet_select = widgets.Dropdown(
            options=[], value=None, description="Tasklet", layout=widgets.Layout(width="30em", max_width="100%")
        )
        self.tasklet_select.add_class("aura-tasklet-select")
        self.tasklet_select.observe(_weak(self._on_select), names="value")
        # Disabled until a tasklet is chosen: there is nothing to cancel or ask about.
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True, tooltip=_CHOOSE)
        self.cancel_button.add_class("aura-cancel")
        self.why_button = widgets.Button(description="Why waiting?", icon="question", disabled=True, tooltip=_CHOOSE)
        self.why_button.add_class("aura-why-button")
        self.cancel_button.on_click(_weak(self._on_cancel_click))
        self.why_button.on_click(_weak(self._on_why_click))
        controls = widgets.HBox(
            [self.tasklet_select, self.why_button, self.cancel_button], layout=widgets.Layout(flex_flow="row wrap")
        )
        controls.add_class("aura-controls")
        self.why_area = html("aura-why", '<div class="aura-why-box"></div>')
        self.running = widgets.VBox([self.running_table, controls, self.why_area])
        self.running.add_class("aura-running")

        self.errors_widget = html("aura-errors")
        self.clear_errors_button = widgets.Button(description="Clear errors", icon="trash")
        self.clear_errors_button.add_class("aura-errors-clear")
        self.clear_errors_button.on_click(_weak(self._on_clear_click))
        self._render_errors()

        self.path_select = widgets.Dropdown(
            options=[(_LATEST_PATH, _LATEST)],
            value=_LATEST,
            description="Path",
            layout=widgets.Layout(width="40em", max_width="100%"),
        )
        self.path_select.add_class("aura-path-select")
        self.path_select.observe(_weak(self._on_path_choice), names="value")
        self.path_widget = html("aura-path", self._path_box('<div class="aura-path-empty">No state path planned yet.</div>'))

        self.widget = widgets.VBox(
            [
                self._style,
                self.header,
                heading("Limits"),
                self.legend,
                self.gauges_widget,
                heading("Tasklets"),
                self.counters,
                self.batch_widget,
                self.running,
                heading("Errors"),
                self.errors_widget,
                self.clear_errors_button,
                heading("Planned state paths"),
                self.path_select,
                self.path_widget,
            ],
            layout=widgets.Layout(width="100%", max_width="64em"),
        )
        self.widget.add_class("aura-workbench")
        self.strip = widgets.HTML(layout=widgets.Layout(width="100%", max_width="64em"))
        self.strip.add_class("aura-strip")
        self._strip_box = widgets.VBox([widgets.HTML(dash.CSS, layout=widgets.Layout(height="0px")), self.strip])
        self._strip_box.add_class("aura-strip-box")

    @staticmethod
    def _path_box(body: str) -> str:
        return f'<div class="aura-path-box">{body}</div>'

    @property
    def gauges(self) -> Mapping[str, _Gauge]:
        """What each limit's gauge shows: ``"global"`` first, then each resource by name."""
        return dict(self._gauges)

    def gauge_strip(self) -> widgets.Widget:
        """A compact, live view of the gauges (one line per limit) to display in any cell.

        Every display of it stays live while the dashboard does: put one in the cell
        where the work happens, so the numbers are in view when they matter.
        """
        self._strip_shown = True
        self._apply(self.manager.statistics(), list_live=False)
        return self._strip_box

    # -- displaying ----------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        self.refresh()
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):  # a readable text form where widgets cannot be shown
            bundle["text/plain"] = repr(self)
        return bundle

    def _ipython_display_(self) -> None:
        """The live dashboard, then a static snapshot of it for where widgets cannot run."""
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)
        handle = display(self._snapshot_bundle(), raw=True, display_id=True)
        if handle is not None:
            self._snapshots.append(handle)

    def snapshot_html(self) -> str:
        """The dashboard as static HTML: its last state, readable without widgets."""
        self.refresh()
        return self._snapshot()

    def _snapshot(self) -> str:
        path = self.path_widget.value
        why = self.why_area.value if self._why is not None else ""
        return (
            f'{dash.CSS}<div class="aura-snapshot">'
            f'<div class="aura-header">{self.header.value}</div>'
            f'<div class="aura-snapshot-note">A snapshot of the dashboard taken at '
            f"{dash.clock(time.time())}: run the notebook to see it live.</div>"
            f"<b>Limits</b>{self.legend.value}<div class=\"aura-gauges\">{self.gauges_widget.value}</div>"
            f'<b>Tasklets</b><div class="aura-counters">{self.counters.value}</div>'
            f'<div class="aura-batch">{self.batch_widget.value}</div>'
            f'<div class="aura-running-table">{self.running_table.value}</div>{why}'
            f'<b>Errors</b><div class="aura-errors">{self.errors_widget.value}</div>'
            f'<b>Last planned state path</b><div class="aura-path">{path}</div></div>'
        )

    def _snapshot_bundle(self) -> dict[str, str]:
        self._snapshot_html = self._snapshot()
        return {"text/html": self._snapshot_html, "text/plain": ""}

    def _update_snapshots(self) -> None:
        """Refresh the static snapshots on display (when the manager goes idle or closes)."""
        if not self._snapshots:
            return
        html = self._snapshot()
        if html == self._snapshot_html:
            return
        self._snapshot_html = html
        for handle in self._snapshots:
            handle.update({"text/html": html, "text/plain": ""}, raw=True)

    # -- submitting --------------------------------------------------------------------
    def submit(self, tasklet: Tasklet) -> TaskletHandle:
        """Start *tasklet* on the running event loop; return its handle at once.

        Bad input raises here (nothing is queued). A failure of the tasklet shows in the
        dashboard's error area; ``await handle`` gives its result or raises.
        """
        handle = self.manager.start(tasklet)
        self._track(handle)
        self._ensure_pump()
        return handle

    def submit_many(self, tasklets: Iterable[Tasklet]) -> list[TaskletHandle]:
        """Start every tasklet, in order; if one is invalid, none is started."""
        tasklets = list(tasklets)
        seen: set[str] = set()
        checked: set[tuple[Any, ...]] = set()
        validate = self.manager.validate
        for tasklet in tasklets:
            if not isinstance(tasklet, Tasklet):
                raise TypeError(f"submit_many(): expected Tasklet objects, got {type(tasklet).__name__} {tasklet!r}")
            if tasklet.id in seen:
                raise ValueError(f"submit_many(): tasklet {tasklet.id} appears twice; create one Tasklet per run")
            seen.add(tasklet.id)
            # Validity depends only on the task, the tags and the state (and cannot change
            # during this loop): a batch of alike tasklets is checked once, not n times.
            try:
                key: tuple[Any, ...] | None = (tasklet.task, tasklet.resource_tags, tasklet.required_initial_state)
                if key in checked:
                    continue
            except TypeError:  # an unhashable task
                key = None
            validate(tasklet)
            if key is not None:
                checked.add(key)
        # The one loop that runs per tasklet: names bound once, nothing else done here.
        start, mine, on_done = self.manager.start, self._handles, self._on_done
        handles = []
        try:
            for tasklet in tasklets:
                handle = start(tasklet)
                mine[handle.id] = handle
                handle.add_done_callback(on_done)
                handles.append(handle)
        finally:
            self._submitted += len(handles)
            self._ensure_pump()
        return handles

    async def run(self, tasklet: Tasklet) -> Any:
        """Run *tasklet* to its end and return its result (or raise its exception).

        Cancelling the awaiting cell (interrupting the kernel) cancels the tasklet. When
        the tasklet planned a state path, its final colours are drawn before this returns.
        """
        handle = self.submit(tasklet)
        try:
            await handle.wait()
        except BaseException as exc:
            if not handle.done():  # the awaiting cell was cancelled: so is the tasklet
                handle.cancel()
                raise
            if not isinstance(exc, Exception):
                raise
        if self._view is not None and self._view.tasklet_id == tasklet.id:
            await self._flush_path()
        return handle.result()

    async def run_many(self, tasklets: Iterable[Tasklet], *, return_exceptions: bool = False) -> list[Any]:
        """Run a batch with the dashboard live; their results in order.

        The fast way to run many tasklets (see ``ExecutionManager.run_many``): no task
        and no handle per tasklet. The gauges, counters and running list follow the
        batch, and a progress row shows how many ended, the rate and the time left; to
        cancel it, interrupt the cell (every running tasklet reports and releases as
        usual, the rest never start).
        """
        with self._batch_shown(tasklets) as (tasklets, ran):
            result = await self.manager.run_many(tasklets, return_exceptions=return_exceptions)
            ran.append(True)
            return result

    async def as_completed(self, tasklets: Iterable[Tasklet]) -> AsyncIterator[Outcome]:
        """``ExecutionManager.as_completed`` with the dashboard live: each outcome as it ends.

        ``async for outcome in wb.as_completed(tasklets):`` — the batch's progress row
        counts the outcomes as they arrive. Leaving the loop early cancels the rest.
        """
        with self._batch_shown(tasklets) as (tasklets, ran):
            outcomes = self.manager.as_completed(tasklets)
            ran.append(True)
            async with outcomes:
                async for outcome in outcomes:
                    yield outcome

    @contextlib.contextmanager
    def _batch_shown(self, tasklets: Any) -> Iterator[tuple[Any, list[bool]]]:
        """A batch's progress row and counters while it runs (``run_many``, ``as_completed``)."""
        progress = None
        if isinstance(tasklets, Iterable) and not isinstance(tasklets, (str, bytes)):
            tasklets = list(tasklets)  # (anything else: the manager says what it takes)
            ids = {t.id for t in tasklets if isinstance(t, Tasklet)} - self._batch_ids  # this batch's own
            if not self._batches:
                self._finished_base = self.manager.statistics().finished
                self._handles_done = 0
            progress = BatchProgress(total=len(tasklets), started=time.monotonic())
            self._batches.append(progress)
        else:
            ids = set()
        self._batch_ids |= ids
        self._ensure_pump()
        finished_before = self._finished_base + self._handles_done
        ran: list[bool] = []
        try:
            yield tasklets, ran
        finally:
            self._batch_ids -= ids
            if progress is not None:
                self._batches.remove(progress)
                # Counted as submitted once it ran (a batch refused at the door did not).
                if ran or self.manager.statistics().finished > finished_before:
                    self._submitted += progress.total
            self._tick()  # the dashboard shows the batch's end at once (never raises)
            self._ensure_pump()

    def run_sync(self, tasklet: Tasklet) -> Any:
        """Block until *tasklet* ends; for plain (non-``await``) cells and scripts.

        In a Jupyter cell this applies ``nest_asyncio2`` to the kernel's loop, a global
        and permanent patch that slows every asyncio task ~1.5x: prefer ``await wb.run(t)``.
        """
        return _loop.run_sync(self.run(tasklet))

    def _track(self, handle: TaskletHandle) -> None:
        self._submitted += 1
        self._handles[handle.id] = handle
        handle.add_done_callback(self._on_done)

    def _on_done(self, handle: TaskletHandle) -> None:
        # Called inside the manager's task: must never raise.
        try:
            self._handles.pop(handle.id, None)
            self._handles_done += 1
            status = handle.status
            if handle.id == self._chosen:
                self._ended[handle.id] = status
            if status in _ERROR_STATUSES:
                exc = handle.exception()
                tasklet = handle.tasklet
                self._add_error(
                    f"tasklet {tasklet.id} ('{display_text(tasklet.name, 80)}') {status}: "
                    f"{type(exc).__name__}: {exc}",
                    css=f"aura-error-{status}",
                )
        except Exception as exc:  # pragma: no cover - defensive: a dashboard bug
            self._internal_error("reporting a finished tasklet", exc)

    # -- asking and cancelling -----------------------------------------------------------
    def why(self, handle: TaskletHandle | Tasklet | str) -> WaitReport:
        """Why this tasklet waits: its place in the queue, and who holds what it needs."""
        return self.manager.why(handle)

    def cancel(self, handle: TaskletHandle | Tasklet | str) -> bool:
        """Cancel a tasklet submitted through this workbench (a handle, tasklet or id).

        Returns False when it has already finished, or was not submitted here (then it
        has no handle to cancel through).
        """
        if isinstance(handle, TaskletHandle):
            return handle.cancel()
        tasklet_id = handle.id if isinstance(handle, Tasklet) else handle
        found = self._handles.get(tasklet_id)
        return found.cancel() if found is not None else False

    def _selected(self) -> str | None:
        return self.tasklet_select.value

    def _on_select(self, change: Any) -> None:
        self._chosen = change["new"]
        try:
            self._update_buttons()
        except Exception as exc:  # pragma: no cover - defensive
            self._internal_error("choosing a tasklet", exc)

    def _update_buttons(self) -> None:
        chosen = self.tasklet_select.value
        if chosen is None:
            tip = _NOTHING_LIVE if len(self.tasklet_select.options) == 0 else _CHOOSE
            _set(self.cancel_button, disabled=True, tooltip=tip)
            _set(self.why_button, disabled=True, tooltip=tip)
        elif chosen in self._ended:
            tip = f"Tasklet {chosen} has ended ({self._ended[chosen]}): nothing to cancel or ask about."
            _set(self.cancel_button, disabled=True, tooltip=tip)
            _set(self.why_button, disabled=True, tooltip=tip)
        else:
            _set(self.cancel_button, disabled=False, tooltip=_CANCEL_TIP)
            _set(self.why_button, disabled=False, tooltip=_WHY_TIP)

    def _on_cancel_click(self, _button: Any) -> None:
        try:
            tasklet_id = self._selected()
            if tasklet_id is None:
                message = _CHOOSE
            elif tasklet_id in self._handles:
                ok = self.cancel(tasklet_id)
                message = f"Cancel requested for tasklet {tasklet_id}." if ok else f"Tasklet {tasklet_id} has finished."
            elif tasklet_id in self._batch_ids:
                message = (
                    f"Tasklet {tasklet_id} is part of a run_many batch, which has no handle per tasklet: "
                    "interrupt the cell to cancel the whole batch."
                )
            elif any(t.id == tasklet_id for t, _ in self.manager.live()):
                message = (
                    f"Tasklet {tasklet_id} was not submitted through this workbench: cancel it through its own handle."
                )
            else:
                message = f"Tasklet {tasklet_id} has finished."
            self._why = None
            self._set_why(message)
            self._ensure_pump()
        except Exception as exc:
            self._internal_error("cancelling a tasklet", exc)

    def _on_why_click(self, _button: Any) -> None:
        try:
            tasklet_id = self._selected()
            if tasklet_id is None:
                self._why = None
                self._set_why(_CHOOSE)
                return
            report = self.manager.why(tasklet_id)
            now = time.time()
            self._why = _Why(tasklet_id, now, report.status, str(report), now)
            self._show_why()
        except Exception as exc:
            self._internal_error("asking why a tasklet waits", exc)

    def _refresh_why(self, statuses: Mapping[str, str]) -> None:
        """Keep the answer on display true: redo it, or say it is out of date, on a change."""
        why = self._why
        if why is None:
            return
        status = statuses.get(why.tasklet_id, "finished")
        if status == "waiting":
            text = str(self.manager.why(why.tasklet_id))
            if text != why.text:
                why.text, why.updated_at = text, time.time()
                self._show_why()
        elif status != why.status:
            why.status, why.updated_at = status, time.time()
            ended = self._ended.get(why.tasklet_id)
            now = f"it has ended ({ended})" if ended or status == "finished" else f"it is {status}"
            if ended is None and status == "finished":
                now = "it has ended"
            why.text = f"tasklet {why.tasklet_id} is not waiting any more: {now}."
            self._show_why()

    def _show_why(self) -> None:
        why = self._why
        if why is None:
            return
        head = f"asked at {dash.clock(why.asked_at)}"
        if why.updated_at != why.asked_at:
            head += f", updated at {dash.clock(why.updated_at)} when the tasklet's state changed"
        _set(
            self.why_area,
            value=(
                f'<div class="aura-why-box"><div class="aura-why-head">Why waiting? ({head})</div>'
                f'<pre class="aura-why-text" style="{_WRAP}">{esc(why.text)}</pre></div>'
            ),
        )

    def _set_why(self, text: str) -> None:
        text = f'<pre class="aura-why-text" style="{_WRAP}">{esc(text)}</pre>'
        _set(self.why_area, value=f'<div class="aura-why-box">{text}</div>')

    # -- reading -----------------------------------------------------------------------
    def statistics(self) -> ManagerStatistics:
        """The manager's snapshot of every limit and phase (see ``ExecutionManager.statistics``)."""
        return self.manager.statistics()

    @property
    def events(self) -> Any:
        """Every event so far, one row each (a pandas DataFrame; user text shown literally)."""
        return literal_frame(self.manager.events.to_frame())

    @property
    def runs(self) -> Any:
        """One row per tasklet: status and queue / planning / run durations (a DataFrame)."""
        return literal_frame(self.manager.events.runs())

    @property
    def errors(self) -> list[str]:
        """The errors shown in the dashboard (the latest ones), oldest first."""
        return [entry.text for entry in self._errors]

    @property
    def path_source(self) -> str | None:
        """The DOT source of the latest path's drawing, or None before any path."""
        return self._path_source

    def _on_clear_click(self, _button: Any) -> None:
        self.clear_errors()

    def clear_errors(self) -> None:
        """Empty the error area."""
        self._errors.clear()
        self._n_errors = 0
        self._last_internal = None
        self._render_errors()
        self._update_header(self.manager.statistics())

    # -- the pump ----------------------------------------------------------------------
    @property
    def pumping(self) -> bool:
        """Whether the update task is running (it stops when the manager is idle)."""
        return self._pump_task is not None and not self._pump_task.done()

    def _ensure_pump(self) -> None:
        if self.pumping or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no asyncio loop here (a script, or trio): call refresh() by hand
        self._pump_task = loop.create_task(self._pump(), name="aura_nb Workbench pump")

    async def _pump(self) -> None:
        snapshot_due = True
        while True:
            if self._tick():
                if snapshot_due:  # the snapshot shows the end of the work at once ...
                    self._safe_update_snapshots()
                    snapshot_due = False
                if not self._quota_out or self._closed:
                    self._safe_update_snapshots()  # ... and the drained quotas (only if changed)
                    return
                # Idle, but rate tokens are still out: the quota gauges drain and count down.
            else:
                snapshot_due = True
            await asyncio.sleep(self.refresh_interval)

    def _safe_update_snapshots(self) -> None:
        try:
            self._update_snapshots()
        except Exception as exc:
            self._internal_error("updating the static snapshot", exc)

    def _tick(self) -> bool:
        """One update of the numbers; True when the manager is idle. Never raises."""
        try:
            stats = self.manager.statistics()
        except Exception as exc:
            self._internal_error("reading the manager's statistics", exc)
            self._quota_out = False
            return True
        try:
            now = time.monotonic()
            self._apply(stats, list_live=stats.idle or now >= self._live_due)
        except Exception as exc:
            self._internal_error("updating the dashboard", exc)
        # A batch may look idle between two of its tasklets: keep pumping until it ends.
        return stats.idle and not self._batch_ids

    def refresh(self) -> None:
        """Update every widget now (also draws a pending path update, synchronously)."""
        self._apply(self.manager.statistics())
        view = self._view
        if view is not None and self._shown_version < self._path_version:
            version = self._path_version
            self._show_path(version, *self._render_path(self._snapshot_view(view)))

    def _apply(self, stats: ManagerStatistics, *, list_live: bool = True) -> None:
        for limit in stats.limits:
            gauge = self._gauges.get(limit.name)
            if gauge is None:
                gauge = self._gauges[limit.name] = _Gauge(limit.name)
            gauge.update(limit)
        gauges = dash.gauges_html(stats)
        self._quota_out = any(limit.rate_used for limit in stats.resources.values() if limit.rate is not None)
        _set(self.legend, value=dash.legend_html(dash.any_rate(stats)))
        _set(self.gauges_widget, value=gauges)
        _set(self.counters, value=dash.counters_html(stats, self._retries))
        if self._batches:
            done = stats.finished - self._finished_base - self._handles_done
            for batch in self._batches:
                batch.done = max(batch.done, min(batch.total, done))
        _set(self.batch_widget, value=dash.batch_html(self._batches))
        if list_live:
            # manager.live() lists every live tasklet: with thousands queued it is the one
            # costly read, so the pump lists them again only after 100x its last cost
            # (at most 1 % of the loop's time), and at most once a second.
            t0 = time.perf_counter()
            self._update_live()
            cost = time.perf_counter() - t0
            self._live_due = time.monotonic() + max(cost * _LIVE_BUDGET, _LIVE_INTERVAL)
        self._update_header(stats)
        if self._strip_shown:
            strip = dash.strip_html(self._state(stats), stats, self._batches, self._n_errors, self._retries)
            _set(self.strip, value=strip)

    def _state(self, stats: ManagerStatistics) -> str:
        return "closed" if self.manager.closed else ("idle" if stats.idle and not self._batches else "busy")

    def _update_header(self, stats: ManagerStatistics) -> None:
        submitted = self._submitted + sum(b.total for b in self._batches)
        _set(self.header, value=dash.header_html(self._state(stats), submitted, stats, self._n_errors))

    def _update_live(self) -> None:
        live = dash.sort_live(self.manager.live())
        _set(
            self.running_table,
            value=f'<div class="aura-running-box">{dash.running_html(live, _MAX_ROWS)}</div>',
        )
        choices = live[:_MAX_CHOICES]
        options = [(display_text(f"{t.id} · {t.name} · {status}", 70), t.id) for t, status in choices]
        chosen = self.tasklet_select.value
        # Every live tasklet's status, only when a choice or an answer needs it.
        statuses = {t.id: status for t, status in live} if chosen is not None or self._why is not None else {}
        if chosen is not None and chosen not in statuses:
            # The chosen tasklet ended: it stays chosen (a choice never changes by itself).
            ended = self._ended.setdefault(chosen, "finished")
            label = next((label for label, value in self.tasklet_select.options if value == chosen), str(chosen))
            label = label.rsplit(" · ", 1)[0] + f" · ended ({ended})"
            options.insert(0, (label, chosen))
        elif chosen is not None and chosen not in {v for _, v in options}:
            options.insert(0, (display_text(f"{chosen} · {statuses[chosen]}", 70), chosen))
        options_t = tuple(options)
        if options_t != self.tasklet_select.options:
            with self.tasklet_select.hold_sync():
                self.tasklet_select.options = options_t
                self.tasklet_select.value = chosen
        self._update_buttons()
        self._refresh_why(statuses)

    # -- errors ------------------------------------------------------------------------
    def _add_error(self, text: str, *, css: str = "aura-error-failed") -> None:
        self._n_errors += 1
        self._errors.append(ErrorEntry(time.time(), css, text))
        if len(self._errors) > _MAX_ERRORS:
            del self._errors[0]
        self._render_errors()

    def _internal_error(self, doing: str, exc: BaseException) -> None:
        """A bug or an environment problem of the dashboard itself: shown once, never raised."""
        text = f"workbench error while {doing}: {type(exc).__name__}: {exc}"
        if text == self._last_internal:
            return
        self._last_internal = text
        try:
            self._add_error(text, css="aura-error-internal")
        except Exception:  # pragma: no cover - the error area itself is broken
            pass

    def _render_errors(self) -> None:
        value = f'<div class="aura-errors-box">{dash.errors_html(self._errors, self._n_errors)}</div>'
        _set(self.errors_widget, value=value)

    # -- the state path ----------------------------------------------------------------
    async def _on_path_planned(self, event: Event) -> None:
        # Awaited by the manager before the first transition: the drawing is on screen
        # before the system moves.
        try:
            plan = self.manager.plans.get(event.plan) if event.plan else None
            path = event.path
            if plan is None or path is None:
                return
            tasklet = event.tasklet
            self._path_version += 1
            self._view = _PathView(
                plan=plan,
                path=path,
                tasklet_id=event.tasklet_id,
                tasklet_name=getattr(tasklet, "name", "") or "",
                progress=dict.fromkeys(range(len(path)), "pending"),
                key=self._path_version,
            )
            self._views.append(self._view)
            self._update_path_choices()
            self._ensure_pump()
        except Exception as exc:
            self._internal_error("recording a planned path", exc)
            return
        await self._render_in_thread()

    def _update_path_choices(self) -> None:
        chosen = self.path_select.value
        keys = {view.key for view in self._views}
        options = [(_LATEST_PATH, _LATEST)]
        options += [(view.label(), view.key) for view in reversed(self._views)]
        if chosen != _LATEST and chosen not in keys:
            chosen = _LATEST  # older than the paths kept: back to following the latest
        options_t = tuple(options)
        if options_t != self.path_select.options:
            with self.path_select.hold_sync():
                self.path_select.options = options_t
                self.path_select.value = chosen

    def _on_path_choice(self, change: Any) -> None:
        try:
            key = change["new"]
            if key in (None, _LATEST):
                if self._path_body is not None:
                    _set(self.path_widget, value=self._path_box(self._path_body))
                return
            view = next((v for v in self._views if v.key == key), None)
            if view is not None:
                _source, body = self._render_path(self._snapshot_view(view))
                _set(self.path_widget, value=self._path_box(body))
        except Exception as exc:
            self._internal_error("showing a chosen path", exc)

    def _on_step_started(self, event: Event) -> None:
        self._mark(event, "running")

    def _on_step_finished(self, event: Event) -> None:
        self._mark(event, "failed" if event.detail == "failed" else "done")

    def _mark(self, event: Event, status: str) -> None:
        # Sync and cheap: the drawing itself is redone by a background task, so a
        # transition never waits for Graphviz.
        try:
            view = self._view
            if view is None or event.tasklet_id != view.tasklet_id or event.step is None:
                return
            view.progress[int(event.step)] = status
            if status == "failed":
                view.failure = f"{event.error_type}: {event.error_message}"
            self._path_version += 1
            renderer = self._renderer
            if renderer is None or renderer.done():
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    return  # not on asyncio (trio): refresh() draws the progress
                self._renderer = loop.create_task(self._render_pending(), name="aura_nb Workbench path drawing")
        except Exception as exc:
            self._internal_error("updating the path drawing", exc)

    async def _render_pending(self) -> None:
        while self._view is not None and self._shown_version < self._path_version:
            if not await self._render_in_thread():
                return

    async def _flush_path(self) -> None:
        """Draw the latest progress before returning (used by ``run`` and ``aclose``)."""
        renderer = self._renderer
        if renderer is not None and not renderer.done():
            await asyncio.wait([renderer])
        await self._render_pending()

    async def _render_in_thread(self) -> bool:
        """Draw the current view in a worker thread; False when drawing failed."""
        view = self._view
        if view is None:
            return True
        version = self._path_version
        snapshot = self._snapshot_view(view)
        try:
            source, body = await anyio.to_thread.run_sync(self._render_path, snapshot)
        except Exception as exc:
            self._internal_error("drawing the state path", exc)
            return False
        self._show_path(version, source, body)
        return True

    @staticmethod
    def _snapshot_view(view: _PathView) -> _PathView:
        return _PathView(
            view.plan, view.path, view.tasklet_id, view.tasklet_name, dict(view.progress), view.failure, view.key,
            view.planned_at,
        )  # fmt: skip

    @staticmethod
    def _render_path(view: _PathView) -> tuple[str, str]:
        """(DOT source, HTML) of a path view; runs in a worker thread (pure)."""
        digraph = render_path(view.plan, view.path, view.progress, compact=True)
        source = digraph.source
        svg = to_svg(digraph)
        path = view.path
        who = (
            f"tasklet {name_html(view.tasklet_id, 16)} ({name_html(view.tasklet_name)})"
            if view.tasklet_id
            else "a tasklet"
        )
        states = " → ".join(display_text(state, 30) for state in path.states)
        full = " → ".join(display_text(state) for state in path.states)
        title = f' title="{esc(full)}"' if full != states else ""
        caption = (
            f'<div class="aura-path-caption">{dash.clock(view.planned_at)} · {who}: <b{title}>{esc(states)}</b> '
            f"(plan {name_html(path.plan, 30)}, cost {path.total_cost:g})</div>"
        )
        steps = "".join(
            f'<li class="aura-step aura-step-{view.progress.get(step.index, "pending")}">'
            f"{name_html(step.from_state)} → {name_html(step.to_state)} via "
            f"<code>{name_html(step.task)}</code>: {view.progress.get(step.index, 'pending')}</li>"
            for step in path.steps
        )
        failure = (
            f'<div class="aura-path-failure"><span class="aura-error-mark">⚠</span> '
            f"{esc(display_text(view.failure, 600))}</div>"
            if view.failure
            else ""
        )
        if svg is not None:
            drawing = (
                '<label class="aura-zoom" title="Click to show the drawing at full size (click again to fit)">'
                f'<input type="checkbox"><div class="aura-path-svg">{_inline_svg(svg)}</div></label>'
            )
        else:
            drawing = (
                f'<div class="aura-path-hint">{_DOT_HINT}</div>'
                f'<pre class="aura-path-dot">{esc(source)}</pre>'
            )
        # The words first (they fit any width), then the drawing, which may scroll.
        return source, f'{caption}{failure}<ol class="aura-path-steps">{steps}</ol>{drawing}'

    def _show_path(self, version: int, source: str, body: str) -> None:
        if version <= self._shown_version:
            return  # an older drawing finished after a newer one
        self._shown_version = version
        self._path_source = source
        self._path_body = body
        self._update_path_choices()
        if self.path_select.value in (None, _LATEST):  # following the latest path
            _set(self.path_widget, value=self._path_box(body))

    # -- closing -----------------------------------------------------------------------
    async def aclose(self, *, cancel_running: bool = False) -> None:
        """Close the manager and stop updating; the dashboard stays with its final values.

        As :meth:`ExecutionManager.aclose`: tasklets still waiting for resources end as
        ``cancelled``, those planning or running are waited for (or cancelled first with
        ``cancel_running=True``). Await your handles first to let every tasklet run.
        """
        await self.manager.aclose(cancel_running=cancel_running)
        self._closed = True
        pump = self._pump_task
        if pump is not None and not pump.done():
            pump.cancel()
            await asyncio.wait([pump])
        self._pump_task = None
        await self._flush_path()
        for event, fn in self._hooks:
            self.manager.hooks.off(event, fn)
        self._tick()
        self._safe_update_snapshots()

    async def __aenter__(self) -> Workbench:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.aclose(cancel_running=exc_type is not None)

    def __repr__(self) -> str:
        s = self.manager.statistics()
        limits = ", ".join(
            f"{display_text(lim.name, 40)} {lim.in_use}/{'inf' if lim.unlimited else lim.capacity}"
            + (f" quota {dash.quota_caption(lim)}" if lim.rate is not None else "")
            + (f" (+{lim.waiting} waiting)" if lim.waiting else "")
            for lim in s.limits
        )
        done = ", ".join(f"{k} {v}" for k, v in s.by_status.items() if v) or "none finished"
        state = "closed" if self.manager.closed else ("live" if self.pumping else "idle")
        retries = f"{self._retries} retr{'y' if self._retries == 1 else 'ies'}; " if self._retries else ""
        return (
            f"<Workbench {state}: {limits}; waiting {s.waiting}, planning {s.planning}, running {s.running}; "
            f"{done}; {retries}{self._n_errors} error{'' if self._n_errors == 1 else 's'}>"
        )
