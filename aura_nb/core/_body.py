"""Calling a task body: async on the loop, sync in a worker thread, or on an executor.

Three rules hold whatever the body is:

* **An awaitable is awaited.** An ``async def`` (also behind a partial or a
  ``functools.wraps`` decorator) is called on the loop and awaited; a sync callable
  runs in a worker thread, and if it returns an awaitable anyway (``lambda: coro()``)
  that is awaited on the loop. A coroutine object is never anybody's result.
* **A thread is never abandoned while it holds the tasklet's tokens.** A sync body that
  started runs to its end; the tasklet keeps its tokens until then. A sync body that
  has *not* started yet (every worker thread is busy) is dropped at once on
  cancellation and never runs afterwards.
* **The timeout counts from the body's start.** On asyncio the timer is armed only once
  the body first suspends (one that returns without suspending could not have been
  interrupted anyway, and a timer costs more than a no-op task); on trio an anyio
  cancel scope is entered before the body (trio's scopes must nest with the body's own).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ._checks import is_awaitable
from ._errors import TaskletTimeoutError

if TYPE_CHECKING:  # pragma: no cover
    from ._manager import _Run

__all__ = ["in_thread", "timeout_error"]

_now = time.monotonic


async def call_async_timed(run: _Run, fn: Callable[..., Any], params: Any, t_run: float, native: bool) -> Any:
    """An async body under the tasklet's timeout (``run.tasklet.timeout`` is set)."""
    limit = run.tasklet.timeout
    assert limit is not None
    if not native:  # trio: an anyio cancel scope bounds the body
        with anyio.move_on_after(limit) as scope:
            result = await awaited(fn(**params))
        if scope.cancelled_caught:
            run.timed_out = "run"
            raise timeout_error(run, "run", limit)
        return result
    coro = fn(**params)
    if type(coro) is not CoroutineType:  # another kind of awaitable, or a plain value
        if not is_awaitable(coro):
            return coro
        coro = awaited(coro)
    return await rest_timed(run, coro, t_run)


def rest_timed(run: _Run, coro: Any, t_run: float) -> Any:
    """On asyncio: run a body's coroutine to its first suspension, then the rest under its timeout.

    Returns an awaitable (the manager's hot path awaits it without another frame when
    the body never suspends: a done future-like value).
    """
    try:
        first = coro.send(None)
    except StopIteration as done:
        return _Done(done.value)
    return _rest_under_timeout(run, coro, first, t_run)


class _Done:
    """An awaitable that is already done: ``await _Done(v)`` is ``v`` without a coroutine."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Any:
        return self.value
        yield  # pragma: no cover - makes this a generator that never suspends


async def _rest_under_timeout(run: _Run, coro: Any, first: Any, t_run: float) -> Any:
    limit = run.tasklet.timeout
    assert limit is not None
    # asyncio.timeout (not an anyio scope): it does not care how it nests with scopes
    # the body entered before suspending, and costs half as much.
    cm = asyncio.timeout(max(limit - (_now() - t_run), 0.0))
    try:
        async with cm:
            return await _Resume(coro, first)
    except TimeoutError:
        if cm.expired():
            run.timed_out = "run"
            raise timeout_error(run, "run", limit) from None
        raise


async def awaited(value: Any) -> Any:
    """``await value`` if it is awaitable, else ``value`` (a wrapper returned a plain value)."""
    if is_awaitable(value):
        return await value
    return value


async def call_sync(run: _Run, fn: Callable[..., Any], params: Any) -> Any:
    """A sync body in a worker thread, under the tasklet's timeout; awaits what it returns."""
    limit = run.tasklet.timeout
    call = (lambda: fn(**params)) if params else fn
    if limit is None:
        result = await in_thread(call)
        return await awaited(result) if is_awaitable(result) else result
    # A thread cannot be interrupted: the tasklet keeps its tokens until the thread
    # returns. Whether it ran over is measured in the thread itself, so a busy event
    # loop noticing the deadline late does not invent a timeout.
    outcome: list[Any] = []

    def timed() -> None:
        t0 = _now()
        value = call()
        outcome.extend((value, _now() - t0))

    t_start = _now()
    with anyio.move_on_after(limit):
        await in_thread(timed, started=run)
    if not outcome or outcome[1] > limit:
        run.timed_out = "run"
        raise timeout_error(run, "run", limit)
    result = outcome[0]
    if is_awaitable(result):
        with anyio.move_on_after(max(limit - (_now() - t_start), 0.0)) as scope:
            result = await result
        if scope.cancelled_caught:
            run.timed_out = "run"
            raise timeout_error(run, "run", limit)
    return result


