"""The ExecutionManager: admission, planning, the run, hooks and events for each tasklet.

The life of one tasklet (DESIGN §3):

1. validate (``_admit``, synchronous: nothing is queued or acquired on bad input);
2. take the global slot and every tagged resource at once (``ResourcePool.acquire``);
3. bring the system into ``required_initial_state`` (``_bring_to_state``);
4. run the body under its timeout, with ``before_task_run`` / ``after_task_success``;
5. on any failure ``after_task_failure``; always release, then ``after_task_run``.

The hot path (steps 2 and 4 with nothing to plan) avoids a task group, a cancel scope
and per-event objects: events go straight into the columnar log, and an ``Event``
object is only built when a hook listens.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import CoroutineType, MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import anyio
import anyio.lowlevel
import anyio.to_thread

from ._errors import (
    ManagerClosedError,
    ManagerUsageError,
    ResourceTagError,
    StatePlanningError,
    TaskletError,
    TaskletTimeoutError,
    TaskNotFoundError,
)
from ._events import _CODE, _EMPTY_X, STATUSES, Event, _EventWriter
from ._hooks import HookBus, _is_async
from ._limits import GLOBAL, ResourcePool
from ._stats import LimitStatistics, ManagerStatistics, ResourceWait, WaitReport
from ._tags import check_capacity, check_resource_name, parse_tags
from ._tasklet import Tasklet, TaskletHandle, cancelled_error, check_seconds

if TYPE_CHECKING:  # pragma: no cover
    from ._plan import Plan

__all__ = ["ExecutionManager", "Executor", "TaskCall"]


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
_CHECK = _CODE["state_check"]
_PLANNED = _CODE["state_path_planned"]
_STEP_START = _CODE["state_transition_started"]
_STEP_END = _CODE["state_transition_finished"]
_PLANNING_DONE = _CODE["state_planning_finished"]
_BEFORE = _CODE["before_task_run"]
_SUCCESS = _CODE["after_task_success"]
_FAILURE = _CODE["after_task_failure"]
_RELEASED = _CODE["resources_released"]
_AFTER = _CODE["after_task_run"]
_HOOK_ERROR = _CODE["hook_error"]

_now = time.monotonic
_NO_NEW: list[tuple[str, int]] = []  # read-only: no capacities to declare
_NOTHING = object()
#: A batch worker running tasklets that never suspend yields to the loop this often (s).
_BATCH_SLICE = 0.002
_SUCCEEDED_X = ("succeeded", None, None, None, None, None, None, None)


def _x(
    status: str | None = None,
    state_from: str | None = None,
    state_to: str | None = None,
    step: int | None = None,
    duration_s: float | None = None,
    error: BaseException | None = None,
    detail: str | None = None,
) -> tuple[Any, ...]:
    """The sparse fields of one event, in the log's order."""
    if error is None:
        return (status, state_from, state_to, step, duration_s, None, None, detail)
    return (status, state_from, state_to, step, duration_s, type(error).__name__, str(error), detail)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool_", "bool"))


class _Run:
    """The manager's record of one tasklet while (and after) it runs."""

    __slots__ = (
        "tasklet", "tix", "keys", "fn", "is_async", "plan", "task_label", "status",
        "handle", "timed_out", "planning", "seq0", "waiter", "worker", "on_admit",
    )  # fmt: skip

    def __init__(
        self, tasklet: Tasklet, keys: tuple[str, ...], resolved: tuple[Any, ...], tix: int, seq0: int
    ) -> None:
        self.tasklet = tasklet
        self.keys = keys
        self.tix = tix
        self.seq0 = seq0  # the seq of its tasklet_submitted event
        self.fn, self.is_async, self.plan, self.task_label, _ = resolved
        self.status = "waiting"
        self.handle: TaskletHandle | None = None
        self.timed_out: str | None = None  # the phase whose limit fired
        self.waiter: Any = None  # the pool's waiter, while queued
        self.worker: str | None = None  # where an executor ran the body, if not here
        self.planning = False
        self.on_admit: Callable[[], None] | None = None  # run_many's: called once admitted after waiting


