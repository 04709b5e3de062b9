"""Small checks every constructor and the manager share.

* ``positive_int`` and ``seconds`` validate arguments and raise errors that name the
  value, where it came from and what would be valid;
* ``calls_async`` decides once how a callable is called (awaited on the loop, or run in
  a worker thread), seeing through ``functools.partial``, bound methods and
  ``functools.wraps`` decorators with a bounded unwrap (a ``Mock`` has every attribute,
  so an unbounded ``while hasattr(fn, "func")`` never ends);
* ``describe_error`` formats an exception for the log even when its ``__str__`` raises.
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
from collections.abc import Callable
from typing import Any

from ._errors import ArgumentError

__all__ = ["calls_async", "callable_name", "describe_error", "is_awaitable", "positive_int", "seconds", "shown"]

#: How deep ``calls_async`` looks through wrappers (partials, ``__wrapped__``).
_UNWRAP_LIMIT = 20


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)``, shortened for an error message (and safe if ``repr`` raises)."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def positive_int(value: Any, *, what: str, where: str, error: type[Exception] = ArgumentError) -> int:
    """A positive integer (numpy integers too; ``bool`` is not one: ``True`` is a typo)."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < 1:
        raise error(f"{where}: {what} {shown(value)} must be a positive integer")
    return number


def seconds(value: Any, *, what: str, where: str, error: type[Exception] = ArgumentError) -> float | None:
    """None, or a finite number of seconds > 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{where}: {what} {shown(value)} must be a number of seconds > 0, or None for no limit")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite or value <= 0:
        hint = " (use None for no limit)" if not finite and value > 0 else ""
        raise error(f"{where}: {what} {shown(value, 40)} must be a finite number of seconds > 0{hint}")
    return float(value)


def one_of(value: Any, choices: tuple[str, ...], *, what: str, where: str) -> str:
    if not isinstance(value, str) or value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ArgumentError(f"{where}: {what} {shown(value)} is not one of {valid}")
    return value


def _innermost(fn: Any) -> Any:
    """``fn`` seen through partials, bound methods and ``__wrapped__``, at most 20 deep."""
    for _ in range(_UNWRAP_LIMIT):
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif inspect.ismethod(fn):
            fn = fn.__func__
        else:
            inner = inspect.getattr_static(fn, "__wrapped__", None)
            if inner is None or not callable(inner):
                return fn
            fn = inner
    return fn


def calls_async(fn: Callable[..., Any]) -> bool:
    """Whether ``fn(...)`` should be called on the event loop and its result awaited.

    True for ``async def`` functions and for anything that wraps one (a partial, a
    bound method, a ``functools.wraps`` decorator), and for instances whose class
    defines ``async def __call__``. Everything else runs in a worker thread; if it
    returns an awaitable anyway (``lambda: coro()``), the manager awaits that too.
    Never loops forever, whatever ``fn`` claims to have (a ``Mock`` has every attribute).
    """
    for candidate in (fn, _innermost(fn)):
        if inspect.iscoroutinefunction(candidate):
            return True
        if not inspect.isroutine(candidate) and not isinstance(candidate, functools.partial):
            call = inspect.getattr_static(type(candidate), "__call__", None)
            if call is not None and inspect.iscoroutinefunction(call):
                return True
    return False


def is_awaitable(value: Any) -> bool:
    """Cheap for the common results (None, plain values); true for any awaitable."""
    return value is not None and inspect.isawaitable(value)


def callable_name(fn: Any) -> str:
    """A readable name for a callable (never raises, never loops)."""
    for _ in range(_UNWRAP_LIMIT):
        if isinstance(fn, functools.partial):
            fn = fn.func
            continue
        try:
            name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
        except Exception:  # noqa: BLE001 - a hostile __getattr__
            name = None
        if isinstance(name, str) and name:
            return name
        break
    return type(fn).__name__


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(type name, message) of an exception, for the log; never raises.

    An exception whose ``__str__`` raises is still recorded: its message then says it
    could not be formatted, and why.
    """
    name = type(exc).__name__
    try:
        message = str(exc)
        if not isinstance(message, str):
            raise TypeError(f"__str__ returned {type(message).__name__}")
    except Exception as inner:  # noqa: BLE001 - the original error matters, not this one
        try:
            why = f"{type(inner).__name__}: {inner}"
        except Exception:  # noqa: BLE001
            why = type(inner).__name__
        message = f"<the message of this {name} could not be formatted: str() raised {why}>"
    return name, message
