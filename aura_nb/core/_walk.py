"""The planning walk: bring the system into the state a tasklet requires.

While the tasklet holds its tokens (the transitions act on the same resources): run
the target state's check; if it is false, run every other state's check concurrently
to find the current state; plan the cheapest path; announce it (``state_path_planned``)
*before* the first transition runs; walk it, one transition task after the other;
confirm with the target's check. Any failure is a :class:`StatePlanningError` that
says why and where.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio

from ._body import in_thread
from ._checks import describe_error, shown
from ._errors import StatePlanningError
from ._events import _CODE

if TYPE_CHECKING:  # pragma: no cover
    from ._manager import ExecutionManager, _Run
    from ._plan import Plan

__all__ = ["walk"]

_CHECK = _CODE["state_check"]
_PLANNED = _CODE["state_path_planned"]
_STEP_START = _CODE["state_transition_started"]
_STEP_END = _CODE["state_transition_finished"]
_PLANNING_DONE = _CODE["state_planning_finished"]
_now = time.monotonic


def x(
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
    return (status, state_from, state_to, step, duration_s, *describe_error(error), detail)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool_", "bool"))


async def call_plan_task(plan: Plan, task: str, *, abandon: bool = False) -> Any:
    spec = plan.get_task(task)
    if spec.is_async:
        return await spec.fn()
    if abandon:  # a check only reads: when planning times out, a hung sync check is abandoned
        return await anyio.to_thread.run_sync(spec.fn, abandon_on_cancel=True)
    return await in_thread(spec.fn)


async def check(em: ExecutionManager, run: _Run, plan: Plan, state: str) -> bool:
    """Run one state's check; a check must return a bool (no truthiness guessing)."""
    name = plan.states[state].check
    t0 = _now()
    target = run.tasklet.required_initial_state or state
    try:
        value = await call_plan_task(plan, name, abandon=True)
    except Exception as exc:
        await em._event(_CHECK, run, x(state_to=state, duration_s=_now() - t0, error=exc))
        kind, message = describe_error(exc)
        raise StatePlanningError(
            f"tasklet {run.tasklet.id}: the check {name!r} of state {state!r} raised {kind}: {message}",
            reason="check_failed",
            plan=plan.name,
            target=target,
        ) from exc
    if not _is_bool(value):
        await em._event(_CHECK, run, x(state_to=state, duration_s=_now() - t0, detail="invalid"))
        raise StatePlanningError(
            f"tasklet {run.tasklet.id}: the check {name!r} of state {state!r} returned {shown(value, 80)} "
            f"({type(value).__name__}); a check must return True or False",
            reason="check_failed",
            plan=plan.name,
            target=target,
        )
    value = bool(value)
    await em._event(_CHECK, run, x(state_to=state, duration_s=_now() - t0, detail=str(value).lower()))
    return value


async def locate(em: ExecutionManager, run: _Run, plan: Plan, target: str) -> str:
    """The one current state: every other state's check, concurrently."""
    others = [s for s in plan.states if s != target]
    results: dict[str, Any] = {}

    async def probe(state: str) -> None:
        try:
            results[state] = await check(em, run, plan, state)
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
    return current[0]


async def walk(em: ExecutionManager, run: _Run) -> None:
    """Check, locate, plan, announce, walk, confirm (see the module docstring)."""
    plan = run.plan
    target = run.tasklet.required_initial_state
    assert plan is not None and target is not None
    if await check(em, run, plan, target):
        await em._event(_PLANNING_DONE, run, x(state_from=target, state_to=target, detail="already"))
        return
    start = await locate(em, run, plan, target)
    try:
        path = plan.find_path(start, target)
    except StatePlanningError as exc:
        raise StatePlanningError(
            f"tasklet {run.tasklet.id}: {exc}", reason=exc.reason, plan=plan.name, target=target, current=start
        ) from None
    detail = " -> ".join(path.states)
    await em._event(_PLANNED, run, x(state_from=start, state_to=target, step=len(path), detail=detail), path=path)
    for step in path.steps:
        where = x(state_from=step.from_state, state_to=step.to_state, step=step.index, detail=step.task)
        await em._event(_STEP_START, run, where, path=path)
        t0 = _now()
        try:
            await call_plan_task(plan, step.task)
        except Exception as exc:
            await em._event(
                _STEP_END, run,
                x(state_from=step.from_state, state_to=step.to_state, step=step.index, duration_s=_now() - t0,
                  error=exc, detail="failed"),
                path=path, error=exc,
            )  # fmt: skip
            kind, message = describe_error(exc)
            raise StatePlanningError(
                f"tasklet {run.tasklet.id}: transition {step.index + 1} of {len(path)} "
                f"({step.from_state} -> {step.to_state}, task {step.task!r}) failed: {kind}: {message}",
                reason="transition_failed",
                plan=plan.name,
                target=target,
                current=start,
                path=path,
                failed_step=step.index,
            ) from exc
        done = x(state_from=step.from_state, state_to=step.to_state, step=step.index, duration_s=_now() - t0, detail="done")
        await em._event(_STEP_END, run, done, path=path)
    if not await check(em, run, plan, target):
        raise StatePlanningError(
            f"tasklet {run.tasklet.id}: after the path {detail}, the check of {target!r} still returned False",
            reason="final_check_failed",
            plan=plan.name,
            target=target,
            current=start,
            path=path,
        )
    await em._event(_PLANNING_DONE, run, x(state_from=start, state_to=target, step=len(path), detail="reached"), path=path)
