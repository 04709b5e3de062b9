"""Rate quotas: a sack whose tokens come back ``per`` seconds after they were taken.

Mental model: a resource with a rate ``Rate(10, per=1.0)`` ("10/s") has 10 tokens.
Admission takes one, like a capacity token, in the same all-or-nothing step as every
other limit (see :mod:`._limits`). It is *not* returned at release: it comes back by
itself ``per`` seconds after it was taken. So in any window of ``per`` seconds at
most 10 tasklets were admitted with that resource (a sliding window: no burst above
the quota, even across the edge of a second), whatever they did afterwards.

What a server counts is not when requests start but when they *arrive*: start plus a
latency that varies. Two options make the quota hold there too:

* ``burst`` paces the starts: ``Rate(20, per=1.0, burst=1)`` ("20/s burst 1") keeps
  the sliding window and adds a shorter one, at most ``burst`` admissions in any
  ``burst * per / limit`` seconds (here one per 50 ms). Without it, 20 tokens may be
  taken at the same instant; the client then sends those 20 requests one after the
  other over tens of milliseconds, in an order that differs from one burst to the
  next, so a window straddling two bursts can hold more than 20 arrivals although no
  window held more than 20 starts. Paced requests leave one at a time.
* ``margin`` covers the latency that still varies: a token comes back ``per + margin``
  seconds after it was taken, so a server window of ``per`` seconds holds at most
  ``limit`` arrivals as long as the latency varies by less than ``margin``.

The defaults (``burst=limit``, ``margin=0``) are the plain sliding window.

A resource may have a capacity, a rate, or both (``"api:5"`` and ``rates={"api":
"10/s"}``: at most 5 at once and at most 10 started per second). A resource with a
rate and no capacity has the capacity :data:`UNLIMITED`.

The pool wakes its waiters when a token comes back with one :class:`Timer`, armed for
the earliest expiry that a waiter needs: a call_at on asyncio, one sleeping system
task per pool on trio. Nothing polls, and no waiter has a task of its own for it.
"""

from __future__ import annotations

import asyncio
import math
import re
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._checks import shown as _shown
from ._errors import ResourceTagError

__all__ = ["UNLIMITED", "Rate", "Timer", "Window"]

#: The capacity of a resource that only has a rate (no limit on how many at once).
UNLIMITED = sys.maxsize

_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
          "h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}  # fmt: skip
_NUMBER = r"\d+(?:\.\d+)?(?:e[-+]?\d+)?"  # what str(Rate) writes reads back
_TEXT = re.compile(
    rf"\s*(\d+)\s*/\s*({_NUMBER})?\s*([a-z]+)"  # 20/s, 5/2s
    r"(?:\s*,?\s*burst\s*=?\s*(\d+))?"  # burst 1
    rf"(?:\s*,?\s*margin\s*=?\s*({_NUMBER})\s*([a-z]+))?\s*",  # margin 20ms
    re.IGNORECASE | re.ASCII,  # digits are 0-9
)
#: A token comes back this much after ``per`` (seconds): the work starts a few
#: microseconds after its token was taken, by an amount that varies, so without it
#: two starts could be a hair less than ``per`` apart. It costs 0.1% of a 1/s quota.
#: A pause of the collector or of the OS between the two can be longer: ``margin``
#: covers that as well as the latency's jitter.
GUARD = 0.001
#: A rate's window may not be longer than this (a day): a token must come back some day.
MAX_PER = 86400.0
#: The pacing window's guard, as a share of that window (at most :data:`GUARD`): 50 us
#: for 20/s at burst 1, so that it costs 0.1% of the quota there too, not 2%.
PACE_GUARD = 0.001


def _unit(word: str) -> float | None:
    word = word.lower()
    return _UNITS.get(word, _UNITS.get(word[:-1]) if word.endswith("s") else None)


def _number_text(x: float) -> str:
    """A number as text that reads back as the same float: short when that is exact."""
    short = f"{x:g}"
    return short if float(short) == x else repr(x)


