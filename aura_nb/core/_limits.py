"""Atomic, fair admission over a global limit and named resources.

Mental model: every limit is a sack of tokens (its capacity). A tasklet needs one token
from the global sack and one from the sack of every resource it tags, and it takes them
**all at once or not at all**: it never holds some tokens while it waits for others.
That is what makes deadlock impossible whatever order the tags are written in, and what
keeps a tasklet waiting for a busy ``gpu`` from sitting on a global slot that an
untagged tasklet could use.

The rule (``admission="fifo"``, the default; the README says the same):

* Waiters are kept in arrival order. Whenever tokens come back, the **oldest waiter**
  is considered first and admitted if everything it needs is free.
* If it does not fit, it **holds back one token of every resource it tags** (not the
  global one): a younger waiter may take a token of such a resource only if one is
  still left for the oldest afterwards. Younger waiters that fit otherwise are admitted,
  oldest first.
* The global token is never held back. It does not need to be: every holder of a
  resource also holds a global token, so the release that frees the last resource the
  oldest waiter lacks frees a global token too, in the same step, and the oldest is
  considered first. When the global token is the one thing it lacks, the next global
  token that comes back is its, for the same reason. So no global slot sits idle while
  a tasklet waits for a busy resource.

Why nothing starves: the oldest waiter's resource tokens only accumulate (nobody younger
may take the last one), so it is admitted as soon as the current holders of what it
lacks release it, which they do in finite time; then the next oldest inherits the same
guarantee. The property tests (``tests/test_admission_properties.py``) check these
invariants on random operation sequences.

``admission="bottleneck"`` adds one preference on top: when a global token is free, a
waiter that needs the *scarcest* resource that has a free token (the most waiters per
unit of capacity) is admitted before older waiters, so a single GPU does not idle while
untagged work queues ahead of the GPU tasklets. Overtaking is bounded: while one tasklet
is the oldest waiter, at most ``max_concurrency`` others may pass it this way; then the
FIFO rule holds until it is admitted.

Rates (``set_rate``; :mod:`._rates`) are one more kind of token under the same rule: a
resource with a rate also needs a rate token, taken in the same all-or-nothing step, held
back for the oldest waiter like a capacity token, and given back by the clock ``per``
seconds after it was taken instead of at release (a paced rate, ``burst`` below its
limit, also keeps its admissions apart: :class:`~._rates.Window` counts both windows as
the tokens that are free). A queue blocked by a rate is parked on that resource; the
pool's one :class:`~._rates.Timer`, armed for the time the window next frees a token a
waiter needs, unparks it. Without a declared rate this costs one test of an empty dict.

Cost: waiters with the same set of resources share one queue; the heads of the queues
sit in a heap by age, and a queue whose head is blocked by a full (or held-back)
resource is *parked* on that resource until one of its tokens comes back. A release
therefore looks only at the queues that could use what it returned, not at every
distinct set of tags that waits.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import anyio

from ._errors import ManagerClosedError
from ._rates import UNLIMITED, Rate, Timer, Window

__all__ = ["ADMISSION_POLICIES", "GLOBAL", "ResourcePool"]

#: Internal key of the global limit; no user resource can be named "" (see _tags).
GLOBAL = ""
#: The admission policies a manager accepts (``ExecutionManager(admission=...)``).
ADMISSION_POLICIES = ("fifo", "bottleneck")


class _Waiter:
    __slots__ = ("seq", "queue", "owner", "admitted", "closed", "future", "event", "passed", "windows")
    #: Not known to wait yet, so run_many may feed the next of its group meanwhile: only
    #: shared limits' requests, on their way to the scheduler; a local waiter does wait.
    ahead = False

    def __init__(self, seq: int, queue: _Queue, owner: Any) -> None:
        self.seq = seq
        self.queue = queue
        self.owner = owner
        self.admitted = False
        self.closed = False
        self.future: asyncio.Future[None] | None = None
        self.event: anyio.Event | None = None
        self.passed = 0  # how often the bottleneck rule let a younger waiter pass it
        self.windows: list[Window] | None = None  # rate tokens taken, until its task resumes

    def wake(self) -> None:
        if self.future is not None:
            if not self.future.done():
                self.future.set_result(None)
        elif self.event is not None:
            self.event.set()


class _Queue:
    """The waiters that need exactly the same limits, in arrival order."""

    __slots__ = ("keys", "waiters", "parked_on")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.waiters: deque[_Waiter] = deque()
        self.parked_on: str | None = None  # the resource whose tokens it waits for

    def __lt__(self, other: _Queue) -> bool:  # heap ties never happen (seqs differ)
        return id(self) < id(other)


class ResourcePool:
    """The limits of one manager and the tasklets waiting for them.

    Keys are resource names, with :data:`GLOBAL` for the global limit; every request
    includes :data:`GLOBAL`. Not thread-safe: it lives on one event loop.
    """

    def __init__(self, max_concurrency: int, *, admission: str = "fifo") -> None:
        self.capacity: dict[str, int] = {GLOBAL: max_concurrency}
        self.in_use: dict[str, int] = {GLOBAL: 0}
        self.waiting: dict[str, int] = {GLOBAL: 0}
        self.bottleneck = admission == "bottleneck"
        self._queues: dict[tuple[str, ...], _Queue] = {}
        self._heads: list[tuple[int, _Queue]] = []  # every queue's head, by age (lazy)
        self._ready: list[tuple[int, _Queue]] = []  # heads of queues not parked (lazy)
        self._parked: dict[str, list[_Queue]] = {}
        self._oldest: _Waiter | None = None  # the oldest waiter, once it did not fit
        self._n_waiting = 0
        self._seq = 0
        self._closed = False
        self._rates: dict[str, Window] = {}  # resources with a rate quota (usually none)
        self._timer: Timer | None = None

    # -- declaring ---------------------------------------------------------------
    def declare(self, name: str, capacity: int) -> None:
        """Add a resource or change its capacity (waking waiters when it grows)."""
        grew = name in self.capacity and capacity > self.capacity[name]  # a new name has no waiters
        self.capacity[name] = capacity
        self.in_use.setdefault(name, 0)
        self.waiting.setdefault(name, 0)
        if grew and self._n_waiting:
            self._unpark(name)
            self._dispatch()

    def set_rate(self, name: str, rate: Rate | None) -> None:
        """Give a resource a rate quota, change it, or remove it (None), live.

        A resource named for the first time gets the capacity :data:`UNLIMITED`.
        Lowering a rate preempts nothing: tokens already taken still count in their window.
        """
        self.capacity.setdefault(name, UNLIMITED)
        self.in_use.setdefault(name, 0)
        self.waiting.setdefault(name, 0)
        if rate is None:
            self._rates.pop(name, None)
        elif name in self._rates:
            self._rates[name].set(rate)
        else:
            self._rates[name] = Window(rate)
            if self._timer is None:
                self._timer = Timer(self._tick)
        if self._n_waiting:
            self._unpark(name)
            self._dispatch()

    def rate_of(self, name: str) -> tuple[Rate, int, float | None] | None:
        """(rate, tokens taken in the current window, seconds until the next comes back), or None."""
        window = self._rates.get(name)
        if window is None:
            return None
        now = time.monotonic()
        return window.rate, window.used(now), window.next_in(now)

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
                rates = self._rates
                if not rates or self._rate_blocker(keys, ()) is None:
                    for key in keys:
                        in_use[key] += 1
                    if rates:
                        if hasattr(type(owner), "rate_stamp"):
                            return self._granted(keys, owner)
                        self._stamp(keys)
                    return None
        waiter = self._enqueue(keys, owner)
        self._dispatch()
        return waiter

    def join(self, keys: tuple[str, ...], owner: Any) -> _Waiter:
        """:meth:`try_acquire` that always returns the waiter, admitted at once if the tokens are free.

        For owners that start their work later than this pool can see (shared limits:
        in another process): the rate tokens it takes start their window at
        :meth:`started`, not at admission. Wait for it with ``wait(waiter, start=False)``.
        """
        waiter = self._enqueue(keys, owner)
        self._dispatch()
        return waiter

    def started(self, waiter: _Waiter) -> None:
        """Its work starts now: the rate tokens it took start their window (see :meth:`join`)."""
        if waiter.windows is not None and waiter.admitted:
            self._use(waiter)

    def requeue(self, keys: tuple[str, ...], owner: Any, place: float | None) -> _Waiter | None:
        """:meth:`try_acquire` for a tasklet that was in line before (a retry): it keeps its place.

        ``place``: the seq it waited with, or None if it never waited (it was admitted
        when nobody waited, so it goes before every first-time waiter now in line).
        """
        if not self._n_waiting:
            return self.try_acquire(keys, owner)
        if place is None:
            place = min(w.seq for q in self._queues.values() for w in q.waiters) - 0.5
        waiter = self._enqueue(keys, owner, place)
        self._dispatch()
        return waiter

    async def wait(self, waiter: _Waiter, *, start: bool = True) -> None:
        """Wait until ``waiter`` is admitted; on cancellation leave nothing behind.

        ``start=False``: its rate tokens start their window at :meth:`started`, not now.
        """
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
            self.cancel_waiter(waiter)
            raise
        if waiter.windows is not None and start:
            self._use(waiter)
        if waiter.closed:
            raise ManagerClosedError("the manager was closed while this tasklet waited for resources")

    def cancel_waiter(self, waiter: _Waiter) -> None:
        """Forget a waiter whose task will not wait (any more): leaves nothing behind."""
        if waiter.admitted:
            # Admitted, then cancelled before it could resume: give the tokens back
            # (its rate tokens too: it never started).
            waiter.admitted = False
            for window in waiter.windows or ():
                window.pending -= 1
            waiter.windows = None
            self.release(waiter.queue.keys)
        elif not waiter.closed:
            self._remove(waiter)
        waiter.closed = True

    def release(self, keys: tuple[str, ...]) -> None:
        in_use = self.in_use
        for key in keys:
            in_use[key] -= 1
        if self._n_waiting:
            if self._parked:
                for key in keys:
                    if key in self._parked:
                        self._unpark(key)
            self._dispatch()

    # -- the queues ----------------------------------------------------------------
    def _enqueue(self, keys: tuple[str, ...], owner: Any, place: float | None = None) -> _Waiter:
        queue = self._queues.get(keys)
        if queue is None:
            queue = self._queues[keys] = _Queue(keys)
        if place is None:
            self._seq += 1
            waiter = _Waiter(self._seq, queue, owner)
            queue.waiters.append(waiter)
        else:  # a retry: back to its old place (the queue stays in seq order)
            waiter = _Waiter(place, queue, owner)  # type: ignore[arg-type]
            i = sum(1 for w in queue.waiters if w.seq < place)
            queue.waiters.insert(i, waiter)
            oldest = self._oldest
            if oldest is not None and place < oldest.seq:  # it is older than the oldest: that one holds nothing back now
                self._oldest = None
                for key in oldest.queue.keys[1:]:
                    self._unpark(key)
            if i == 0 and len(queue.waiters) > 1:
                self._new_head(queue)
        if len(queue.waiters) == 1:
            self._new_head(queue)
        self._n_waiting += 1
        waiting = self.waiting
        for key in keys:
            waiting[key] += 1
        return waiter

    def _new_head(self, queue: _Queue) -> None:
        """The queue's head changed: index the new one (stale entries are skipped later)."""
        if queue.waiters:
            entry = (queue.waiters[0].seq, queue)
            heapq.heappush(self._heads, entry)
            if queue.parked_on is None:
                heapq.heappush(self._ready, entry)
        else:
            del self._queues[queue.keys]
            queue.parked_on = None

    def _unlink(self, waiter: _Waiter) -> None:
        self._n_waiting -= 1
        waiting = self.waiting
        for key in waiter.queue.keys:
            waiting[key] -= 1
        if waiter is self._oldest:
            self._oldest = None
            # What it held back is free for others now.
            for key in waiter.queue.keys[1:]:
                self._unpark(key)

    def _remove(self, waiter: _Waiter) -> None:
        queue = waiter.queue
        was_head = queue.waiters[0] is waiter
        queue.waiters.remove(waiter)
        self._unlink(waiter)
        if was_head:
            self._new_head(queue)
        self._dispatch()

    def _admit(self, waiter: _Waiter) -> None:
        in_use = self.in_use
        queue = waiter.queue
        for key in queue.keys:
            in_use[key] += 1
        if self._rates:
            waiter.windows = self._hold(queue.keys)
        queue.waiters.popleft()
        waiter.admitted = True
        self._unlink(waiter)
        self._new_head(queue)
        waiter.wake()

    def _park(self, queue: _Queue, key: str) -> None:
        queue.parked_on = key
        self._parked.setdefault(key, []).append(queue)
        if key in self._rates:
            self._arm((key,))

    def _unpark(self, key: str) -> None:
        parked = self._parked.pop(key, None)
        if parked:
            for queue in parked:
                if queue.parked_on == key:
                    queue.parked_on = None
                    if queue.waiters:
                        heapq.heappush(self._ready, (queue.waiters[0].seq, queue))

    @staticmethod
    def _peek(heap: list[tuple[int, _Queue]], ready: bool) -> _Queue | None:
        """The queue with the oldest valid head in ``heap``, dropping stale entries."""
        while heap:
            seq, queue = heap[0]
            waiters = queue.waiters
            if waiters and waiters[0].seq == seq and not (ready and queue.parked_on is not None):
                return queue
            heapq.heappop(heap)
        return None

    def _blocker(self, keys: tuple[str, ...], held: tuple[str, ...]) -> str | None:
        """The first key of ``keys`` without a token for a younger waiter (or None: it fits)."""
        capacity, in_use = self.capacity, self.in_use
        for key in keys:
            if in_use[key] + (key in held) >= capacity[key]:
                return key
        if self._rates:
            return self._rate_blocker(keys, held)
        return None

    # -- rates ---------------------------------------------------------------------
    def _rate_blocker(self, keys: tuple[str, ...], held: tuple[str, ...]) -> str | None:
        """The first key of ``keys`` whose rate has no token for this waiter (or None)."""
        rates = self._rates
        now = time.monotonic()
        for key in keys:
            window = rates.get(key)
            if window is not None and window.free(now) <= (key in held):
                return key
        return None

    def _stamp(self, keys: tuple[str, ...]) -> None:
        """Admitted: take a rate token of every rated key (it comes back ``per`` s later)."""
        rates = self._rates
        now = time.monotonic()
        for key in keys:
            window = rates.get(key)
            if window is not None:
                window.stamps.append(now)

    def _granted(self, keys: tuple[str, ...], owner: Any) -> _Waiter | None:
        """Admitted at once by :meth:`try_acquire`, for an owner whose work starts when its task runs.

        A manager's run (its class has a ``rate_stamp`` slot) may run much later than
        ``start()`` took its tokens (the caller keeps the loop busy, other tasks run
        first): like a queued tasklet's, its rate tokens are held and start their window
        when its task passes :meth:`wait`, else two paced starts could run back to back.
        The waiter it gets is admitted already and has no place in any queue.
        """
        windows = self._hold(keys)
        if not windows:
            return None
        waiter = _Waiter(None, _Queue(keys), owner)  # type: ignore[arg-type]
        waiter.admitted = True
        waiter.windows = windows
        return waiter

    def give_back(self, keys: tuple[str, ...], owner: Any) -> None:
        """Its work never started (cancelled or closed first): the rate tokens it took come back.

        Call it before :meth:`release`. The owner's ``rate_stamp`` is the time its tokens
        started their window (set by :meth:`wait`); a token that came back already (or
        whose rate was replaced since) is not in the window any more.
        """
        stamp = getattr(owner, "rate_stamp", None)
        if stamp is None:
            return
        owner.rate_stamp = None
        rates = self._rates
        for key in keys:
            window = rates.get(key)
            if window is not None:
                try:
                    window.stamps.remove(stamp)
                except ValueError:
                    pass

    def _hold(self, keys: tuple[str, ...]) -> list[Window]:
        """Admitted from the queue: take its rate tokens, their window starting when its task resumes.

        A queued tasklet's task resumes a little after its admission (after the tasks
        woken before it): starting the window then keeps the quota exact where it
        matters, at the moment the work starts.
        """
        rates = self._rates
        windows = [window for key in keys if (window := rates.get(key)) is not None]
        for window in windows:
            window.pending += 1
        return windows

    def _use(self, waiter: _Waiter) -> None:
        """Its task resumed: the rate tokens it took start their window now."""
        now = time.monotonic()
        for window in waiter.windows or ():
            window.pending -= 1
            window.stamps.append(now)
        if waiter.windows and hasattr(type(owner := waiter.owner), "rate_stamp"):
            owner.rate_stamp = now  # see give_back
        waiter.windows = None
        if self._n_waiting:
            self._arm(waiter.queue.keys)

    def _arm(self, keys: tuple[str, ...]) -> None:
        """A waiter needs a rate token of one of ``keys``: wake the pool when one more is free.

        One more than now, not just one: the waiter may be a younger one that needs a
        token besides the one held back for the oldest.
        """
        rates, timer = self._rates, self._timer
        if timer is None:
            return
        now = time.monotonic()
        for key in keys:
            window = rates.get(key)
            if window is not None and (free := window.free(now)) <= 1:
                when = window.ready_at(now, max(free, 0) + 1)
                if when != math.inf:  # else: it waits for a start (see _use) or a set_rate
                    timer.arm(when)

    def _tick(self) -> None:
        """The timer fired: rate tokens came back. Unpark what waits for them, admit, re-arm."""
        if not self._n_waiting:
            return
        for key in self._rates:
            if key in self._parked:
                self._unpark(key)
        self._dispatch()
        if self._n_waiting:
            # Queues still parked on a rate (or an oldest waiter still short of a rate
            # token) need the next expiry; the dispatch re-armed only what it re-parked.
            self._arm(tuple(key for key in self._rates if self.waiting[key]))

    # -- the rule ------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Admit every waiter that fits, the oldest first, honouring what it holds back.

        This is the one place where the fairness rule lives (see the module docstring).
        """
        capacity, in_use = self.capacity, self.in_use
        while self._n_waiting:
            head = self._peek(self._heads, False)
            assert head is not None
            oldest = head.waiters[0]
            if in_use[GLOBAL] < capacity[GLOBAL] and self.bottleneck and self._pass_oldest(oldest):
                continue
            if (key := self._blocker(head.keys, ())) is None:
                self._admit(oldest)
                continue
            if key in self._rates:
                self._arm((key,))
            if self._oldest is not oldest:
                self._oldest = oldest
            break
        else:
            return
        held = oldest.queue.keys[1:]  # every resource it needs, never the global slot
        ready = self._ready
        while in_use[GLOBAL] < capacity[GLOBAL]:
            queue = self._peek(ready, True)
            if queue is None:
                return
            if queue is oldest.queue:  # its younger members wait behind it
                heapq.heappop(ready)
                continue
            key = self._blocker(queue.keys, held)
            if key is None:
                self._admit(queue.waiters[0])
            else:
                heapq.heappop(ready)
                self._park(queue, key)

    def _pass_oldest(self, oldest: _Waiter) -> bool:
        """``admission="bottleneck"``: admit a waiter of the scarcest free resource first."""
        if oldest.passed >= self.capacity[GLOBAL]:
            return False  # bounded overtaking: FIFO until the oldest is admitted
        capacity, in_use, waiting = self.capacity, self.in_use, self.waiting
        best, best_load = None, 0.0
        for key, n in waiting.items():
            if n and key != GLOBAL and in_use[key] < capacity[key]:
                load = n / capacity[key]
                if load > best_load:
                    best, best_load = key, load
        if best is None:
            return False
        candidate: _Waiter | None = None
        for queue in self._queues.values():
            if best in queue.keys and queue.waiters:
                head = queue.waiters[0]
                if (candidate is None or head.seq < candidate.seq) and self._blocker(queue.keys, ()) is None:
                    candidate = head
        if candidate is None or candidate is oldest:
            return False
        oldest.passed += 1
        self._admit(candidate)
        return True

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
            self._new_head(queue)
        self._heads.clear()
        self._ready.clear()
        self._parked.clear()
        if self._timer is not None:
            self._timer.close()
        return woken

    # -- introspection -------------------------------------------------------------
    def waiters_in_order(self) -> list[tuple[Any, tuple[str, ...]]]:
        """(owner, keys) of every waiter, oldest first."""
        items = [(w.seq, w.owner, q.keys) for q in self._queues.values() for w in q.waiters]
        items.sort(key=lambda item: item[0])
        return [(owner, keys) for _, owner, keys in items]

    def held_back(self) -> tuple[Any, dict[str, int]]:
        """(owner of the oldest blocked waiter or None, free tokens held back for it by key)."""
        oldest = self._oldest
        if oldest is None or oldest.admitted or oldest.closed:
            return None, {}
        capacity, in_use = self.capacity, self.in_use
        return oldest.owner, {k: 1 for k in oldest.queue.keys[1:] if in_use[k] < capacity[k]}

    def blocking(self, waiter: _Waiter) -> dict[str, str]:
        """Why ``waiter`` waits, by key: ``"full"``, ``"held back"`` (for the oldest waiter),
        ``"quota used"``, ``"paced"`` (the quota has tokens, its pacing keeps them apart)
        or ``"quota held back"``.

        Empty when it is admitted, closed, or would be admitted at the next release.
        """
        if waiter.admitted or waiter.closed:
            return {}
        capacity, in_use = self.capacity, self.in_use
        oldest = self._oldest
        held = oldest.queue.keys[1:] if oldest is not None and oldest is not waiter else ()
        out: dict[str, str] = {}
        for key in waiter.queue.keys:
            if in_use[key] >= capacity[key]:
                out[key] = "full"
            elif key in held and in_use[key] + 1 >= capacity[key]:
                out[key] = "held back"
        for key, window in self._rates.items():
            if key in waiter.queue.keys and key not in out:
                now = time.monotonic()
                free = window.free(now)
                if free <= 0:
                    out[key] = "quota used" if window.used(now) >= window.limit else "paced"
                elif key in held and free <= 1:
                    out[key] = "quota held back"
        return out

    def owners_waiting(self) -> Iterable[Any]:
        for queue in self._queues.values():
            for waiter in queue.waiters:
                yield waiter.owner

    @property
    def n_waiting(self) -> int:
        return self._n_waiting
