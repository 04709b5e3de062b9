"""Plans: a named set of tasks plus the state map that says how to move between states.

Mental model: a :class:`Plan` is a toolbox with a map in the lid. The toolbox holds
*tasks* (plain or async functions, registered with ``@plan.task``, addressed as
``"game/login"``). The map holds *states* (each with a check task that answers "is the
system in this state now?") and *transitions* (a task that moves the system from one
state to another, at a cost). The ExecutionManager runs tasks; the plan only knows them
and hands out a :class:`~aura_nb.core.StatePlanner` for its map.

A map is built in code (:meth:`Plan.add_state`, :meth:`Plan.add_transition`) or loaded
from Aura's ``states_map.yaml`` format (:meth:`Plan.load_states_map`); both validate
eagerly and raise :class:`StatesMapError` before anything changes.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from ._errors import StatesMapError, TaskNotFoundError
from ._checks import calls_async
from ._planner import Path, StatePlanner, format_cost, unknown_name
from ._statesmap import Invalid, check_cost, check_state_name, read_states_map, resolve_task

__all__ = ["Plan", "State", "TaskSpec", "Transition"]

F = TypeVar("F", bound=Callable[..., Any])


def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"a {kind} name must be a str, got {type(name).__name__}")
    if not name or "/" in name or any(c.isspace() for c in name):
        raise ValueError(f"invalid {kind} name {name!r}: use a non-empty name without '/' or whitespace")
    return name


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A registered task: the function and the names it is known by.

    ``is_async`` says whether the ExecutionManager awaits it on the event loop (True)
    or runs it in a worker thread (False).
    """

    name: str
    plan: str
    fn: Callable[..., Any]
    is_async: bool

    @property
    def qualified(self) -> str:
        """``"plan/name"``, the name a Tasklet uses."""
        return f"{self.plan}/{self.name}"

    def __repr__(self) -> str:
        return f"<TaskSpec {self.qualified} ({'async' if self.is_async else 'sync'})>"


@dataclass(frozen=True, slots=True)
class State:
    """A state of the system; *check* is the bare name of the task that detects it."""

    name: str
    check: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class Transition:
    """Running *task* moves the system from *from_state* to *to_state*, at *cost*."""

    from_state: str
    to_state: str
    task: str
    cost: float = 1.0

    def __repr__(self) -> str:
        return f"<Transition {self.from_state} -> {self.to_state} via {self.task} (cost {format_cost(self.cost)})>"


