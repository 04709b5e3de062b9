"""Tasklets (what to run) and handles (a tasklet started in the background)."""

from __future__ import annotations

import itertools
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from types import MappingProxyType
from typing import Any

import anyio

from ._errors import ManagerUsageError, TaskletCancelledError, TaskletError
from ._tags import parse_tags

__all__ = ["Tasklet", "TaskletHandle"]

# Ids are unique within a process and, thanks to the random session prefix, across the
# sessions that append to one SQLite log.
_SESSION = secrets.token_hex(2)
_counter = itertools.count(1)
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _new_id() -> str:
    return f"{_SESSION}-{next(_counter)}"


def check_seconds(value: Any, *, what: str, where: str) -> float | None:
    """None, or a finite number of seconds > 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TaskletError(f"{where}: {what} {value!r} must be a number of seconds > 0, or None for no limit")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite or value <= 0:
        hint = " (use None for no limit)" if not finite and value > 0 else ""
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise TaskletError(f"{where}: {what} {shown} must be a finite number of seconds > 0{hint}")
    return float(value)


@dataclass(frozen=True, slots=True, eq=False)
class Tasklet:
    """One task run, fully described: what to run, with what, needing what.

    ``task`` is a ``"plan/task"`` name (or a bare task name when only one plan has it)
    or any callable; async callables are awaited, sync ones run in a worker thread.
    ``params`` are passed as keyword arguments. ``resource_tags`` like ``"gpu:1"``
    (capacity 1) or ``"gpu"`` (the declared capacity): the tasklet holds one unit of
    each while it plans and runs. ``required_initial_state``: the state of its plan's
    map the system must be in before the body runs. ``timeout`` bounds the body,
    ``planning_timeout`` the planning (None: no limit / the manager's default).

    Tags are parsed here, so a malformed tag fails before anything is submitted.
    """

    task: str | Callable[..., Any]
    _: KW_ONLY
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    resource_tags: tuple[str, ...] = ()
    required_initial_state: str | None = None
    timeout: float | None = None
    planning_timeout: float | None = None
    name: str = ""
    id: str = field(default_factory=_new_id)

    def __post_init__(self) -> None:
        task = self.task
        where = f"Tasklet({task!r})"
        if isinstance(task, str):
            if not task or task.strip() != task:
                raise TaskletError(f"{where}: task name must be a non-empty 'plan/task' or task name")
        elif not callable(task):
            raise TaskletError(f"{where}: task must be a 'plan/task' name or a callable, not {type(task).__name__}")
        params = self.params
        if params is not _EMPTY:
            if not isinstance(params, Mapping):
                raise TaskletError(
                    f"{where}: params {params!r} must be a mapping of keyword arguments, e.g. {{'rounds': 3}}"
                )
            bad = [k for k in params if not isinstance(k, str) or not k.isidentifier()]
            if bad:
                raise TaskletError(f"{where}: params keys {bad!r} are not valid keyword-argument names")
            object.__setattr__(self, "params", MappingProxyType(dict(params)))
        tags = self.resource_tags
        if type(tags) is not tuple:
            if isinstance(tags, (str, bytes)):
                raise TaskletError(f"{where}: resource_tags {tags!r} must be a list of tags like ['gpu:1', 'db']")
            try:
                tags = tuple(tags)
            except TypeError:
                raise TaskletError(f"{where}: resource_tags {tags!r} must be a list of tags like ['gpu:1']") from None
            object.__setattr__(self, "resource_tags", tags)
        if tags:
            parse_tags(tags)
        state = self.required_initial_state
        if state is not None and (not isinstance(state, str) or not state):
            raise TaskletError(f"{where}: required_initial_state {state!r} must be a state name or None")
        if self.timeout is not None:
            object.__setattr__(self, "timeout", check_seconds(self.timeout, what="timeout", where=where))
        if self.planning_timeout is not None:
            object.__setattr__(
                self,
                "planning_timeout",
                check_seconds(self.planning_timeout, what="planning_timeout", where=where),
            )
        if not self.name:
            if isinstance(task, str):
                name = task.rpartition("/")[2]
            else:
                name = getattr(task, "__name__", None) or type(task).__name__
            object.__setattr__(self, "name", name)
        elif not isinstance(self.name, str):
            raise TaskletError(f"{where}: name {self.name!r} must be a string")

    def __repr__(self) -> str:
        task = self.task if isinstance(self.task, str) else getattr(self.task, "__qualname__", repr(self.task))
        bits = [f"{self.id}", repr(task)]
        if self.resource_tags:
            bits.append(f"tags={list(self.resource_tags)}")
        if self.required_initial_state:
            bits.append(f"state={self.required_initial_state!r}")
        if self.timeout is not None:
            bits.append(f"timeout={self.timeout:g}s")
        return f"<Tasklet {' '.join(bits)}>"


class TaskletHandle:
    """A tasklet started with ``em.start(t)``: await it for its result.

    ``status`` is ``"waiting"``, ``"planning"`` or ``"running"`` while it is alive, then
    one of the terminal statuses. ``cancel()`` cancels it wherever it is; awaiting a
    cancelled handle raises :class:`TaskletCancelledError`. Cancelling the task that
    awaits a handle does *not* cancel the tasklet (the handle may be shared).
    """

    __slots__ = ("tasklet", "_run", "_done", "_result", "_error", "_scope", "_cancel_requested", "_callbacks")

    def __init__(self, tasklet: Tasklet, run: Any) -> None:
        self.tasklet = tasklet
        self._run = run  # the manager's per-tasklet record (phase, status)
        self._done = anyio.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._scope: anyio.CancelScope | None = None
        self._cancel_requested = False
        self._callbacks: list[Callable[[TaskletHandle], Any]] = []

    @property
    def id(self) -> str:
        return self.tasklet.id

    @property
    def status(self) -> str:
        return self._run.status

    def done(self) -> bool:
        return self._done.is_set()

    def cancelled(self) -> bool:
        return self.done() and self._run.status == "cancelled"

    def cancel(self) -> bool:
        """Ask the tasklet to stop; returns False if it had already finished."""
        if self.done():
            return False
        self._cancel_requested = True
        if self._scope is not None:
            self._scope.cancel()
        return True

    def result(self) -> Any:
        """The task's return value; raises its exception; raises if not finished yet."""
        if not self.done():
            raise ManagerUsageError(f"tasklet {self.tasklet.id} is still {self.status}; await the handle first")
        if self._error is not None:
            raise self._error
        return self._result

    def exception(self) -> BaseException | None:
        if not self.done():
            raise ManagerUsageError(f"tasklet {self.tasklet.id} is still {self.status}; await the handle first")
        return self._error

    def add_done_callback(self, fn: Callable[[TaskletHandle], Any]) -> None:
        """Call ``fn(handle)`` (sync) when the tasklet finishes, or now if it has."""
        if self.done():
            fn(self)
        else:
            self._callbacks.append(fn)

    async def wait(self) -> Any:
        await self._done.wait()
        return self.result()

    def __await__(self) -> Any:
        return self.wait().__await__()

    def _finish(self, result: Any, error: BaseException | None) -> None:
        self._result = result
        self._error = error
        self._done.set()
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)

    def __repr__(self) -> str:
        return f"<TaskletHandle {self.tasklet.id} {self.tasklet.name!r} {self.status}>"


def cancelled_error(tasklet: Tasklet) -> TaskletCancelledError:
    return TaskletCancelledError(f"tasklet {tasklet.id} ({tasklet.name!r}) was cancelled", tasklet_id=tasklet.id)
