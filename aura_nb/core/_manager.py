"""The ExecutionManager: the life of each tasklet, from admission to its last hook.

The life of one tasklet, as :meth:`ExecutionManager.submit` reads top to bottom:

1. **admit** (synchronous): validate (``_resolve``), record ``tasklet_submitted``, and
   take every token at once or join the pool's queue (``_limits``);
2. **wait** for the tokens, if they were not free;
3. **plan** the state it requires, if any (``_walk``), holding its tokens;
4. **run** the body under its timeout (``_body``), between ``before_task_run`` and
   ``after_task_success``;
5. on any failure, ``after_task_failure`` (``_conclude``); always **release** every
   token, record the terminal ``after_task_run``, then call its hooks.

Every event is recorded and its hooks are called by one path: :meth:`_fire` for the
hooks registered *when the event happens*. The call site checks whether anyone listens
(``if by_code[code]``), so an event nobody watches costs one list append.

Cancellation may cut any hook short, never the release or the terminal event.
``after_task_run`` hooks of a cancelled tasklet get a grace of :data:`HOOK_GRACE_S`
seconds. A cancellation that lands before the terminal event makes the tasklet
``cancelled``, everywhere (status, log, handle), even if its body had returned.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import CoroutineType, MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import anyio
import anyio.lowlevel

from . import _body
from ._batch import Batch, Completion
from ._checks import describe_error, is_awaitable, one_of, positive_int, seconds, shown
from ._errors import (
    ArgumentError,
    ArgumentTypeError,
    ManagerClosedError,
    ManagerUsageError,
    ResourceTagError,
    StatePlanningError,
    TaskletError,
    TaskletTimeoutError,
    TaskNotFoundError,
)
from ._events import _CODE, _EMPTY_X, STATUSES, Event, _EventWriter
from ._hooks import HookBus
from ._limits import ADMISSION_POLICIES, GLOBAL, ResourcePool
from ._rates import Rate
from ._resolve import Resolver
from ._stats import LimitStatistics, ManagerStatistics, ResourceWait, WaitReport
from ._tags import check_resource_name
from ._tasklet import Tasklet, TaskletHandle, cancelled_error
from ._walk import walk

if TYPE_CHECKING:  # pragma: no cover
    from ._plan import Plan

__all__ = ["HOOK_GRACE_S", "ExecutionManager", "Executor", "TaskCall"]

#: How long ``after_task_run`` hooks of a cancelled tasklet may still run (seconds).
HOOK_GRACE_S = 1.0


@dataclass(frozen=True, slots=True)
class TaskCall:
    """What an :class:`Executor` is asked to run: one tasklet's body.

    ``resources`` are the names of the resources the tasklet holds (without the global
    limit); ``note_worker(address)`` records where the body ran (it lands in the
    ``detail`` column of ``after_task_success`` / ``after_task_failure``).
    """

    fn: Callable[..., Any]
    params: Mapping[str, Any]
    is_async: bool
    tasklet: Tasklet
    resources: tuple[str, ...]
    note_worker: Callable[[str], None]


@runtime_checkable
class Executor(Protocol):
    """Runs task bodies somewhere else; the manager keeps admission, planning and hooks.

    ``run`` must return the body's result or raise its exception unchanged, and must
    stop the remote work when it is cancelled (timeouts arrive as cancellation).
    """

    async def run(self, call: TaskCall) -> Any: ...


_SUBMITTED = _CODE["tasklet_submitted"]
_ACQUIRED = _CODE["resources_acquired"]
_BEFORE = _CODE["before_task_run"]
_SUCCESS = _CODE["after_task_success"]
_FAILURE = _CODE["after_task_failure"]
_RELEASED = _CODE["resources_released"]
_AFTER = _CODE["after_task_run"]
_HOOK_ERROR = _CODE["hook_error"]

_now = time.monotonic
_SUCCEEDED_X = ("succeeded", None, None, None, None, None, None, None)
_CANCELLED_X = ("cancelled", None, None, None, None, "Cancelled", "the tasklet was cancelled", None)
_TERMINAL = frozenset(STATUSES)
#: Set while a hook of this manager is awaited in this task: aclose() refuses there.
_IN_HOOK: contextvars.ContextVar[Any] = contextvars.ContextVar("aura_nb_in_hook", default=None)


def _failure_x(status: str, exc: BaseException, detail: str | None = None, attempt: int | None = None) -> tuple[Any, ...]:
    """The sparse fields of a failure event; a cancellation reads the same on every backend."""
    if isinstance(exc, anyio.get_cancelled_exc_class()) or (status == "cancelled" and not isinstance(exc, Exception)):
        return (status, None, None, None, None, "Cancelled", "the tasklet was cancelled", detail, attempt)
    return (status, None, None, None, None, *describe_error(exc), detail, attempt)


def _attempt_of(run: _Run) -> int | None:
    """The attempt column of a tasklet's events: set once it has a retry policy."""
    return run.attempt if run.tasklet.retry is not None else None


class _Run:
    """The manager's record of one tasklet while (and just after) it runs."""

    __slots__ = (
        "tasklet", "tix", "keys", "fn", "is_async", "plan", "task_label", "status",
        "handle", "timed_out", "planning", "seq0", "waiter", "worker", "on_admit",
        "body_started", "cancel_requested", "scope", "after_scope", "result", "attempt", "place", "rate_stamp",
    )  # fmt: skip

    def __init__(
        self, tasklet: Tasklet, keys: tuple[str, ...], resolved: tuple[Any, ...], tix: int, seq0: int
    ) -> None:
        self.tasklet = tasklet
        self.keys = keys
        self.tix = tix
        self.seq0 = seq0  # the seq of its tasklet_submitted event
        fn, self.is_async, self.plan, self.task_label, _ = resolved
        self.fn = tasklet.task if fn is None else fn
        self.status = "waiting"
        self.handle: TaskletHandle | None = None
        self.timed_out: str | None = None  # the phase whose limit fired
        self.planning = False
        self.waiter: Any = None  # the pool's waiter, while queued
        self.worker: str | None = None  # where an executor ran the body, if not here
        self.on_admit: Callable[[], None] | None = None  # run_many's: called once admitted after waiting
        self.cancel_requested = False
        self.result: Any = None
        self.attempt = 1  # with a retry policy: which attempt runs
        # Set only where they apply (read with getattr): one store less per tasklet each.
        # body_started: known for sync bodies; scope: a started tasklet's own cancel
        # scope; after_scope: while its after_task_run hooks run; place: its seq in the
        # pool's queue if it waited (a retry keeps it); rate_stamp: set by the pool, the
        # time its rate tokens were taken (given back if its body never starts).

    def request_cancel(self) -> bool:
        """A handle's cancel(): True if this changes the outcome (it ends ``cancelled``)."""
        self.cancel_requested = True
        decided = self.status in _TERMINAL
        after_scope = getattr(self, "after_scope", None)
        scope = getattr(self, "scope", None)
        if after_scope is not None:  # its after_task_run hooks get their grace
            after_scope.deadline = min(after_scope.deadline, anyio.current_time() + HOOK_GRACE_S)
        elif scope is not None and not decided:
            scope.cancel()
        return not decided