class ExecutionManager:
    """Runs tasklets under a global concurrency limit and per-resource limits.

    ``plans``: the :class:`Plan` objects whose tasks and state maps tasklets may use.
    ``max_concurrency``: how many tasklets may plan or run at once. ``capacities``:
    resource capacities declared up front (tags ``name:N`` declare them too; a tag that
    contradicts a known capacity is a :class:`ResourceTagError`). ``event_log``: a path
    to also write every event to SQLite, every ``flush_interval`` seconds;
    ``keep_events=N`` then keeps only about the newest N events in memory (the frames
    read older ones from the file). ``planning_timeout``: default limit for the
    planning phase. ``executor``: where task bodies run (default: here; see
    :class:`Executor`, e.g. ``aura_nb.DaskExecutor``).

    Use it as ``async with ExecutionManager(...) as em:``, or call ``await em.aclose()``
    when done.
    """

    def __init__(
        self,
        *,
        plans: Iterable[Plan] = (),
        max_concurrency: int = 8,
        capacities: Mapping[str, int] | None = None,
        event_log: str | Any | None = None,
        flush_interval: float = 0.2,
        keep_events: int | None = None,
        planning_timeout: float | None = None,
        executor: Executor | None = None,
    ) -> None:
        max_concurrency = check_capacity(
            max_concurrency, where="ExecutionManager(max_concurrency=...)", what="max_concurrency"
        )
        self.planning_timeout = check_seconds(
            planning_timeout, what="planning_timeout", where="ExecutionManager(planning_timeout=...)"
        )
        self._pool = ResourcePool(max_concurrency)
        self._origin: dict[str, str] = {}
        if capacities is not None:
            if not isinstance(capacities, Mapping):
                raise ResourceTagError(f"capacities {capacities!r} must be a mapping like {{'gpu': 1}}")
            for name, cap in capacities.items():
                where = f"capacities[{name!r}]"
                check_resource_name(name, where=where)
                self._pool.declare(name, check_capacity(cap, where=where))
                self._origin[name] = "capacities="
        if executor is not None and not callable(getattr(executor, "run", None)):
            raise TypeError(f"executor {executor!r} must have an async run(call) method (see aura_nb.core.Executor)")
        #: Where task bodies run: None runs them here (async on the loop, sync in threads).
        self.executor = executor
        self.hooks = HookBus()
        if isinstance(plans, (str, bytes)) or not isinstance(plans, Iterable):
            raise TypeError(f"plans={plans!r}: expected a list of Plan objects, e.g. plans=[plan]")
        if event_log is not None:
            self._writer = _EventWriter(event_log, flush_interval=flush_interval, keep=keep_events)
        elif keep_events is not None:
            raise ValueError("keep_events= needs event_log=<path>: only events written to a file can leave memory")
        else:
            self._writer = _EventWriter()
        self.events = self._writer.log
        self._plans: dict[str, Plan] = {}
        for plan in plans:
            self.add_plan(plan)
        self._resolved: dict[Any, tuple[Any, ...]] = {}
        self._keys: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._live: dict[str, _Run] = {}
        self._counts = dict.fromkeys(STATUSES, 0)
        self._n_planning = 0
        self._n_running = 0
        self._closed = False
        self._idle: anyio.Event | None = None
        self._tg: Any = None
        self._background: set[asyncio.Task[Any]] = set()
        self._native_asyncio: bool | None = None

    # -- configuration ---------------------------------------------------------------
    def add_plan(self, plan: Plan) -> None:
        """Make a plan's tasks and state map available to tasklets (``"plan/task"``)."""
        from ._plan import Plan

        if not isinstance(plan, Plan):
            raise TypeError(f"add_plan() takes a Plan, not {type(plan).__name__}")
        other = self._plans.get(plan.name)
        if other is not None and other is not plan:
            raise ValueError(f"a different plan named {plan.name!r} is already registered with this manager")
        self._plans[plan.name] = plan
        if hasattr(self, "_resolved"):
            self._resolved.clear()

    @property
    def plans(self) -> Mapping[str, Plan]:
        return MappingProxyType(self._plans)

    def set_capacity(self, name: str, capacity: int) -> None:
        """Change (or declare) a resource's capacity, live.

        Growing it admits waiters at once; shrinking it never preempts holders: new
        tasklets wait until fewer than ``capacity`` hold it. Tags that state the old
        capacity are refused afterwards (use the bare tag ``name``).
        """
        where = f"set_capacity({name!r}, {capacity!r})"
        check_resource_name(name, where=where)
        capacity = check_capacity(capacity, where=where)
        self._pool.declare(name, capacity)
        self._origin[name] = "set_capacity()"
        self._keys.clear()

    def set_max_concurrency(self, n: int) -> None:
        """Change the global limit, live (same rules as :meth:`set_capacity`)."""
        n = check_capacity(n, where=f"set_max_concurrency({n!r})", what="max_concurrency")
        self._pool.declare(GLOBAL, n)

    @property
    def max_concurrency(self) -> int:
        return self._pool.capacity[GLOBAL]

    @property
    def capacities(self) -> Mapping[str, int]:
        return MappingProxyType({k: v for k, v in self._pool.capacity.items() if k != GLOBAL})

    # -- validation ------------------------------------------------------------------
    def _resolve_keys(
        self, tasklet: Tasklet, pending: Mapping[str, int] | None = None
    ) -> tuple[tuple[str, ...], list[tuple[str, int]]]:
        """The pool keys of a tasklet's tags, and the capacities its tags declare anew.

        ``pending``: capacities declared by tags of a batch that is being checked (not
        in the pool yet); a bare tag may rely on them.
        """
        tags = tasklet.resource_tags
        keys = self._keys.get(tags)
        if keys is not None:
            return keys, []
        capacity = self._pool.capacity
        new: list[tuple[str, int]] = []
        out = [GLOBAL]
        from_batch = False
        for (name, cap), tag in zip(parse_tags(tags), tags):
            known = capacity.get(name)
            if known is None and pending and name in pending:
                from_batch = True
                if cap is not None and cap != pending[name]:
                    raise ResourceTagError(
                        f"resource tag {tag!r} of tasklet {tasklet.id} ({tasklet.name!r}): capacity {cap} contradicts "
                        f"the capacity {pending[name]} of {name!r} written by an earlier tasklet of the same batch; "
                        f"write the capacity once and use the bare tag {name!r}"
                    )
                out.append(name)
                continue
            if known is None:
                if cap is None:
                    raise ResourceTagError(
                        f"resource tag {tag!r} of tasklet {tasklet.id} ({tasklet.name!r}): no capacity is declared "
                        f"for {name!r}; write '{name}:N' once, or pass capacities={{'{name}': N}} to the manager"
                    )
                new.append((name, cap))
            elif cap is not None and cap != known:
                raise ResourceTagError(
                    f"resource tag {tag!r} of tasklet {tasklet.id} ({tasklet.name!r}): capacity {cap} contradicts "
                    f"the capacity {known} of {name!r} declared by {self._origin.get(name, 'an earlier tag')}; "
                    f"use the bare tag {name!r}, or change it deliberately with set_capacity({name!r}, {cap})"
                )
            out.append(name)
        # Two new tags in one tasklet cannot contradict each other: a resource appears once.
        keys = tuple(out)
        if not new and not from_batch:  # (a batch's capacities are not declared yet)
            self._keys[tags] = keys
        return keys, new

    def _resolve_task(self, tasklet: Tasklet) -> tuple[Any, ...]:
        """(fn, is_async, plan or None, label, plan name or None) for the tasklet's task."""
        task = tasklet.task
        try:
            hit = self._resolved.get(task)
        except TypeError:  # an unhashable callable
            hit = None
        if hit is not None:
            return hit
        if isinstance(task, str):
            plan_name, slash, bare = task.rpartition("/")
            if slash and (not bare or not plan_name):
                raise TaskNotFoundError(
                    f"tasklet {tasklet.id}: task {task!r}: write 'plan/task' with both parts "
                    f"(known: {self._known_tasks()})"
                )
            if slash:
                plan = self._plans.get(plan_name)
                if plan is None:
                    known = ", ".join(sorted(self._plans)) or "none registered"
                    raise TaskNotFoundError(
                        f"tasklet {tasklet.id}: task {task!r}: no plan named {plan_name!r} (plans: {known}); "
                        "pass it with ExecutionManager(plans=[...]) or em.add_plan(plan)"
                    )
                spec = plan.get_task(bare)
            else:
                owners = [p for p in self._plans.values() if bare in p.tasks]
                if len(owners) != 1:
                    if owners:
                        which = ", ".join(f"'{p.name}/{bare}'" for p in owners)
                        raise TaskNotFoundError(f"tasklet {tasklet.id}: task {task!r} is ambiguous: write {which}")
                    raise TaskNotFoundError(
                        f"tasklet {tasklet.id}: no task named {task!r} (known: {self._known_tasks()})"
                    )
                plan = owners[0]
                spec = plan.tasks[bare]
            resolved: tuple[Any, ...] = (spec.fn, spec.is_async, plan, spec.qualified, plan.name)
        else:
            owners = [p for p in self._plans.values() if p.spec_for(task) is not None]
            plan = owners[0] if len(owners) == 1 else None
            label = owners[0].spec_for(task).qualified if plan is not None else _callable_name(task)
            resolved = (task, _is_async(task), plan, label, plan.name if plan is not None else None)
        try:
            if len(self._resolved) > 10_000:
                self._resolved.clear()
            self._resolved[task] = resolved
        except TypeError:
            pass
        return resolved

    def _validate(
        self, tasklet: Tasklet, pending: Mapping[str, int] | None = None
    ) -> tuple[tuple[Any, ...], tuple[str, ...], list[tuple[str, int]]]:
        """Everything submit checks: (resolved task, pool keys, capacities to declare)."""
        if not isinstance(tasklet, Tasklet):
            shown = repr(tasklet) if len(repr(tasklet)) <= 80 else repr(tasklet)[:77] + "..."
            raise TypeError(
                f"expected an aura_nb Tasklet, got {type(tasklet).__name__} {shown}; describe the run first, "
                "e.g. an.Tasklet(my_function, params={...}) or an.Tasklet('plan/task')"
            )
        resolved = self._resolve_task(tasklet)
        keys, new = self._resolve_keys(tasklet, pending)
        state = tasklet.required_initial_state
        if state is not None:
            plan = resolved[2]
            if plan is None:
                raise TaskletError(
                    f"tasklet {tasklet.id}: required_initial_state {state!r} needs a plan: register the task with "
                    "@plan.task and name it 'plan/task'"
                )
            if state not in plan.states:
                known = ", ".join(plan.states) or "no states yet"
                raise TaskletError(
                    f"tasklet {tasklet.id}: required_initial_state {state!r} is not a state of plan "
                    f"{plan.name!r} (known: {known})"
                )
        return resolved, keys, new

    def validate(self, tasklet: Tasklet) -> None:
        """Raise what ``submit`` would raise for this tasklet, without running it (a dry run)."""
        self._validate(tasklet)

    def _known_tasks(self) -> str:
        known = [f"{p.name}/{name}" for p in self._plans.values() for name in p.tasks]
        return ", ".join(known[:20]) + (" ..." if len(known) > 20 else "") or "none registered"

    def _admit(self, tasklet: Tasklet) -> _Run:
        """Validate and register a tasklet; records ``tasklet_submitted``. Nothing waits yet."""
        if self._closed:
            raise ManagerClosedError(
                f"tasklet {getattr(tasklet, 'id', '?')}: this ExecutionManager is closed; create a new one"
            )
        # Fast path: a known task and tag set, no state to reach (both cached).
        keys: tuple[str, ...] | None = self._keys.get(tasklet.resource_tags) if type(tasklet) is Tasklet else None
        resolved = None
        if keys is not None and tasklet.required_initial_state is None:
            try:
                resolved = self._resolved.get(tasklet.task)
            except TypeError:
                pass
        new: list[tuple[str, int]]
        if resolved is None:
            resolved, keys, new = self._validate(tasklet)
        else:
            new = _NO_NEW
        if tasklet.id in self._live:
            raise TaskletError(f"tasklet {tasklet.id} is already submitted and not finished; create a new Tasklet")
        # Everything is valid: only now declare capacities named by tags for the first time.
        if new:
            for name, cap in new:
                self._pool.declare(name, cap)
                self._origin[name] = f"tag '{name}:{cap}' (tasklet {tasklet.id})"
            self._keys[tasklet.resource_tags] = keys  # type: ignore[assignment]  # set by _validate
        tix, seq0 = self._writer.add_submitted(
            (tasklet.id, tasklet.name, resolved[3], resolved[4], ",".join(tasklet.resource_tags)), _SUBMITTED, _now()
        )
        run = self._live[tasklet.id] = _Run(tasklet, keys, resolved, tix, seq0)  # type: ignore[arg-type]
        return run

    # -- running ---------------------------------------------------------------------
    async def submit(self, tasklet: Tasklet) -> Any:
        """Run a tasklet to its end; return the task's result or raise.

        Raises the task's own exception unchanged, :class:`TaskletTimeoutError` when a
        limit fires, :class:`StatePlanningError` when the state cannot be reached; a
        cancellation propagates after the hooks ran and every resource was released.
        """
        # One coroutine per tasklet, not two: start() hands its pre-admitted _Run here.
        if type(tasklet) is _Run:
            run = tasklet
        else:
            run = self._admit(tasklet)
            run.waiter = self._pool.try_acquire(run.keys, run)
        if self._native_asyncio is None:
            try:
                self._native_asyncio = asyncio.current_task() is not None
            except RuntimeError:  # trio
                self._native_asyncio = False
        hooks = self.hooks.by_code
        sync_only = self.hooks.sync_only
        log = self._writer
        tix = run.tix
        waiter, run.waiter = run.waiter, None
        waiting = False
        try:
            if hooks[_SUBMITTED]:
                if sync_only[_SUBMITTED]:
                    self._fire_sync(_SUBMITTED, run.seq0, run)
                else:
                    await self._fire(_SUBMITTED, run.seq0, run)
            if waiter is not None:
                waiting = True
                await self._pool.wait(waiter)  # cleans up after itself when cancelled
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
        tasklet = run.tasklet
        # The common case: nothing to do between acquiring and running (no hook on
        # resources_acquired, no state to reach): both events at once.
        direct = not hooks[_ACQUIRED] and tasklet.required_initial_state is None and run.handle is None
        if direct:
            run.status = "running"
            self._n_running += 1
            seq = log.record_pair(_ACQUIRED, _BEFORE, tix, t_run := _now())
        else:
            seq = log.record(_ACQUIRED, tix, _now())
        try:
            if not direct:
                if run.handle is not None and run.handle._cancel_requested:
                    await anyio.lowlevel.checkpoint()  # cancelled before its task ran: stop here
                if hooks[_ACQUIRED]:
                    if sync_only[_ACQUIRED]:
                        self._fire_sync(_ACQUIRED, seq, run)
                    else:
                        await self._fire(_ACQUIRED, seq, run)
                if tasklet.required_initial_state is not None:
                    await self._bring_to_state(run)
                run.status = "running"
                self._n_running += 1
                seq = log.record(_BEFORE, tix, t_run := _now())
            if hooks[_BEFORE]:
                if sync_only[_BEFORE]:  # the three Aura hooks are called inline: no extra frame
                    event = Event(self.events, seq, _EMPTY_X, tasklet)
                    for fn, _ in hooks[_BEFORE]:
                        try:
                            fn(event)
                        except Exception as exc:
                            self._sync_hook_raised(fn, event, run, exc)
                else:
                    await self._fire(_BEFORE, seq, run, _EMPTY_X)
            params = tasklet.params
            if self.executor is not None:
                result = await self._call_executor(run)
            elif not run.is_async:
                result = await self._call_sync_body(run)
            elif tasklet.timeout is None:  # the common cases inline: no extra frame
                result = await (run.fn(**params) if params else run.fn())
            elif not self._native_asyncio:  # trio: an anyio cancel scope bounds the body
                # (entered before the body: trio's scopes must nest with the body's own)
                with anyio.move_on_after(tasklet.timeout) as scope:
                    result = await run.fn(**params)
                if scope.cancelled_caught:
                    run.timed_out = "run"
                    raise self._timeout_error(run, "run", tasklet.timeout)
            else:
                # asyncio: the timer is armed only if the body suspends. One that returns
                # without suspending could not have been interrupted anyway, and arming
                # a timer costs more than a no-op task. The deadline counts from t_run.
                coro = run.fn(**params) if params else run.fn()
                if type(coro) is not CoroutineType:  # another kind of awaitable
                    coro = _awaited(coro)
                try:
                    first = coro.send(None)
                except StopIteration as done:
                    result = done.value
                else:
                    result = await self._rest_under_timeout(run, coro, first, t_run)
            if run.worker is None:
                x = _EMPTY_X
                seq = log.record(_SUCCESS, tix, _now())
            else:
                x = _x(detail=run.worker)
                seq = log.record_x(_SUCCESS, tix, _now(), x)
            if hooks[_SUCCESS]:
                if sync_only[_SUCCESS]:
                    event = Event(self.events, seq, x, tasklet, None, None, result)
                    for fn, _ in hooks[_SUCCESS]:
                        try:
                            fn(event)
                        except Exception as exc:
                            self._sync_hook_raised(fn, event, run, exc)
                else:
                    await self._fire(_SUCCESS, seq, run, x, result=result)
        except BaseException as exc:
            await self._conclude(run, exc, holding=True)
            raise
        # Success: release, then after_task_run.
        self._pool.release(run.keys)
        run.status = "succeeded"
        x = _SUCCEEDED_X
        pending: BaseException | None = None
        if hooks[_RELEASED]:
            seq = log.record(_RELEASED, tix, _now())
            try:
                if sync_only[_RELEASED]:
                    self._fire_sync(_RELEASED, seq, run)
                else:
                    await self._fire(_RELEASED, seq, run)
            except BaseException as exc:
                # A cancelled resources_released hook must not lose the tasklet: it
                # still ends and after_task_run still fires, then the cancellation goes on.
                pending = exc
            self._end(run)
            seq = log.record_x(_AFTER, tix, _now(), x)
        else:
            self._end(run)
            seq = log.record_pair(_RELEASED, _AFTER, tix, _now(), x)
        if hooks[_AFTER]:
            if sync_only[_AFTER]:
                event = Event(self.events, seq, x, tasklet, None, None, result)
                for fn, _ in hooks[_AFTER]:
                    try:
                        fn(event)
                    except Exception as exc:
                        self._sync_hook_raised(fn, event, run, exc)
            else:
                with anyio.CancelScope(shield=True):
                    await self._fire(_AFTER, seq, run, x, result=result)
        if pending is not None:
            raise pending
        return result

    def start(self, tasklet: Tasklet) -> TaskletHandle:
        """Start a tasklet in the background; returns its :class:`TaskletHandle` at once.

        Inside ``async with ExecutionManager(...)`` the tasklet runs in the manager's
        task group; otherwise (asyncio only, e.g. a Jupyter cell) it runs in a task of
        the running loop, referenced by the manager until it ends.
        """
        if self._closed:
            raise ManagerClosedError(
                f"tasklet {getattr(tasklet, 'id', '?')}: this ExecutionManager is closed; create a new one"
            )
        spawn: Callable[..., Any]
        if self._tg is not None:
            spawn = self._tg.start_soon
        else:
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

        run = self._admit(tasklet)
        handle = run.handle = TaskletHandle(tasklet, run)
        # Queue now: the tasklet's place is fixed by start(), not by when its task runs.
        run.waiter = self._pool.try_acquire(run.keys, run)
        spawn(self._run_handle, handle, run)
        return handle

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
        submitted yet: it has no events, and work submitted elsewhere meanwhile may
        go first.

        Every tasklet runs to its end even when others fail. Then, if some failed,
        the first failure (in batch order) is raised, with a note that counts them;
        ``return_exceptions=True`` returns the exceptions in place of results instead.
        Cancelling the caller cancels the whole batch: each running tasklet reports
        and releases as usual, no more are fed, and the cancellation propagates. (It
        reaches the batch where a tasklet suspends, or at the checkpoint a worker takes
        every 2 ms, so tasklets that never suspend may go on for up to that long.)
        Tasklets of a batch have no handles: use :meth:`start` to cancel one by one.
        """
        batch, groups = self._check_batch(tasklets)
        n = len(batch)
        results: list[Any] = [None] * n
        failed: list[int] = []
        pool = self._pool
        # The next tasklet of every group (same tags) that may be fed, by batch position.
        # A group whose fed tasklet waits in the pool is out of the heap until admitted.
        heads = [(queue[0], tags) for tags, queue in groups.items()]
        heapq.heapify(heads)
        unstarted = 0  # workers spawned that have not picked a tasklet yet
        stopping = False  # the batch is being cancelled

        def next_of(tags: tuple[str, ...]) -> None:
            queue = groups[tags]
            if queue:
                heapq.heappush(heads, (queue[0], tags))

        def more_workers() -> None:
            # One helper is always ready while tasklets remain unfed: it runs as soon as
            # every other worker is suspended (in a tasklet, or waiting in the pool), so
            # slots freed by anyone (or a larger max_concurrency) never sit idle. Workers
            # stay bounded: each one runs an admitted tasklet or holds its group's place
            # in the pool's queue.
            nonlocal unstarted
            if heads and not unstarted and not stopping:
                unstarted += 1
                tg.start_soon(worker)

        def admitted(tags: tuple[str, ...], run: _Run) -> None:
            run.on_admit = None
            next_of(tags)
            more_workers()

        async def worker() -> None:
            nonlocal unstarted, stopping
            unstarted -= 1
            if anyio.current_effective_deadline() == -math.inf:
                stopping = True  # a helper started after the batch was cancelled
                return
            since = _now()
            while heads and not stopping:
                i, tags = heads[0]
                queue = groups[tags]
                queue.popleft()
                try:
                    run = self._admit(batch[i])
                except Exception as exc:  # e.g. the manager was closed meanwhile
                    heapq.heappop(heads)
                    next_of(tags)
                    results[i] = exc
                    failed.append(i)
                    continue
                waiter = run.waiter = pool.try_acquire(run.keys, run)
                if waiter is None or waiter.admitted:
                    if queue:  # the next of its group may be fed at once
                        heapq.heapreplace(heads, (queue[0], tags))
                    else:
                        heapq.heappop(heads)
                else:
                    # It waits in the pool's queue (here, inline); its group waits behind it.
                    heapq.heappop(heads)
                    run.on_admit = functools.partial(admitted, tags, run)
                if not unstarted and heads:
                    more_workers()
                try:
                    results[i] = await self.submit(run)  # type: ignore[arg-type]
                except Exception as exc:
                    results[i] = exc
                    failed.append(i)
                except BaseException as exc:
                    if isinstance(exc, cancelled_cls) and not _cancel_requested():
                        # A body raised a stray cancellation (e.g. it awaited a future
                        # someone cancelled): that tasklet's outcome, not the batch's.
                        results[i] = cancelled_error(batch[i])
                        failed.append(i)
                    elif isinstance(exc, cancelled_cls):
                        # The batch is cancelled: feed no more, even to a worker whose
                        # tasklets never reach a checkpoint.
                        stopping = True
                        raise
                    else:  # KeyboardInterrupt, SystemExit...: stop, re-raised as it is below
                        stopping = True
                        fatal.append(exc)
                        tg.cancel_scope.cancel()
                        return
                finally:
                    if run.on_admit is not None:  # it ended without being admitted
                        run.on_admit()
                if _now() - since > _BATCH_SLICE:
                    # Tasklets that never suspend would otherwise starve the loop.
                    try:
                        await anyio.lowlevel.checkpoint()
                    except BaseException:
                        stopping = True
                        raise
                    since = _now()

        cancelled_cls = anyio.get_cancelled_exc_class()
        fatal: list[BaseException] = []
        if n:
            async with anyio.create_task_group() as tg:  # helpers, spawned as needed
                unstarted = 1
                await worker()  # the first worker is this task
            if fatal:
                raise fatal[0]
        if failed and not return_exceptions:
            first = min(failed)
            exc = results[first]
            exc.add_note(
                f"run_many: the tasklet at position {first} of the batch of {n} failed"
                + (f", and {len(failed) - 1} more" if len(failed) > 1 else "")
                + "; every tasklet ran to its end. run_many(..., return_exceptions=True) returns every outcome."
            )
            raise exc
        return results

    def _check_batch(self, tasklets: Iterable[Tasklet]) -> tuple[list[Tasklet], dict[tuple[str, ...], deque[int]]]:
        """Everything ``run_many`` can check before anything starts."""
        if self._closed:
            raise ManagerClosedError("run_many: this ExecutionManager is closed; create a new one")
        if isinstance(tasklets, (Tasklet, str, bytes)) or not isinstance(tasklets, Iterable):
            raise TypeError(
                f"run_many() takes an iterable of Tasklets, e.g. [an.Tasklet(f) for _ in range(10)], "
                f"not {type(tasklets).__name__} {tasklets!r:.80}"
            )
        batch = list(tasklets)
        n = len(batch)
        pending: dict[str, int] = {}  # capacities the batch's tags declare (not in the pool yet)
        tag_sets: set[tuple[str, ...]] = set()  # checked already in this batch (declaring nothing yet)
        resolved = self._resolved
        last_task: Any = _NOTHING  # the task and tags of the previous tasklet, known good
        last_tags: Any = _NOTHING
        one_group = True
        i = 0

        def note(exc: BaseException) -> BaseException:
            exc.add_note(f"run_many: the tasklet at position {i} of the batch of {n}; nothing was started")
            return exc

        for i, tasklet in enumerate(batch):  # noqa: B007 - note() reads i
            if type(tasklet) is Tasklet and tasklet.required_initial_state is None:
                if tasklet.task is last_task and tasklet.resource_tags == last_tags:
                    continue
                if tasklet.resource_tags in tag_sets and not _uncached(resolved, tasklet.task):
                    new = _NO_NEW
                else:
                    try:
                        _, _, new = self._validate(tasklet, pending)
                    except Exception as exc:
                        raise note(exc) from None
                    tag_sets.add(tasklet.resource_tags)
                if last_tags is not _NOTHING and tasklet.resource_tags != last_tags:
                    one_group = False
                last_task, last_tags = tasklet.task, tasklet.resource_tags
            else:
                try:
                    _, _, new = self._validate(tasklet, pending)
                except Exception as exc:
                    raise note(exc) from None
                one_group = False
            for name, cap in new:  # later tags of the batch are checked against these
                pending[name] = cap
        ids = [tasklet.id for tasklet in batch]
        seen = set(ids)
        if len(seen) != n or not seen.isdisjoint(self._live):
            first: set[str] = set()
            for i, tasklet_id in enumerate(ids):  # noqa: B007 - note() reads i
                if tasklet_id in first or tasklet_id in self._live:
                    raise note(
                        TaskletError(
                            f"tasklet {tasklet_id} is already "
                            + ("in this batch" if tasklet_id in first else "submitted and not finished")
                            + "; a batch needs a new Tasklet per run"
                        )
                    )
                first.add(tasklet_id)
        groups: dict[tuple[str, ...], deque[int]] = {}  # batch positions by tags, in order
        if one_group and n:
            groups[batch[0].resource_tags] = deque(range(n))
        else:
            for i, tasklet in enumerate(batch):
                group = groups.get(tasklet.resource_tags)
                if group is None:
                    group = groups[tasklet.resource_tags] = deque()
                group.append(i)
        return batch, groups

    async def _run_handle(self, handle: TaskletHandle, run: _Run) -> None:
        with anyio.CancelScope() as scope:
            handle._scope = scope
            if handle._cancel_requested:
                scope.cancel()
            try:
                result = await self.submit(run)  # type: ignore[arg-type]
            except BaseException as exc:
                # Never hand the backend's cancellation to whoever awaits the handle:
                # they were not cancelled (this can happen after the body succeeded,
                # when a hook of the success path is cancelled).
                cancelled = run.status == "cancelled" or isinstance(exc, anyio.get_cancelled_exc_class())
                handle._finish(None, cancelled_error(run.tasklet) if cancelled else exc)
                if isinstance(exc, Exception):
                    return  # kept in the handle: a failing tasklet must not tear down the task group
                raise
            handle._finish(result, None)

    async def _rest_under_timeout(self, run: _Run, coro: Any, first: Any, t_run: float) -> Any:
        """On asyncio: the rest of a suspended body, under the tasklet's timeout from ``t_run``."""
        limit = run.tasklet.timeout
        assert limit is not None  # only called for a tasklet with a timeout
        # asyncio.timeout (not an anyio scope): it does not care how it nests with
        # scopes the body entered before suspending, and costs half as much.
        cm = asyncio.timeout(max(limit - (_now() - t_run), 0.0))
        try:
            async with cm:
                return await _Resume(coro, first)
        except TimeoutError:
            if cm.expired():
                run.timed_out = "run"
                raise self._timeout_error(run, "run", limit) from None
            raise

    async def _call_executor(self, run: _Run) -> Any:
        """Run the body on ``self.executor`` under the tasklet's timeout."""
        tasklet = run.tasklet

        def note_worker(address: str) -> None:
            run.worker = address

        call = TaskCall(run.fn, tasklet.params, run.is_async, tasklet, run.keys[1:], note_worker)
        limit = tasklet.timeout
        if limit is None:
            return await self.executor.run(call)
        with anyio.move_on_after(limit):
            return await self.executor.run(call)
        run.timed_out = "run"
        raise self._timeout_error(run, "run", limit)

    async def _call_sync_body(self, run: _Run) -> Any:
        """A sync task body, in a worker thread, under the tasklet's timeout."""
        tasklet = run.tasklet
        limit = tasklet.timeout
        call = functools.partial(run.fn, **tasklet.params) if tasklet.params else run.fn
        if limit is None:
            return await _in_thread(call)
        # A thread cannot be interrupted: the tasklet keeps its tokens until the thread
        # returns. Whether it ran over is measured in the thread itself, so a busy
        # event loop noticing the deadline late does not invent a timeout.
        outcome: list[Any] = []

        def timed() -> None:
            t0 = _now()
            value = call()
            outcome.extend((value, _now() - t0))

        with anyio.move_on_after(limit):
            await _in_thread(timed)
        if not outcome or outcome[1] > limit:
            run.timed_out = "run"
            raise self._timeout_error(run, "run", limit)
        return outcome[0]

    @staticmethod
    def _timeout_error(run: _Run, phase: str, limit: float) -> TaskletTimeoutError:
        what = "its task" if phase == "run" else "planning its state"
        extra = "" if run.is_async or phase != "run" else " (a sync task cannot be interrupted: it ran to its end)"
        return TaskletTimeoutError(
            f"tasklet {run.tasklet.id} ({run.tasklet.name!r}): {what} took longer than its {phase} limit of "
            f"{limit:g} s{extra}",
            phase=phase,
            limit=limit,
            tasklet_id=run.tasklet.id,
        )

    async def _conclude(self, run: _Run, exc: BaseException, *, holding: bool) -> None:
        """The failure path: classify, fire hooks, release, ``after_task_run``.

        The caller re-raises ``exc`` unchanged. Shielded, so that a cancelled
        tasklet still reports and releases everything before the cancellation goes on.
        """
        cancelled_cls = anyio.get_cancelled_exc_class()
        if isinstance(exc, cancelled_cls):
            status = "cancelled"
        elif run.timed_out is not None and isinstance(exc, TaskletTimeoutError):
            status = "timeout"
        elif run.planning and isinstance(exc, StatePlanningError):
            status = "planning_failed"
        elif isinstance(exc, ManagerClosedError) and not holding:
            status = "cancelled"
        else:
            status = "failed"
        if run.status == "running":
            self._n_running -= 1
        elif run.status == "planning":
            self._n_planning -= 1
        run.status = status
        hooks = self.hooks.by_code
        log = self._writer
        tix = run.tix
        # The shield holds off anyio/trio cancellation; a *native* asyncio cancel can
        # still interrupt a hook, so the bookkeeping sits in `finally` blocks: only
        # hooks can be cut short, never the release or the terminal event.
        with anyio.CancelScope(shield=True):
            seq = log.record_x(_FAILURE, tix, _now(), _x(status, error=exc, detail=run.worker))
            try:
                if hooks[_FAILURE]:
                    await self._fire(_FAILURE, seq, run, error=exc)  # still holding, as in Aura
            finally:
                if holding:
                    self._pool.release(run.keys)
                    seq = log.record(_RELEASED, tix, _now())
                self._end(run)
                seq_after = log.record_x(_AFTER, tix, _now(), _x(status, error=exc))
                try:
                    if holding and hooks[_RELEASED]:
                        await self._fire(_RELEASED, seq, run)
                finally:
                    if hooks[_AFTER]:
                        await self._fire(_AFTER, seq_after, run, error=exc)

    def _end(self, run: _Run) -> None:
        if run.status == "succeeded":
            self._n_running -= 1
        self._counts[run.status] += 1
        del self._live[run.tasklet.id]
        if not self._live and self._idle is not None:
            self._idle.set()
            self._idle = None

    # -- hooks -----------------------------------------------------------------------
    async def _fire(
        self, code: int, seq: int, run: _Run, x: tuple[Any, ...] | None = None,
        result: Any = None, error: BaseException | None = None, path: Any = None,
    ) -> None:  # fmt: skip
        """Call every hook of ``code`` with the event; a raising hook becomes ``hook_error``."""
        event = Event(self.events, seq, x, run.tasklet, error, path, result)
        for fn, is_async in self.hooks.by_code[code]:
            try:
                if is_async:
                    await fn(event)
                else:
                    fn(event)
            except Exception as exc:
                err_seq = self._hook_failed(fn, event, run, exc)
                if code != _HOOK_ERROR and self.hooks.by_code[_HOOK_ERROR]:
                    await self._fire(_HOOK_ERROR, err_seq, run, error=exc)

    def _fire_sync(
        self, code: int, seq: int, run: _Run, x: tuple[Any, ...] | None = None,
        result: Any = None, error: BaseException | None = None, path: Any = None,
    ) -> None:  # fmt: skip
        """:meth:`_fire` without a coroutine, when ``hooks.sync_only[code]``."""
        event = Event(self.events, seq, x, run.tasklet, error, path, result)
        for fn, _ in self.hooks.by_code[code]:
            try:
                fn(event)
            except Exception as exc:
                self._sync_hook_raised(fn, event, run, exc)

    def _sync_hook_raised(self, fn: Any, event: Event, run: _Run, exc: Exception) -> None:
        """A sync hook raised: record ``hook_error`` and call its (sync) hooks."""
        err_seq = self._hook_failed(fn, event, run, exc)
        if event._r()[1] != _HOOK_ERROR and self.hooks.by_code[_HOOK_ERROR]:
            self._fire_sync(_HOOK_ERROR, err_seq, run, error=exc)

    def _hook_failed(self, fn: Any, event: Event, run: _Run, exc: Exception) -> int:
        hook = getattr(fn, "__qualname__", repr(fn))
        return self._writer.record_x(_HOOK_ERROR, run.tix, _now(), _x(error=exc, detail=f"{event.event} hook {hook}"))

    # -- planning --------------------------------------------------------------------
    async def _bring_to_state(self, run: _Run) -> None:
        run.status = "planning"
        run.planning = True
        self._n_planning += 1
        limit = run.tasklet.planning_timeout or self.planning_timeout
        if limit is None:
            await self._plan_and_move(run)
        else:
            with anyio.move_on_after(limit) as scope:
                await self._plan_and_move(run)
            if scope.cancelled_caught:
                run.timed_out = "planning"
                raise self._timeout_error(run, "planning", limit)
        self._n_planning -= 1
        run.planning = False

    async def _call_plan_task(self, plan: Plan, task: str, *, abandon: bool = False) -> Any:
        spec = plan.get_task(task)
        if spec.is_async:
            return await spec.fn()
        if abandon:
            return await anyio.to_thread.run_sync(spec.fn, abandon_on_cancel=True)
        return await _in_thread(spec.fn)

    async def _check(self, run: _Run, plan: Plan, state: str) -> bool:
        """Run one state's check; a check must return a bool (no truthiness guessing)."""
        check = plan.states[state].check
        t0 = _now()
        try:
            # A check only reads: when planning times out, a hung sync check is abandoned.
            value = await self._call_plan_task(plan, check, abandon=True)
        except Exception as exc:
            self._writer.record_x(_CHECK, run.tix, _now(), _x(state_to=state, duration_s=_now() - t0, error=exc))
            raise StatePlanningError(
                f"tasklet {run.tasklet.id}: the check {check!r} of state {state!r} raised {type(exc).__name__}: {exc}",
                reason="check_failed",
                plan=plan.name,
                target=run.tasklet.required_initial_state or state,
            ) from exc
        if not _is_bool(value):
            self._writer.record_x(_CHECK, run.tix, _now(), _x(state_to=state, duration_s=_now() - t0, detail="invalid"))
            raise StatePlanningError(
                f"tasklet {run.tasklet.id}: the check {check!r} of state {state!r} returned {value!r} "
                f"({type(value).__name__}); a check must return True or False",
                reason="check_failed",
                plan=plan.name,
                target=run.tasklet.required_initial_state or state,
            )
        value = bool(value)
        seq = self._writer.record_x(
            _CHECK, run.tix, _now(), _x(state_to=state, duration_s=_now() - t0, detail=str(value).lower())
        )
        if self.hooks.by_code[_CHECK]:
            await self._fire(_CHECK, seq, run)
        return value

    async def _plan_and_move(self, run: _Run) -> None:
        plan = run.plan
        target = run.tasklet.required_initial_state
        assert plan is not None and target is not None
        log = self._writer
        hooks = self.hooks.by_code
        tix = run.tix
        if await self._check(run, plan, target):
            seq = log.record_x(_PLANNING_DONE, tix, _now(), _x(state_from=target, state_to=target, detail="already"))
            if hooks[_PLANNING_DONE]:
                await self._fire(_PLANNING_DONE, seq, run)
            return
        # Where are we? Every other state's check, concurrently.
        others = [s for s in plan.states if s != target]
        results: dict[str, Any] = {}

        async def probe(state: str) -> None:
            try:
                results[state] = await self._check(run, plan, state)
            except StatePlanningError as exc:
                results[state] = exc

        async with anyio.create_task_group() as tg:
            for state in others:
                tg.start_soon(probe, state)
        for state in others:  # report the first failing check, in map order
            if isinstance(results.get(state), StatePlanningError):
                raise results[state]
        current = [s for s in others if results[s] is True]
        if not current:
            raise StatePlanningError(
                f"tasklet {run.tasklet.id}: no state of plan {plan.name!r} is current: every check returned False "
                f"(checked: {', '.join(plan.states)})",
                reason="no_current_state",
                plan=plan.name,
                target=target,
            )
        if len(current) > 1:
            raise StatePlanningError(
                f"tasklet {run.tasklet.id}: several states of plan {plan.name!r} claim to be current: "
                f"{', '.join(current)}; their checks must exclude each other",
                reason="several_current_states",
                plan=plan.name,
                target=target,
                current=tuple(current),
            )
        (start,) = current
        try:
            path = plan.find_path(start, target)
        except StatePlanningError as exc:
            raise StatePlanningError(
                f"tasklet {run.tasklet.id}: {exc}", reason=exc.reason, plan=plan.name, target=target, current=start
            ) from None
        seq = log.record_x(
            _PLANNED, tix, _now(),
            _x(state_from=start, state_to=target, step=len(path), duration_s=None, detail=" -> ".join(path.states)),
        )  # fmt: skip
        if hooks[_PLANNED]:
            await self._fire(_PLANNED, seq, run, path=path)
        for step in path.steps:
            seq = log.record_x(
                _STEP_START, tix, _now(), _x(state_from=step.from_state, state_to=step.to_state, step=step.index,
                                             detail=step.task)  # fmt: skip
            )
            if hooks[_STEP_START]:
                await self._fire(_STEP_START, seq, run, path=path)
            t0 = _now()
            try:
                await self._call_plan_task(plan, step.task)
            except Exception as exc:
                seq = log.record_x(
                    _STEP_END, tix, _now(),
                    _x(state_from=step.from_state, state_to=step.to_state, step=step.index, duration_s=_now() - t0,
                       error=exc, detail="failed"),
                )  # fmt: skip
                if hooks[_STEP_END]:
                    await self._fire(_STEP_END, seq, run, path=path, error=exc)
                raise StatePlanningError(
                    f"tasklet {run.tasklet.id}: transition {step.index + 1} of {len(path)} "
                    f"({step.from_state} -> {step.to_state}, task {step.task!r}) failed: {type(exc).__name__}: {exc}",
                    reason="transition_failed",
                    plan=plan.name,
                    target=target,
                    current=start,
                    path=path,
                    failed_step=step.index,
                ) from exc
            seq = log.record_x(
                _STEP_END, tix, _now(),
                _x(state_from=step.from_state, state_to=step.to_state, step=step.index, duration_s=_now() - t0,
                   detail="done"),
            )  # fmt: skip
            if hooks[_STEP_END]:
                await self._fire(_STEP_END, seq, run, path=path)
        if not await self._check(run, plan, target):
            raise StatePlanningError(
                f"tasklet {run.tasklet.id}: after the path {' -> '.join(path.states)}, the check of {target!r} "
                "still returned False",
                reason="final_check_failed",
                plan=plan.name,
                target=target,
                current=start,
                path=path,
            )
        seq = log.record_x(
            _PLANNING_DONE, tix, _now(), _x(state_from=start, state_to=target, step=len(path), detail="reached")
        )
        if hooks[_PLANNING_DONE]:
            await self._fire(_PLANNING_DONE, seq, run, path=path)

    # -- looking inside ----------------------------------------------------------------
    def statistics(self) -> ManagerStatistics:
        """A frozen snapshot of every limit and of the tasklets' phases."""
        pool = self._pool
        cap, used, waiting = pool.capacity, pool.in_use, pool.waiting
        resources = {
            name: LimitStatistics(name, cap[name], used[name], waiting[name]) for name in cap if name != GLOBAL
        }
        return ManagerStatistics(
            t=_now(),
            global_limit=LimitStatistics("global", cap[GLOBAL], used[GLOBAL], waiting[GLOBAL]),
            resources=MappingProxyType(resources),
            waiting=pool.n_waiting,
            planning=self._n_planning,
            running=self._n_running,
            by_status=MappingProxyType(dict(self._counts)),
        )

    def live(self) -> list[tuple[Tasklet, str]]:
        """(tasklet, status) of every tasklet not finished yet, in submission order."""
        return [(run.tasklet, run.status) for run in self._live.values()]

    def why(self, item: TaskletHandle | Tasklet | str) -> WaitReport:
        """Why is this tasklet waiting? Its queue position and who holds what it needs."""
        tasklet_id = item if isinstance(item, str) else (item.tasklet.id if isinstance(item, TaskletHandle) else item.id)
        run = self._live.get(tasklet_id)
        if run is None:
            return WaitReport(tasklet_id, getattr(getattr(item, "tasklet", item), "name", "?"), "finished", None, 0, (),
                              None)  # fmt: skip
        order = self._pool.waiters_in_order()
        pool = self._pool
        position = next((i for i, (owner, _) in enumerate(order) if owner is run), None)
        queued = {id(owner) for owner, _ in order}
        holders: dict[str, list[str]] = {}
        for other in self._live.values():
            if id(other) not in queued:  # admitted: it holds its tokens
                for key in other.keys:
                    holders.setdefault(key, []).append(f"{other.tasklet.id} ({other.tasklet.name})")
        reserved_by = None
        if position is not None and position > 0:
            oldest, oldest_keys = order[0]
            if any(k in oldest_keys for k in run.keys):
                reserved_by = f"{oldest.tasklet.id} ({oldest.tasklet.name})"
        needs = tuple(
            ResourceWait(
                name="global" if key == GLOBAL else key,
                capacity=pool.capacity[key],
                in_use=pool.in_use[key],
                holders=tuple(holders.get(key, ())),
                busy=pool.in_use[key] >= pool.capacity[key]
                or (reserved_by is not None and pool.in_use[key] + 1 >= pool.capacity[key] and key in order[0][1]),
            )
            for key in run.keys
        )
        return WaitReport(
            tasklet_id, run.tasklet.name, run.status, position, len(order), needs, reserved_by if position else None
        )

    # -- closing ---------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self, *, cancel_running: bool = False, drain: bool = False) -> None:
        """Stop accepting tasklets and wind down.

        Tasklets still waiting for resources end at once with status ``cancelled``
        (their ``submit`` raises :class:`ManagerClosedError`), unless ``drain=True``:
        then they are still admitted and run, and ``aclose`` waits for them too.
        Tasklets planning or running are waited for, or cancelled first with
        ``cancel_running=True`` (only those started with :meth:`start`: a ``submit``
        caller owns its own task). Afterwards nothing is pending, the event log is
        flushed and closed, and ``submit``/``start`` raise :class:`ManagerClosedError`.

        Leaving ``async with`` normally is ``aclose(drain=True)`` (like a task group,
        it waits for everything started inside); leaving it with an exception is
        ``aclose(cancel_running=True)``.
        """
        self._closed = True
        if not drain:
            self._pool.close()
        if cancel_running:
            for run in list(self._live.values()):
                if run.handle is not None:
                    run.handle.cancel()
        while self._live:
            # One event shared by every concurrent aclose(): _end() sets it once.
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()
        self._pool.close()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._writer.aclose()

    async def __aenter__(self) -> ExecutionManager:
        if self._closed:
            raise ManagerClosedError("this ExecutionManager is closed; create a new one")
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        tg, self._tg = self._tg, None
        try:
            if exc_type is None:
                await self.aclose(drain=True)
            else:
                with anyio.CancelScope(shield=True):
                    await self.aclose(cancel_running=True)
        finally:
            # Every started tasklet has ended: leave the task group cleanly, so the
            # body's own exception propagates unchanged (not wrapped in a group).
            await tg.__aexit__(None, None, None)

    def __repr__(self) -> str:
        s = self.statistics()
        state = "closed" if self._closed else "open"
        return (
            f"<ExecutionManager {state}: {s.global_limit.in_use}/{s.global_limit.capacity} slots, "
            f"{s.waiting} waiting, {len(self._plans)} plans, {len(self.events)} events>"
        )


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


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