class Plan:
    """A named set of tasks and one state map (see the module docstring).

    Args:
        name: non-empty, without ``/`` or whitespace (it prefixes task names).

    Attributes:
        name: the plan's name.
        context: free-form data for the plan's tasks and the notebooks (the example
            plan keeps its simulated device there); aura_nb never reads it.
    """

    def __init__(self, name: str) -> None:
        self.name = _check_name("plan", name)
        self.context: dict[str, Any] = {}
        self._tasks: dict[str, TaskSpec] = {}
        self._by_function: dict[int, TaskSpec] = {}
        self._states: dict[str, State] = {}
        self._transitions: list[Transition] = []
        self._transition_keys: set[tuple[str, str, str]] = set()
        self._transitions_view: tuple[Transition, ...] | None = ()
        self._planner: StatePlanner | None = None

    def __repr__(self) -> str:
        def count(n: int, noun: str) -> str:
            return f"{n} {noun}{'' if n == 1 else 's'}"

        return (
            f"<Plan {self.name!r}: {count(len(self._tasks), 'task')}, {count(len(self._states), 'state')},"
            f" {count(len(self._transitions), 'transition')}>"
        )

    # -- tasks ---------------------------------------------------------------------

    @overload
    def task(self, fn: F, /) -> F: ...

    @overload
    def task(self, fn: None = None, /, *, name: str | None = None) -> Callable[[F], F]: ...

    def task(self, fn: F | None = None, /, *, name: str | None = None) -> F | Callable[[F], F]:
        """Register a task; use as ``@plan.task`` or ``@plan.task(name="x")``.

        The function is returned unchanged, so it stays directly callable.
        """
        if fn is None:

            def register(fn: F) -> F:
                self.add_task(fn, name=name)
                return fn

            return register
        self.add_task(fn, name=name)
        return fn

    def add_task(self, fn: Callable[..., Any], *, name: str | None = None) -> TaskSpec:
        """Register *fn* as a task named *name* (default: ``fn.__name__``).

        Raises:
            TypeError: *fn* is not callable, or it has no ``__name__`` and no *name*.
            ValueError: the name is invalid or already used in this plan.
        """
        if not callable(fn):
            raise TypeError(f"a task must be callable, got {type(fn).__name__}")
        if name is None:
            name = getattr(fn, "__name__", None)
            if name is None:
                raise TypeError(f"cannot infer a task name from {fn!r}: pass name=...")
        _check_name("task", name)
        if name in self._tasks:
            raise ValueError(f"plan {self.name!r} already has a task named {name!r}")
        spec = TaskSpec(name=name, plan=self.name, fn=fn, is_async=calls_async(fn))
        self._tasks[name] = spec
        # The first registration wins the reverse lookup. The spec keeps `fn` alive, so
        # its id cannot be reused by another object while registered.
        self._by_function.setdefault(id(fn), spec)
        return spec

    def get_task(self, ref: str) -> TaskSpec:
        """The task *ref* names: ``"login"`` or ``"game/login"``.

        Raises:
            TaskNotFoundError: another plan's prefix, or no such task (the message
                lists the known tasks).
        """
        try:
            return self._tasks[resolve_task(ref, plan=self.name, tasks=self._tasks)]
        except Invalid as exc:
            raise TaskNotFoundError(str(exc)) from None

    def spec_for(self, fn: Callable[..., Any]) -> TaskSpec | None:
        """The task registered for this very function object, if any."""
        spec = self._by_function.get(id(fn))
        return spec if spec is not None and spec.fn is fn else None

    @property
    def tasks(self) -> Mapping[str, TaskSpec]:
        """Read-only view: bare name -> :class:`TaskSpec`, in registration order."""
        return types.MappingProxyType(self._tasks)

    # -- the state map -------------------------------------------------------------

    @property
    def states(self) -> Mapping[str, State]:
        """Read-only view: name -> :class:`State`, in declaration order."""
        return types.MappingProxyType(self._states)

    @property
    def transitions(self) -> tuple[Transition, ...]:
        """The transitions, in declaration order."""
        if self._transitions_view is None:
            self._transitions_view = tuple(self._transitions)
        return self._transitions_view

    def add_state(self, name: str, *, check: str | Callable[..., Any], description: str = "") -> State:
        """Declare state *name*, detected by the task *check*.

        *check* is a task reference (``"check_x"`` or ``"game/check_x"``) or a function;
        a function that is not registered yet is registered as a task first (under its
        ``__name__``).

        Raises:
            StatesMapError: the state exists, or *check* names no task of this plan.
        """
        where = f"plan {self.name!r}: state {name!r}"
        try:
            check_state_name(name)
        except Invalid as exc:
            raise StatesMapError(f"plan {self.name!r}: {exc}") from None
        if name in self._states:
            raise StatesMapError(f"{where}: duplicate state {name!r}: the plan already has it")
        if not isinstance(description, str):
            raise StatesMapError(f"{where}: description must be a str, got {type(description).__name__}")
        state = State(name, self._task_ref(check, f"{where}: check"), description)
        self._states[name] = state
        self._planner = None
        return state

    def add_transition(
        self, from_state: str, to_state: str, *, task: str | Callable[..., Any], cost: float = 1
    ) -> Transition:
        """Declare that running *task* moves the system from *from_state* to *to_state*.

        *task* is a task reference or a function (registered if needed, as in
        :meth:`add_state`); *cost* is a finite number >= 0 (the planner minimises it).

        Raises:
            StatesMapError: an unknown state or task, a bad cost, or the same
                transition (same states and task) declared twice.
        """
        where = f"plan {self.name!r}: transition {from_state!r} -> {to_state!r}"
        for key, state in (("from", from_state), ("to", to_state)):
            if state not in self._states:
                raise StatesMapError(f"{where}: {key}: {unknown_name('state', state, self._states)}")
        try:
            checked_cost = check_cost(cost)
        except Invalid as exc:
            raise StatesMapError(f"{where}: cost: {exc}") from None
        # Resolve without registering first: a duplicate must leave the plan unchanged.
        name: str | None
        if callable(task) and not isinstance(task, str):
            spec = self.spec_for(task)
            name = spec.name if spec is not None else None
        else:
            name = self._task_ref(task, f"{where}: task")
        if name is not None and (from_state, to_state, name) in self._transition_keys:
            raise StatesMapError(f"{where}: duplicate transition via {name!r}: the plan already has it")
        if name is None:  # a new function cannot be part of an existing transition
            name = self.add_task(task).name
        transition = Transition(from_state, to_state, name, checked_cost)
        self._append_transition(transition)
        return transition

    def load_states_map(self, source: Any) -> None:
        """Add the states and transitions of an Aura ``states_map.yaml``.

        *source* is a mapping (already loaded), an ``os.PathLike``, or a str: a str
        without a newline that ends in ``.yaml``/``.yml`` (any case) is a file path, any
        other str is YAML text. The map's tasks must already be registered; its
        transitions may use states the plan already has. Loading is atomic: on any
        error the plan is unchanged.

        Raises:
            StatesMapError: the first problem, naming the source and the key path.
        """
        data = read_states_map(
            source,
            plan=self.name,
            tasks=self._tasks,
            states=self._states,
            transitions=self._transition_keys,
        )
        # Everything is validated; nothing below can fail half-way.
        for entry in data.states:
            self._states[entry.name] = State(entry.name, entry.check, entry.description)
        for entry in data.transitions:
            self._append_transition(Transition(entry.from_state, entry.to_state, entry.task, entry.cost))
        self._planner = None

    # -- planning ------------------------------------------------------------------

    @property
    def planner(self) -> StatePlanner:
        """The :class:`StatePlanner` for the current map (rebuilt after a change)."""
        if self._planner is None:
            self._planner = StatePlanner(list(self._states), self._transitions, plan=self.name)
        return self._planner

    def find_path(self, current: str, target: str) -> Path:
        """The cheapest :class:`Path` from *current* to *target*; see :class:`StatePlanner`."""
        return self.planner.find_path(current, target)

    # -- internals -----------------------------------------------------------------

    def _task_ref(self, ref: str | Callable[..., Any], where: str) -> str:
        """The bare task name for a reference or a function (registering the function)."""
        if callable(ref) and not isinstance(ref, str):
            spec = self.spec_for(ref)
            return spec.name if spec is not None else self.add_task(ref).name
        try:
            return resolve_task(ref, plan=self.name, tasks=self._tasks)
        except Invalid as exc:
            raise StatesMapError(f"{where}: {exc}") from None

    def _append_transition(self, transition: Transition) -> None:
        self._transitions.append(transition)
        self._transition_keys.add((transition.from_state, transition.to_state, transition.task))
        self._transitions_view = None  # rebuilt on demand: bulk loads stay linear
        self._planner = None