async def call_executor(run: _Run, executor: Any, call: Any) -> Any:
    """The body on an executor, under the tasklet's timeout."""
    limit = run.tasklet.timeout
    if limit is None:
        return await executor.run(call)
    with anyio.move_on_after(limit):
        return await executor.run(call)
    run.timed_out = "run"
    raise timeout_error(run, "run", limit)


def timeout_error(run: _Run, phase: str, limit: float) -> TaskletTimeoutError:
    tasklet = run.tasklet
    if phase != "run":
        what, extra = "planning its state", ""
    elif run.worker is not None or getattr(run, "body_started", None) is None:
        # On an executor (or anything else that does not say): do not guess whether
        # the body started or how far it got.
        what, extra = "its task", ""
    elif not run.body_started:  # set by in_thread
        what, extra = "its task", " (it never started: no worker thread was free; it will not run)"
    elif not run.is_async:
        what, extra = "its task", " (a sync task cannot be interrupted: it ran to its end)"
    else:
        what, extra = "its task", ""
    return TaskletTimeoutError(
        f"tasklet {tasklet.id} ({tasklet.name!r}): {what} took longer than its {phase} limit of {limit:g} s{extra}",
        phase=phase,
        limit=limit,
        tasklet_id=tasklet.id,
    )


class _Resume:
    """Await the rest of a coroutine that already ran up to its first suspension.

    ``first`` is what the coroutine yielded there (a future, or a trio trap); this
    hands it to the event loop and relays every later send, throw and close, as
    ``await coro`` would have from the start.
    """

    __slots__ = ("coro", "first")

    def __init__(self, coro: Any, first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Any:
        coro = self.coro
        value = self.first
        self.first = None
        while True:
            error: BaseException | None = None
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation, a timeout: the body handles it
                error = exc
            # Thrown outside the except block, so that inside the body a handled
            # exception does not look still active (sys.exc_info, implicit __context__).
            try:
                if error is None:
                    value = coro.send(sent)
                else:
                    value = coro.throw(error)
                    error = None
            except StopIteration as done:
                return done.value


class _Gate:
    """Decides, under a lock, whether a queued thread call runs or was dropped."""

    __slots__ = ("lock", "state", "owner")

    def __init__(self, owner: Any) -> None:
        self.lock = threading.Lock()
        self.state = "queued"  # -> "running" (in the thread) or "dropped" (cancelled first)
        self.owner = owner

    def enter(self) -> bool:
        with self.lock:
            if self.state == "dropped":
                return False
            self.state = "running"
        if self.owner is not None:
            self.owner.body_started = True
        return True

    def drop(self) -> bool:
        """True if the call had not started: it never will."""
        with self.lock:
            if self.state == "queued":
                self.state = "dropped"
                return True
            return False


async def in_thread(call: Callable[[], Any], *, started: Any = None) -> Any:
    """Run a sync callable in a worker thread; never return before it has, once it started.

    A cancellation that arrives while the call still waits for a free worker thread
    drops it: it never runs, and the cancellation propagates at once. Once it runs,
    cancellation (anyio's, trio's, or asyncio's own ``task.cancel()``) is held until the
    thread returns, then re-raised, so the tasklet's tokens are never released while
    its thread still uses them. ``started``: an object whose ``body_started`` is set.
    """
    gate = _Gate(started)
    if started is not None:
        started.body_started = False
    result: list[Any] = []

    def gated() -> None:
        if gate.enter():
            result.append(call())

    try:
        running_asyncio = asyncio.current_task() is not None
    except RuntimeError:
        running_asyncio = False
    if not running_asyncio:
        try:
            await anyio.to_thread.run_sync(gated)
        except BaseException:
            gate.drop()
            raise
        return result[0] if result else None
    task = asyncio.ensure_future(anyio.to_thread.run_sync(gated))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if gate.drop():
            task.cancel()  # leaves the thread limiter's queue; the call will not run
            raise
        with anyio.CancelScope(shield=True):
            while not task.done():
                try:
                    await asyncio.wait([task])
                except asyncio.CancelledError:
                    continue  # yet another native cancel: the thread still runs
        raise
    return result[0] if result else None
