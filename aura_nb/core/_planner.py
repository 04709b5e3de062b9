"""Cheapest paths through a plan's state map.

Mental model: a state map is a road map. States are towns, transitions are one-way
roads, each with a toll (its cost) and a task that drives it. :class:`StatePlanner`
is the navigator: given where the system is and where a tasklet needs it to be, it
returns the cheapest route as a :class:`Path` of :class:`Step` objects. It only
*computes* routes; the ExecutionManager drives them.

The route is chosen by one documented rule, so the same map always gives the same
path:

1. the cheapest total cost wins;
2. among equally cheap routes, the one with the fewest transitions wins;
3. remaining ties go by declaration order: a state's predecessor on the route is the
   first state settled (cheapest, then fewest hops, then declared earliest) among
   those that reach it equally well.

Parallel transitions between the same two states are reduced to the cheapest one (the
first declared on a tie); a transition from a state to itself never shortens a route
and is ignored. Costs of 0 are allowed.

How it is fast: the map is compiled once, in ``__init__``, into adjacency lists over
integer state indices. Costs are rescaled to exact integers (every float is a dyadic
fraction, so one power-of-two factor makes them all whole), and the rule above is
folded into a single integer per state, ``(cost * (n + 1) + hops) * n + index``, which
the binary heap orders directly. The search is then plain Dijkstra on small integers,
it stops as soon as the target is settled, and ties are exact: ``0.1 + 0.2`` and
``0.2 + 0.1`` cannot compare differently because nothing is rounded while searching.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from heapq import heappop, heappush
from math import isfinite
from typing import TYPE_CHECKING

from ._errors import StatePlanningError, StatesMapError

if TYPE_CHECKING:
    from ._plan import Transition

__all__ = ["Path", "StatePlanner", "Step"]

# How many names an error message lists before it summarises the rest.
_KNOWN_LIMIT = 20
# Close-match suggestions compare against every name; past this many the error path
# would get slow, and a list that long is truncated in the message anyway.
_SUGGEST_LIMIT = 2000
_INF = float("inf")
# Paths longer than this are shown with their middle elided in ``repr``.
_REPR_STATES = 12


def format_known(names: Iterable[str], *, limit: int = _KNOWN_LIMIT) -> str:
    """``"a, b, c"`` for the sorted *names*, summarised after *limit* of them."""
    ordered = sorted(names)
    if not ordered:
        return "none"
    if len(ordered) <= limit:
        return ", ".join(ordered)
    return ", ".join(ordered[:limit]) + f", ... ({len(ordered) - limit} more)"


def unknown_name(kind: str, name: object, known: Collection[str], *, scope: str = "") -> str:
    """The message for a name that is not one of *known*.

    ``unknown state 'loged_in' (known: logged_in, logged_out)``; *scope* goes after the
    name (``" in plan 'game'"``). When the list had to be truncated, a close match is
    suggested, because the right name may be the one cut off.
    """
    shown = repr(name)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    message = f"unknown {kind} {shown}{scope} (known: {format_known(known)})"
    if isinstance(name, str) and _KNOWN_LIMIT < len(known) <= _SUGGEST_LIMIT:
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
    return message


def format_cost(cost: float) -> str:
    """``6`` for whole costs, ``2.5`` otherwise: what a person would write."""
    return f"{cost:g}"


@dataclass(frozen=True, slots=True)
class Step:
    """One transition of a :class:`Path`: run *task* to go from *from_state* to *to_state*."""

    index: int
    from_state: str
    to_state: str
    task: str
    cost: float

    def __repr__(self) -> str:
        return (
            f"<Step {self.index}: {self.from_state} -> {self.to_state}"
            f" via {self.task} (cost {format_cost(self.cost)})>"
        )


@dataclass(frozen=True, slots=True)
class Path:
    """The route from *start* to *target*: the transitions to run, in order.

    A path is a sequence of :class:`Step` objects (``len``, iteration, indexing via
    ``steps``). An empty path means the system is already in the target state, so an
    empty path is falsy: ``if path:`` reads as "is there anything to do".
    """

    plan: str
    start: str
    target: str
    steps: tuple[Step, ...]
    total_cost: float

    @property
    def states(self) -> tuple[str, ...]:
        """Every state the route visits, ``start`` first and ``target`` last."""
        return (self.start, *(step.to_state for step in self.steps))

    @property
    def tasks(self) -> tuple[str, ...]:
        """The bare names of the transition tasks, in the order they run."""
        return tuple(step.task for step in self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __repr__(self) -> str:
        states = self.states
        if len(states) > _REPR_STATES:
            head, tail = states[: _REPR_STATES // 2], states[-(_REPR_STATES // 2) :]
            shown = [*head, f"... ({len(states) - len(head) - len(tail)} more)", *tail]
        else:
            shown = list(states)
        where = f"{self.plan}: " if self.plan else ""
        already = "already there, " if not self.steps else ""
        return f"<Path {where}{' -> '.join(shown)} ({already}cost {format_cost(self.total_cost)})>"


def _check_cost(cost: object, where: str) -> float:
    if isinstance(cost, bool) or not isinstance(cost, (int, float)):
        raise StatesMapError(f"{where}: cost must be a number, got {cost!r}")
    # isfinite() would overflow on a huge int; ints are finite anyway.
    if (isinstance(cost, float) and not isfinite(cost)) or cost < 0:
        raise StatesMapError(f"{where}: cost must be finite and >= 0, got {cost!r}")
    return cost


class StatePlanner:
    """Finds the cheapest route between two states; see the module docstring for the rule.

    The planner is immutable: it compiles *states* and *transitions* once. A
    :class:`~aura_nb.core.Plan` builds a new one (lazily) whenever its map changes.

    Args:
        states: every state name, in declaration order (the last tie-break).
        transitions: objects with ``from_state``, ``to_state``, ``task`` and ``cost``
            (normally :class:`~aura_nb.core.Transition`), in declaration order.
        plan: the plan's name, used in paths and error messages.

    Raises:
        StatesMapError: a duplicate state, a transition naming an unknown state, or a
            cost that is not a finite number >= 0.
    """

    __slots__ = (
        "_adjacency",
        "_adjacency_transitions",
        "_has_incoming",
        "_has_outgoing",
        "_index",
        "_scale",
        "_states",
        "_transitions",
        "_unreached",
        "plan",
    )

    def __init__(self, states: Sequence[str], transitions: Sequence[Transition], *, plan: str = "") -> None:
        self.plan = plan
        self._states: tuple[str, ...] = tuple(states)
        self._transitions: tuple[Transition, ...] = tuple(transitions)
        where = f"plan {plan!r}" if plan else "state planner"

        index: dict[str, int] = {}
        for i, name in enumerate(self._states):
            if name in index:
                raise StatesMapError(f"{where}: duplicate state {name!r}")
            index[name] = i
        self._index = index
        n = len(self._states)

        # One pass: resolve names, keep the cheapest of parallel transitions (the first
        # on ties: only a strictly smaller cost replaces it; dict order keeps declaration
        # order), and find the power of two that makes every kept cost whole. Comparing
        # the costs as given is exact: Python compares ints and floats exactly.
        cheapest: dict[int, tuple[float, int]] = {}
        has_outgoing = bytearray(n)
        has_incoming = bytearray(n)
        scale = 1
        for i, transition in enumerate(self._transitions):
            u = index.get(transition.from_state, -1)
            v = index.get(transition.to_state, -1)
            cost = transition.cost
            if u < 0 or v < 0 or (type(cost) is not int and type(cost) is not float) or not 0 <= cost < _INF:
                u, v, cost = self._resolve_slowly(i, transition, where)
            has_outgoing[u] = 1
            if u == v:
                continue
            has_incoming[v] = 1
            key = u * n + v
            best = cheapest.get(key)
            if best is None or cost < best[0]:
                cheapest[key] = (cost, i)
                # Float denominators are powers of two: the largest is a multiple of all.
                if type(cost) is not int:
                    denominator = cost.as_integer_ratio()[1]
                    if denominator > scale:
                        scale = denominator
        self._scale = scale
        self._has_outgoing = has_outgoing
        self._has_incoming = has_incoming

        # Relaxing u -> v gives v the rank (rank of u - u) + step, with step = (cost,
        # 1 hop) pre-scaled plus v's index: the search loop only adds. `hops` never
        # exceeds n, so n + 1 keeps it out of the cost digits.
        adjacency: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        adjacency_transitions: list[list[int]] = [[] for _ in range(n)]
        total = 0
        for key, (cost, i) in cheapest.items():
            u, v = divmod(key, n)
            numerator, denominator = cost.as_integer_ratio()
            whole = numerator * (scale // denominator)
            adjacency[u].append((v, (whole * (n + 1) + 1) * n + v))
            adjacency_transitions[u].append(i)
            total += whole
        self._adjacency = adjacency
        self._adjacency_transitions = adjacency_transitions
        # Larger than any reachable rank: "not reached yet".
        self._unreached = ((total + 1) * (n + 1) + 1) * n + n

    def _resolve_slowly(self, i: int, transition: Transition, where: str) -> tuple[int, int, float]:
        """Validate a transition the fast path did not accept: raise, or normalise it."""
        label = f"{where}: transitions[{i}]"
        for state in (transition.from_state, transition.to_state):
            if state not in self._index:
                raise StatesMapError(f"{label}: {unknown_name('state', state, self._index)}")
        cost = _check_cost(transition.cost, label)  # e.g. a float subclass passes
        return self._index[transition.from_state], self._index[transition.to_state], float(cost)

    @property
    def states(self) -> tuple[str, ...]:
        """The state names, in declaration order."""
        return self._states

    @property
    def transitions(self) -> tuple[Transition, ...]:
        """The transitions as given, in declaration order (parallel ones included)."""
        return self._transitions

    def __repr__(self) -> str:
        where = f" {self.plan!r}" if self.plan else ""
        return f"<StatePlanner{where}: {len(self._states)} states, {len(self._transitions)} transitions>"

    def find_path(self, current: str, target: str) -> Path:
        """The cheapest route from *current* to *target* (empty when they are equal).

        Raises:
            StatesMapError: *current* or *target* is not a state of the map.
            StatePlanningError: ``reason="no_path"``; the message says why (a dead
                end, a target nothing leads to, or how many states were reachable).
        """
        source = self._lookup(current)
        goal = self._lookup(target)
        if source == goal:
            return Path(self.plan, current, target, (), 0.0)
        if not self._adjacency[source] or not self._has_incoming[goal]:
            raise self._no_path(current, target, source, goal, None)  # obvious without searching
        rank, predecessor, settled = self._search(source, goal)
        if rank[goal] == self._unreached:
            raise self._no_path(current, target, source, goal, settled)

        n = len(self._states)
        hops: list[tuple[int, int]] = []
        node = goal
        while node != source:
            previous = predecessor[node]
            hops.append((previous, node))
            node = previous
        hops.reverse()
        steps = []
        for position, (u, v) in enumerate(hops):
            transition = self._transitions[self._transition_between(u, v)]
            steps.append(Step(position, self._states[u], self._states[v], transition.task, float(transition.cost)))
        total = rank[goal] // n // (n + 1)
        try:
            cost = total / self._scale
        except OverflowError:  # exact integers: the sum is finite, but not as a float
            cost = _INF
        if cost == _INF:
            raise StatePlanningError(
                f"the cheapest path from {current!r} to {target!r}"
                + (f" in plan {self.plan!r}" if self.plan else "")
                + f" has {len(steps)} steps whose costs add up to more than a float can hold (about 1.8e308);"
                " use smaller costs",
                reason="cost_overflow",
                plan=self.plan or "",
                target=target,
                current=current,
            )
        return Path(self.plan, current, target, tuple(steps), cost)

    def reachable(self, current: str) -> dict[str, float]:
        """Every state reachable from *current* (itself included), with its cheapest cost.

        Ordered from the cheapest to the most expensive, the order of the rule above.
        """
        source = self._lookup(current)
        rank, _, settled = self._search(source, -1)
        stride = len(self._states) * (len(self._states) + 1)
        return {self._states[u]: rank[u] // stride / self._scale for u in settled}

    def _lookup(self, state: str) -> int:
        try:
            return self._index[state]
        except (KeyError, TypeError):
            where = f"plan {self.plan!r}: " if self.plan else ""
            raise StatesMapError(where + unknown_name("state", state, self._index)) from None

    def _search(self, source: int, goal: int) -> tuple[list[int], list[int], list[int]]:
        """Dijkstra from *source*, stopping once *goal* is settled (``-1``: never).

        Returns each state's rank (``self._unreached`` if not reached), its predecessor
        and the settled states in order. A rank is ``(cost * (n + 1) + hops) * n +
        index``: the heap orders by the documented rule, a state's index is
        ``rank % n``, and a heap entry is stale when it differs from the state's rank.
        """
        adjacency = self._adjacency
        n = len(adjacency)
        rank = [self._unreached] * n
        predecessor = [-1] * n
        settled: list[int] = []
        settle, push, pop = settled.append, heappush, heappop  # locals: this loop is the hot path
        rank[source] = source
        heap = [source]
        while heap:
            key = pop(heap)
            u = key % n
            if key != rank[u]:
                continue
            settle(u)
            if u == goal:
                break
            base = key - u
            for v, step in adjacency[u]:
                candidate = base + step
                # Strictly better only: the first state to offer this rank keeps it.
                if candidate < rank[v]:
                    rank[v] = candidate
                    predecessor[v] = u
                    push(heap, candidate)
        return rank, predecessor, settled

    def _transition_between(self, u: int, v: int) -> int:
        for (w, _), transition in zip(self._adjacency[u], self._adjacency_transitions[u]):
            if w == v:
                return transition
        raise AssertionError("predecessor without an edge")  # the search only records edges

    def _no_path(
        self, current: str, target: str, source: int, goal: int, settled: list[int] | None
    ) -> StatePlanningError:
        head = f"no path from {current!r} to {target!r}" + (f" in plan {self.plan!r}" if self.plan else "")
        if not self._adjacency[source]:
            if self._has_outgoing[source]:
                why = f"{current!r} is a dead end (its only transitions lead back to itself)"
            else:
                why = f"{current!r} is a dead end (no outgoing transitions)"
        elif not self._has_incoming[goal]:
            why = f"no transition leads to {target!r}"
        else:
            assert settled is not None  # the search ran: neither obvious case applies
            others = settled[1:]
            if len(others) == 1:
                why = f"the only state reachable from {current!r} is {self._states[others[0]]!r}"
            else:
                why = f"none of the {len(others)} states reachable from {current!r} is {target!r}"
        return StatePlanningError(
            f"{head}: {why}", reason="no_path", plan=self.plan, target=target, current=current, path=None
        )