class ExecutionManager:
    """Runs tasklets under a global concurrency limit and per-resource limits.

    ``plans``: the :class:`Plan` objects whose tasks and state maps tasklets may use.
    ``max_concurrency``: how many tasklets may plan or run at once. ``capacities``:
    resource capacities declared up front (tags ``name:N`` declare them too; a tag that
    contradicts a known capacity is a :class:`ResourceTagError`). ``admission``:
    ``"fifo"`` (oldest first, the default) or ``"bottleneck"`` (a tasklet of the scarcest
    free resource may start before older ones, with bounded overtaking; see the README).
    ``event_log``: a path to also write every event to SQLite, every ``flush_interval``
    seconds; ``keep_events=N`` then keeps only about the newest N events in memory (the
    frames read older ones from the file). ``planning_timeout``: default limit for the
    planning phase. ``executor``: where task bodies run (default: here; see
    :class:`Executor`, e.g. ``aura_nb.DaskExecutor``). ``rates``: rate quotas by
    resource, e.g. ``{"api_key_A": "10/s"}`` (see :meth:`set_rate`). ``limits``: keep the
    limits elsewhere, shared with other managers (``aura_nb.DaskLimits(client)``;
    default: here).

    Use it as ``async with ExecutionManager(...) as em:``, or call ``await em.aclose()``
    when done. Every argument is checked before anything is opened: a failed
    constructor leaves no file, lock or thread behind.
    """

    def __init__(
        self,
        *,
        plans: Iterable[Plan] = (),
        max_concurrency: int = 8,
        capacities: Mapping[str, int] | None = None,
        admission: str = "fifo",
        event_log: str | Any | None = None,
        flush_interval: float = 0.2,
        keep_events: int | None = None,
        planning_timeout: float | None = None,
        executor: Executor | None = None,
        rates: Mapping[str, Rate | str] | None = None,
        limits: Any = None,
    ) -> None:
        max_concurrency, admission, self.planning_timeout = _check_limits(max_concurrency, admission, planning_timeout)
        declared, quotas, plans = _check_configuration(plans, capacities, rates, executor, keep_events, event_log, limits)
        if limits is None:
            self._pool = ResourcePool(max_concurrency, admission=admission)
        else:  # limits kept elsewhere, e.g. aura_nb.DaskLimits
            self._pool = limits.bind(max_concurrency, admission=admission)
        self._resolver = Resolver(self._pool)
        # The resolver's caches, read directly by _admit's fast path (they are cleared, never replaced).
        self._keys_seen, self._tasks_seen = self._resolver.keys, self._resolver.tasks
        try:
            for name, cap, origin in declared:
                self._resolver.declare(name, cap, origin)
            for name, rate, origin in quotas:
                self._resolver.declare_rate(name, rate, origin)
            for plan in plans:
                self._resolver.add_plan(plan)
        except BaseException:
            self._pool.close()  # shared limits: leave the shared pool again
            raise
        #: Where task bodies run: None runs them here (async on the loop, sync in threads).
        self.executor = executor
        self.admission = admission
        self.hooks = HookBus()
        self._live: dict[str, _Run] = {}
        self._batches: list[Batch] = []
        self._counts = dict.fromkeys(STATUSES, 0)
        self._n_planning = 0
        self._n_running = 0
        self._closed = False
        self._draining = False
        self._idle: anyio.Event | None = None
        self._tg: Any = None
        self._background: set[asyncio.Task[Any]] = set()
        self._native: bool | None = None  # on asyncio (not trio), known at the first submit
        # Last: the only step that opens anything (a file, a lock, a thread). The
        # private writer records; the public log only reads the same rows.
        try:
            self._writer = _EventWriter(event_log, flush_interval=flush_interval, keep=keep_events)
        except BaseException:
            self._pool.close()
            raise
        self.events = self._writer.log

    # -- configuration ---------------------------------------------------------------
    def add_plan(self, plan: Plan) -> None:
        """Make a plan's tasks and state map available to tasklets (``"plan/task"``)."""
        self._resolver.add_plan(plan)

    @property
    def plans(self) -> Mapping[str, Plan]:
        return MappingProxyType(self._resolver.plans)

    def set_capacity(self, name: str, capacity: int) -> None:
        """Change (or declare) a resource's capacity, live.

        Growing it admits waiters at once; shrinking it never preempts holders: new
        tasklets wait until fewer than ``capacity`` hold it. Tags that state the old
        capacity are refused afterwards (use the bare tag ``name``).
        """
        where = f"set_capacity({shown(name)}, {shown(capacity)})"
        check_resource_name(name, where=where)
        capacity = positive_int(capacity, what="capacity", where=where, error=ResourceTagError)
        self._resolver.declare(name, capacity, "set_capacity()", change=True)
        self._resolver.keys.clear()

    def set_rate(self, name: str, rate: Rate | str | None) -> None:
        """Give a resource a rate quota, change it, or remove it (``None``), live.

        ``rate``: ``"10/s"``, ``"600/min"``, ``"5/2s"`` or ``an.Rate(10, per=1.0)``: at
        most that many tasklets tagging ``name`` are admitted in any window of ``per``
        seconds (a sliding window). ``"20/s burst 1"`` (``an.Rate(20, per=1.0, burst=1)``)
        also paces them: at most ``burst`` in any ``burst * per / limit`` seconds;
        ``"20/s burst 1 margin 30ms"`` keeps each token out 30 ms longer, room for the
        jitter of the latency to a server that counts arrivals. The rate token is taken
        in the same all-or-nothing step as every other limit and comes back ``per``
        (+ ``margin``) seconds after it was taken, not at release. A resource named
        here for the first time has no capacity (any number at once); a tag
        ``name:N`` or :meth:`set_capacity` can add one. Lowering a rate
        preempts nothing: tokens taken in the current window still count.
        """
        where = f"set_rate({shown(name)}, {shown(rate)})"
        check_resource_name(name, where=where)
        parsed = None if rate is None else Rate.parse(rate, where=where)
        self._resolver.declare_rate(name, parsed, "set_rate()", change=True)

    @property
    def rates(self) -> Mapping[str, Rate]:
        """The rate quotas by resource name."""
        pool = self._pool
        return MappingProxyType({name: info[0] for name in pool.capacity if (info := _rate_of(pool, name))})

    def set_max_concurrency(self, n: int) -> None:
        """Change the global limit, live (same rules as :meth:`set_capacity`)."""
        n = positive_int(n, what="max_concurrency", where=f"set_max_concurrency({shown(n)})")
        self._pool.declare(GLOBAL, n)

    @property
    def max_concurrency(self) -> int:
        return self._pool.capacity[GLOBAL]

    @property
    def capacities(self) -> Mapping[str, int]:
        return MappingProxyType({k: v for k, v in self._pool.capacity.items() if k != GLOBAL})

    def validate(self, tasklet: Tasklet) -> None:
        """Raise what ``submit`` would raise for this tasklet, without running it (a dry run)."""
        self._resolver.validate(tasklet)

    # -- admission -------------------------------------------------------------------
    def _refuse_if_closed(self, tasklet: Any) -> None:
        if self._closed and not self._draining:
            raise ManagerClosedError(
                f"tasklet {getattr(tasklet, 'id', '?')}: this ExecutionManager is closed; create a new one"
            )

    def _admit(self, tasklet: Tasklet) -> _Run:
        """Validate and register a tasklet; records ``tasklet_submitted``. Nothing waits yet."""
        if self._closed:
            self._refuse_if_closed(tasklet)
        resolver = self._resolver
        # Fast path: a known task and tag set, no state to reach (both cached).
        keys = self._keys_seen.get(tasklet.resource_tags) if type(tasklet) is Tasklet else None
        resolved = None
        if keys is not None and tasklet.required_initial_state is None:
            try:
                resolved = self._tasks_seen.get(tasklet.task)
            except Exception:  # noqa: BLE001 - an unhashable (or hostile) callable: resolve it below
                resolved = None
        if resolved is None:
            resolved, keys, new = resolver.validate(tasklet)
        else:
            new = None
        if tasklet.id in self._live:
            raise TaskletError(f"tasklet {tasklet.id} is already submitted and not finished; create a new Tasklet")
        if new:  # everything is valid: only now declare capacities named for the first time
            for name, cap in new:
                resolver.declare(name, cap, f"tag '{name}:{cap}' (tasklet {tasklet.id})")
            resolver.keys[tasklet.resource_tags] = keys
        tix, seq0 = self._writer.add_submitted(
            (tasklet.id, tasklet.name, resolved[3], resolved[4], ",".join(tasklet.resource_tags)), _SUBMITTED, _now()
        )
        run = self._live[tasklet.id] = _Run(tasklet, keys, resolved, tix, seq0)  # type: ignore[arg-type]
        return run

    # -- the life of a tasklet -----------------------------------------------------------
    async def submit(self, tasklet: Tasklet) -> Any:
        """Run a tasklet to its end; return the task's result or raise.

        Raises the task's own exception unchanged, :class:`TaskletTimeoutError` when a
        limit fires, :class:`StatePlanningError` when the state cannot be reached; a
        cancellation propagates after the hooks ran and every resource was released.
        """
        # This is the hot path, deliberately one function that reads like the
        # flowchart; everything uncommon is a call away. (Benchmark rows: throughput.)
        if type(tasklet) is _Run:  # start() and run_many() admitted it already
            run = tasklet
        else:
            run = self._admit(tasklet)
            run.waiter = self._pool.try_acquire(run.keys, run)
        if self._native is None:
            self._native = _on_asyncio()
        by_code = self.hooks.by_code
        rec = self._writer
        tix = run.tix
        tasklet = run.tasklet
        # 1-2. Admitted, and every token taken at once (waiting if they were not free).
        if run.waiter is not None or by_code[_SUBMITTED]:
            await self._wait_for_tokens(run)
            run.waiter = None
        try:
            # 3. Plan the state, if it needs one; then before_task_run.
            if by_code[_ACQUIRED] or tasklet.required_initial_state is not None or run.cancel_requested:
                await self._prepare(run)
            else:
                run.status = "running"
                self._n_running += 1
                seq = rec.record_pair(_ACQUIRED, _BEFORE, tix, _now())
                if by_code[_BEFORE] and (aw := self._fire(_BEFORE, seq, run, _EMPTY_X)) is not None:
                    await aw
            # 4. The body, under its timeout.
            if run.is_async and self.executor is None and (tasklet.timeout is None or self._native):
                params = tasklet.params
                out = run.fn(**params) if params else run.fn()
                if type(out) is not CoroutineType:
                    result = await _body.awaited(out)
                elif tasklet.timeout is None:
                    result = await out
                else:  # asyncio: its timer is armed only if the body suspends (see _body)
                    result = await _body.rest_timed(run, out, _now())
            else:
                result = await self._call_body(run)
            if run.worker is None:
                x = _EMPTY_X
                seq = rec.record(_SUCCESS, tix, _now())
            else:
                x = (None, None, None, None, None, None, None, run.worker)
                seq = rec.record_x(_SUCCESS, tix, _now(), x)
            if by_code[_SUCCESS] and (aw := self._fire(_SUCCESS, seq, run, x, result)) is not None:
                await aw
        except BaseException as exc:
            if tasklet.retry is not None:  # another attempt, maybe (see _retry)
                return await self._retry(run, exc)
            # 5. Any failure: after_task_failure, release, after_task_run.
            await self._conclude(run, exc, holding=True)
            raise
        # 5. Success: release, then the terminal event and its hooks.
        self._pool.release(run.keys)
        if by_code[_RELEASED] or run.cancel_requested:
            return await self._released_then_end(run, result)
        self._end(run, "succeeded")
        seq = rec.record_pair(_RELEASED, _AFTER, tix, _now(), _SUCCEEDED_X)
        try:
            if by_code[_AFTER] and (aw := self._fire(_AFTER, seq, run, _SUCCEEDED_X, result)) is not None:
                await self._after_hooks(run, aw, result)
        finally:
            self._forget(run)
        return result

    async def _wait_for_tokens(self, run: _Run) -> None:
        """``tasklet_submitted`` hooks, then wait in the pool's queue if the tokens were busy."""
        waiter = run.waiter  # kept on the run while it waits: why() asks the pool about it
        waiting = False
        try:
            if self.hooks.by_code[_SUBMITTED] and (aw := self._fire(_SUBMITTED, run.seq0, run)) is not None:
                await aw
            if waiter is not None:
                waiting = True
                run.place = getattr(waiter, "seq", None)  # its place in line, kept by retries
                await self._pool.wait(waiter)  # leaves nothing behind when cancelled
                if run.on_admit is not None:
                    run.on_admit()
        except BaseException as exc:
            # Cancelled (or the manager closed) before the run began. Taken at once
            # (no waiter): give the tokens back. Queued, and an async tasklet_submitted
            # hook was cancelled before wait(): leave the queue.
            if waiter is not None and not waiting:
                self._pool.cancel_waiter(waiter)
            await self._conclude(run, exc, holding=waiter is None)
            raise

    # -- retries -------------------------------------------------------------------------
    async def _retry(self, run: _Run, exc: BaseException) -> Any:
        """A tasklet with a retry policy failed: run it again while the policy allows.

        Between attempts it records the failure (``after_task_failure``, status empty,
        ``detail`` saying when it retries) and ``resources_released``, gives every
        token back, sleeps the backoff holding nothing, and queues again at its old
        place. Every event from then on carries its ``attempt``. When the policy says
        no, the failure path is the usual one (``_conclude``). A cancellation during
        the backoff or the wait ends the tasklet ``cancelled``.
        """
        rec, pool = self._writer, self._pool
        while True:
            delay = self._retry_delay(run, exc)
            if delay is None:
                await self._conclude(run, exc, holding=True)
                raise exc
            # This attempt is over: its failure, then every token back.
            if run.status == "running":
                self._n_running -= 1
            elif run.status == "planning":
                self._n_planning -= 1
                run.planning = False
            run.status = "waiting"
            x = _failure_x(None, exc, f"attempt {run.attempt} failed; retrying in {delay:.3g} s", run.attempt)  # type: ignore[arg-type]
            seq = rec.record_x(_FAILURE, run.tix, _now(), x)
            pool.release(run.keys)
            run.rate_stamp = None  # that attempt's rate tokens were used: never given back
            released = (*_EMPTY_X[:-1], run.attempt)
            rec.record_x(_RELEASED, run.tix, _now(), released)
            run.attempt += 1
            run.timed_out = None
            try:
                if self.hooks.by_code[_FAILURE] and (aw := self._fire(_FAILURE, seq, run, x, error=exc)) is not None:
                    await aw
                await anyio.sleep(delay)
                if self._closed and not self._draining:
                    raise ManagerClosedError("the manager was closed while this tasklet waited to retry")
                requeue = getattr(pool, "requeue", None)  # shared limits have no places to keep
                run.waiter = requeue(run.keys, run, getattr(run, "place", None)) if requeue else pool.try_acquire(run.keys, run)
                if run.waiter is not None:
                    await pool.wait(run.waiter)  # leaves nothing behind when cancelled
                run.waiter = None
            except BaseException as late:
                run.waiter = None
                await self._conclude(run, late, holding=False)
                raise
            try:
                result = await self._attempt(run)
            except BaseException as again:
                exc = again
                continue
            self._pool.release(run.keys)
            return await self._released_then_end(run, result)

    def _retry_delay(self, run: _Run, exc: BaseException) -> float | None:
        """Seconds before the next attempt, or None: this failure is final."""
        policy = run.tasklet.retry
        if policy is None or run.attempt > policy.times or run.cancel_requested or self._closed:
            return None
        status = self._status_of(run, exc, True)
        if status == "cancelled" or (status == "timeout" and not policy.timeouts):
            return None
        if status == "planning_failed" and not policy.planning:
            return None
        if not isinstance(exc, policy.on) and status == "failed":
            return None
        return policy.delay(run.attempt, exc)

    async def _attempt(self, run: _Run) -> Any:
        """One more attempt, holding its tokens: the uncommon path of :meth:`submit`'s steps 3-4."""
        x = (*_EMPTY_X[:-1], run.attempt)
        await self._event(_ACQUIRED, run, x)
        if run.tasklet.required_initial_state is not None:
            await self._plan_state(run)
        run.status = "running"
        self._n_running += 1
        seq = self._writer.record_x(_BEFORE, run.tix, _now(), x)
        if self.hooks.by_code[_BEFORE] and (aw := self._fire(_BEFORE, seq, run, x)) is not None:
            await aw
        result = await self._call_body(run)
        x = (*_EMPTY_X[:-2], run.worker, run.attempt)
        seq = self._writer.record_x(_SUCCESS, run.tix, _now(), x)
        if self.hooks.by_code[_SUCCESS] and (aw := self._fire(_SUCCESS, seq, run, x, result=result)) is not None:
            await aw
        return result

    async def _prepare(self, run: _Run) -> None:
        """Between taking the tokens and the body: ``resources_acquired``, planning, ``before_task_run``."""
        if run.cancel_requested:
            await anyio.lowlevel.checkpoint()  # cancelled before its task ran: stop here
        await self._event(_ACQUIRED, run)
        if run.tasklet.required_initial_state is not None:
            await self._plan_state(run)
        run.status = "running"
        self._n_running += 1
        seq = self._writer.record(_BEFORE, run.tix, _now())
        if self.hooks.by_code[_BEFORE] and (aw := self._fire(_BEFORE, seq, run, _EMPTY_X)) is not None:
            await aw

    async def _plan_state(self, run: _Run) -> None:
        run.status = "planning"
        run.planning = True
        self._n_planning += 1
        limit = run.tasklet.planning_timeout or self.planning_timeout
        if limit is None:
            await walk(self, run)
        else:
            with anyio.move_on_after(limit) as scope:
                await walk(self, run)
            if scope.cancelled_caught:
                run.timed_out = "planning"
                raise _body.timeout_error(run, "planning", limit)
        self._n_planning -= 1
        run.planning = False

    async def _call_body(self, run: _Run) -> Any:
        """Every body but the plainest (async, no timeout, here): see ``_body``."""
        t_run = _now()  # the timeout counts from here: before_task_run hooks are not the body
        tasklet = run.tasklet
        if self.executor is not None:

            def note_worker(address: str) -> None:
                run.worker = address

            call = TaskCall(run.fn, tasklet.params, run.is_async, tasklet, run.keys[1:], note_worker)
            return await _body.call_executor(run, self.executor, call)
        if not run.is_async:
            return await _body.call_sync(run, run.fn, tasklet.params)
        if tasklet.timeout is None:
            return await _body.awaited(run.fn(**tasklet.params))
        return await _body.call_async_timed(run, run.fn, tasklet.params, t_run, bool(self._native))

    async def _released_then_end(self, run: _Run, result: Any) -> Any:
        """The success path with ``resources_released`` hooks, or a cancel requested (tokens are back).

        A cancellation that lands before the terminal event (a cut hook, or a handle's
        ``cancel()`` that found no checkpoint) makes the tasklet ``cancelled``.
        """
        seq = self._writer.record(_RELEASED, run.tix, _now())
        pending: BaseException | None = None
        try:
            if self.hooks.by_code[_RELEASED] and (aw := self._fire(_RELEASED, seq, run)) is not None:
                await aw
        except BaseException as exc:  # cut short: the tasklet still ends, then it goes on
            pending = exc
        cancelled = run.cancel_requested or isinstance(pending, anyio.get_cancelled_exc_class())
        status = "cancelled" if cancelled else "succeeded"
        x = _CANCELLED_X if cancelled else _SUCCEEDED_X
        if run.attempt > 1:
            x = (*x[:8], run.attempt)
        self._end(run, status)
        seq = self._writer.record_x(_AFTER, run.tix, _now(), x)
        try:
            if self.hooks.by_code[_AFTER] and (aw := self._fire(_AFTER, seq, run, x, result=result)) is not None:
                await self._after_hooks(run, aw, result)
        finally:
            self._forget(run)
        if pending is not None:
            raise pending
        return result

    async def _conclude(self, run: _Run, exc: BaseException, *, holding: bool) -> None:
        """The failure path: ``after_task_failure``, release, ``after_task_run``.

        The caller re-raises ``exc``, unless a cancellation cut a hook short here: then
        that cancellation is raised (after everything was released and recorded).
        """
        status = self._status_of(run, exc, holding)
        # Its tokens were taken but nothing started (cancelled, closed, a hook failed
        # before before_task_run): its rate tokens come back with the rest.
        unstarted = holding and run.status == "waiting"
        if run.status == "running":
            self._n_running -= 1
        elif run.status == "planning":
            self._n_planning -= 1
        run.status = "ending"
        rec, tix = self._writer, run.tix
        pending: BaseException | None = None
        # Only hooks can be cut short, never the release or the terminal event: the
        # bookkeeping sits in `finally` blocks and is synchronous.
        try:
            seq = rec.record_x(_FAILURE, tix, _now(), _failure_x(status, exc, run.worker, _attempt_of(run)))
            if self.hooks.by_code[_FAILURE] and (aw := self._fire(_FAILURE, seq, run, error=exc)) is not None:
                await aw  # still holding, as in Aura
        except BaseException as late:
            pending = late
        finally:
            if holding:
                if unstarted and (give_back := getattr(self._pool, "give_back", None)) is not None:
                    give_back(run.keys, run)
                self._pool.release(run.keys)
        if holding:
            seq = rec.record(_RELEASED, tix, _now())
            try:
                if self.hooks.by_code[_RELEASED] and (aw := self._fire(_RELEASED, seq, run)) is not None:
                    await aw
            except BaseException as late:
                pending = pending or late
        if run.cancel_requested or isinstance(pending, anyio.get_cancelled_exc_class()):
            status = "cancelled"  # a cancel that landed before the terminal event decides it
        self._end(run, status)
        x = _failure_x(status, exc, None, _attempt_of(run))
        seq = rec.record_x(_AFTER, tix, _now(), x)
        try:
            if self.hooks.by_code[_AFTER] and (aw := self._fire(_AFTER, seq, run, x, error=exc)) is not None:
                await self._after_hooks(run, aw, None)
        finally:
            self._forget(run)
        if pending is not None and pending is not exc:
            raise pending

    def _status_of(self, run: _Run, exc: BaseException, holding: bool) -> str:
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            return "cancelled"
        if run.timed_out is not None and isinstance(exc, TaskletTimeoutError):
            return "timeout"
        if run.planning and isinstance(exc, StatePlanningError):
            return "planning_failed"
        if isinstance(exc, ManagerClosedError) and not holding:
            return "cancelled"
        return "failed"

    async def _after_hooks(self, run: _Run, aw: Any, result: Any) -> None:
        """Await ``after_task_run`` hooks: shielded, with a grace once cancelled.

        The grace counts from the cancellation: now for a cancelled tasklet, from the
        caller's own deadline (``move_on_after`` around ``submit``), or from a handle's
        ``cancel()`` that lands while they run.
        """
        run.result = result
        caller = anyio.current_effective_deadline()  # read before the shield hides it
        with anyio.CancelScope(shield=True) as scope:
            now = anyio.current_time()
            if run.status == "cancelled" or run.cancel_requested:
                scope.deadline = now + HOOK_GRACE_S
            elif caller != math.inf:
                scope.deadline = max(caller, now) + HOOK_GRACE_S
            run.after_scope = scope
            try:
                await aw
            finally:
                run.after_scope = None

    def _end(self, run: _Run, status: str) -> None:
        """The outcome is decided: count it (the terminal event comes next)."""
        if run.status == "running":
            self._n_running -= 1
        run.status = status
        self._counts[status] += 1

    def _forget(self, run: _Run) -> None:
        """The tasklet's last hook returned: it is no longer live."""
        del self._live[run.tasklet.id]
        if not self._live and self._idle is not None:
            self._idle.set()
            self._idle = None

    # -- events and hooks ----------------------------------------------------------------
    async def _event(
        self, code: int, run: _Run, x: tuple[Any, ...] | None = None, *,
        path: Any = None, error: BaseException | None = None,
    ) -> int:  # fmt: skip
        """Record an event and call its hooks (the uncommon events' one-liner)."""
        rec = self._writer
        seq = rec.record(code, run.tix, _now()) if x is None else rec.record_x(code, run.tix, _now(), x)
        if self.hooks.by_code[code] and (aw := self._fire(code, seq, run, x, path=path, error=error)) is not None:
            await aw
        return seq

    def _fire(
        self, code: int, seq: int, run: _Run, x: tuple[Any, ...] | None = None,
        result: Any = None, error: BaseException | None = None, path: Any = None,
    ) -> Any:  # fmt: skip
        """Call the hooks registered for this event now; None, or an awaitable for the rest.

        This is the one loop that calls hooks. A sync hook is called; whatever returns
        an awaitable (an ``async def`` hook, a lambda returning a coroutine) is awaited,
        with the later hooks, by the awaitable returned here. A hook that raises becomes
        a ``hook_error`` event and changes nothing else.
        """
        hooks = self.hooks.by_code[code]
        event = Event(self.events, seq, x, run.tasklet, error, path, result)
        # The sync hooks' loop is written out here, not through _call_hook: the four
        # Aura hooks fire three times per tasklet, and a call per hook is ~8 % of the
        # per-tasklet cost (benchmark rows "1. Throughput"). _fire_rest uses _call_hook.
        i = 0
        for fn in hooks:
            i += 1
            try:
                out = fn(event)
            except Exception as exc:
                out, fn = self._hook_raised(fn, event, run, exc, code), None
            if out is not None and is_awaitable(out):
                return self._fire_rest(out, fn, hooks, i, event, run, code)
        return None

    def _call_hook(self, fn: Any, event: Event, run: _Run, code: int) -> tuple[Any, Any]:
        """(what the hook returned, fn), or (the hook_error hooks' awaitable or None, None) if it raised."""
        try:
            return fn(event), fn
        except Exception as exc:
            return self._hook_raised(fn, event, run, exc, code), None

    async def _fire_rest(
        self, out: Any, fn: Any, hooks: tuple[Any, ...], start: int, event: Event, run: _Run, code: int
    ) -> None:
        token = _IN_HOOK.set(self)  # aclose() in here (or in a task started here) would wait for itself
        try:
            await self._settle(out, fn, event, run, code)
            for fn in hooks[start:]:
                out, fn = self._call_hook(fn, event, run, code)
                if out is not None and is_awaitable(out):
                    await self._settle(out, fn, event, run, code)
        finally:
            _IN_HOOK.reset(token)

    async def _settle(self, out: Any, fn: Any, event: Event, run: _Run, code: int) -> None:
        if fn is None:  # the hook_error hooks' own awaitable: it handles its errors
            await out
            return
        try:
            await out
        except Exception as exc:
            if (aw := self._hook_raised(fn, event, run, exc, code)) is not None:
                await aw

    def _hook_raised(self, fn: Any, event: Event, run: _Run, exc: Exception, code: int) -> Any:
        """Record ``hook_error`` (and call its hooks, unless a hook_error hook raised)."""
        detail = f"{event.event} hook {_body_name(fn)}"
        x = (None, None, None, None, None, *describe_error(exc), detail)
        seq = self._writer.record_x(_HOOK_ERROR, run.tix, _now(), x)
        if code == _HOOK_ERROR or not self.hooks.by_code[_HOOK_ERROR]:
            return None
        return self._fire(_HOOK_ERROR, seq, run, x, error=exc)

    # -- other ways in -----------------------------------------------------------------
    def start(self, tasklet: Tasklet) -> TaskletHandle:
        """Start a tasklet in the background; returns its :class:`TaskletHandle` at once.

        Inside ``async with ExecutionManager(...)`` the tasklet runs in the manager's
        task group; otherwise (asyncio only, e.g. a Jupyter cell) it runs in a task of
        the running loop, referenced by the manager until it ends.
        """
        self._refuse_if_closed(tasklet)
        spawn = self._spawner()
        run = self._admit(tasklet)
        handle = run.handle = TaskletHandle(tasklet, run)
        # Queue now: the tasklet's place is fixed by start(), not by when its task runs.
        run.waiter = self._pool.try_acquire(run.keys, run)
        spawn(self._run_handle, handle, run)
        return handle

    def _spawner(self) -> Callable[..., Any]:
        if self._tg is not None:
            return self._tg.start_soon  # type: ignore[no-any-return]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ManagerUsageError(
                "start() needs a running event loop: call it from async code. On trio, enter the manager "
                "first: `async with ExecutionManager(...) as em:`"
            ) from None

        def spawn(fn: Callable[..., Any], *args: Any) -> None:
            task = loop.create_task(fn(*args))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

        return spawn

    async def _run_handle(self, handle: TaskletHandle, run: _Run) -> None:
        with anyio.CancelScope() as scope:
            run.scope = scope
            if run.cancel_requested:
                scope.cancel()
            try:
                result = await self.submit(run)  # type: ignore[arg-type]
            except BaseException as exc:
                # One truth: the outcome the log recorded. Never hand the backend's
                # cancellation to whoever awaits the handle: they were not cancelled.
                if run.status == "succeeded":
                    handle._finish(run.result, None)
                elif run.status == "cancelled" or isinstance(exc, anyio.get_cancelled_exc_class()):
                    handle._finish(None, cancelled_error(run.tasklet))
                else:
                    handle._finish(None, exc)
                if isinstance(exc, Exception):
                    return  # kept in the handle: a failing tasklet must not tear down the task group
                raise
            if run.status == "cancelled":  # cancel() landed where nothing could be interrupted
                handle._finish(None, cancelled_error(run.tasklet))
            else:
                handle._finish(result, None)

    async def run_many(self, tasklets: Iterable[Tasklet], *, return_exceptions: bool = False) -> list[Any]:
        """Run a batch of tasklets, as many at once as the limits allow; their results in order.

        Every tasklet goes through the whole lifecycle of :meth:`submit` (events,
        hooks, timeouts, planning). The batch is checked first: a bad tasklet raises
        before any of them starts (the error's note names its position).

        The tasklets are fed to the manager in batch order by a few worker tasks
        (about ``max_concurrency``) that run each admitted tasklet inline, so a batch
        costs no task per tasklet. When a tasklet must wait for a busy resource, the
        tasklets behind it with the same tags wait in the batch (they would queue
        behind it anyway) while the others go on. A tasklet not fed yet is not
        submitted yet: it has no events (``why()`` says ``"batched"``), and work
        submitted elsewhere meanwhile may go first.

        Every tasklet runs to its end even when others fail. Then, if some failed,
        the first failure (in batch order) is raised, with a note that counts them;
        ``return_exceptions=True`` returns the exceptions in place of results instead.
        Cancelling the caller cancels the whole batch: each running tasklet reports
        and releases as usual, no more are fed, and the cancellation propagates. (It
        reaches the batch where a tasklet suspends, or at the checkpoint a worker takes
        every 2 ms, so tasklets that never suspend may go on for up to that long.)
        Tasklets of a batch have no handles: use :meth:`start` to cancel one by one.
        """
        if self._closed and not self._draining:
            raise ManagerClosedError("run_many: this ExecutionManager is closed; create a new one")
        batch = Batch(self, *self._resolver.check_batch(tasklets, self._live))
        self._batches.append(batch)
        try:
            await batch.run()
        finally:
            self._batches.remove(batch)
        return batch.outcome(return_exceptions)

    def as_completed(self, tasklets: Iterable[Tasklet]) -> Completion:
        """Run a batch like :meth:`run_many`, yielding each outcome as it finishes.

        ``async for outcome in em.as_completed(tasklets):`` gives an
        :class:`~aura_nb.core.Outcome` per tasklet (``index``, ``tasklet``, ``id``,
        ``result`` or ``error``), in the order they end. The batch is checked first, as
        in ``run_many``, and costs no task per tasklet. Leaving the loop early (``break``,
        an exception) cancels the rest: running tasklets end ``cancelled`` with their
        tokens back and their events recorded; tasklets not fed yet are never submitted.
        ``async with em.as_completed(...) as outcomes:`` (or ``await outcomes.aclose()``)
        also waits until that is done. On trio, use it inside ``async with
        ExecutionManager(...)``.
        """
        if self._closed and not self._draining:
            raise ManagerClosedError("as_completed: this ExecutionManager is closed; create a new one")
        spawn = self._spawner()
        batch = Batch(self, *self._resolver.check_batch(tasklets, self._live))
        return Completion(self, batch, spawn)

    # -- looking inside ----------------------------------------------------------------
    def statistics(self) -> ManagerStatistics:
        """A frozen snapshot of every limit and of the tasklets' phases."""
        pool = self._pool
        cap, used, waiting = pool.capacity, pool.in_use, pool.waiting
        owner, held = pool.held_back()
        held_for = _label(owner.tasklet) if owner is not None else None
        others = pool.remote_holders() if hasattr(pool, "remote_holders") else {}  # shared limits

        def limit(key: str) -> LimitStatistics:
            n = held.get(key, 0)
            rate = _rate_of(pool, key) if key != GLOBAL else None
            if rate is not None:
                return LimitStatistics(
                    key, cap[key], used[key], waiting[key], n, held_for if n else None,
                    rate[0].limit, rate[0].per, rate[1], rate[2], rate[0].burst, rate[0].margin,
                    tuple(others.get(key, ())),
                )  # fmt: skip
            return LimitStatistics(
                "global" if key == GLOBAL else key, cap[key], used[key], waiting[key], n, held_for if n else None,
                held_elsewhere=tuple(others.get(key, ())),
            )  # fmt: skip

        return ManagerStatistics(
            t=_now(),
            global_limit=limit(GLOBAL),
            resources=MappingProxyType({name: limit(name) for name in cap if name != GLOBAL}),
            waiting=pool.n_waiting,
            planning=self._n_planning,
            running=self._n_running,
            by_status=MappingProxyType(dict(self._counts)),
            log=self._writer.health(),
        )

    def live(self) -> list[tuple[Tasklet, str]]:
        """(tasklet, status) of every tasklet not finished yet, in submission order."""
        return [(run.tasklet, run.status) for run in self._live.values() if run.status not in _TERMINAL]

    def why(self, item: TaskletHandle | Tasklet | str) -> WaitReport:
        """Why is this tasklet waiting? Its queue position and who holds what it needs.

        Raises :class:`TaskNotFoundError` for a tasklet this manager never saw.
        """
        if isinstance(item, TaskletHandle):
            tasklet_id, name = item.tasklet.id, item.tasklet.name
        elif isinstance(item, Tasklet):
            tasklet_id, name = item.id, item.name
        elif isinstance(item, str):
            tasklet_id, name = item, "?"
        else:
            raise ArgumentTypeError(f"why() takes a TaskletHandle, a Tasklet or a tasklet id, not {shown(item)}")
        run = self._live.get(tasklet_id)
        if run is None or run.status in _TERMINAL:
            return self._why_not_live(item, tasklet_id, name, run)
        pool = self._pool
        order = pool.waiters_in_order()
        position = next((i for i, (owner, _) in enumerate(order) if owner is run), None)
        queued = {id(owner) for owner, _ in order}
        holders: dict[str, list[str]] = {}
        for other in self._live.values():
            if id(other) not in queued and other.status not in _TERMINAL:  # admitted: it holds its tokens
                for key in other.keys:
                    holders.setdefault(key, []).append(_label(other.tasklet))
        if hasattr(pool, "remote_holders"):  # shared limits: what other managers hold
            for key, others in pool.remote_holders().items():
                holders.setdefault(key, []).extend(others)
        blocking = pool.blocking(run.waiter) if run.waiter is not None else {}
        oldest, _ = pool.held_back()
        reserved_by = _label(oldest.tasklet) if oldest is not None and oldest is not run and position else None
        rates = {key: _rate_of(pool, key) for key in run.keys[1:]}
        needs = tuple(
            ResourceWait(
                name="global" if key == GLOBAL else key,
                capacity=pool.capacity[key],
                in_use=pool.in_use[key],
                holders=tuple(holders.get(key, ())),
                busy=key in blocking,
                reason=blocking.get(key),
                rate=str(rate[0]) if (rate := rates.get(key)) else None,
                next_token_in=rate[2] if rate else None,
            )
            for key in run.keys
        )
        return WaitReport(tasklet_id, run.tasklet.name, run.status, position, len(order), needs,
                          reserved_by if any(v.endswith("held back") for v in blocking.values()) else None)  # fmt: skip

    def _why_not_live(self, item: Any, tasklet_id: str, name: str, run: _Run | None) -> WaitReport:
        for batch in self._batches:
            if batch.pending(tasklet_id) is not None:
                return WaitReport(tasklet_id, name, "batched", None, self._pool.n_waiting, (), None)
        if run is not None:
            status: str | None = run.status
        elif isinstance(item, TaskletHandle):
            status = item.status
        else:
            status = self.events._status_of(tasklet_id)
        if status is None:
            raise TaskNotFoundError(
                f"why({shown(item)}): tasklet {tasklet_id!r} was never submitted to this manager "
                "(submit it with em.submit(), em.start() or em.run_many() first)"
            )
        return WaitReport(tasklet_id, name, status, None, self._pool.n_waiting, (), None)

    # -- closing ---------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self, *, cancel_running: bool = False, drain: bool = False) -> None:
        """Stop accepting tasklets and wind down.

        Tasklets still waiting for resources end at once with status ``cancelled``
        (their ``submit`` raises :class:`ManagerClosedError`), unless ``drain=True``:
        then they are still admitted and run, tasklets they start (e.g. from a hook)
        are accepted too, and ``aclose`` waits until nothing is left, like a task group.
        Tasklets planning or running are waited for, or cancelled first with
        ``cancel_running=True`` (only those started with :meth:`start`: a ``submit``
        caller owns its own task). Afterwards nothing is pending, the event log is
        flushed and closed, and ``submit``/``start`` raise :class:`ManagerClosedError`.

        Calling it from inside one of this manager's hooks raises
        :class:`ManagerUsageError` at once: it would wait for its own tasklet.

        Leaving ``async with`` normally is ``aclose(drain=True)``; leaving it with an
        exception is ``aclose(cancel_running=True)``.
        """
        if _IN_HOOK.get() is self:
            raise ManagerUsageError(
                "aclose() was called from inside an async hook of this manager (or a task started there): it "
                "would wait for the hook's own tasklet to end. Close the manager from outside (e.g. after "
                "`await em.run_many(...)`), or leave `async with`"
            )
        if drain and not self._closed:
            self._draining = True
        elif not drain:
            self._draining = False  # a plain aclose() ends the queued tasklets, even during a drain
        self._closed = True
        if not self._draining:
            self._pool.close()
        if cancel_running:
            for run in list(self._live.values()):
                if run.handle is not None:
                    run.handle.cancel()
        while self._live:
            # One event shared by every concurrent aclose(): _forget() sets it once.
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()
        self._draining = False
        self._pool.close()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._writer.aclose()  # off the loop; raises only if events were lost

    async def __aenter__(self) -> ExecutionManager:
        if self._closed:
            raise ManagerClosedError("this ExecutionManager is closed; create a new one")
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        tg = self._tg
        try:
            if exc_type is None:
                await self.aclose(drain=True)
            else:
                with anyio.CancelScope(shield=True):
                    await self.aclose(cancel_running=True)
        finally:
            # Every started tasklet has ended: leave the task group cleanly, so the
            # body's own exception propagates unchanged (not wrapped in a group).
            self._tg = None
            await tg.__aexit__(None, None, None)

    def __repr__(self) -> str:
        s = self.statistics()
        state = "closed" if self._closed else "open"
        return (
            f"<ExecutionManager {state}: {s.global_limit.in_use}/{s.global_limit.capacity} slots, "
            f"{s.waiting} waiting, {len(self._resolver.plans)} plans, {len(self.events)} events>"
        )


