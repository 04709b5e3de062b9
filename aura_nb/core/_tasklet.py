"""Tasklets (what to run) and handles (a tasklet started in the background)."""

from __future__ import annotations

import itertools
import math
import secrets
from collections.abc import Callable, Iterable, Mapping
from types import FunctionType, MappingProxyType
from typing import Any

import anyio

from ._checks import callable_name, seconds
from ._errors import ManagerUsageError, TaskletCancelledError, TaskletError
from ._retry import Retry
from ._tags import parse_tags

__all__ = ["Tasklet", "TaskletHandle"]

# Ids are unique within a process and, thanks to the random session prefix (48 bits:
# a collision among a million sessions appending to one log has odds under 2e-3),
# across the sessions that append to one SQLite log.
_SESSION = secrets.token_hex(6)
_counter = itertools.count(1)
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _check_params(task: Any, params: Any) -> Mapping[str, Any]:
    if not isinstance(params, Mapping):
        raise TaskletError(
            f"Tasklet({task!r}): params {params!r} must be a mapping of keyword arguments, e.g. {{'rounds': 3}}"
        )
    bad = [k for k in params if not isinstance(k, str) or not k.isidentifier()]
    if bad:
        raise TaskletError(f"Tasklet({task!r}): params keys {bad!r} are not valid keyword-argument names")
    return MappingProxyType(dict(params))


def _tags_tuple(task: Any, tags: Any) -> tuple[str, ...]:
    if isinstance(tags, (str, bytes)):
        raise TaskletError(f"Tasklet({task!r}): resource_tags {tags!r} must be a list of tags like ['gpu:1', 'db']")
    if isinstance(tags, Mapping):
        raise TaskletError(f"Tasklet({task!r}): resource_tags {tags!r} must be a list of tags like ['gpu:1'], not a mapping")
    try:
        return tuple(tags)
    except TypeError:
        raise TaskletError(f"Tasklet({task!r}): resource_tags {tags!r} must be a list of tags like ['gpu:1']") from None


def check_seconds(value: Any, *, what: str, where: str) -> float | None:
    """None, or a finite number of seconds > 0 (a :class:`TaskletError` otherwise)."""
    return seconds(value, what=what, where=where, error=TaskletError)


_FIELDS = (
    "task", "params", "resource_tags", "required_initial_state", "timeout", "planning_timeout", "name", "id", "retry",
)  # fmt: skip


class _TaskletFields:
    """A Tasklet's storage: slots that plain stores can fill (see ``Tasklet.__new__``)."""

    __slots__ = _FIELDS


