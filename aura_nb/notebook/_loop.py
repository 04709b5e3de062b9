"""Running a coroutine to its end from plain (non-``await``) code, in or out of Jupyter.

Mental model: a Jupyter kernel already runs an asyncio event loop, and every cell runs
*inside* it. In a cell, ``await`` is the natural way to wait; but a plain function
that must block (``wb.run_sync(t)``, a helper called from sync code) cannot call
``asyncio.run`` or ``loop.run_until_complete`` there: asyncio refuses to run a loop
that is already running.

:func:`run_sync` picks the right way for where it is called:

* no loop running in this thread (a script, a test, a worker thread): ``asyncio.run``,
  on a fresh loop that is closed afterwards;
* a loop already running (a Jupyter cell): the loop is made re-entrant with
  ``nest_asyncio2`` and the coroutine runs with ``loop.run_until_complete``, *on the
  kernel's own loop*, so tasklets, the dashboard's pump and everything else that
  lives on that loop keep running meanwhile.

The cost of the second way, paid once and for good: ``nest_asyncio2.apply`` patches
asyncio globally for the rest of the process (``asyncio.run``, the event-loop policy,
and the running loop's scheduler, replaced by a pure-Python one) and makes every task
step about 1.5x slower afterwards. That is why it is applied lazily, only at the moment
a blocking call is made from inside a running loop, and never at import time. Prefer
``await wb.run(t)`` in notebooks; :func:`run_sync` is a convenience.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _as_coroutine(coro_or_fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Coroutine[Any, Any, Any]:
    target = coro_or_fn
    if not inspect.isawaitable(target):
        if not callable(target):
            raise TypeError(
                f"run_sync() takes a coroutine, an awaitable or an async function, not {type(target).__name__}"
            )
        target = target(*args, **kwargs)
        if not inspect.isawaitable(target):
            raise TypeError(
                f"run_sync(): {getattr(coro_or_fn, '__qualname__', coro_or_fn)!r} returned "
                f"{type(target).__name__}, not an awaitable; pass an async function or a coroutine"
            )
    elif args or kwargs:
        raise TypeError("run_sync(): arguments are only accepted with a function, not with a coroutine")
    if inspect.iscoroutine(target):
        return target
    return _await(target)


def _make_reentrant(loop: asyncio.AbstractEventLoop) -> None:
    """Apply ``nest_asyncio2`` to asyncio and to *loop* (idempotent; see the module docstring)."""
    import nest_asyncio2

    # apply() patches asyncio itself once, and each loop it is given once.
    nest_asyncio2.apply(loop)


def run_sync(coro_or_fn: Awaitable[T] | Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run a coroutine (or call an async function with ``*args, **kwargs``) to its end.

    Returns its result or raises its exception. Without a running event loop in this
    thread it uses ``asyncio.run``. Inside a running loop (a Jupyter cell) it first
    applies ``nest_asyncio2`` -- a global, permanent patch that makes every asyncio task
    about 1.5x slower afterwards (see the module docstring) -- and then runs the
    coroutine on that same loop with ``loop.run_until_complete``. In an ``async``
    function, ``await`` the coroutine instead.
    """
    coro = _as_coroutine(coro_or_fn, args, kwargs)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    try:
        _make_reentrant(loop)
    except BaseException:
        coro.close()  # never awaited: close it so Python does not warn about it
        raise
    return loop.run_until_complete(coro)
