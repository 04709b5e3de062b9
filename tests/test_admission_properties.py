"""Property tests of the admission policy (ResourcePool), driven by hypothesis.

The pool is synchronous at heart (try_acquire/release/cancel), so the policy is checked
step by step on random operation sequences, without an event loop:

* accounting: tokens in use and waiting counts match the holders and the waiters;
* no limit is exceeded (capacities only grow here; shrinking is tested separately);
* work-conserving: no waiter that fits is left waiting;
* the documented fairness rule: while the oldest waiter waits, a younger tasklet
  admitted in the same step never takes the last free token of a resource it needs
  (the global slot is never held back: no global slot idles while a tasklet waits
  for a busy resource);
* liveness: when holders keep finishing, every waiter is admitted, oldest first
  among those that compete for an exclusive resource.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from aura_nb.core._limits import GLOBAL, ResourcePool

RESOURCES = ("a", "b", "c")


class AdmissionMachine(RuleBasedStateMachine):
    admission = "fifo"

    @initialize(global_cap=st.integers(1, 4), caps=st.lists(st.integers(1, 3), min_size=3, max_size=3))
    def setup(self, global_cap: int, caps: list[int]) -> None:
        self.pool = ResourcePool(global_cap, admission=self.admission)
        for name, cap in zip(RESOURCES, caps):
            self.pool.declare(name, cap)
        self.next_id = 0
        self.holders: dict[int, tuple[str, ...]] = {}
        self.waiters: dict[int, object] = {}  # id -> pool waiter, in submission order
        self.keys: dict[int, tuple[str, ...]] = {}

    def _collect_admitted(self) -> list[int]:
        admitted = [i for i, w in self.waiters.items() if w.admitted]
        for i in admitted:
            del self.waiters[i]
            self.holders[i] = self.keys[i]
        return admitted

    def _oldest(self) -> int | None:
        return next(iter(self.waiters), None)

    def _check_reservation(self, oldest: int | None, admitted: list[int]) -> None:
        if oldest is None or oldest not in self.waiters or self.admission != "fifo":
            return
        need = self.keys[oldest]
        for i in admitted:
            if i < oldest:
                continue
            for k in (set(self.keys[i]) & set(need)) - {GLOBAL}:
                assert self.pool.in_use[k] < self.pool.capacity[k], (
                    f"tasklet {i} took the last token of {k!r} that the oldest waiter {oldest} needs"
                )

    @rule(names=st.lists(st.sampled_from(RESOURCES), unique=True, max_size=3))
    def submit(self, names: list[str]) -> None:
        oldest = self._oldest()
        i = self.next_id
        self.next_id += 1
        keys = (GLOBAL, *names)
        self.keys[i] = keys
        waiter = self.pool.try_acquire(keys, i)
        if waiter is None:
            self.holders[i] = keys
        else:
            self.waiters[i] = waiter
        admitted = self._collect_admitted()
        self._check_reservation(oldest, admitted)

    @precondition(lambda self: self.holders)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        oldest = self._oldest()
        i = data.draw(st.sampled_from(sorted(self.holders)))
        self.pool.release(self.holders.pop(i))
        self._check_reservation(oldest, self._collect_admitted())

    @precondition(lambda self: self.waiters)
    @rule(data=st.data())
    def cancel_waiter(self, data: st.DataObject) -> None:
        i = data.draw(st.sampled_from(sorted(self.waiters)))
        self.pool.cancel_waiter(self.waiters.pop(i))
        self._collect_admitted()

    @rule(name=st.sampled_from((*RESOURCES, GLOBAL)), grow=st.integers(1, 2))
    def grow_capacity(self, name: str, grow: int) -> None:
        self.pool.declare(name, self.pool.capacity[name] + grow)
        self._collect_admitted()

    @invariant()
    def accounting(self) -> None:
        for k in (GLOBAL, *RESOURCES):
            assert self.pool.in_use[k] == sum(k in keys for keys in self.holders.values())
            assert self.pool.waiting[k] == sum(k in self.keys[i] for i in self.waiters)
            assert self.pool.in_use[k] <= self.pool.capacity[k]
        assert self.pool.n_waiting == len(self.waiters)

    @invariant()
    def work_conserving(self) -> None:
        """No waiter that fits (after the oldest waiter's reservation) is left waiting."""
        if not self.waiters:
            return
        cap, used = self.pool.capacity, self.pool.in_use
        order = list(self.waiters)
        oldest = order[0]
        assert any(used[k] >= cap[k] for k in self.keys[oldest]), "the oldest waiter fits but waits"
        reserved = set(self.keys[oldest]) - {GLOBAL}  # the global slot is never held back
        for i in order[1:]:
            fits = all(used[k] + (1 if k in reserved else 0) < cap[k] for k in self.keys[i])
            assert not fits, f"waiter {i} fits but waits"

    @invariant()
    def the_oldest_waiter_is_the_one_holding_back(self) -> None:
        """What is held back is held for the oldest waiter, only free tokens, never the global slot."""
        owner, held = self.pool.held_back()
        if not self.waiters:
            assert owner is None and not held
            return
        assert owner == next(iter(self.waiters))
        assert GLOBAL not in held
        for key in held:
            assert key in self.keys[owner] and self.pool.in_use[key] < self.pool.capacity[key]

    def teardown(self) -> None:
        # Liveness: finishing holders one by one admits every waiter.
        if not hasattr(self, "pool"):
            return
        for _ in range(10 * (len(self.waiters) + len(self.holders)) + 10):
            if not self.holders:
                break
            i = min(self.holders)
            self.pool.release(self.holders.pop(i))
            self._collect_admitted()
        assert not self.waiters, "waiters left behind after every holder finished"


AdmissionMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
TestAdmission = AdmissionMachine.TestCase


class BottleneckMachine(AdmissionMachine):
    """admission="bottleneck": the same accounting, work conservation and liveness.

    (A waiter of the scarcest resource may pass the oldest one, a bounded number of
    times: the hold-back check does not apply, the no-starvation teardown does.)
    """

    admission = "bottleneck"


BottleneckMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestBottleneckAdmission = BottleneckMachine.TestCase


def test_shrinking_never_preempts_and_admits_only_below_the_new_capacity() -> None:
    pool = ResourcePool(10)
    pool.declare("gpu", 3)
    for i in range(3):
        assert pool.try_acquire((GLOBAL, "gpu"), i) is None
    pool.declare("gpu", 1)  # three holders stay
    waiter = pool.try_acquire((GLOBAL, "gpu"), 3)
    assert waiter is not None and not waiter.admitted
    pool.release((GLOBAL, "gpu"))
    pool.release((GLOBAL, "gpu"))
    assert not waiter.admitted  # one holder left = the new capacity
    pool.release((GLOBAL, "gpu"))
    assert waiter.admitted and pool.in_use["gpu"] == 1


def test_closing_wakes_every_waiter_and_holds_nothing() -> None:
    pool = ResourcePool(1)
    assert pool.try_acquire((GLOBAL,), 0) is None
    waiters = [pool.try_acquire((GLOBAL,), i) for i in range(1, 4)]
    assert pool.close() == 3
    assert all(w.closed and not w.admitted for w in waiters)
    assert pool.n_waiting == 0 and pool.waiting[GLOBAL] == 0