class Tasklet(_TaskletFields):
    """One task run, fully described: what to run, with what, needing what.

    ``task`` is a ``"plan/task"`` name (or a bare task name when only one plan has it)
    or any callable; async callables are awaited, sync ones run in a worker thread.
    ``params`` are passed as keyword arguments. ``resource_tags`` like ``"gpu:1"``
    (capacity 1) or ``"gpu"`` (the declared capacity): the tasklet holds one unit of
    each while it plans and runs. ``required_initial_state``: the state of its plan's
    map the system must be in before the body runs. ``timeout`` bounds the body,
    ``planning_timeout`` the planning (None: no limit / the manager's default).
    ``retry``: run it again when it fails, e.g. ``retry=3`` or ``an.Retry(3, on=(...))``
    (see :class:`Retry`); between attempts it gives everything back and queues again.

    Tags are parsed here, so a malformed tag fails before anything is submitted.
    A Tasklet is immutable (setting an attribute raises ``AttributeError``) and
    compares by identity. It describes one run: submitting the same object again runs
    it again under the same ``id`` (create a new Tasklet to tell the runs apart in the log).
    """

    __slots__ = ()

    task: str | Callable[..., Any]
    params: Mapping[str, Any]
    resource_tags: tuple[str, ...]
    required_initial_state: str | None
    timeout: float | None
    planning_timeout: float | None
    name: str
    id: str
    retry: Retry | None

    # Built in __new__ with plain stores into the storage class, whose class is then
    # switched to Tasklet (same layout): immutable to everyone else, and a third of
    # the cost of calling each slot's setter. It runs once per tasklet, so it counts
    # in the per-tasklet overhead (benchmark rows "1. Throughput").
    def __new__(
        cls,
        task: str | Callable[..., Any],
        *,
        params: Mapping[str, Any] | None = None,
        resource_tags: Iterable[str] = (),
        required_initial_state: str | None = None,
        timeout: float | None = None,
        planning_timeout: float | None = None,
        name: str = "",
        id: str | None = None,  # noqa: A002 - the field is called id
        retry: Retry | int | None = None,
    ) -> Tasklet:
        if type(task) is str:
            if not task or task.strip() != task:
                raise TaskletError(f"Tasklet({task!r}): task name must be a non-empty 'plan/task' or task name")
        elif not callable(task):
            raise TaskletError(
                f"Tasklet({task!r}): task must be a 'plan/task' name or a callable, not {type(task).__name__}"
            )
        if params is None:
            params = _EMPTY
        else:
            params = _check_params(task, params)
        if type(resource_tags) is not tuple:
            resource_tags = _tags_tuple(task, resource_tags)
        if resource_tags:
            parse_tags(resource_tags)
        if required_initial_state is not None and (
            not isinstance(required_initial_state, str) or not required_initial_state
        ):
            raise TaskletError(
                f"Tasklet({task!r}): required_initial_state {required_initial_state!r} must be a state name or None"
            )
        if timeout is not None and not (type(timeout) is float and 0.0 < timeout < math.inf):
            timeout = check_seconds(timeout, what="timeout", where=f"Tasklet({task!r})")
        if planning_timeout is not None and not (type(planning_timeout) is float and 0.0 < planning_timeout < math.inf):
            planning_timeout = check_seconds(planning_timeout, what="planning_timeout", where=f"Tasklet({task!r})")
        if not name:
            if type(task) is str:
                name = task.rpartition("/")[2]
            else:
                name = task.__name__ if type(task) is FunctionType else callable_name(task).rpartition(".")[2]
        elif not isinstance(name, str):
            raise TaskletError(f"Tasklet({task!r}): name {name!r} must be a string")
        if id is None:
            id = f"{_SESSION}-{next(_counter)}"  # noqa: A001
        elif not isinstance(id, str) or not id:
            raise TaskletError(f"Tasklet({task!r}): id {id!r} must be a non-empty string")
        if retry is not None and type(retry) is not Retry:
            retry = Retry.of(retry, f"Tasklet({task!r})")
        self = _new(_TaskletFields)
        self.task = task
        self.params = params
        self.resource_tags = resource_tags
        self.required_initial_state = required_initial_state
        self.timeout = timeout
        self.planning_timeout = planning_timeout
        self.name = name
        self.id = id
        self.retry = retry
        self.__class__ = Tasklet  # type: ignore[assignment]
        return self  # type: ignore[return-value]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass is built the usual way (its __init__ may call super().__init__(task,
        # ...)): put _SubclassBase, which does that, between it and Tasklet.
        if Tasklet in cls.__bases__ and "_SubclassBase" in globals():
            cls.__bases__ = tuple(_SubclassBase if base is Tasklet else base for base in cls.__bases__)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Tasklet is immutable: cannot set {name!r} (create a new Tasklet)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Tasklet is immutable: cannot delete {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        values = [getattr(self, f) for f in _FIELDS]
        values[1] = dict(values[1])  # a mappingproxy does not pickle
        return _unpickle, (type(self), tuple(values))

    def __copy__(self) -> Tasklet:
        return self  # immutable

    def __repr__(self) -> str:
        task = self.task if isinstance(self.task, str) else getattr(self.task, "__qualname__", repr(self.task))
        bits = [f"{self.id}", repr(task)]
        if self.resource_tags:
            bits.append(f"tags={list(self.resource_tags)}")
        if self.required_initial_state:
            bits.append(f"state={self.required_initial_state!r}")
        if self.timeout is not None:
            bits.append(f"timeout={self.timeout:g}s")
        if self.retry is not None:
            bits.append(f"retry={self.retry.times}")
        return f"<Tasklet {' '.join(bits)}>"


_new = object.__new__
_SETTERS = tuple(_TaskletFields.__dict__[f].__set__ for f in _FIELDS)


class _SubclassBase(Tasklet):
    """The base every subclass of Tasklet really gets: construction through ``__init__``.

    ``Tasklet`` itself is built in ``__new__`` (fast); a subclass's own ``__init__``
    expects ``super().__init__(task, ...)`` to check and set the fields, as with any class.
    """

    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return _new(cls)

    def __init__(self, task: str | Callable[..., Any], **kwargs: Any) -> None:
        checked = Tasklet(task, **kwargs)  # the same checks, the same defaults
        for setter, field in zip(_SETTERS, _FIELDS):
            setter(self, getattr(checked, field))


def _unpickle(cls: type[Tasklet], values: tuple[Any, ...]) -> Tasklet:
    return _build(cls, (values[0], MappingProxyType(values[1]), *values[2:]))


def _build(cls: type[Tasklet], values: tuple[Any, ...]) -> Tasklet:
    """A Tasklet (or subclass) with these field values, checks skipped (unpickling, copies)."""
    self = _new(cls)
    for setter, value in zip(_SETTERS, values):
        setter(self, value)
    return self


class TaskletHandle:
    """A tasklet started with ``em.start(t)``: await it for its result.

    ``status`` is ``"waiting"``, ``"planning"`` or ``"running"`` while it is alive, then
    one of the terminal statuses. ``cancel()`` cancels it wherever it is; awaiting a
    cancelled handle raises :class:`TaskletCancelledError`. Cancelling the task that
    awaits a handle does *not* cancel the tasklet (the handle may be shared).
    """

    __slots__ = ("tasklet", "_run", "_done", "_result", "_error", "_callbacks")

    def __init__(self, tasklet: Tasklet, run: Any) -> None:
        self.tasklet = tasklet
        self._run = run  # the manager's per-tasklet record (phase, status)
        self._done = anyio.Event()
        self._result: Any = None
        self._error: BaseException | None = None
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
        """Ask the tasklet to stop; True if it will end ``cancelled``.

        False if its outcome was already decided (it finished, or its body succeeded
        and its ``after_task_run`` event was recorded: then its ``after_task_run``
        hooks only get their short grace, and the handle keeps the result).
        """
        if self.done():
            return False
        return bool(self._run.request_cancel())

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
