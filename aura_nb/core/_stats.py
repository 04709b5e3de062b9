"""Frozen snapshots of a manager's limits, for gauges and tests (never live views)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._text import display_text

__all__ = ["LimitStatistics", "ManagerStatistics", "ResourceWait", "WaitReport"]

_UNLIMITED = sys.maxsize  # the capacity of a resource with only a rate (see _rates.UNLIMITED)


@dataclass(frozen=True, slots=True)
class LimitStatistics:
    """One limit: ``in_use`` of ``capacity`` tokens held, ``waiting`` tasklets need one.

    ``held_back``: free tokens that younger tasklets may not take because the oldest
    waiting tasklet needs them (``held_for`` names it: ``"id (name)"``). They are free,
    not in use, and go to that tasklet as soon as the rest of what it needs is free.
    """

    name: str
    capacity: int
    in_use: int
    waiting: int
    held_back: int = 0
    held_for: str | None = None
    #: A rate quota, if the resource has one: at most ``rate`` admissions in any ``per``
    #: seconds; ``rate_used`` of its tokens are out (taken in the last ``per`` seconds), and the
    #: next comes back in ``next_token_in`` seconds (None: none is out). ``burst``: at
    #: most that many in any ``burst * per / rate`` seconds (equal to ``rate``: not paced);
    #: while pacing keeps the next one waiting, ``next_token_in`` counts down to it.
    #: ``margin``: a token is out for ``per + margin`` seconds (room for latency jitter).
    rate: int | None = None
    per: float | None = None
    rate_used: int = 0
    next_token_in: float | None = None
    burst: int | None = None
    margin: float = 0.0
    #: Shared limits: the other managers holding tokens of it now, as
    #: ``"host:pid label (2 tasklets)"`` (their tokens count in ``in_use``).
    held_elsewhere: tuple[str, ...] = ()

    @property
    def unlimited(self) -> bool:
        """No capacity (a resource with only a rate): ``capacity`` is ``sys.maxsize``."""
        return self.capacity >= _UNLIMITED

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.in_use)

    @property
    def load(self) -> float:
        """in_use / capacity (can exceed 1 right after a capacity was lowered), or the
        share of the rate used in the current window if that is higher."""
        load = self.in_use / self.capacity
        if self.rate is not None:
            return max(load, self.rate_used / self.rate)
        return load

    def __repr__(self) -> str:
        # held_for and held_elsewhere are user text (a tasklet's name, another manager's label).
        held = f", {self.held_back} held back for {_quoted(self.held_for, 80)}" if self.held_back else ""
        cap = "inf" if self.unlimited else self.capacity
        rate = f", rate {self.rate_used}/{self.rate} per {self.per:g}s" if self.rate is not None else ""
        if self.burst is not None and self.burst != self.rate:
            rate += f" burst {self.burst}"
        if self.margin:  # written as the rate writes it ("20/s burst 1 margin 30ms")
            rate += f" margin {self.margin * 1000:g}ms" if self.margin < 1 else f" margin {self.margin:g}s"
        others = "; ".join(_quoted(who, 80) for who in self.held_elsewhere)
        elsewhere = f", held by {others}" if self.held_elsewhere else ""
        return f"<{self.name}: {self.in_use}/{cap} in use{elsewhere}{rate}, {self.waiting} waiting{held}>"


@dataclass(frozen=True, slots=True)
class ManagerStatistics:
    """Everything a dashboard shows, taken at one instant ``t`` (manager clock)."""

    t: float
    global_limit: LimitStatistics
    resources: Mapping[str, LimitStatistics]
    waiting: int
    planning: int
    running: int
    by_status: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    #: The SQLite log's health (pending events, lag, last error), or None without a file.
    log: Any = None

    @property
    def limits(self) -> tuple[LimitStatistics, ...]:
        """The global limit first, then each resource in declaration order."""
        return (self.global_limit, *self.resources.values())

    @property
    def finished(self) -> int:
        return sum(self.by_status.values())

    @property
    def idle(self) -> bool:
        """Nothing waiting, planning or running, and every token back."""
        return not (self.waiting or self.planning or self.running) and all(lim.in_use == 0 for lim in self.limits)

    def __repr__(self) -> str:
        limits = ", ".join(f"{lim.name} {lim.in_use}/{lim.capacity}+{lim.waiting}w" for lim in self.limits)
        return (
            f"<ManagerStatistics {limits}; waiting={self.waiting} planning={self.planning} "
            f"running={self.running} finished={dict(self.by_status)}>"
        )


@dataclass(frozen=True, slots=True)
class ResourceWait:
    """One limit a waiting tasklet needs, and who holds it now."""

    name: str
    capacity: int
    in_use: int
    holders: tuple[str, ...]  # "id (name)" of the tasklets holding a token
    busy: bool  # no token free for this tasklet (full, or reserved for an older waiter)
    #: Why it is busy: "full", "held back", "quota used", "paced" (the quota has tokens,
    #: its pacing keeps the starts apart) or "quota held back" (None: free).
    reason: str | None = None
    rate: str | None = None  # the rate quota, e.g. "10/s", if the resource has one
    next_token_in: float | None = None  # seconds until a rate token comes back


@dataclass(frozen=True, slots=True)
class WaitReport:
    """Why a tasklet waits: answer to ``em.why(handle)``."""

    tasklet_id: str
    name: str
    status: str
    position: int | None  # 0 = the oldest waiter; None when not waiting
    waiting_total: int
    needs: tuple[ResourceWait, ...]
    reserved_by: str | None  # the older waiter whose reservation blocks this one, if any

    def __str__(self) -> str:
        # Every user string is quoted the same way (one line, bidi and control characters
        # escaped, long ones shortened): a name cannot forge a line of this report.
        head = f"tasklet {_quoted(self.tasklet_id, 40)} ('{_quoted(self.name, 80)}')"
        if self.status == "batched":
            return (
                f"{head} is not submitted yet: it waits in its run_many batch until the tasklets before it "
                "with the same tags were admitted."
            )
        if self.position is None and self.status == "waiting":  # admitted, or its request is on its way
            return (
                f"{head} is not in the queue: its tokens were granted (or, with shared limits, its request is on "
                "its way to the scheduler); it starts as soon as its task runs."
            )
        if self.position is None:
            return f"{head} is not waiting: it is {display_text(self.status)}."
        lines = [f"{head} waits: number {self.position + 1} of {self.waiting_total} in the queue."]
        for need in self.needs:
            name = _quoted(need.name, 60)
            # A resource with only a rate has no capacity (sys.maxsize): "inf", and its quota.
            cap = "inf" if need.capacity >= _UNLIMITED else need.capacity
            quota = f", quota {need.rate}" if need.rate is not None else ""
            if need.reason in _QUOTA_REASONS:
                when = _countdown(need.next_token_in)
                what = _QUOTA_REASONS[need.reason]
                lines.append(f"  {name}: {what} ({need.rate}), next token in {when}")
            elif need.busy:
                who = ", ".join(_quoted(h, 80) for h in need.holders[:5]) + (" ..." if len(need.holders) > 5 else "")
                lines.append(f"  {name}: {need.in_use}/{cap} in use, held by {who or 'nobody'}")
            else:
                lines.append(f"  {name}: free ({need.in_use}/{cap}{quota})")
        if self.reserved_by:
            lines.append(
                f"  the oldest waiter, {_quoted(self.reserved_by, 80)}, has first claim on the next free token of "
                "what it needs"
            )
        return "\n".join(lines)


_QUOTA_REASONS = {"quota used": "quota used", "paced": "paced", "quota held back": "last token of the quota held back"}


def _countdown(seconds: float | None) -> str:
    """``0.3 s``; hundredths below 0.1 s (a pacing interval is often shorter)."""
    if seconds is None:
        return "a moment"
    return f"{seconds:.2f} s" if seconds < 0.095 else f"{seconds:.1f} s"


def _quoted(value: object, limit: int | None = None) -> str:
    """A user string in a report: one line, bidi and control characters escaped, shortened."""
    return display_text(value, limit)
