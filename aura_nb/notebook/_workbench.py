"""The Workbench: an ExecutionManager with a live dashboard for Jupyter.

Mental model: the manager is the engine, the Workbench is its instrument panel. It
submits tasklets on the kernel's own event loop and shows, in one ipywidgets box:

* a gauge per limit (the global one, then each resource as it is declared): in use /
  capacity, how many queued tasklets need it ("waiting") and how many of those it holds
  up itself ("blocked here": the limit is full), coloured by the limit's own load: green
  below 70 %, amber below 100 %, red when full;
* counters by phase and by final status;
* the tasklets not finished yet, with a *Cancel* and a *Why waiting?* button (disabled
  while there is none);
* the last planned state path, drawn by Graphviz before its transitions run, then
  each step coloured as it runs, succeeds or fails;
* the failures of tasklets submitted through it (a background exception is otherwise
  invisible in Jupyter).

How watching stays cheap: the numbers come from ``manager.statistics()`` and
``manager.live()`` snapshots read by *one* pump task, at most every
``refresh_interval`` seconds (10 Hz), which only sends a widget trait when its value
changed and stops by itself when the manager is idle (the next submit restarts it).
With thousands of tasklets queued, listing them is the one costly read, so the list is
refreshed less often then (within 1 % of the loop's time); the gauges stay at 10 Hz.
The only hooks are on the planning events (``state_path_planned``,
``state_transition_started``, ``state_transition_finished``); nothing listens to the
per-tasklet events, so a tasklet without a required state costs the dashboard nothing
but a done-callback. Redrawing a path's progress happens in a worker thread, in the
background: only the first drawing of a path is awaited before its transitions run.

Every widget carries CSS classes of its own (``aura-gauge``, ``aura-gauge-<name>``,
``aura-gauge-text``, ``aura-gauge-blocked``, ``aura-counters``, ``aura-running``,
``aura-path``, ``aura-errors``, ``aura-why``, ...) so that a page, a theme or a browser
test can select it.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import ipywidgets as widgets

from ..core import (
    STATUSES,
    Event,
    ExecutionManager,
    LimitStatistics,
    ManagerStatistics,
    Path,
    Plan,
    Tasklet,
    TaskletHandle,
    WaitReport,
)
from . import _loop
from ._render import render_path, to_svg

__all__ = ["Workbench"]

#: Load thresholds of a gauge: below the first it is "ok" (green), below the second
#: "busy" (amber), at or above it "full" (red).
LOAD_BUSY = 0.7
LOAD_FULL = 1.0
_BAR_STYLE = {"ok": "success", "busy": "warning", "full": "danger"}
_WAITING_TIP = (
    "waiting: tasklets in the queue that need a token of this limit. They may be held up by "
    "another limit they also need; 'blocked here' counts those held up by this one."
)
_BLOCKED_TIP = (
    "blocked here: waiting tasklets held up by this limit itself, because it is full. The others "
    "wait for another limit (or for a token kept for the oldest waiter): ask 'Why waiting?'."
)
#: Statuses of a finished tasklet that count as an error (a cancellation is asked for).
_ERROR_STATUSES = frozenset({"failed", "timeout", "planning_failed"})
#: How many rows the dashboard lists; the rest is summarised as "... N more".
_MAX_ROWS = 20
_MAX_CHOICES = 100
_MAX_ERRORS = 50
#: The list of live tasklets is read again after this many times its last cost (1 %).
_LIVE_BUDGET = 100.0
_NOTHING_LIVE = "No tasklet is waiting, planning or running."
_CANCEL_TIP = "Cancel the selected tasklet, wherever it is: waiting, planning or running."
_WHY_TIP = "Why does the selected tasklet wait: its place in the queue, and who holds what it needs."
_DOT_HINT = (
    "Graphviz's <code>dot</code> program is not installed, so the path is shown as DOT text. "
    "Install it to see the drawing: <code>sudo apt-get install graphviz</code> (Debian/Ubuntu), "
    "<code>brew install graphviz</code> (macOS) or <code>conda install -c conda-forge graphviz</code>."
)
_SVG_PROLOG = re.compile(r"\A\s*(<\?xml[^>]*\?>\s*)?(<!DOCTYPE[^>]*>\s*)?", re.IGNORECASE)
_SVG_SIZE = re.compile(r'<svg width="([^"]*)" height="([^"]*)"')


def _inline_svg(svg: str) -> str:
    """Graphviz's SVG file as an element to inline in HTML, scaled down to fit its box."""
    svg = _SVG_PROLOG.sub("", svg, count=1)
    return _SVG_SIZE.sub(
        lambda m: f'<svg style="width: 100%; max-width: {m.group(1)}; height: auto"', svg, count=1
    )


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


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