def _label(tasklet: Tasklet) -> str:
    return f"{tasklet.id} ({tasklet.name})"


def _body_name(fn: Any) -> str:
    from ._checks import callable_name

    return callable_name(fn)


def _on_asyncio() -> bool:
    try:
        return asyncio.current_task() is not None
    except RuntimeError:  # trio
        return False


def _rate_of(pool: Any, key: str) -> Any:
    """The pool's rate of ``key`` (None without one, or for limits that keep no rates)."""
    rate_of = getattr(pool, "rate_of", None)
    return rate_of(key) if rate_of is not None else None


# -- the constructor's checks: every value, before anything is declared, bound or opened ----
_WHERE = "ExecutionManager"


def _check_limits(max_concurrency: Any, admission: Any, planning_timeout: Any) -> tuple[int, str, float | None]:
    return (
        positive_int(max_concurrency, what="max_concurrency", where=f"{_WHERE}(max_concurrency=...)"),
        one_of(admission, ADMISSION_POLICIES, what="admission", where=f"{_WHERE}(admission=...)"),
        seconds(planning_timeout, what="planning_timeout", where=f"{_WHERE}(planning_timeout=...)"),
    )


def _check_configuration(
    plans: Any, capacities: Any, rates: Any, executor: Any, keep_events: Any, event_log: Any, limits: Any
) -> tuple[list[tuple[str, int, str]], list[tuple[str, Rate, str]], list[Plan]]:
    """(capacities, rates, plans) to declare, each checked; raises what a user can act on."""
    from ._plan import Plan

    where = _WHERE
    if executor is not None and not callable(getattr(executor, "run", None)):
        raise ArgumentTypeError(
            f"{where}(executor=...): {shown(executor)} must have an async run(call) method (see aura_nb.core.Executor)"
        )
    if isinstance(plans, (str, bytes)) or not isinstance(plans, Iterable):
        raise ArgumentTypeError(f"{where}(plans=...): {shown(plans)} is not a list of Plan objects, e.g. [plan]")
    if capacities is not None and not isinstance(capacities, Mapping):
        raise ArgumentTypeError(
            f"{where}(capacities=...): capacities {shown(capacities)} must be a mapping like {{'gpu': 1}}"
        )
    if keep_events is not None and event_log is None:
        raise ArgumentError(
            f"{where}(keep_events={shown(keep_events)}) needs event_log=<path>: only events written to a file "
            "can leave memory"
        )
    if limits is not None and not callable(getattr(limits, "bind", None)):
        raise ArgumentTypeError(f"{where}(limits=...): {shown(limits)} is not shared limits, e.g. an.DaskLimits(client)")
    if rates is not None and not isinstance(rates, Mapping):
        raise ArgumentTypeError(f"{where}(rates=...): rates {shown(rates)} must be a mapping like {{'api': '10/s'}}")
    declared = []
    for name, cap in (capacities or {}).items():
        at = f"capacities[{shown(name)}]"
        check_resource_name(name, where=at)
        cap = positive_int(cap, what="capacity", where=at, error=ResourceTagError)
        declared.append((name, cap, f"capacities={{{name!r}: {cap}}}"))
    quotas = []
    for name, rate in (rates or {}).items():
        at = f"rates[{shown(name)}]"
        check_resource_name(name, where=at)
        quotas.append((name, Rate.parse(rate, where=at), f"rates={{{name!r}: {str(rate)!r}}}"))
    plans = list(plans)
    for plan in plans:
        if not isinstance(plan, Plan):
            raise ArgumentTypeError(f"{where}(plans=...): {shown(plan)} is not a Plan")
    return declared, quotas, plans
