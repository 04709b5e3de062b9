"""Atomic, fair admission over a global limit and named resources.

Mental model: every limit is a sack of tokens (its capacity). A tasklet needs one token
from the global sack and one from the sack of every resource it tags, and it takes them
**all at once or not at all**: it never holds some tokens while it waits for others.
That is what makes deadlock impossible whatever order the tags are written in, and what
keeps a tasklet waiting for a busy ``gpu`` from sitting on a global slot that an
untagged tasklet could use.

Fairness policy (documented in the README too): waiters are kept in arrival order.
Whenever tokens come back, waiters are considered oldest first and each one that fits
is admitted. The *oldest waiter that does not fit* reserves one token of every limit it
needs: younger waiters may only use what is left beyond that reservation. So

* younger tasklets may overtake an older one only with tokens it does not need
  (an untagged tasklet can run while a ``gpu`` tasklet waits for the GPU), and
* the oldest waiter's tokens only accumulate, so it is admitted as soon as the holders
  of what it needs release them: no tasklet starves behind a stream of others.

At most one global token (and one of each of its resources) is idle at a time because
of the reservation. Waiters with the same set of resources form a queue of their own,
so admission costs O(number of distinct resource sets), not O(number of waiters).
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import Mapping
from typing import Any

import anyio

from ._errors import ManagerClosedError

__all__ = ["GLOBAL", "ResourcePool"]

#: Internal key of the global limit; no user resource can be named "" (see _tags).
GLOBAL = ""


class _Waiter:
    __slots__ = ("seq", "queue", "owner", "admitted", "closed", "future", "event")

    def __init__(self, seq: int, queue: _Queue, owner: Any) -> None:
        self.seq = seq
        self.queue = queue
        self.owner = owner
        self.admitted = False
        self.closed = False
        self.future: asyncio.Future[None] | None = None
        self.event: anyio.Event | None = None

    def wake(self) -> None:
        if self.future is not None:
            if not self.future.done():
                self.future.set_result(None)
        elif self.event is not None:
            self.event.set()


class _Queue:
    """The waiters that need exactly the same limits, in arrival order."""

    __slots__ = ("keys", "waiters")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.waiters: deque[_Waiter] = deque()


class ResourcePool:
    """The limits of one manager and the tasklets waiting for them.

    Keys are resource names, with :data:`GLOBAL` for the global limit; every request
    includes :data:`GLOBAL`. Not thread-safe: it lives on one event loop.
    """

    def __init__(self, max_concurrency: int) -> None:
        self.capacity: dict[str, int] = {GLOBAL: max_concurrency}
        self.in_use: dict[str, int] = {GLOBAL: 0}
        self.waiting: dict[str, int] = {GLOBAL: 0}
        self._queues: dict[tuple[str, ...], _Queue] = {}
        self._n_waiting = 0
        self._seq = 0
        self._closed = False

    # -- declaring ---------------------------------------------------------------
    def declare(self, name: str, capacity: int) -> None:
        """Add a resource or change its capacity (waking waiters when it grows)."""
        grew = capacity > self.capacity.get(name, 0)
        self.capacity[name] = capacity
        self.in_use.setdefault(name, 0)
        self.waiting.setdefault(name, 0)
        if grew and self._n_waiting:
            self._dispatch()

    # -- acquiring ---------------------------------------------------------------
    def try_acquire(self, keys: tuple[str, ...], owner: Any) -> _Waiter | None:
        """Take the tokens now (returns None) or join the queue (returns the waiter).

        Synchronous, so that a tasklet's place in the queue is fixed when it is
        submitted, not when its task first runs. Pass the waiter to :meth:`wait`.
        """
        in_use = self.in_use
        if not self._n_waiting:
            capacity = self.capacity
            for key in keys:
                if in_use[key] >= capacity[key]:
                    break
            else:
                for key in keys:
                    in_use[key] += 1
                return None
        waiter = self._enqueue(keys, owner)
        if in_use[GLOBAL] < self.capacity[GLOBAL]:
            self._dispatch()
        return waiter

    async def wait(self, waiter: _Waiter) -> None:
        """Wait until ``waiter`` is admitted; on cancellation leave nothing behind."""
        try:
            if not waiter.admitted and not waiter.closed:
                try:
                    loop_task = asyncio.current_task()
                except RuntimeError:  # not on asyncio (trio)
                    loop_task = None
                if loop_task is not None:
                    waiter.future = loop_task.get_loop().create_future()
                    await waiter.future
                else:
                    waiter.event = anyio.Event()
                    await waiter.event.wait()
        except BaseException:
            if waiter.admitted:
                # Admitted, then cancelled before it could resume: give the tokens back.
                self.release(waiter.queue.keys)
            elif not waiter.closed:
                self._remove(waiter)
            raise
        if waiter.closed:
            raise ManagerClosedError("the manager was closed while this tasklet waited for resources")

    def cancel_waiter(self, waiter: _Waiter) -> None:
        """Forget a waiter whose task will never wait (e.g. it was cancelled first)."""
        if waiter.admitted:
            self.release(waiter.queue.keys)
        elif not waiter.closed:
            self._remove(waiter)
        waiter.closed = True

    def _enqueue(self, keys: tuple[str, ...], owner: Any) -> _Waiter:
        queue = self._queues.get(keys)
        if queue is None:
            queue = self._queues[keys] = _Queue(keys)
        self._seq += 1
        waiter = _Waiter(self._seq, queue, owner)
        queue.waiters.append(waiter)
        self._n_waiting += 1
        waiting = self.waiting
        for key in keys:
            waiting[key] += 1
        return waiter

    def _unlink(self, waiter: _Waiter) -> None:
        queue = waiter.queue
        self._n_waiting -= 1
        waiting = self.waiting
        for key in queue.keys:
            waiting[key] -= 1
        if not queue.waiters:
            del self._queues[queue.keys]

    def _remove(self, waiter: _Waiter) -> None:
        waiter.queue.waiters.remove(waiter)
        self._unlink(waiter)
        # It may have been the oldest waiter holding a reservation: others may fit now.
        self._dispatch()

    def release(self, keys: tuple[str, ...]) -> None:
        in_use = self.in_use
        for key in keys:
            in_use[key] -= 1
        if self._n_waiting:
            self._dispatch()

    def _dispatch(self) -> None:
        """Admit every waiter that fits, oldest first, honouring the oldest blocked one."""
        capacity, in_use = self.capacity, self.in_use
        heap = [(q.waiters[0].seq, q) for q in self._queues.values()]
        heapq.heapify(heap)
        reserved: Mapping[str, int] = {}
        while heap:
            if in_use[GLOBAL] + reserved.get(GLOBAL, 0) >= capacity[GLOBAL]:
                return  # every waiter needs a global token
            _, queue = heapq.heappop(heap)
            keys = queue.keys
            if reserved:
                fits = all(in_use[k] + reserved.get(k, 0) < capacity[k] for k in keys)
            else:
                fits = all(in_use[k] < capacity[k] for k in keys)
            if fits:
                waiter = queue.waiters.popleft()
                for key in keys:
                    in_use[key] += 1
                waiter.admitted = True
                self._unlink(waiter)
                waiter.wake()
                if queue.waiters:
                    heapq.heappush(heap, (queue.waiters[0].seq, queue))
            elif not reserved:
                reserved = dict.fromkeys(keys, 1)
            # else: this queue's head does not fit; the whole queue waits.

    # -- closing -----------------------------------------------------------------
    def close(self) -> int:
        """Refuse new waiters' hopes: wake every waiter with ManagerClosedError."""
        self._closed = True
        woken = 0
        for queue in list(self._queues.values()):
            while queue.waiters:
                waiter = queue.waiters.popleft()
                waiter.closed = True
                self._unlink(waiter)
                waiter.wake()
                woken += 1
        return woken

    # -- introspection -------------------------------------------------------------
    def waiters_in_order(self) -> list[tuple[Any, tuple[str, ...]]]:
        """(owner, keys) of every waiter, oldest first."""
        items = [(w.seq, w.owner, q.keys) for q in self._queues.values() for w in q.waiters]
        items.sort(key=lambda item: item[0])
        return [(owner, keys) for _, owner, keys in items]

    @property
    def n_waiting(self) -> int:
        return self._n_waiting