def _load_level(limit: LimitStatistics) -> str:
    load = limit.in_use / limit.capacity
    if load >= LOAD_FULL:
        return "full"
    return "busy" if load >= LOAD_BUSY else "ok"


def _blocked_here(in_use: int, capacity: int, waiting: int) -> int:
    """How many of the *waiting* tasklets that need a limit it holds up itself.

    Each waiter needs one token: while the limit is full, every one of them is held up
    by it; while a token is free, none is (they wait for another limit they need, or
    for the token kept for the oldest waiter). So the snapshot alone answers, with no
    look at the waiters one by one.
    """
    return waiting if capacity and in_use >= capacity else 0


class _Gauge:
    """One limit on the dashboard: name, a bar of ``in_use`` out of ``capacity``, a caption.

    The caption (``text``) reads ``2 / 5 in use · 3 waiting``; ``blocked_text`` adds how
    many of those waiting this limit holds up itself (``· 0 blocked here``), so that
    tasklets queued for another, full limit are not read as this one's doing.
    """

    __slots__ = ("name", "box", "label", "bar", "text", "blocked_text", "_level", "_last")

    def __init__(self, name: str) -> None:
        self.name = name
        self.label = widgets.Label(name, layout=widgets.Layout(width="10em"))
        self.label.add_class("aura-gauge-name")
        self.bar = widgets.IntProgress(
            value=0, min=0, max=1, bar_style="success", layout=widgets.Layout(flex="1 1 auto", width="auto")
        )
        self.bar.add_class("aura-gauge-bar")
        self.text = widgets.Label("", tooltip=_WAITING_TIP, layout=widgets.Layout(width="14em"))
        self.text.add_class("aura-gauge-text")
        self.blocked_text = widgets.Label("", tooltip=_BLOCKED_TIP, layout=widgets.Layout(width="9em"))
        self.blocked_text.add_class("aura-gauge-blocked")
        self.box = widgets.HBox(
            [self.label, self.bar, self.text, self.blocked_text], layout=widgets.Layout(width="100%")
        )
        for css in ("aura-gauge", f"aura-gauge-{name}", "aura-load-ok"):
            self.box.add_class(css)
        self._level = "ok"
        self._last: tuple[int, int, int] | None = None

    def update(self, limit: LimitStatistics) -> None:
        key = (limit.capacity, limit.in_use, limit.waiting)
        if key == self._last:
            return
        self._last = key
        level = _load_level(limit)
        # max first: IntProgress clamps value to [min, max].
        _set(self.bar, max=limit.capacity, value=min(limit.in_use, limit.capacity), bar_style=_BAR_STYLE[level])
        _set(self.text, value=f"{limit.in_use} / {limit.capacity} in use · {limit.waiting} waiting")
        _set(self.blocked_text, value=f"· {self.blocked} blocked here")
        if level != self._level:
            with self.box.hold_sync():
                self.box.remove_class(f"aura-load-{self._level}")
                self.box.add_class(f"aura-load-{level}")
            self._level = level

    @property
    def in_use(self) -> int:
        return self._last[1] if self._last else 0

    @property
    def capacity(self) -> int:
        return self._last[0] if self._last else 0

    @property
    def waiting(self) -> int:
        return self._last[2] if self._last else 0

    @property
    def blocked(self) -> int:
        """How many of the waiting tasklets this limit holds up itself (it is full)."""
        return _blocked_here(self.in_use, self.capacity, self.waiting)

    def __repr__(self) -> str:
        return (
            f"<gauge {self.name}: {self.in_use}/{self.capacity} in use, {self.waiting} waiting, "
            f"{self.blocked} blocked here ({self._level})>"
        )


@dataclass(slots=True)
class _PathView:
    """The path on display: whose it is and how far each step got."""

    plan: Plan
    path: Path
    tasklet_id: str | None
    tasklet_name: str
    progress: dict[int, str]
    failure: str | None = None


