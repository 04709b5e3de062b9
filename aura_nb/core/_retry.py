"""Retry policies: when a failed attempt runs again, and after how long.

Mental model: between two attempts a tasklet gives *everything* back (its global slot,
its resource tokens) and queues again, keeping its place in line (its original
position in the pool's queue), so a retrying tasklet neither blocks others while it
backs off nor loses its turn. The delay is exponential backoff with jitter, capped,
unless the failure says how long to wait: an exception with a ``retry_after`` attribute
(seconds), or an HTTP error whose ``response`` has a ``Retry-After`` header in seconds
(httpx's ``HTTPStatusError`` after ``raise_for_status()``, for a 429 or a 503).

Not retried unless asked: timeouts (``timeouts=True``), planning failures
(``planning=True``). A cancellation is never retried: it is the caller's decision.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from ._errors import TaskletError

__all__ = ["Retry", "retry_after"]

#: No delay between attempts is ever longer than this (a day), whatever a server says.
MAX_DELAY = 86400.0


def _number(value: Any, what: str, low: float, high: float, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
        raise TaskletError(f"{where}: {what} {value!r} must be a number in [{low:g}, {high:g}]")
    return float(value)


@dataclass(frozen=True, slots=True)
class Retry:
    """Retry a failed tasklet up to ``times`` more times (``times + 1`` attempts in all).

    ``on``: the exception classes that are retried (default: any ``Exception``).
    ``backoff``: the first delay in seconds; each next one is ``factor`` times longer,
    at most ``max_delay``; ``jitter`` (0..1) takes a random share of up to that much
    off each delay, so that tasklets failing together do not retry together.
    A ``retry_after`` on the failure replaces the computed delay (capped at ``max_delay``).
    ``timeouts`` / ``planning``: also retry timeouts / planning failures.

    ``Tasklet(fn, retry=3)`` is ``Tasklet(fn, retry=Retry(3))``.
    """

    times: int = 3
    on: tuple[type[BaseException], ...] = (Exception,)
    backoff: float = 0.1
    factor: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.5
    timeouts: bool = False
    planning: bool = False

    def __post_init__(self) -> None:
        where = "Retry(...)"
        if isinstance(self.times, bool) or not isinstance(self.times, int) or not 0 <= self.times <= 1000:
            raise TaskletError(f"{where}: times {self.times!r} must be an integer in [0, 1000]")
        on = self.on
        if isinstance(on, type):
            on = (on,)
        if not isinstance(on, tuple) or not on or not all(isinstance(c, type) and issubclass(c, BaseException) for c in on):
            raise TaskletError(f"{where}: on {self.on!r} must be an exception class or a tuple of them")
        object.__setattr__(self, "on", on)
        object.__setattr__(self, "backoff", _number(self.backoff, "backoff", 0, MAX_DELAY, where))
        object.__setattr__(self, "factor", _number(self.factor, "factor", 1, 100, where))
        object.__setattr__(self, "max_delay", _number(self.max_delay, "max_delay", 0, MAX_DELAY, where))
        object.__setattr__(self, "jitter", _number(self.jitter, "jitter", 0, 1, where))

    @classmethod
    def of(cls, value: Any, where: str) -> Retry | None:
        if value is None or isinstance(value, Retry):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value)
        raise TaskletError(f"{where}: retry {value!r} must be a number of retries or an.Retry(...)")

    def delay(self, attempt: int, error: BaseException) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...)."""
        asked = retry_after(error)
        if asked is not None:
            return min(asked, self.max_delay)
        base = min(self.max_delay, self.backoff * self.factor ** min(attempt - 1, 1000))
        return base * (1.0 - self.jitter * random.random())


def retry_after(error: BaseException) -> float | None:
    """The delay a failure asks for, in seconds, or None (a hostile value is ignored).

    ``error.retry_after`` (a number, or text of one), else a ``Retry-After`` header of
    ``error.response`` in seconds. Negative means now; NaN, infinity, HTTP dates and
    anything unreadable mean "not said" (the backoff applies).
    """
    value = getattr(error, "retry_after", None)
    if value is None:
        headers = getattr(getattr(error, "response", None), "headers", None)
        try:
            value = headers.get("Retry-After") if headers is not None else None
        except Exception:  # noqa: BLE001 - a hostile headers object
            value = None
    if value is None or isinstance(value, bool):
        return None
    try:
        seconds = float(value.strip() if isinstance(value, (str, bytes)) else value)
    except (TypeError, ValueError, OverflowError):
        return None
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return min(max(seconds, 0.0), MAX_DELAY)
