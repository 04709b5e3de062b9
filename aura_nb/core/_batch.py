"""``run_many``: a batch fed to the manager by a few workers, with no task per tasklet.

The batch's tasklets are grouped by tag set (in batch order). A heap holds the next
tasklet of every group that may be fed, by batch position. A worker takes the first,
admits it (``tasklet_submitted``) and tries to take its tokens: if it got them, the
next of its group may be fed at once; if it must wait, it waits *in the pool's queue*
(inline, in this worker) and its group waits behind it (they would queue behind it
anyway) until it is admitted. The worker then runs the tasklet's whole life inline.

One helper worker is always ready while tasklets remain unfed: it runs as soon as
every other worker is suspended (in a tasklet, or waiting in the pool), so slots freed
by anyone never sit idle. Workers stay bounded: each runs an admitted tasklet or holds
its group's place in the pool's queue.

With shared limits a request is answered a round trip later: while the pool says a
waiter is ``ahead`` (sent, not known to wait; at most ``max_concurrency`` of them), the
next of its group is fed at once, so the requests of a batch share the messages.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from ._tasklet import Tasklet, cancelled_error

if TYPE_CHECKING:  # pragma: no cover
    from ._manager import ExecutionManager, _Run

__all__ = ["Batch"]

#: A worker running tasklets that never suspend yields to the loop this often (s).
_SLICE = 0.002
_TERMINAL = frozenset(("succeeded", "failed", "timeout", "cancelled", "planning_failed"))
_now = time.monotonic


class Batch:
    """One ``run_many`` call: its tasklets, their results and the workers feeding them."""

    def __init__(self, em: ExecutionManager, batch: list[Tasklet], groups: dict[tuple[str, ...], deque[int]]) -> None:
        self.em = em
        self.tasklets = batch
        self.groups = groups
        self.results: list[Any] = [None] * len(batch)
        self.fed = bytearray(len(batch))  # 1 once a tasklet was handed to the manager
        self.failed: list[int] = []
        self.fatal: list[BaseException] = []
        # The next tasklet of every group that may be fed, by batch position. A group
        # whose fed tasklet waits in the pool is out of the heap until it is admitted.
        self.heads = [(queue[0], tags) for tags, queue in groups.items()]
        heapq.heapify(self.heads)
        self.unstarted = 0  # workers spawned that have not picked a tasklet yet
        self.stopping = False  # the batch is being cancelled
        self.tg: Any = None
        self.on_result: Any = None  # called with a position when that tasklet's outcome is known

    async def run(self) -> list[Any]:
        if self.tasklets:
            async with anyio.create_task_group() as self.tg:  # helpers, spawned as needed
                self.unstarted = 1
                await self.worker()  # the first worker is the caller's own task
            if self.fatal:
                raise self.fatal[0]
        return self.results

    def pending(self, tasklet_id: str) -> int | None:
        """The batch position of a tasklet not fed yet (for ``why()``), or None."""
        for i, tasklet in enumerate(self.tasklets):
            if tasklet.id == tasklet_id and not self.fed[i]:
                return i
        return None

    # -- feeding ---------------------------------------------------------------------
    def next_of(self, tags: tuple[str, ...]) -> None:
        queue = self.groups[tags]
        if queue:
            heapq.heappush(self.heads, (queue[0], tags))

    def more_workers(self) -> None:
        if self.heads and not self.unstarted and not self.stopping:
            self.unstarted += 1
            self.tg.start_soon(self.worker)

    def admitted(self, tags: tuple[str, ...], run: _Run) -> None:
        run.on_admit = None
        self.next_of(tags)
        self.more_workers()

    def feed(self) -> tuple[int, _Run | None]:
        """Hand the next tasklet to the manager: (its position, its run or None if refused)."""
        heads = self.heads
        i, tags = heads[0]
        queue = self.groups[tags]
        queue.popleft()
        self.fed[i] = 1
        em = self.em
        try:
            run = em._admit(self.tasklets[i])
        except Exception as exc:  # e.g. the manager was closed meanwhile
            heapq.heappop(heads)
            self.next_of(tags)
            self.results[i] = exc
            self.failed.append(i)
            if self.on_result is not None:
                self.on_result(i)
            return i, None
        waiter = run.waiter = em._pool.try_acquire(run.keys, run)
        if waiter is None or waiter.admitted or waiter.ahead:  # ahead: shared limits' request on its way
            if queue:  # the next of its group may be fed at once
                heapq.heapreplace(heads, (queue[0], tags))
            else:
                heapq.heappop(heads)
        else:
            # It waits in the pool's queue (in this worker); its group waits behind it.
            heapq.heappop(heads)
            run.on_admit = lambda: self.admitted(tags, run)
        return i, run

    async def worker(self) -> None:
        self.unstarted -= 1
        if anyio.current_effective_deadline() == -math.inf:
            self.stopping = True  # a helper started after the batch was cancelled
            return
        cancelled_cls = anyio.get_cancelled_exc_class()
        # Locals, not attribute loads: this loop runs once per tasklet (benchmark rows "1. Throughput").
        heads, results, feed, submit, on_result = self.heads, self.results, self.feed, self.em.submit, self.on_result
        since = _now()
        while heads and not self.stopping:
            i, run = feed()
            if run is None:
                continue
            if not self.unstarted and heads:
                self.more_workers()
            try:
                results[i] = await submit(run)  # type: ignore[arg-type]
            except Exception as exc:
                results[i] = exc
                self.failed.append(i)
            except BaseException as exc:
                if isinstance(exc, cancelled_cls) and not cancel_requested():
                    # A body raised a stray cancellation (it awaited a future someone
                    # cancelled): that tasklet's outcome, not the batch's.
                    self.results[i] = cancelled_error(self.tasklets[i])
                    self.failed.append(i)
                elif isinstance(exc, cancelled_cls):
                    self.stopping = True  # feed no more, even to a worker whose tasklets never suspend
                    raise
                else:  # KeyboardInterrupt, SystemExit...: stop, re-raised as it is
                    self.stopping = True
                    self.fatal.append(exc)
                    self.tg.cancel_scope.cancel()
                    return
            finally:
                if run.on_admit is not None:  # it ended without being admitted
                    run.on_admit()
                if on_result is not None and run.status in _TERMINAL:
                    on_result(i)
            if _now() - since > _SLICE:
                # Tasklets that never suspend would otherwise starve the loop.
                try:
                    await anyio.lowlevel.checkpoint()
                except BaseException:
                    self.stopping = True
                    raise
                since = _now()

    def outcome(self, return_exceptions: bool) -> list[Any]:
        failed = self.failed
        if failed and not return_exceptions:
            n = len(self.tasklets)
            first = min(failed)
            exc = self.results[first]
            add_note(
                exc,
                f"run_many: the tasklet at position {first} of the batch of {n} failed"
                + (f", and {len(failed) - 1} more" if len(failed) > 1 else "")
                + "; every tasklet ran to its end. run_many(..., return_exceptions=True) returns every outcome.",
            )
            raise exc
        return self.results


def add_note(exc: BaseException, note: str) -> None:
    """Add a note if the exception takes one: a task's own exception reaches the caller unchanged."""
    try:
        exc.add_note(note)
    except Exception:  # noqa: BLE001 - e.g. its __notes__ is not a list
        pass


