"""What the limits did over time: utilization curves and a timeline, from the event log.

Mental model: every limit is a sack of tokens. A ``resources_acquired`` event takes one
token from the global sack and one from the sack of every resource in the tasklet's
``resource_tags``; the matching ``resources_released`` puts them back. Replaying those
events in order gives, for each sack, a step function of the tokens in use:
:func:`utilization`. :func:`plot_utilization` draws those steps against the capacities,
and :func:`plot_timeline` draws who held what, when: one bar per tasklet and resource,
each resource row split into lanes so that bars never overlap (a resource of capacity
2 never needs more than 2 lanes).

Everything here reads an :class:`~aura_nb.core.EventLog` (live or reopened with
``EventLog.open``), its ``to_frame()``, or an ``ExecutionManager`` (its log, and its
capacities for the plots). Plots use matplotlib's object API: with ``ax=None`` they
draw on a new standalone :class:`~matplotlib.figure.Figure` that pyplot does not track,
so nothing leaks into pyplot's current figure; show it with ``ax.figure``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..core import STATUSES, EventLog, ExecutionManager

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = ["STATUS_COLORS", "plot_timeline", "plot_utilization", "utilization"]

#: Bar colours of :func:`plot_timeline` by final status (Okabe-Ito palette);
#: ``"holding"``: it had not released its resources when the log ended; ``"unknown"``:
#: released, but its ``after_task_run`` is not in the log.
STATUS_COLORS: Mapping[str, str] = {
    "succeeded": "#009E73",
    "failed": "#D55E00",
    "timeout": "#E69F00",
    "cancelled": "#999999",
    "planning_failed": "#CC79A7",
    "holding": "#56B4E9",
    "unknown": "#000000",
}
# One colour per limit in plot_utilization: global first, then the resources.
_LIMIT_COLORS = ("#555555", "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442")
#: A line style per limit too, so that the curves differ without colour.
_LIMIT_STYLES = ("-", "--", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)), (0, (3, 1, 1, 1)))
#: Text, ticks and frames in a mid-grey on a transparent figure: readable on a light
#: and on a dark notebook theme alike (no white slab in the dark theme).
_INK = "#808080"
#: Beyond this many changes a step curve becomes a solid comb: plot_utilization draws
#: the time-weighted mean over this many bins instead.
_MAX_STEPS = 600
_BINS = 300
_NEEDED = ("t", "event", "tasklet_id", "resource_tags")
_GLOBAL = "global"
_UNTAGGED = "untagged"


# -- reading the source ---------------------------------------------------------------


def _frame(source: Any) -> pd.DataFrame:
    """The events frame of *source*, in event order."""
    if isinstance(source, ExecutionManager):
        source = source.events
    if isinstance(source, EventLog):
        frame = source.to_frame()
    elif isinstance(source, pd.DataFrame):
        frame = source
        missing = [c for c in _NEEDED if c not in frame.columns]
        if missing:
            hint = " (that looks like runs(): pass events.to_frame())" if "queue_s" in frame.columns else ""
            raise ValueError(
                f"the events frame lacks the columns {', '.join(missing)}{hint}; pass an EventLog, an "
                "ExecutionManager or EventLog.to_frame()"
            )
    else:
        raise TypeError(
            f"expected an EventLog, an ExecutionManager or an events DataFrame (EventLog.to_frame()), "
            f"not {type(source).__name__}"
        )
    order = "seq" if "seq" in frame.columns else "t"
    return frame.sort_values(order, kind="stable").reset_index(drop=True)


def _tag_names(tags: object) -> tuple[str, ...]:
    """``"gpu:1,db"`` -> ``("gpu", "db")``."""
    if not isinstance(tags, str) or not tags:
        return ()
    return tuple(part.strip().partition(":")[0] for part in tags.split(",") if part.strip())


def _tag_capacities(frame: pd.DataFrame) -> dict[str, int]:
    """The capacities the tags of *frame* declare (``"gpu:2"`` -> ``{"gpu": 2}``)."""
    out: dict[str, int] = {}
    for tags in frame["resource_tags"].dropna().unique():
        for part in str(tags).split(","):
            name, _, cap = part.strip().partition(":")
            if cap.isdigit():
                out[name] = int(cap)
    return out


def _column(name: str) -> str:
    # A resource may be called "global" or "t"; keep it apart from those columns.
    return f"{name} (resource)" if name in ("t", _GLOBAL) else name


# -- utilization -----------------------------------------------------------------------


def utilization(source: Any, *, resolution: float | None = None) -> pd.DataFrame:
    """Tokens in use over time, for the global limit and every resource.

    *source*: an :class:`~aura_nb.core.EventLog`, an ``ExecutionManager`` or an events
    frame (``EventLog.to_frame()``). The result has a column ``t`` (seconds since the
    first event), then ``global``, then one column per resource (sorted by name; a
    resource named ``global`` or ``t`` becomes ``"global (resource)"``).

    Without *resolution* it is the exact step function: one row per instant the
    counts changed, each row holding the counts from that instant on; the first row
    is ``t = 0`` with nothing in use. With ``resolution=r`` (seconds) the rows are a
    regular grid ``0, r, 2r, ...`` and each holds the time-weighted *mean* tokens in
    use during ``[t, t + r)`` (the last bin ends at the last event).
    """
    if resolution is not None:
        if isinstance(resolution, bool) or not isinstance(resolution, (int, float)):
            raise TypeError(f"resolution must be a number of seconds, not {type(resolution).__name__}")
        if not math.isfinite(resolution) or resolution <= 0:
            raise ValueError(f"resolution {resolution!r} must be a finite number of seconds > 0")
    return _utilization(_frame(source), resolution)


def _utilization(frame: pd.DataFrame, resolution: float | None) -> pd.DataFrame:
    t_all = frame["t"].to_numpy(dtype=float)
    t0 = float(t_all.min()) if len(t_all) else 0.0
    event = frame["event"].astype(str).to_numpy()
    moves = np.flatnonzero((event == "resources_acquired") | (event == "resources_released"))
    tags = frame["resource_tags"].to_numpy(dtype=object)
    names_of = {value: _tag_names(value) for value in pd.unique(tags[moves])} if len(moves) else {}
    resources = sorted({name for names in names_of.values() for name in names})
    columns = [_GLOBAL, *(_column(name) for name in resources)]
    position = {name: i + 1 for i, name in enumerate(resources)}

    deltas = np.zeros((len(moves), len(columns)), dtype=np.int64)
    for row, i in enumerate(moves):
        sign = 1 if event[i] == "resources_acquired" else -1
        deltas[row, 0] = sign
        for name in names_of.get(tags[i]) or _tag_names(tags[i]):
            deltas[row, position[name]] = sign
    counts = np.cumsum(deltas, axis=0)
    times = t_all[moves] - t0
    # Several changes at one instant: the state after the last of them holds from then.
    last = np.r_[times[1:] != times[:-1], True] if len(times) else np.zeros(0, dtype=bool)
    times, counts = times[last], counts[last]
    if not len(times) or times[0] > 0:
        times = np.r_[0.0, times]
        counts = np.vstack([np.zeros((1, len(columns)), dtype=np.int64), counts])
    end = float(t_all.max() - t0) if len(t_all) else 0.0

    if resolution is not None:
        times, counts = _bin_means(times, counts.astype(float), end, float(resolution))
    out = pd.DataFrame(counts, columns=columns)
    out.insert(0, "t", times.astype(float))
    return out


def _bin_means(times: np.ndarray, values: np.ndarray, end: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Time-weighted means of a step function over ``[k*width, (k+1)*width)`` bins."""
    end = max(end, float(times[-1]))
    n_bins = max(1, math.ceil(end / width - 1e-9))
    edges = np.minimum(np.arange(n_bins + 1) * width, end)
    if end == 0:
        return np.zeros(1), values[-1:].copy()
    # The integral of a step function is piecewise linear: exact at every edge by interp.
    knots = np.r_[times, end]
    integral = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(values * np.diff(knots)[:, None], axis=0)])
    at_edges = np.column_stack([np.interp(edges, knots, integral[:, j]) for j in range(values.shape[1])])
    lengths = np.diff(edges)
    means = np.diff(at_edges, axis=0) / np.where(lengths > 0, lengths, 1.0)[:, None]
    return edges[:-1], means