def _seconds_text(seconds: float) -> str:
    if seconds < 1:
        ms = _number_text(seconds * 1000)
        if float(ms) * 0.001 == seconds:
            return f"{ms}ms"
    return f"{_number_text(seconds)}s"


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``limit`` admissions in any window of ``per`` seconds.

    Write it ``Rate(10, per=1.0)`` or as text: ``"10/s"``, ``"600/min"``, ``"5/2s"``,
    ``"100/h"``. Pass it as ``ExecutionManager(rates={"api_key_A": "10/s"})`` or
    ``em.set_rate("api_key_A", "10/s")``; tasklets take it with the tag ``"api_key_A"``.

    For a server that counts arrivals (see the module docstring):

    * ``burst`` (1 to ``limit``; default ``limit``): also at most ``burst`` admissions
      in any ``burst * per / limit`` seconds. ``burst=1`` spaces the starts evenly.
    * ``margin`` (seconds, 0 to ``per``; default 0): a token comes back ``per + margin``
      seconds after it was taken, room for the latency's jitter. It costs
      ``margin / (per + margin)`` of the quota.

    ``Rate(20, per=1.0, burst=1, margin=0.02)`` is written ``"20/s burst 1 margin 20ms"``.
    """

    limit: int
    per: float = 1.0
    burst: int | None = None  # None: ``limit`` (it always reads back as an int)
    margin: float = 0.0

    def __post_init__(self) -> None:
        limit, per, burst, margin = self.limit, self.per, self.burst, self.margin
        shown = f"Rate({_shown(limit)}, per={_shown(per)}"
        shown += (f", burst={_shown(burst)}" if burst is not None else "") + (f", margin={_shown(margin)})" if margin else ")")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ResourceTagError(f"{shown}: limit must be a positive integer")
        if isinstance(per, bool) or not isinstance(per, (int, float)) or not (0 < per <= MAX_PER):
            raise ResourceTagError(f"{shown}: per must be a number of seconds in (0, {MAX_PER:g}]")
        if burst is None:
            burst = limit
        elif isinstance(burst, bool) or not isinstance(burst, int) or not (1 <= burst <= limit):
            raise ResourceTagError(
                f"{shown}: burst must be an integer from 1 to the limit ({limit}): 1 spaces the starts evenly, "
                f"{limit} lets the whole quota start at once"
            )
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not (0 <= margin <= per):
            raise ResourceTagError(
                f"{shown}: margin must be a number of seconds from 0 to per ({per:g}), e.g. 0.02 for a latency "
                "that varies by up to 20 ms"
            )
        object.__setattr__(self, "per", float(per))
        object.__setattr__(self, "burst", burst)
        object.__setattr__(self, "margin", float(margin))

    @property
    def spacing(self) -> float | None:
        """The pacing window, ``burst * per / limit`` seconds (None: not paced, ``burst == limit``)."""
        burst = self.burst
        return None if burst == self.limit else burst * self.per / self.limit  # type: ignore[operator]

    @classmethod
    def parse(cls, value: Any, *, where: str = "rate") -> Rate:
        """A :class:`Rate` from a Rate, ``"10/s"``-style text or a ``(limit, per)`` pair."""
        if isinstance(value, Rate):
            return value
        try:
            if isinstance(value, str):
                m = _TEXT.fullmatch(value)
                unit = _unit(m.group(3)) if m else None
                margin_unit = _unit(m.group(6)) if m and m.group(6) else 1.0
                if m is None or unit is None or margin_unit is None:
                    raise ResourceTagError(
                        f"{where}: rate {_shown(value)} is not understood; write e.g. '10/s', '600/min', '5/2s', "
                        "'20/s burst 1 margin 20ms' or an.Rate(10, per=1.0)"
                    )
                burst = int(m.group(4)) if m.group(4) else None
                margin = float(m.group(5)) * margin_unit if m.group(5) else 0.0
                return cls(int(m.group(1)), float(m.group(2) or 1) * unit, burst, margin)
            if isinstance(value, tuple) and len(value) == 2:
                return cls(value[0], value[1])
        except ResourceTagError as exc:
            if where in str(exc):
                raise
            raise ResourceTagError(f"{where}: {exc}") from None
        raise ResourceTagError(
            f"{where}: rate {_shown(value)} must be text like '10/s', a (limit, per_seconds) pair or an.Rate(10, per=1.0)"
        )

    def __str__(self) -> str:
        text = f"{self.limit}/s" if self.per == 1.0 else f"{self.limit}/{_number_text(self.per)}s"
        if self.burst != self.limit:
            text += f" burst {self.burst}"
        return f"{text} margin {_seconds_text(self.margin)}" if self.margin else text


class Window:
    """The tokens of one rate still out (the times they were taken, oldest first).

    A token is out for ``per + margin`` (plus :data:`GUARD`); a paced rate checks the
    newest ``burst`` times against its pacing window too.
    """

    __slots__ = ("rate", "limit", "per", "burst", "back", "pace", "stamps", "pending")

    def __init__(self, rate: Rate) -> None:
        self.stamps: deque[float] = deque()
        self.pending = 0  # taken by admitted tasklets whose window has not started yet
        self.set(rate)

    def set(self, rate: Rate) -> None:
        """Take a new rate, live: the tokens already out keep counting.

        Out under the rate being replaced: a token that came back under it stays back
        under a longer window set later (whether anyone looked at the window between
        the two changes or not).
        """
        if self.stamps:
            self.used(time.monotonic())
        self.rate = rate
        self.limit = rate.limit
        self.per = rate.per
        self.burst: int = rate.burst  # type: ignore[assignment]
        self.back = rate.per + rate.margin + GUARD  # a token is out this long
        spacing = rate.spacing
        self.pace = 0.0 if spacing is None else spacing + min(GUARD, spacing * PACE_GUARD)  # 0: not paced

    def used(self, now: float) -> int:
        """Tokens out at ``now`` (expired ones come back first)."""
        stamps = self.stamps
        edge = now - self.back
        while stamps and stamps[0] <= edge:
            stamps.popleft()
        return len(stamps) + self.pending

    def free(self, now: float) -> int:
        """Tokens that may be taken at ``now``: what the window has left, at most what pacing allows."""
        free = self.limit - self.used(now)
        if self.pace:
            room = self.burst - self.pending
            edge = now - self.pace
            for stamp in reversed(self.stamps):
                if room <= 0 or stamp <= edge:
                    break
                room -= 1
            free = min(free, room)
        return free

    def ready_at(self, now: float, need: int) -> float:
        """The earliest time (from ``now``) at which ``need`` tokens are free, if no more are taken.

        ``math.inf`` when it takes more than time: an admitted tasklet to start (its
        token's time is not known yet), or a higher limit.
        """
        stamps = self.stamps
        self.used(now)
        when = now
        for size, out_for in ((self.limit, self.back), (self.burst, self.pace)):
            if not out_for:
                break
            keep = size - self.pending - need  # the newest stamps that may still count then
            if keep < 0:
                return math.inf
            if len(stamps) > keep:
                when = max(when, stamps[len(stamps) - keep - 1] + out_for)
        return when

    def next_in(self, now: float) -> float | None:
        """Seconds until the next token comes back (None: none is on its way back).

        When none may be taken now (quota used, or paced): seconds until one may
        (None: that waits for an admitted tasklet to start).
        """
        if self.free(now) <= 0:
            when = self.ready_at(now, 1)
            return None if when == math.inf else max(0.0, when - now)
        if not self.stamps:
            return None
        return max(0.0, self.stamps[0] + self.back - now)


class Timer:
    """One wake-up for a pool, re-armed for the earliest time it is needed.

    On asyncio it is a ``loop.call_at`` handle; on trio one system task that sleeps
    in a cancel scope whose deadline is moved. ``callback`` is called on the loop's
    thread, synchronously. Times are :func:`time.monotonic` values.
    """

    __slots__ = ("callback", "when", "_handle", "_loop", "_scope", "_deadline", "_trio_run", "_closed")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.when = math.inf
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # asyncio: the loop ``when`` was armed on
        self._deadline = math.inf  # trio: when the sleeping task should fire (trio's clock)
        self._scope: Any = None  # trio: the sleeping task's cancel scope
        self._trio_run: Any = None  # trio: the run (root task) the sleeping task belongs to
        self._closed = False

    def arm(self, when: float) -> None:
        """Make sure the callback runs at ``when`` or soon after (never later)."""
        if self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if when >= self.when:
            # Armed already, for no later: unless that was in a run that ended (a manager
            # used by two asyncio.run or trio.run calls), whose wake-up will never come.
            if loop is not None:
                if self._loop is loop:
                    return
            else:
                import trio

                if self._trio_run is trio.lowlevel.current_root_task():
                    return
            self.when = math.inf
        if loop is not None:
            if self._handle is not None:
                self._handle.cancel()
            self.when = when
            self._loop = loop
            self._handle = loop.call_at(loop.time() + (when - time.monotonic()), self._fire)
            return
        import trio

        self.when = when
        self._loop = None
        self._deadline = trio.current_time() + (when - time.monotonic())
        root = trio.lowlevel.current_root_task()
        if self._trio_run is not root:  # first use in this run: start the sleeping task
            self._trio_run = root
            self._scope = None
            trio.lowlevel.spawn_system_task(self._trio_sleeper, name="aura_nb rate timer")
        elif self._scope is not None:
            self._scope.deadline = self._deadline

    def _fire(self) -> None:
        self._handle = None
        self.when = math.inf
        if not self._closed:
            self.callback()

    async def _trio_sleeper(self) -> None:
        import trio

        root = self._trio_run
        while not self._closed and self._trio_run is root:
            with trio.CancelScope(deadline=self._deadline) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            if scope.cancelled_caught and not self._closed and trio.current_time() >= self._deadline:
                self._deadline = math.inf
                self._fire()  # it may arm again: the next scope takes the new deadline

    def close(self) -> None:
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._scope is not None:
            self._scope.cancel()
        self.when = math.inf
