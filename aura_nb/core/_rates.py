"""Rate quotas: a sack whose tokens come back ``per`` seconds after they were taken.

Mental model: a resource with a rate ``Rate(10, per=1.0)`` ("10/s") has 10 tokens.
Admission takes one, like a capacity token, in the same all-or-nothing step as every
other limit (see :mod:`._limits`). It is *not* returned at release: it comes back by
itself ``per`` seconds after it was taken. So in any window of ``per`` seconds at
most 10 tasklets were admitted with that resource (a sliding window: no burst above
the quota, even across the edge of a second), whatever they did afterwards.

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

from ._errors import ResourceTagError

__all__ = ["UNLIMITED", "Rate", "Timer", "Window"]

#: The capacity of a resource that only has a rate (no limit on how many at once).
UNLIMITED = sys.maxsize

_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
          "h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}  # fmt: skip
_TEXT = re.compile(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*", re.IGNORECASE)
#: A token comes back this much after ``per`` (seconds): the work starts a few
#: microseconds after its token was taken, by an amount that varies, so without it
#: two starts could be a hair less than ``per`` apart. It costs 0.1% of a 1/s quota.
GUARD = 0.001
#: A rate's window may not be longer than this (a day): a token must come back some day.
MAX_PER = 86400.0


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``limit`` admissions in any window of ``per`` seconds.

    Write it ``Rate(10, per=1.0)`` or as text: ``"10/s"``, ``"600/min"``, ``"5/2s"``,
    ``"100/h"``. Pass it as ``ExecutionManager(rates={"api_key_A": "10/s"})`` or
    ``em.set_rate("api_key_A", "10/s")``; tasklets take it with the tag ``"api_key_A"``.
    """

    limit: int
    per: float = 1.0

    def __post_init__(self) -> None:
        limit, per = self.limit, self.per
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ResourceTagError(f"Rate({limit!r}, per={per!r}): limit must be a positive integer")
        if isinstance(per, bool) or not isinstance(per, (int, float)) or not (0 < per <= MAX_PER):
            raise ResourceTagError(
                f"Rate({limit!r}, per={per!r}): per must be a number of seconds in (0, {MAX_PER:g}]"
            )
        object.__setattr__(self, "per", float(per))

    @classmethod
    def parse(cls, value: Any, *, where: str = "rate") -> Rate:
        """A :class:`Rate` from a Rate, ``"10/s"``-style text or a ``(limit, per)`` pair."""
        if isinstance(value, Rate):
            return value
        try:
            if isinstance(value, str):
                m = _TEXT.fullmatch(value)
                word = m.group(3).lower() if m else ""
                unit = _UNITS.get(word, _UNITS.get(word[:-1]) if word.endswith("s") else None)
                if m is None or unit is None:
                    raise ResourceTagError(
                        f"{where}: rate {value!r} is not understood; write e.g. '10/s', '600/min', '5/2s' or "
                        "an.Rate(10, per=1.0)"
                    )
                return cls(int(m.group(1)), float(m.group(2) or 1) * unit)
            if isinstance(value, tuple) and len(value) == 2:
                return cls(value[0], value[1])
        except ResourceTagError as exc:
            if where in str(exc):
                raise
            raise ResourceTagError(f"{where}: {exc}") from None
        raise ResourceTagError(
            f"{where}: rate {value!r} must be text like '10/s', a (limit, per_seconds) pair or an.Rate(10, per=1.0)"
        )

    def __str__(self) -> str:
        return f"{self.limit}/s" if self.per == 1.0 else f"{self.limit}/{self.per:g}s"


class Window:
    """The tokens of one rate taken in the last ``per`` seconds (their times, oldest first)."""

    __slots__ = ("limit", "per", "stamps", "pending")

    def __init__(self, rate: Rate) -> None:
        self.limit = rate.limit
        self.per = rate.per
        self.stamps: deque[float] = deque()
        self.pending = 0  # taken by admitted tasklets whose window has not started yet

    def used(self, now: float) -> int:
        """Tokens out at ``now`` (expired ones come back first)."""
        stamps = self.stamps
        edge = now - self.per - GUARD
        while stamps and stamps[0] <= edge:
            stamps.popleft()
        return len(stamps) + self.pending

    def next_in(self, now: float) -> float | None:
        """Seconds until the next token comes back (None: none is on its way back)."""
        self.used(now)
        if not self.stamps:
            return None
        return max(0.0, self.stamps[0] + self.per + GUARD - now)


class Timer:
    """One wake-up for a pool, re-armed for the earliest time it is needed.

    On asyncio it is a ``loop.call_at`` handle; on trio one system task that sleeps
    in a cancel scope whose deadline is moved. ``callback`` is called on the loop's
    thread, synchronously. Times are :func:`time.monotonic` values.
    """

    __slots__ = ("callback", "when", "_handle", "_scope", "_deadline", "_trio_run", "_closed")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.when = math.inf
        self._handle: asyncio.TimerHandle | None = None
        self._deadline = math.inf  # trio: when the sleeping task should fire (trio's clock)
        self._scope: Any = None  # trio: the sleeping task's cancel scope
        self._trio_run: Any = None  # trio: the run (root task) the sleeping task belongs to
        self._closed = False

    def arm(self, when: float) -> None:
        """Make sure the callback runs at ``when`` or soon after (never later)."""
        if when >= self.when or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            if self._handle is not None:
                self._handle.cancel()
            self.when = when
            self._handle = loop.call_at(loop.time() + (when - time.monotonic()), self._fire)
            return
        import trio

        self.when = when
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