# -- plots -----------------------------------------------------------------------------


def _new_axes(width: float, height: float) -> Axes:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure.add_subplot()


def plot_utilization(
    source: Any,
    *,
    capacities: Mapping[str, int] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Draw the tokens in use of every limit over time, with its capacity as a dotted line.

    One step curve per limit (``global`` first) and one horizontal line per known
    capacity, in the curve's colour. Capacities come from *capacities* (names as in
    :func:`utilization`, ``"global"`` for the global limit), else from the manager when
    *source* is an ``ExecutionManager``, else from the tags (``"gpu:2"`` declares 2).
    Returns the Axes (a new standalone figure's when *ax* is None).
    """
    frame = _frame(source)
    data = _utilization(frame, None)
    known: dict[str, int] = {}
    known.update({_column(name): cap for name, cap in _tag_capacities(frame).items()})
    if isinstance(source, ExecutionManager):
        known[_GLOBAL] = source.max_concurrency
        known.update({_column(name): cap for name, cap in source.capacities.items()})
    if capacities is not None:
        if not isinstance(capacities, Mapping):
            raise TypeError(f"capacities must be a mapping like {{'global': 8, 'gpu': 2}}, not {capacities!r}")
        known.update(capacities)
    if ax is None:
        ax = _new_axes(9, 3.5)
    limits = [c for c in data.columns if c != "t"]
    end = float(frame["t"].max() - frame["t"].min()) if len(frame) else 0.0
    averaged = len(data) > _MAX_STEPS and end > 0
    if averaged:
        # A batch changes the counts thousands of times: the steps would fill the area
        # as a comb. The time-weighted mean per bin shows the same load, readably.
        data = _utilization(frame, end / _BINS)
    t = np.r_[data["t"].to_numpy(), end] if end > data["t"].iloc[-1] else data["t"].to_numpy()
    what = "mean in use" if averaged else "in use"
    for i, name in enumerate(limits):
        color = _LIMIT_COLORS[i % len(_LIMIT_COLORS)]
        values = data[name].to_numpy()
        if len(t) > len(values):  # carry the last value to the end of the log
            values = np.r_[values, values[-1]]
        if i == 0:  # the global limit underlies every other: a shaded area behind them
            ax.fill_between(t, values, step="post", color=color, alpha=0.12, linewidth=0)
        ax.step(t, values, where="post", color=color, linewidth=2.2 if i == 0 else 1.6,
                linestyle=_LIMIT_STYLES[i % len(_LIMIT_STYLES)], label=f"{name} {what}")  # fmt: skip
        cap = known.get(name)
        if cap is not None:
            ax.axhline(cap, color=color, linestyle=":", linewidth=1.2, label=f"{name} capacity ({cap})")
    if averaged:
        ax.text(1.0, 1.01, f"mean over {end / _BINS:.3g} s bins", transform=ax.transAxes, ha="right",
                va="bottom", fontsize="small", color=_INK)  # fmt: skip
    ax.set_xlabel("seconds since the first event")
    ax.set_ylabel("tokens in use")
    ax.set_title("Utilization of each limit")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    _neutral(ax)
    return ax


def _neutral(ax: Axes) -> None:
    """Transparent background, mid-grey ink, tick labels kept even on a shared axis."""
    ax.figure.patch.set_alpha(0.0)
    ax.set_facecolor("none")
    for spine in ax.spines.values():
        spine.set_color(_INK)
    # Shared axes hide the inner tick labels; a reader of a stacked plot wants them.
    ax.tick_params(colors=_INK, labelcolor=_INK, labelbottom=True)
    for text in (ax.xaxis.label, ax.yaxis.label, ax.title):
        text.set_color(_INK)
    legend = ax.get_legend()
    if legend is not None:
        for text in (*legend.get_texts(), legend.get_title()):
            text.set_color(_INK)


def _holdings(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per tasklet that acquired: tags, acquired, released (relative t), status."""
    t0 = float(frame["t"].min()) if len(frame) else 0.0
    end = float(frame["t"].max()) - t0 if len(frame) else 0.0
    event = frame["event"].astype(str)
    rel = frame["t"] - t0
    first = {
        name: rel[event == name].groupby(frame.loc[event == name, "tasklet_id"], sort=False).first()
        for name in ("resources_acquired", "resources_released")
    }
    done = frame[event == "after_task_run"]
    status = done.groupby("tasklet_id", sort=False)["status"].last().astype(object)
    tags = frame.groupby("tasklet_id", sort=False)["resource_tags"].first()
    acquired = first["resources_acquired"]
    out = pd.DataFrame({"tasklet_id": acquired.index, "acquired": acquired.to_numpy()})
    out["released"] = out["tasklet_id"].map(first["resources_released"]).astype(float).fillna(end)
    released = out["tasklet_id"].isin(first["resources_released"].index)
    out["status"] = out["tasklet_id"].map(status).where(released, "holding").fillna("unknown").astype(str)
    out["resource_tags"] = out["tasklet_id"].map(tags)
    return out.sort_values(["acquired", "released"], kind="stable").reset_index(drop=True)


def _lanes(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The lowest free lane for each interval (sorted by start): bars never overlap."""
    lane_end: list[float] = []
    out = np.zeros(len(starts), dtype=int)
    for i, (start, stop) in enumerate(zip(starts, ends)):
        for lane, busy_until in enumerate(lane_end):
            if busy_until <= start:
                break
        else:
            lane = len(lane_end)
            lane_end.append(stop)
        lane_end[lane] = stop
        out[i] = lane
    return out


def plot_timeline(source: Any, *, ax: Axes | None = None) -> Axes:
    """Draw who held which resource when: a Gantt chart of the tasklets.

    One row per resource (sorted by name), then an ``untagged`` row for tasklets that
    held only the global limit. Each tasklet is a bar from ``resources_acquired`` to
    ``resources_released`` in every row it held, coloured by its final status
    (:data:`STATUS_COLORS`). A row is split into lanes so bars never overlap: the
    number of lanes a resource needs is its peak use. Tasklets that never acquired
    (cancelled while waiting) have no bar. Returns the Axes (a new standalone
    figure's when *ax* is None).
    """
    frame = _frame(source)
    held = _holdings(frame)
    rows: dict[str, list[int]] = {}
    for i, tags in enumerate(held["resource_tags"].tolist()):
        names = _tag_names(tags)
        for name in names or (_UNTAGGED,):
            rows.setdefault(name, []).append(i)
    order = sorted(name for name in rows if name != _UNTAGGED) + ([_UNTAGGED] if _UNTAGGED in rows else [])

    # Lay the rows out top to bottom, each as tall as the lanes it needs.
    bars: dict[str, list[tuple[float, float, float]]] = {}
    ticks: list[tuple[float, str]] = []
    separators: list[float] = []
    y = 0.0
    for name in order:
        members = rows[name]
        starts = held["acquired"].to_numpy()[members]
        ends = held["released"].to_numpy()[members]
        lanes = _lanes(starts, ends)
        n_lanes = int(lanes.max()) + 1
        for member, lane in zip(members, lanes):
            status = held["status"].iat[member]
            bars.setdefault(status, []).append((y + lane, held["acquired"].iat[member], held["released"].iat[member]))
        ticks.append((y + (n_lanes - 1) / 2, f"{name}\n({n_lanes} lane{'' if n_lanes == 1 else 's'})"))
        y += n_lanes + 0.6
        separators.append(y - 0.8)

    if ax is None:
        ax = _new_axes(9, max(2.5, min(12.0, 0.9 + 0.22 * y)))
    for status in (*STATUSES, "holding", "unknown"):
        if status not in bars:
            continue
        ys, lefts, rights = (np.array(v, dtype=float) for v in zip(*bars[status]))
        ax.barh(
            ys, rights - lefts, left=lefts, height=0.8, color=STATUS_COLORS.get(status, "#777777"),
            linewidth=0, label=status,
        )  # fmt: skip
    for sep in separators[:-1]:
        ax.axhline(sep, color=_INK, linewidth=0.6, alpha=0.5)
    if ticks:
        ax.set_yticks([pos for pos, _ in ticks], [label for _, label in ticks])
        ax.set_ylim(y - 0.5, -0.7)  # first row on top
        ax.legend(title="final status", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    else:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no tasklet acquired resources", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(left=0)
    ax.set_xlabel("seconds since the first event")
    ax.set_title("Who held what, when")
    _neutral(ax)
    return ax
