"""What the Workbench shows, as HTML: pure functions from snapshots to markup.

The Workbench (``_workbench``) is a thin widget layer over these functions: it reads
``statistics()`` and ``live()`` snapshots, turns them into HTML here and sends a widget
trait only when the HTML changed. The same functions build the compact gauge strip and
the static snapshot that stands in for the dashboard where widgets cannot run
(GitHub, nbviewer, an exported HTML page opened offline), so all three always agree,
and all of it can be tested without a kernel.

Every user string (tasklet, task, state and resource names, error messages) goes
through :func:`name_html`: escaped for HTML, made one line with bidirectional and
control characters shown as escapes (``aura_nb.core._text.display_text``), shortened
in the middle when long, with the full text on hover.

Colours: the Okabe-Ito palette the path drawings use (blue for tokens in use, orange
stripes for a token held back for the oldest waiter, bluish green for the rate tokens
taken in a quota's window), every state also said in words ("full", "busy", "quota
used"); the alarm colour (vermillion) is kept for trouble: errors, and an
event log falling behind. Text and borders use JupyterLab's theme variables, so the
dashboard reads in the light and the dark theme.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..core import STATUSES, LimitStatistics, ManagerStatistics, Tasklet
from ..core._text import display_text

__all__ = [
    "CSS",
    "LOAD_BUSY",
    "LOAD_FULL",
    "BatchProgress",
    "ErrorEntry",
    "batch_html",
    "counters_html",
    "errors_html",
    "gauge_html",
    "gauges_html",
    "header_html",
    "legend_html",
    "load_level",
    "name_html",
    "quota_html",
    "quota_level",
    "running_html",
    "strip_html",
]

#: Load thresholds of a gauge: below the first it is "ok", below the second "busy",
#: at or above it "full". Said in words beside the bar, never by colour alone.
LOAD_BUSY = 0.7
LOAD_FULL = 1.0
#: Characters of a name shown before it is shortened (the full text is on hover).
NAME_LIMIT = 40
#: A log that has not written its pending events for this long is shown as a warning.
LOG_LAG_WARNING_S = 3.0

WAITING_TIP = (
    "waiting: tasklets in the queue that need a token of this limit. They may be held up by another limit "
    "they also need; 'blocked here' counts those held up by this one."
)
BLOCKED_TIP = (
    "blocked here: waiting tasklets held up by this limit itself, because it is full. The others wait for "
    "another limit, or for a token held back for the oldest waiter: ask 'Why waiting?'."
)
HELD_TIP = (
    "held back: free tokens kept for the oldest waiting tasklet, which needs them together with another "
    "limit that is busy, so that a stream of smaller tasklets cannot starve it."
)
QUOTA_TIP = (
    "quota: rate tokens taken in the last window (e.g. 7 of 10 per s). Each comes back by itself one window "
    "after it was taken, not when its tasklet ends; a tasklet waiting for one holds nothing meanwhile."
)
RETRIES_TIP = (
    "retries: attempts beyond the first, of tasklets with a retry policy (each failed attempt that was tried "
    "again). Every attempt is in the events' attempt column and in runs()['attempts']."
)
ELSEWHERE_TIP = (
    "shared limits: other managers of the pool (host:process label) hold these tokens now; they count in 'in use'."
)
_USED_TIP = "in use: tokens held by running (or planning) tasklets"
_FREE_TIP = "free: tokens nobody holds or waits for"

_CSS_NAME = re.compile(r"[^A-Za-z0-9_-]")

#: The dashboard's stylesheet: scoped to its own classes, themed through JupyterLab's
#: variables (with light-theme fallbacks for pages without them).
CSS = """<style>
.aura-workbench, .aura-strip, .aura-snapshot {
  --aura-fg: var(--jp-ui-font-color1, #1f1f1f); --aura-fg2: var(--jp-ui-font-color2, #555);
  --aura-line: var(--jp-border-color1, #bdbdbd); --aura-track: var(--jp-layout-color2, #eeeeee);
  --aura-used: #0072B2; --aura-held: #E69F00; --aura-quota: #009E73; --aura-alarm: #D55E00;
  color: var(--aura-fg); font-family: var(--jp-ui-font-family, system-ui, sans-serif);
  font-size: var(--jp-ui-font-size1, 13px); line-height: 1.45;
}
.aura-snapshot { max-width: 64em; border: 1px solid var(--aura-line); padding: 6px 10px; }
.aura-snapshot-note { color: var(--aura-fg2); font-style: italic; }
.aura-gauge { display: flex; align-items: center; gap: 0.6em; height: 1.7em; white-space: nowrap; }
.aura-gauge-name { flex: 0 1 10em; min-width: 3em; overflow: hidden; text-overflow: ellipsis; font-weight: 600; }
.aura-gauge-bar { flex: 1 1 8em; min-width: 3em; height: 0.95em; display: flex; overflow: hidden;
  background: var(--aura-track); border: 1px solid var(--aura-line); border-radius: 3px; }
.aura-seg { display: block; height: 100%; }
.aura-seg-used { background: var(--aura-used); }
.aura-seg-quota { background: var(--aura-quota); }
.aura-gauge-sub { font-weight: 400; color: var(--aura-fg2); padding-left: 0.8em; box-sizing: border-box; }
.aura-seg-held { background: repeating-linear-gradient(135deg, var(--aura-held) 0 4px, transparent 4px 7px);
  box-shadow: inset 0 0 0 1px var(--aura-held); }
.aura-gauge-text { flex: 0 0 auto; min-width: 12.5em; font-variant-numeric: tabular-nums; }
.aura-gauge-note { flex: 0 1 18em; min-width: 0; overflow: hidden; text-overflow: ellipsis; color: var(--aura-fg2); }
.aura-load-full .aura-gauge-state { font-weight: 700; color: var(--aura-fg); }
@supports (grid-template-columns: subgrid) {
  /* One grid for all the rows: every bar starts and ends where the others do, whatever
     a caption's length (a paced quota's is twice a plain one's). */
  .aura-gauge-list { display: grid; column-gap: 0.6em;
    grid-template-columns: fit-content(10em) minmax(3em, 1fr) minmax(12.5em, max-content) fit-content(18em); }
  .aura-gauge-list > .aura-gauge { display: grid; grid-template-columns: subgrid; grid-column: 1 / -1; }
}
/* A narrow cell (a side panel, a phone): the note goes under its bar, and a long caption
   wraps, instead of both being cut at the right edge. */
.aura-gauge-box { container-type: inline-size; }
@container (max-width: 40em) {
  .aura-gauge-list { display: grid; column-gap: 0.6em; grid-template-columns: fit-content(7em) minmax(3em, 1fr) auto; }
  .aura-gauge-list > .aura-gauge { display: grid; grid-template-columns: subgrid; grid-column: 1 / -1;
    height: auto; min-height: 1.7em; row-gap: 0; }
  .aura-gauge-list .aura-gauge-text { min-width: 0; white-space: normal; }
  .aura-gauge-list .aura-gauge-note { grid-column: 2 / -1; font-size: 0.92em; white-space: normal; }
}
.aura-legend { color: var(--aura-fg2); font-size: 0.92em; display: flex; flex-wrap: wrap; gap: 0.2em 1.2em;
  margin: 2px 0 4px; }
.aura-legend [title], .aura-gauge [title], .aura-count[title] { cursor: help; }
.aura-swatch { display: inline-block; width: 1.6em; height: 0.8em; vertical-align: -1px; margin-right: 0.3em;
  border: 1px solid var(--aura-line); }
.aura-swatch.aura-seg-used { background: var(--aura-used); }
.aura-swatch.aura-seg-quota { background: var(--aura-quota); }
.aura-swatch.aura-seg-free { background: var(--aura-track); }
.aura-header-row { display: flex; flex-wrap: wrap; gap: 0.2em 0.8em; align-items: baseline; min-height: 1.6em; }
.aura-badge { border-radius: 0.8em; padding: 0 0.6em; font-weight: 600; }
.aura-badge-errors, .aura-badge-log { background: var(--aura-alarm); color: #fff; }
.aura-counters { font-variant-numeric: tabular-nums; }
.aura-batch-row { height: 1.7em; display: flex; align-items: center; gap: 0.6em; white-space: nowrap;
  overflow: hidden; }
.aura-batch-row .aura-gauge-bar { flex: 0 1 14em; }
.aura-batch-none { color: var(--aura-fg2); }
.aura-running-box { height: 8.6em; overflow-y: auto; border: 1px solid var(--aura-line); }
.aura-running-list { border-collapse: collapse; width: 100%; table-layout: fixed; }
.aura-running-list th, .aura-running-list td { text-align: left; padding: 0 0.8em 0 0.4em; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; height: 1.45em; }
.aura-running-list th { position: sticky; top: 0; background: var(--jp-layout-color1, #fff); }
.aura-running-none { color: var(--aura-fg2); padding: 0.3em 0.5em; }
.aura-why-box { height: 7.2em; overflow-y: auto; }
.aura-why-head { color: var(--aura-fg2); font-size: 0.92em; }
.aura-why-text { white-space: pre-wrap; overflow-wrap: break-word; word-break: normal; margin: 0;
  font-family: var(--jp-code-font-family, monospace); }
.aura-errors-box { height: 6.4em; overflow-y: auto; border: 1px solid var(--aura-line); padding: 0 0.4em; }
.aura-errors-box ul { margin: 0; padding-left: 0; list-style: none; }
.aura-error { overflow-wrap: break-word; }
.aura-error-mark { color: var(--aura-alarm); font-weight: 700; }
.aura-errors-none { color: var(--aura-fg2); }
.aura-errors-count { color: var(--aura-alarm); font-weight: 600; }
.aura-path-box { height: 34em; overflow: auto; border: 1px solid var(--aura-line); padding: 2px 6px; }
.aura-path-empty { color: var(--aura-fg2); padding: 0.3em; }
.aura-path-caption { overflow-wrap: break-word; }
.aura-zoom { display: block; cursor: zoom-in; overflow-x: auto; }
.aura-zoom > input { display: none; }
.aura-zoom svg { display: block; }
.aura-zoom > input:checked + .aura-path-svg svg { width: auto !important; max-width: none !important; }
.aura-zoom > input:checked + .aura-path-svg { cursor: zoom-out; }
.aura-path-steps { margin: 0.2em 0; }
.aura-strip { padding: 2px 0; }
.aura-strip .aura-gauge { height: 1.5em; }
.aura-strip .aura-gauge-name { flex-basis: 8em; }
.aura-strip-head { color: var(--aura-fg2); height: 1.5em; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.jp-OutputArea-child:has(.aura-workbench) + .jp-OutputArea-child:has(.aura-snapshot) { display: none; }
</style>"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def css_name(name: str) -> str:
    """A CSS class fragment for a limit's name (anything else becomes ``_``)."""
    return _CSS_NAME.sub("_", name)[:40] or "_"


def name_html(value: object, limit: int = NAME_LIMIT, *, css: str = "aura-name") -> str:
    """A user string as HTML: one line, escaped, shortened in the middle, full text on hover."""
    full = value if isinstance(value, str) else str(value)
    shown = display_text(full, limit)
    hover = display_text(full, 2_000) if len(full) > 2_000 else display_text(full)
    title = f' title="{esc(hover)}"' if hover != shown else ""
    return f'<span class="{css}"{title}>{esc(shown)}</span>'


def load_level(limit: LimitStatistics) -> str:
    """How full a limit's capacity is: "ok", "busy" or "full" (a rate-only resource is never full)."""
    load = limit.in_use / limit.capacity if limit.capacity else 0.0
    if load >= LOAD_FULL:
        return "full"
    return "busy" if load >= LOAD_BUSY else "ok"


def held_back(limit: LimitStatistics) -> tuple[int, str | None]:
    """Tokens held back for the oldest waiter, and who that is ("id (name)")."""
    return int(getattr(limit, "held_back", 0) or 0), getattr(limit, "held_for", None)


def blocked_here(in_use: int, capacity: int, waiting: int) -> int:
    """How many of the *waiting* tasklets that need a limit it holds up itself.

    Each waiter needs one token: while the limit is full, every one of them is held up
    by it; while a token is free, none is (they wait for another limit they need, or
    for a token held back for the oldest waiter).
    """
    return waiting if capacity and in_use >= capacity else 0


def caption(limit: LimitStatistics) -> str:
    if getattr(limit, "unlimited", False):  # a rate-only resource: how many at once is not limited
        return f"{limit.in_use} in use (no cap) · {limit.waiting} waiting"
    return f"{limit.in_use} / {limit.capacity} in use · {limit.waiting} waiting"


def has_rate(limit: LimitStatistics) -> bool:
    return getattr(limit, "rate", None) is not None


def quota_level(limit: LimitStatistics) -> str:
    """How much of a rate quota the current window used: "ok", "busy" or "full" (quota used)."""
    if not has_rate(limit):
        return "ok"
    load = limit.rate_used / limit.rate
    if load >= LOAD_FULL:
        return "full"
    return "busy" if load >= LOAD_BUSY else "ok"


def per_text(per: float) -> str:
    """A quota's window in words: "s", "min", "h", "day" or "2.5 s"."""
    return {1.0: "s", 60.0: "min", 3600.0: "h", 86400.0: "day"}.get(float(per), f"{per:g} s")


def seconds_text(seconds: float) -> str:
    """A countdown: "0.3 s" (tenths below 10 s), "42 s", "2 min 03 s"."""
    return f"{seconds:.1f} s" if seconds < 10 else _duration(seconds)


def quota_caption(limit: LimitStatistics) -> str:
    """``7 / 10 per s``: rate tokens taken in the current window, of the quota.

    A paced quota says so (``7 / 20 per s, paced 1 per 0.05 s``): its bar rarely fills.
    """
    text = f"{limit.rate_used} / {limit.rate} per {per_text(limit.per)}"
    burst = getattr(limit, "burst", None)
    if burst is not None and burst < limit.rate:
        text += f", paced {burst} per {per_text(burst * limit.per / limit.rate)}"
    return text


def _bar(used: int, held: int, capacity: int, *, title: str, css: str = "aura-seg-used") -> str:
    cap = max(capacity, 1)
    used = max(0, min(used, cap))
    held = max(0, min(held, cap - used))
    segs = f'<span class="aura-seg {css}" style="width: {100 * used / cap:.4g}%"></span>'
    if held:
        segs += f'<span class="aura-seg aura-seg-held" style="width: {100 * held / cap:.4g}%"></span>'
    return (
        f'<span class="aura-gauge-bar" role="meter" aria-valuemin="0" aria-valuemax="{capacity}" '
        f'aria-valuenow="{used}" title="{esc(title)}">{segs}</span>'
    )


def gauge_html(limit: LimitStatistics) -> str:
    """One limit: name, a bar (in use, held back, free), numbers, and what the state means.

    A resource with a rate quota also gets a quota row (:func:`quota_html`) right below;
    one with only a rate (no capacity) gets the quota row alone, with no capacity bar.
    """
    if has_rate(limit):
        if limit.unlimited:
            return quota_html(limit, alone=True)
        return _capacity_html(limit) + quota_html(limit, alone=False)
    return _capacity_html(limit)


def quota_html(limit: LimitStatistics, *, alone: bool = False) -> str:
    """A rate quota's row: the tokens taken in the current window of the quota, and,
    when it is used up, the countdown to the next token coming back.

    ``alone``: the resource has no capacity, so this row is its whole gauge (named, with
    its waiting tasklets and how many run); otherwise it sits under the capacity row.
    """
    level = quota_level(limit)
    used, rate = limit.rate_used, limit.rate
    blocked = limit.waiting if used >= rate else 0
    notes = []
    if level == "full":
        notes.append('<span class="aura-gauge-state">quota used</span>')
        if limit.next_token_in is not None:
            notes.append(f'<span class="aura-gauge-next">next token in {seconds_text(limit.next_token_in)}</span>')
    elif level == "busy":
        notes.append('<span class="aura-gauge-state">busy</span>')
    notes.append(f'<span class="aura-gauge-blocked" title="{esc(BLOCKED_TIP)}">{blocked} blocked here</span>')
    # Last: the longest note, other users' labels, is the one the ellipsis cuts (full text on hover).
    if alone and (elsewhere := elsewhere_note(limit)) is not None:  # else the capacity row says it
        notes.append(elsewhere)
    text = quota_caption(limit)
    if alone:
        text += f" · {limit.waiting} waiting"
        name = name_html(limit.name, 24, css="aura-gauge-name")
        classes = f"aura-gauge aura-gauge-{css_name(limit.name)} aura-gauge-quota aura-quota-{css_name(limit.name)}"
    else:
        hover = display_text(f"{limit.name}: its rate quota", 2_000)
        name = f'<span class="aura-gauge-name aura-gauge-sub" title="{esc(hover)}">↳ quota</span>'
        classes = f"aura-gauge aura-gauge-quota aura-quota-{css_name(limit.name)}"
    window = per_text(limit.per)
    bar_title = f"{used} of {rate} rate tokens taken in the last {'second' if window == 's' else window}"
    if limit.next_token_in is not None:
        bar_title += f"; the next comes back in {seconds_text(limit.next_token_in)}"
    if alone:  # no capacity row to say it: how many hold the resource now
        bar_title += f"; {limit.in_use} in use (no cap on how many at once)"
    return (
        f'<div class="{classes} aura-load-{level}" data-rate="{rate}" data-per="{limit.per:g}" '
        f'data-rate-used="{used}" data-in-use="{limit.in_use}" data-waiting="{limit.waiting}" '
        f'data-capacity="{"unlimited" if limit.unlimited else limit.capacity}">'
        f"{name}{_bar(used, 0, rate, title=bar_title, css='aura-seg-quota')}"
        f'<span class="aura-gauge-text" title="{esc(QUOTA_TIP)}">{text}</span>'
        f'<span class="aura-gauge-note">{" · ".join(notes)}</span></div>'
    )


def _capacity_html(limit: LimitStatistics) -> str:
    level = load_level(limit)
    held, held_for = held_back(limit)
    blocked = blocked_here(limit.in_use, limit.capacity, limit.waiting)
    state = {"full": "full", "busy": "busy", "ok": ""}[level]
    notes = []
    if state:
        notes.append(f'<span class="aura-gauge-state">{state}</span>')
    if held:
        who = name_html(held_for, 30) if held_for else "the oldest waiter"
        tail = ", the oldest waiter" if held_for else ""
        notes.append(f'<span class="aura-gauge-held" title="{esc(HELD_TIP)}">{held} held for {who}{tail}</span>')
    notes.append(f'<span class="aura-gauge-blocked" title="{esc(BLOCKED_TIP)}">{blocked} blocked here</span>')
    bar_title = f"{limit.in_use} in use, {held} held back, {max(0, limit.capacity - limit.in_use - held)} free"
    if (elsewhere := elsewhere_note(limit)) is not None:  # last: the ellipsis cuts it, not the counts
        notes.append(elsewhere)
        bar_title += f"; held elsewhere by {'; '.join(display_text(who, 200) for who in limit.held_elsewhere)}"
    return (
        f'<div class="aura-gauge aura-gauge-{css_name(limit.name)} aura-load-{level}" '
        f'data-in-use="{limit.in_use}" data-capacity="{limit.capacity}" data-waiting="{limit.waiting}" '
        f'data-held="{held}">'
        f"{name_html(limit.name, 24, css='aura-gauge-name')}"
        f"{_bar(limit.in_use, held, limit.capacity, title=bar_title)}"
        f'<span class="aura-gauge-text" title="{esc(WAITING_TIP)}">{caption(limit)}</span>'
        f'<span class="aura-gauge-note">{" · ".join(notes)}</span></div>'
    )


def elsewhere_note(limit: LimitStatistics) -> str | None:
    """Shared limits: which other managers hold tokens of this limit (the first two, all on hover)."""
    others = getattr(limit, "held_elsewhere", ())
    if not others:
        return None
    shown = ", ".join(name_html(who, 36) for who in others[:2])
    more = f" +{len(others) - 2} more" if len(others) > 2 else ""
    hover = display_text("; ".join(others), 2_000)
    return (
        f'<span class="aura-gauge-elsewhere" title="{esc(ELSEWHERE_TIP + " " + hover)}">'
        f"held elsewhere: {shown}{more}</span>"
    )


def legend_html(quota: bool = False) -> str:
    """The one-line key to the gauges; every term also explained on hover.

    ``quota``: some resource has a rate, so the key also names the quota's colour.
    """
    quota_key = (
        f'<span title="{esc(QUOTA_TIP)}"><span class="aura-swatch aura-seg-quota"></span>quota taken in the window</span>'
        if quota
        else ""
    )
    return (
        '<div class="aura-legend">'
        f'<span title="{esc(_USED_TIP)}"><span class="aura-swatch aura-seg-used"></span>in use</span>'
        f"{quota_key}"
        f'<span title="{esc(HELD_TIP)}"><span class="aura-swatch aura-seg-held"></span>held for the oldest waiter</span>'
        f'<span title="{esc(_FREE_TIP)}"><span class="aura-swatch aura-seg-free"></span>free</span>'
        f'<span title="{esc(WAITING_TIP)}"><b>waiting</b>: queued tasklets that need it</span>'
        f'<span title="{esc(BLOCKED_TIP)}"><b>blocked here</b>: those it holds up itself (full)</span>'
        "</div>"
    )


def gauges_html(stats: ManagerStatistics) -> str:
    """Every limit's gauge, in one list whose rows share their columns (bars aligned)."""
    rows = "".join(gauge_html(limit) for limit in stats.limits)
    return f'<div class="aura-gauge-box"><div class="aura-gauge-list">{rows}</div></div>'


def any_rate(stats: ManagerStatistics) -> bool:
    """Whether some resource has a rate quota (the legend then names its colour)."""
    return any(has_rate(limit) for limit in stats.resources.values())


def counters_html(stats: ManagerStatistics, retries: int = 0) -> str:
    """Tasklets by phase and by final status, then the retries (attempts beyond the first)."""
    cells = [("waiting", stats.waiting), ("planning", stats.planning), ("running", stats.running)]
    cells += [(status, stats.by_status.get(status, 0)) for status in STATUSES]
    out = " ".join(
        f'<span class="aura-count aura-count-{name}">{name} <b>{count:,}</b></span> &nbsp;' for name, count in cells
    )
    return out + f' <span class="aura-count aura-count-retries" title="{esc(RETRIES_TIP)}">retries <b>{retries:,}</b></span>'


def log_warning(stats: ManagerStatistics) -> str | None:
    """A warning while the SQLite event log falls behind (None when it keeps up)."""
    log = getattr(stats, "log", None)
    if log is None:
        return None
    lag = float(getattr(log, "lag_s", 0.0) or 0.0)
    if lag <= LOG_LAG_WARNING_S:
        return None
    pending = int(getattr(log, "pending_events", 0) or 0)
    error = getattr(log, "last_error", None)
    text = f"event log {lag:.0f} s behind ({pending:,} events not written yet)"
    if error:
        text += f": {display_text(error, 120)}"
    return text


def header_html(state: str, submitted: int, stats: ManagerStatistics, n_errors: int) -> str:
    parts = [
        '<span class="aura-title"><b>aura_nb Workbench</b></span>',
        f'<span class="aura-state aura-state-{state}">{state}</span>',
        f'<span class="aura-submitted">{submitted:,} submitted here</span>',
        f"<span>max_concurrency {stats.global_limit.capacity}</span>",
    ]
    if n_errors:
        parts.append(f'<span class="aura-badge aura-badge-errors">⚠ {n_errors:,} error{"" if n_errors == 1 else "s"}</span>')
    warning = log_warning(stats)
    if warning:
        parts.append(f'<span class="aura-badge aura-badge-log" title="{esc(warning)}">⚠ {esc(warning)}</span>')
    return f'<div class="aura-header-row">{"".join(parts)}</div>'


@dataclass(slots=True)
class BatchProgress:
    """A ``run_many`` batch as it runs: how many of ``total`` ended, since when."""

    total: int
    started: float  # time.monotonic()
    done: int = 0

    def rate(self, now: float) -> float:
        elapsed = now - self.started
        return self.done / elapsed if elapsed > 0 else 0.0


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def batch_html(batches: Sequence[BatchProgress], now: float | None = None) -> str:
    """A progress row for the running batches (done / total, rate, time left)."""
    if not batches:
        return '<div class="aura-batch-row"><span class="aura-batch-none">No batch running.</span></div>'
    now = time.monotonic() if now is None else now
    total = sum(b.total for b in batches)
    done = min(total, sum(b.done for b in batches))
    rate = sum(b.rate(now) for b in batches)
    left = f"about {_duration((total - done) / rate)} left" if rate > 0 and done < total else "starting"
    noun = "batch" if len(batches) == 1 else f"{len(batches)} batches"
    return (
        f'<div class="aura-batch-row"><span class="aura-batch-label"><b>{noun}</b></span>'
        f"{_bar(done, 0, total, title=f'{done:,} of {total:,} tasklets ended')}"
        f'<span class="aura-batch-text">{done:,} / {total:,} done · {rate:,.0f} tasklets/s · {left}</span></div>'
    )


#: The order of the running list: what runs first, then what plans, then the queue.
_STATUS_ORDER = {"running": 0, "planning": 1, "waiting": 2}


def sort_live(live: Iterable[tuple[Tasklet, str]]) -> list[tuple[Tasklet, str]]:
    """Running first, then planning, then waiting; submission order within each (stable)."""
    return sorted(live, key=lambda item: _STATUS_ORDER.get(item[1], 3))


def running_html(live: Sequence[tuple[Tasklet, str]], max_rows: int) -> str:
    if not live:
        return '<div class="aura-running-none">No tasklet is waiting, planning or running.</div>'
    shown = live[:max_rows]
    rows = "".join(
        f'<tr class="aura-live aura-live-{esc(status)}" data-tasklet-id="{esc(t.id)}">'
        f"<td>{name_html(t.id, 16)}</td><td>{name_html(t.name)}</td><td>{esc(status)}</td>"
        f"<td>{name_html(', '.join(t.resource_tags) or '-', 60)}</td></tr>"
        for t, status in shown
    )
    more = (
        f'<tr class="aura-live-more"><td colspan="4">... and {len(live) - len(shown):,} more</td></tr>'
        if len(live) > len(shown)
        else ""
    )
    return (
        '<table class="aura-running-list"><colgroup><col style="width: 12%"><col style="width: 38%">'
        '<col style="width: 14%"><col style="width: 36%"></colgroup>'
        "<thead><tr><th>id</th><th>name</th><th>status</th><th>resources</th></tr></thead>"
        f"<tbody>{rows}{more}</tbody></table>"
    )


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    """One error in the dashboard: when, what kind (a CSS class), and the (raw) text."""

    at: float  # time.time()
    css: str
    text: str


def clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def errors_html(errors: Sequence[ErrorEntry], n_total: int) -> str:
    """The error area: newest first, each with its time and a mark; user text escaped."""
    if not errors:
        return '<div class="aura-errors-none">No errors.</div>'
    hidden = n_total - len(errors)
    items = "".join(
        f'<li class="aura-error {esc(e.css)}"><span class="aura-error-mark">⚠</span> '
        f'<time class="aura-error-time">{clock(e.at)}</time> {esc(display_text(e.text, 600))}</li>'
        for e in reversed(errors)
    )
    older = f'<div class="aura-errors-older">({hidden:,} older not shown)</div>' if hidden else ""
    noun = "error" if n_total == 1 else "errors"
    return f'<div class="aura-errors-count">{n_total:,} {noun}, newest first</div>{older}<ul>{items}</ul>'


def strip_html(
    state: str, stats: ManagerStatistics, batches: Sequence[BatchProgress], n_errors: int, retries: int = 0
) -> str:
    """The compact view: a summary line, then one line per limit (tqdm-like)."""
    head = [f"<b>{state}</b>", f"{stats.running:,} running", f"{stats.waiting:,} waiting"]
    if batches:
        total = sum(b.total for b in batches)
        head.append(f"batch {min(total, sum(b.done for b in batches)):,} / {total:,}")
    if retries:
        head.append(f'<span title="{esc(RETRIES_TIP)}">{retries:,} {"retry" if retries == 1 else "retries"}</span>')
    if n_errors:
        head.append(f'<span class="aura-badge aura-badge-errors">⚠ {n_errors:,} error{"" if n_errors == 1 else "s"}</span>')
    warning = log_warning(stats)
    if warning:
        head.append(f'<span class="aura-badge aura-badge-log">⚠ {esc(warning)}</span>')
    return f'<div class="aura-strip-head">{" · ".join(head)}</div>{gauges_html(stats)}'