class Workbench:
    """An :class:`~aura_nb.core.ExecutionManager` with a live Jupyter dashboard.

    Display it in a cell (``wb`` on the last line, or ``display(wb)``) to see the gauges,
    the counters, the live tasklets, the last planned path and the errors. Submit from
    cells: ``handle = wb.submit(t)`` returns at once (the tasklet runs on the kernel's
    event loop), ``await wb.run(t)`` waits for the result, ``wb.run_sync(t)`` blocks in
    a plain cell (see :func:`aura_nb.notebook._loop.run_sync` for its cost).

    The dashboard updates itself while tasklets submitted here are live; after work
    started some other way (``wb.manager.start(t)``), call :meth:`refresh`.

    Args:
        manager: the manager to wrap; by default a new one is made from
            ``manager_kwargs`` (``plans=``, ``max_concurrency=``, ``capacities=``, ...).
        refresh_interval: seconds between two dashboard updates while tasklets are
            live (>= 0.1: at most 10 updates a second).

    Widgets (ipywidgets, to embed or restyle): ``widget`` (the whole dashboard),
    ``gauges`` (name -> gauge with ``box``, ``bar``, ``text``, ``blocked_text``), ``counters``,
    ``running`` (``running_table``, ``tasklet_select``, ``cancel_button``,
    ``why_button``), ``why_area``, ``path_widget``, ``errors_widget``.
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
        self._submitted = 0
        self._pump_task: asyncio.Task[None] | None = None
        self._errors: list[str] = []
        self._error_css: list[str] = []
        self._n_errors = 0
        self._last_internal: str | None = None
        self._view: _PathView | None = None
        self._path_version = 0
        self._shown_version = 0
        self._path_source: str | None = None
        self._renderer: asyncio.Task[None] | None = None
        self._live_due = 0.0  # time.monotonic() after which the pump lists live tasklets again
        self._closed = False
        self._build_widgets()
        self._hooks = (
            ("state_path_planned", self._on_path_planned),
            ("state_transition_started", self._on_step_started),
            ("state_transition_finished", self._on_step_finished),
        )
        for event, fn in self._hooks:
            manager.hooks.on(event, fn)
        self.refresh()

    # -- widgets -----------------------------------------------------------------------
    def _build_widgets(self) -> None:
        def heading(text: str) -> widgets.HTML:
            w = widgets.HTML(f"<b>{_esc(text)}</b>")
            w.add_class("aura-heading")
            return w

        self.header = widgets.HTML()
        self.header.add_class("aura-header")
        self._global_gauge = _Gauge("global")
        self._resource_gauges: dict[str, _Gauge] = {}
        self.gauges_box = widgets.VBox([self._global_gauge.box])
        self.gauges_box.add_class("aura-gauges")

        self.counters = widgets.HTML()
        self.counters.add_class("aura-counters")

        self.running_table = widgets.HTML()
        self.running_table.add_class("aura-running-table")
        self.tasklet_select = widgets.Dropdown(options=[], description="Tasklet", layout=widgets.Layout(width="28em"))
        self.tasklet_select.add_class("aura-tasklet-select")
        # Disabled until a tasklet is live: there is nothing to cancel or ask about.
        self.cancel_button = widgets.Button(
            description="Cancel", button_style="danger", icon="stop", disabled=True, tooltip=_NOTHING_LIVE
        )
        self.cancel_button.add_class("aura-cancel")
        self.why_button = widgets.Button(
            description="Why waiting?", icon="question", disabled=True, tooltip=_NOTHING_LIVE
        )
        self.why_button.add_class("aura-why-button")
        self.cancel_button.on_click(self._on_cancel_click)
        self.why_button.on_click(self._on_why_click)
        controls = widgets.HBox([self.tasklet_select, self.cancel_button, self.why_button])
        controls.add_class("aura-controls")
        self.running = widgets.VBox([self.running_table, controls])
        self.running.add_class("aura-running")
        self.why_area = widgets.HTML("")
        self.why_area.add_class("aura-why")

        self.path_widget = widgets.HTML('<div class="aura-path-empty">No state path planned yet.</div>')
        self.path_widget.add_class("aura-path")

        self.errors_widget = widgets.HTML()
        self.errors_widget.add_class("aura-errors")
        self.clear_errors_button = widgets.Button(description="Clear errors", icon="trash")
        self.clear_errors_button.add_class("aura-errors-clear")
        self.clear_errors_button.on_click(lambda _button: self.clear_errors())
        self._render_errors()

        self.widget = widgets.VBox(
            [
                self.header,
                heading("Limits"),
                self.gauges_box,
                heading("Tasklets"),
                self.counters,
                self.running,
                self.why_area,
                heading("Last planned path"),
                self.path_widget,
                heading("Errors"),
                self.errors_widget,
                self.clear_errors_button,
            ],
            layout=widgets.Layout(width="100%", max_width="64em"),
        )
        self.widget.add_class("aura-workbench")

    @property
    def gauges(self) -> Mapping[str, _Gauge]:
        """The gauge of each limit: ``"global"`` first, then each resource by name."""
        return {"global": self._global_gauge, **self._resource_gauges}

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        self.refresh()
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):  # a readable text form where widgets cannot be shown
            bundle["text/plain"] = repr(self)
        return bundle

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
        for tasklet in tasklets:
            if not isinstance(tasklet, Tasklet):
                raise TypeError(f"submit_many(): expected Tasklet objects, got {type(tasklet).__name__} {tasklet!r}")
            if tasklet.id in seen:
                raise ValueError(f"submit_many(): tasklet {tasklet.id} appears twice; create one Tasklet per run")
            seen.add(tasklet.id)
            self.manager.validate(tasklet)
        handles = []
        for tasklet in tasklets:
            handle = self.manager.start(tasklet)
            self._track(handle)
            handles.append(handle)
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
        batch; to cancel it, interrupt the cell (every running tasklet reports and
        releases as usual, the rest never start).
        """
        if isinstance(tasklets, Iterable) and not isinstance(tasklets, (str, bytes)):
            tasklets = list(tasklets)  # (anything else: the manager says what it takes)
            ids = {t.id for t in tasklets if isinstance(t, Tasklet)} - self._batch_ids  # this batch's own
        else:
            ids = set()
        self._batch_ids |= ids
        self._ensure_pump()
        try:
            return await self.manager.run_many(tasklets, return_exceptions=return_exceptions)
        finally:
            self._batch_ids -= ids
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
            status = handle.status
            if status in _ERROR_STATUSES:
                exc = handle.exception()
                tasklet = handle.tasklet
                self._add_error(
                    f"tasklet {tasklet.id} ({tasklet.name!r}) {status}: {type(exc).__name__}: {exc}",
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

    def _on_cancel_click(self, _button: Any) -> None:
        try:
            tasklet_id = self._selected()
            if tasklet_id is None:
                message = "Select a tasklet first."
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
            self._set_why(message)
            self._ensure_pump()
        except Exception as exc:
            self._internal_error("cancelling a tasklet", exc)

    def _on_why_click(self, _button: Any) -> None:
        try:
            tasklet_id = self._selected()
            self._set_why("Select a tasklet first." if tasklet_id is None else str(self.manager.why(tasklet_id)))
        except Exception as exc:
            self._internal_error("asking why a tasklet waits", exc)

    def _set_why(self, text: str) -> None:
        _set(self.why_area, value=f"<pre>{_esc(text)}</pre>")

    # -- reading -----------------------------------------------------------------------
    def statistics(self) -> ManagerStatistics:
        """The manager's snapshot of every limit and phase (see ``ExecutionManager.statistics``)."""
        return self.manager.statistics()

    @property
    def events(self) -> Any:
        """Every event so far, one row each (a pandas DataFrame)."""
        return self.manager.events.to_frame()

    @property
    def runs(self) -> Any:
        """One row per tasklet: status and queue / planning / run durations (a DataFrame)."""
        return self.manager.events.runs()

    @property
    def errors(self) -> list[str]:
        """The errors shown in the dashboard (the latest ones), oldest first."""
        return list(self._errors)

    @property
    def path_source(self) -> str | None:
        """The DOT source of the path drawing on display, or None before any path."""
        return self._path_source

    def clear_errors(self) -> None:
        """Empty the error area."""
        self._errors.clear()
        self._n_errors = 0
        self._last_internal = None
        self._render_errors()

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
        while True:
            if self._tick():
                return
            await asyncio.sleep(self.refresh_interval)

    def _tick(self) -> bool:
        """One update of the numbers; True when the manager is idle. Never raises."""
        try:
            stats = self.manager.statistics()
        except Exception as exc:
            self._internal_error("reading the manager's statistics", exc)
            return True
        try:
            self._apply(stats, list_live=stats.idle or time.monotonic() >= self._live_due)
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
            self._show_path(version, *self._render_path(self._snapshot(view)))

    def _apply(self, stats: ManagerStatistics, *, list_live: bool = True) -> None:
        self._global_gauge.update(stats.global_limit)
        new = [name for name in stats.resources if name not in self._resource_gauges]
        if new:
            for name in new:
                self._resource_gauges[name] = _Gauge(name)
            self.gauges_box.children = (self._global_gauge.box, *(g.box for g in self._resource_gauges.values()))
        for name, limit in stats.resources.items():
            self._resource_gauges[name].update(limit)
        self._update_counters(stats)
        if list_live:
            # manager.live() lists every live tasklet: with thousands queued it is the one
            # costly read, so the pump lists them again only after 100x its last cost
            # (at most 1 % of the loop's time); the numbers above stay at 10 Hz.
            t0 = time.perf_counter()
            self._update_live()
            cost = time.perf_counter() - t0
            self._live_due = time.monotonic() + cost * _LIVE_BUDGET
        self._update_header(stats)

    def _update_header(self, stats: ManagerStatistics) -> None:
        state = "closed" if self.manager.closed else ("idle" if stats.idle else "busy")
        _set(
            self.header,
            value=(
                f'<span class="aura-title"><b>aura_nb Workbench</b></span> · '
                f'<span class="aura-state aura-state-{state}">{state}</span> · '
                f"{self._submitted} submitted here · max_concurrency {stats.global_limit.capacity}"
            ),
        )

    def _update_counters(self, stats: ManagerStatistics) -> None:
        cells = [("waiting", stats.waiting), ("planning", stats.planning), ("running", stats.running)]
        cells += [(status, stats.by_status.get(status, 0)) for status in STATUSES]
        text = " ".join(
            f'<span class="aura-count aura-count-{name}">{name} <b>{count}</b></span> &nbsp;' for name, count in cells
        )
        _set(self.counters, value=text)

    def _update_live(self) -> None:
        live = self.manager.live()
        shown = live[:_MAX_ROWS]
        if shown:
            td = '<td style="padding: 0 1.2em 0 0">'
            rows = "".join(
                f'<tr class="aura-live aura-live-{status}" data-tasklet-id="{_esc(t.id)}">{td}{_esc(t.id)}</td>'
                f"{td}{_esc(t.name)}</td>{td}{_esc(status)}</td>{td}{_esc(', '.join(t.resource_tags) or '-')}</td>"
                "</tr>"
                for t, status in shown
            )
            more = (
                f'<tr class="aura-live-more"><td colspan="4">... and {len(live) - len(shown)} more</td></tr>'
                if len(live) > len(shown)
                else ""
            )
            th = '<th style="padding: 0 1.2em 0 0; text-align: left">'
            table = (
                f'<table class="aura-running-list"><thead><tr>{th}id</th>{th}name</th>{th}status</th>'
                f"{th}resources</th></tr></thead><tbody>{rows}{more}</tbody></table>"
            )
        else:
            table = f'<div class="aura-running-none">{_NOTHING_LIVE}</div>'
        _set(self.running_table, value=table)

        options = tuple((f"{t.id} · {t.name} · {status}", t.id) for t, status in live[:_MAX_CHOICES])
        # Nothing live, nothing to act on: the buttons say so instead of answering a click.
        nothing = not options
        _set(self.cancel_button, disabled=nothing, tooltip=_NOTHING_LIVE if nothing else _CANCEL_TIP)
        _set(self.why_button, disabled=nothing, tooltip=_NOTHING_LIVE if nothing else _WHY_TIP)
        select = self.tasklet_select
        if options != select.options:
            selected = select.value
            with select.hold_sync():
                select.options = options
                ids = [value for _, value in options]
                if selected in ids:
                    select.value = selected
                elif ids and select.value is None:
                    select.value = ids[0]

    # -- errors ------------------------------------------------------------------------
    def _add_error(self, text: str, *, css: str = "aura-error-failed") -> None:
        self._n_errors += 1
        self._errors.append(text)
        self._error_css.append(css)
        if len(self._errors) > _MAX_ERRORS:
            del self._errors[0]
            del self._error_css[0]
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
        if not self._errors:
            value = '<div class="aura-errors-none">No errors.</div>'
        else:
            hidden = self._n_errors - len(self._errors)
            items = "".join(
                f'<li class="aura-error {css}">{_esc(text)}</li>' for text, css in zip(self._errors, self._error_css)
            )
            older = f'<div class="aura-errors-older">({hidden} older not shown)</div>' if hidden else ""
            noun = "error" if self._n_errors == 1 else "errors"
            value = f'<div class="aura-errors-count">{self._n_errors} {noun}</div>{older}<ul>{items}</ul>'
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
            self._view = _PathView(
                plan=plan,
                path=path,
                tasklet_id=event.tasklet_id,
                tasklet_name=getattr(tasklet, "name", "") or "",
                progress=dict.fromkeys(range(len(path)), "pending"),
            )
            self._path_version += 1
            self._ensure_pump()
        except Exception as exc:
            self._internal_error("recording a planned path", exc)
            return
        await self._render_in_thread()

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
        snapshot = self._snapshot(view)
        try:
            source, body = await anyio.to_thread.run_sync(self._render_path, snapshot)
        except Exception as exc:
            self._internal_error("drawing the state path", exc)
            return False
        self._show_path(version, source, body)
        return True

    @staticmethod
    def _snapshot(view: _PathView) -> _PathView:
        return _PathView(view.plan, view.path, view.tasklet_id, view.tasklet_name, dict(view.progress), view.failure)

    @staticmethod
    def _render_path(view: _PathView) -> tuple[str, str]:
        """(DOT source, HTML) of a path view; runs in a worker thread (pure)."""
        digraph = render_path(view.plan, view.path, view.progress)
        source = digraph.source
        svg = to_svg(digraph)
        path = view.path
        who = f"tasklet {_esc(view.tasklet_id)} ({_esc(view.tasklet_name)})" if view.tasklet_id else "a tasklet"
        caption = (
            f'<div class="aura-path-caption">{who}: <b>{_esc(" → ".join(path.states))}</b> '
            f"(plan {_esc(path.plan)}, cost {path.total_cost:g})</div>"
        )
        steps = "".join(
            f'<li class="aura-step aura-step-{view.progress.get(step.index, "pending")}">'
            f"{_esc(step.from_state)} → {_esc(step.to_state)} via <code>{_esc(step.task)}</code>: "
            f"{view.progress.get(step.index, 'pending')}</li>"
            for step in path.steps
        )
        failure = f'<div class="aura-path-failure">{_esc(view.failure)}</div>' if view.failure else ""
        if svg is not None:
            drawing = f'<div class="aura-path-svg">{_inline_svg(svg)}</div>'
        else:
            drawing = (
                f'<div class="aura-path-hint">{_DOT_HINT}</div>'
                f'<pre class="aura-path-dot">{_esc(source)}</pre>'
            )
        return source, f'{caption}{drawing}<ol class="aura-path-steps">{steps}</ol>{failure}'

    def _show_path(self, version: int, source: str, body: str) -> None:
        if version <= self._shown_version:
            return  # an older drawing finished after a newer one
        self._shown_version = version
        self._path_source = source
        _set(self.path_widget, value=body)

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

    async def __aenter__(self) -> Workbench:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.aclose(cancel_running=exc_type is not None)

    def __repr__(self) -> str:
        s = self.manager.statistics()
        limits = ", ".join(
            f"{lim.name} {lim.in_use}/{lim.capacity}" + (f" (+{lim.waiting} waiting)" if lim.waiting else "")
            for lim in s.limits
        )
        done = ", ".join(f"{k} {v}" for k, v in s.by_status.items() if v) or "none finished"
        state = "closed" if self.manager.closed else ("live" if self.pumping else "idle")
        return (
            f"<Workbench {state}: {limits}; waiting {s.waiting}, planning {s.planning}, running {s.running}; "
            f"{done}; {self._n_errors} error{'' if self._n_errors == 1 else 's'}>"
        )