def cancel_requested() -> bool:
    """Is the current task being cancelled (not just seeing a stray CancelledError)?"""
    if anyio.current_effective_deadline() == -math.inf:  # an anyio/trio scope
        return True
    import asyncio

    try:
        task = asyncio.current_task()
    except RuntimeError:  # trio: cancellation only comes from scopes
        return False
    return task is not None and task.cancelling() > 0  # a native task.cancel()


class Outcome:
    """One tasklet of :meth:`ExecutionManager.as_completed`, as it finished.

    ``index``: its position in the batch; ``tasklet`` and ``id``; ``result`` or
    ``error`` (``ok`` says which). ``unwrap()`` returns the result or raises the error.
    """

    __slots__ = ("index", "tasklet", "result", "error")

    def __init__(self, index: int, tasklet: Tasklet, result: Any, error: BaseException | None) -> None:
        self.index, self.tasklet, self.result, self.error = index, tasklet, result, error

    @property
    def id(self) -> str:
        return self.tasklet.id

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result

    def __repr__(self) -> str:
        what = f"result={self.result!r}" if self.error is None else f"error={type(self.error).__name__}"
        return f"<Outcome #{self.index} {self.tasklet.id} {what}>"


class _Feed:
    """The running side of a :class:`Completion`: the batch, its task and the send stream.

    Kept apart so that nothing it references points back to the iterator a user holds:
    dropping that iterator (``break``) lets it be finalized, which cancels this.
    """

    def __init__(self, em: ExecutionManager, batch: Batch, send: Any) -> None:
        self.em, self.batch, self.send = em, batch, send
        self.scope: anyio.CancelScope | None = None
        self.done = anyio.Event()
        batch.on_result = self.finished

    def finished(self, i: int) -> None:
        failed = self.batch.failed
        self.send.send_nowait((i, bool(failed) and failed[-1] == i))  # failures are appended just before

    async def run(self) -> None:
        batch = self.batch
        try:
            with anyio.CancelScope() as self.scope:
                self.em._batches.append(batch)
                try:
                    await batch.run()
                finally:
                    self.em._batches.remove(batch)
        finally:
            self.send.close()
            self.done.set()

    def cancel(self) -> None:
        self.batch.stopping = True
        if self.scope is not None:
            self.scope.cancel()


class Completion:
    """``em.as_completed(tasklets)``: an async iterator of :class:`Outcome` as they finish.

    The batch runs like ``run_many`` (a few workers, no task per tasklet) in one task
    of its own, started at the first ``__anext__``. Leaving early (``break``, an
    exception, ``aclose()``, or leaving ``async with``) cancels what is left: running
    tasklets end ``cancelled`` (tokens back, events recorded), unfed ones never start.
    """

    def __init__(self, em: ExecutionManager, batch: Batch, spawn: Any) -> None:
        send, self._receive = anyio.create_memory_object_stream[tuple[int, bool]](math.inf)
        self._feed = _Feed(em, batch, send)
        self._spawn = spawn
        self._started = False

    def __aiter__(self) -> Completion:
        return self

    async def __anext__(self) -> Outcome:
        feed = self._feed
        if not self._started:
            self._started = True
            self._spawn(feed.run)
        try:
            i, failed = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if feed.batch.fatal:
                raise feed.batch.fatal[0] from None
            raise StopAsyncIteration from None
        batch = feed.batch
        value = batch.results[i]
        return Outcome(i, batch.tasklets[i], None if failed else value, value if failed else None)

    async def aclose(self) -> None:
        """Cancel what is left and wait until it has ended (tokens back, events recorded)."""
        feed = self._feed
        feed.cancel()
        if self._started:
            with anyio.CancelScope(shield=True):
                await feed.done.wait()
        else:
            self._started = True  # never ran: nothing was submitted
            feed.send.close()
        self._receive.close()

    async def __aenter__(self) -> Completion:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # `break` out of `async for` drops the iterator: cancel the rest (its task ends it).
        try:
            if self._started and not self._feed.done.is_set():
                self._feed.cancel()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass
