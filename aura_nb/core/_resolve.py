"""Resolution and validation: what a tasklet names, checked before anything waits.

A :class:`Resolver` answers, for one manager: which function a tasklet's task is (a
``"plan/task"`` name, or a callable), how it is called (awaited, or in a thread), which
pool keys its tags stand for, and which capacities its tags declare for the first time.
It raises the error a user can act on (``TaskNotFoundError``, ``ResourceTagError``,
``TaskletError``) and declares nothing until the whole tasklet (or batch) is valid.

Its caches hold names and classifications, never a tasklet's callable or parameters:
a batch of ``functools.partial(fn, big_chunk)`` tasks must not stay alive through them.
"""

from __future__ import annotations

import types
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._checks import callable_name, calls_async, shown
from ._errors import ArgumentError, ArgumentTypeError, ResourceTagError, TaskletError, TaskNotFoundError
from ._limits import GLOBAL, ResourcePool
from ._rates import UNLIMITED, Rate
from ._tags import parse_tags
from ._tasklet import Tasklet

if TYPE_CHECKING:  # pragma: no cover
    from ._plan import Plan

__all__ = ["Resolved", "Resolver"]

#: (function or None, calls_async, plan or None, task label, plan name or None).
#: The function is None for a callable task: the tasklet's own ``task`` is called.
Resolved = tuple[Any, bool, Any, str, Any]
_CACHE_LIMIT = 10_000
_NO_NEW: list[tuple[str, int]] = []  # read-only: nothing to declare
_NOTHING = object()


class Resolver:
    """The plans, tag keys and capacities one manager knows, with their caches."""

    def __init__(self, pool: ResourcePool) -> None:
        self.pool = pool
        # Shared limits (e.g. DaskLimits) refuse a capacity or rate that contradicts
        # another manager's, unless it is a deliberate change (set_capacity, set_rate).
        self._shared = not isinstance(pool, ResourcePool)
        self.plans: dict[str, Plan] = {}
        self.origin: dict[str, str] = {}  # where each capacity was declared, for errors
        self._spelling: dict[str, str] = {}  # casefolded name -> the declared spelling
        self.tasks: dict[Any, Resolved] = {}  # by task name or plain function
        self.keys: dict[tuple[str, ...], tuple[str, ...]] = {}  # by a tasklet's tags

    # -- plans and capacities ------------------------------------------------------
    def add_plan(self, plan: Plan) -> None:
        from ._plan import Plan

        if not isinstance(plan, Plan):
            raise ArgumentTypeError(f"add_plan() takes a Plan, not {type(plan).__name__} {shown(plan)}")
        other = self.plans.get(plan.name)
        if other is not None and other is not plan:
            raise TaskletError(f"a different plan named {plan.name!r} is already registered with this manager")
        self.plans[plan.name] = plan
        self.tasks.clear()

    def check_spelling(self, name: str, where: str, also: Iterable[str] = ()) -> None:
        """``"GPU"`` next to ``"gpu"`` would silently be a second GPU: refuse it.

        ``also``: names not declared yet but about to be (a batch's, a tasklet's own).
        """
        folded = name.casefold()
        known = self._spelling.get(folded) or next((n for n in also if n.casefold() == folded), None)
        if known is not None and known != name:
            raise ResourceTagError(
                f"{where}: resource {name!r} differs from the declared resource {known!r} only in case; "
                f"write {known!r} (two spellings would be two separate limits)"
            )

    def declare(self, name: str, capacity: int, origin: str, *, change: bool = False) -> None:
        """Declare a capacity; ``change``: deliberately (``set_capacity``), even if shared."""
        self.check_spelling(name, origin)
        self.pool.declare(name, capacity, **self._change(change))
        self._spelling[name.casefold()] = name
        self.origin[name] = origin

    def declare_rate(self, name: str, rate: Rate | None, origin: str, *, change: bool = False) -> None:
        """Give a resource a rate quota (it may have a capacity too, or get one from a tag)."""
        self.check_spelling(name, origin)
        if not callable(getattr(self.pool, "set_rate", None)):
            raise ArgumentError(f"{origin}: these limits ({type(self.pool).__name__}) keep no rate quotas")
        self.pool.set_rate(name, rate, **self._change(change))
        self._spelling[name.casefold()] = name
        self.origin.setdefault(name, origin)

    def _change(self, change: bool) -> dict[str, bool]:
        return {"change": change} if self._shared else {}

    # -- one tasklet -----------------------------------------------------------------
    def validate(
        self, tasklet: Tasklet, pending: Mapping[str, int] | None = None
    ) -> tuple[Resolved, tuple[str, ...], list[tuple[str, int]]]:
        """Everything submit checks: (resolved task, pool keys, capacities to declare)."""
        if not isinstance(tasklet, Tasklet):
            raise ArgumentTypeError(
                f"expected an aura_nb Tasklet, got {type(tasklet).__name__} {shown(tasklet, 80)}; describe the run "
                "first, e.g. an.Tasklet(my_function, params={...}) or an.Tasklet('plan/task')"
            )
        resolved = self.task(tasklet)
        keys, new = self.tag_keys(tasklet, pending)
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

    def tag_keys(
        self, tasklet: Tasklet, pending: Mapping[str, int] | None = None
    ) -> tuple[tuple[str, ...], list[tuple[str, int]]]:
        """The pool keys of a tasklet's tags, and the capacities its tags declare anew.

        ``pending``: capacities declared by tags of a batch being checked (not in the
        pool yet); a bare tag may rely on them.
        """
        tags = tasklet.resource_tags
        keys = self.keys.get(tags)
        if keys is not None:
            return keys, _NO_NEW
        capacity = self.pool.capacity
        new: list[tuple[str, int]] = []
        out = [GLOBAL]
        from_batch = False
        for (name, cap), tag in zip(parse_tags(tags), tags):
            where = f"resource tag {tag!r} of tasklet {tasklet.id} ({tasklet.name!r})"
            known = capacity.get(name)
            if known is None and cap is None and self._shared:  # declared by another manager meanwhile?
                self.pool.refresh()  # type: ignore[attr-defined]
                capacity = self.pool.capacity
                known = capacity.get(name)
            if known == UNLIMITED and cap is not None:
                known = None  # a rate-only resource: the first 'name:N' tag gives it a capacity
            if known is None:
                self.check_spelling(name, where, [*(pending or ()), *(n for n, _ in new)])
            if known is None and pending and name in pending:
                from_batch = True
                if cap is not None and cap != pending[name]:
                    raise ResourceTagError(
                        f"{where}: capacity {cap} contradicts the capacity {pending[name]} of {name!r} written by an "
                        f"earlier tasklet of the same batch; write the capacity once and use the bare tag {name!r}"
                    )
            elif known is None:
                if cap is None:
                    raise ResourceTagError(
                        f"{where}: no capacity is declared for {name!r}; write '{name}:N' once, or pass "
                        f"capacities={{'{name}': N}} to the manager"
                    )
                new.append((name, cap))
            elif cap is not None and cap != known:
                raise ResourceTagError(
                    f"{where}: capacity {cap} contradicts the capacity {known} of {name!r} declared by "
                    f"{self.origin.get(name, 'an earlier tag')}; use the bare tag {name!r}, or change it "
                    f"deliberately with set_capacity({name!r}, {cap})"
                )
            out.append(name)
        # Two new tags in one tasklet cannot contradict each other: a resource appears once.
        keys = tuple(out)
        if not new and not from_batch and len(self.keys) < _CACHE_LIMIT:
            self.keys[tags] = keys
        return keys, new

    def task(self, tasklet: Tasklet) -> Resolved:
        """How to call the tasklet's task (see :data:`Resolved`)."""
        task = tasklet.task
        key = task if isinstance(task, (str, types.FunctionType, types.BuiltinFunctionType)) else None
        if key is not None:
            hit = self.tasks.get(key)
            if hit is not None:
                return hit
        if isinstance(task, str):
            resolved = self._named(tasklet, task)
        else:
            owners = [p for p in self.plans.values() if p.spec_for(task) is not None]
            plan = owners[0] if len(owners) == 1 else None
            label = plan.spec_for(task).qualified if plan is not None else callable_name(task)
            resolved = (None, calls_async(task), plan, label, plan.name if plan is not None else None)
        if key is not None:
            if len(self.tasks) >= _CACHE_LIMIT:
                self.tasks.clear()
            self.tasks[key] = resolved
        return resolved

    def _named(self, tasklet: Tasklet, task: str) -> Resolved:
        plan_name, slash, bare = task.rpartition("/")
        if slash and (not bare or not plan_name):
            raise TaskNotFoundError(
                f"tasklet {tasklet.id}: task {task!r}: write 'plan/task' with both parts (known: {self.known()})"
            )
        if slash:
            plan = self.plans.get(plan_name)
            if plan is None:
                known = ", ".join(sorted(self.plans)) or "none registered"
                raise TaskNotFoundError(
                    f"tasklet {tasklet.id}: task {task!r}: no plan named {plan_name!r} (plans: {known}); "
                    "pass it with ExecutionManager(plans=[...]) or em.add_plan(plan)"
                )
            spec = plan.get_task(bare)
        else:
            owners = [p for p in self.plans.values() if bare in p.tasks]
            if len(owners) != 1:
                if owners:
                    which = ", ".join(f"'{p.name}/{bare}'" for p in owners)
                    raise TaskNotFoundError(f"tasklet {tasklet.id}: task {task!r} is ambiguous: write {which}")
                raise TaskNotFoundError(f"tasklet {tasklet.id}: no task named {task!r} (known: {self.known()})")
            plan = owners[0]
            spec = plan.tasks[bare]
        return (spec.fn, spec.is_async, plan, spec.qualified, plan.name)

    def known(self) -> str:
        known = [f"{p.name}/{name}" for p in self.plans.values() for name in p.tasks]
        return ", ".join(known[:20]) + (" ..." if len(known) > 20 else "") or "none registered"

    # -- a batch ---------------------------------------------------------------------
    def check_batch(
        self, tasklets: Iterable[Tasklet], live: Mapping[str, Any]
    ) -> tuple[list[Tasklet], dict[tuple[str, ...], deque[int]]]:
        """Everything ``run_many`` can check before anything starts.

        Returns the batch and its positions grouped by tag set (in batch order). A bad
        tasklet raises with a note giving its position; nothing is declared then.
        """
        if isinstance(tasklets, (Tasklet, str, bytes)) or not isinstance(tasklets, Iterable):
            raise ArgumentTypeError(
                f"run_many() takes an iterable of Tasklets, e.g. [an.Tasklet(f) for _ in range(10)], "
                f"not {type(tasklets).__name__} {shown(tasklets, 80)}"
            )
        batch = list(tasklets)
        n = len(batch)
        pending: dict[str, int] = {}  # capacities the batch's tags declare (not in the pool yet)
        tag_sets: set[tuple[str, ...]] = set()  # checked already in this batch
        last_task: Any = _NOTHING  # the task and tags of the previous tasklet, known good
        last_tags: Any = _NOTHING
        one_group = True
        for i, tasklet in enumerate(batch):
            try:
                if type(tasklet) is Tasklet and tasklet.required_initial_state is None:
                    if tasklet.task is last_task and tasklet.resource_tags == last_tags:
                        continue
                    if tasklet.resource_tags in tag_sets:
                        self.task(tasklet)
                        new = _NO_NEW
                    else:
                        _, _, new = self.validate(tasklet, pending)
                        tag_sets.add(tasklet.resource_tags)
                    if last_tags is not _NOTHING and tasklet.resource_tags != last_tags:
                        one_group = False
                    last_task, last_tags = tasklet.task, tasklet.resource_tags
                else:
                    _, _, new = self.validate(tasklet, pending)
                    one_group = False
            except Exception as exc:
                raise _at(exc, i, n) from None
            for name, cap in new:  # later tags of the batch are checked against these
                pending[name] = cap
        _check_ids(batch, live)
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


def _at(exc: BaseException, i: int, n: int) -> BaseException:
    exc.add_note(f"run_many: the tasklet at position {i} of the batch of {n}; nothing was started")
    return exc


def _check_ids(batch: list[Tasklet], live: Mapping[str, Any]) -> None:
    ids = [tasklet.id for tasklet in batch]
    seen = set(ids)
    if len(seen) == len(ids) and seen.isdisjoint(live):
        return
    first: set[str] = set()
    for i, tasklet_id in enumerate(ids):
        if tasklet_id in first or tasklet_id in live:
            where = "in this batch" if tasklet_id in first else "submitted and not finished"
            raise _at(
                TaskletError(f"tasklet {tasklet_id} is already {where}; a batch needs a new Tasklet per run"),
                i,
                len(ids),
            )
        first.add(tasklet_id)