async def _in_thread(call: Callable[[], Any]) -> Any:
    """Run a sync callable in a worker thread and do not return before it has.

    anyio's shield keeps anyio and trio cancellation out while the thread runs, but on
    asyncio a native ``task.cancel()`` (``asyncio.wait_for``, ``asyncio.timeout``, a
    TaskGroup) would get through and release the tasklet's tokens while its thread is
    still using them. Here such a cancel is held until the thread returns, then
    re-raised.
    """
    try:
        running_asyncio = asyncio.current_task() is not None
    except RuntimeError:
        running_asyncio = False
    if not running_asyncio:
        return await anyio.to_thread.run_sync(call)
    task = asyncio.ensure_future(anyio.to_thread.run_sync(call))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with anyio.CancelScope(shield=True):
            while not task.done():
                try:
                    await asyncio.wait([task])
                except asyncio.CancelledError:
                    continue  # yet another native cancel: the thread still runs
        raise


def _cancel_requested() -> bool:
    """Is the current task being cancelled (not just seeing a stray CancelledError)?"""
    if anyio.current_effective_deadline() == -math.inf:  # an anyio/trio scope
        return True
    try:
        task = asyncio.current_task()
    except RuntimeError:  # trio: cancellation only comes from scopes
        return False
    return task is not None and task.cancelling() > 0  # a native task.cancel()


def _uncached(cache: Mapping[Any, Any], task: Any) -> bool:
    try:
        return task not in cache
    except TypeError:  # an unhashable callable
        return True


def _callable_name(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None and isinstance(fn, functools.partial):
        return _callable_name(fn.func)
    return name or type(fn).__name__
