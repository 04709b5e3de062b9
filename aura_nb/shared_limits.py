"""Limits shared by every manager connected to one Dask scheduler.

Mental model: the sacks of tokens move to the Dask scheduler. Each named pool there
(``DaskLimits(client, name="team")``) is one plain
:class:`~aura_nb.core._limits.ResourcePool`, the same class a manager uses on its own,
so the admission rule (all at once or not at all, oldest first, what the oldest waiter
holds back) is written once and applies across processes unchanged. Every request from
a manager is one waiter in that pool; when the pool admits it, the scheduler tells that
manager.

What is shared and what is not:

* **resources** (``gpu``, ``api``...) are shared: one capacity per name for every
  manager of the pool; a tag or ``capacities=`` that contradicts it is a
  ``ResourceTagError`` naming the manager that declared it (``set_capacity`` changes it
  for everyone);
* **rates** too: one :class:`~aura_nb.core._rates.Rate` per resource, kept by the same
  pool on the scheduler (its timer runs on the scheduler's asyncio loop), taken in the
  same all-or-nothing step; ``rates=`` that contradicts it is refused the same way,
  ``set_rate`` changes it for everyone. A rate travels as its dataclass fields. A rate
  token's window starts when the manager says the work started (the "run" message,
  sent when its tasklet resumes), not at the grant, which takes a round trip to get
  there: so no two managers' starts can crowd into one window by the grants' delays;
* **max_concurrency stays each manager's own**: in the shared pool it is a resource
  private to that manager (named ``@<manager id>``), taken in the same atomic step as
  the shared resources. As for any resource, the oldest waiter holds back one of its
  own manager's slots, so a manager's stream of untagged work cannot starve its own
  GPU tasklet either.

Two sides, one module (the only place that imports ``distributed`` for this):

* :class:`SharedLimits` is the scheduler extension, a ``SchedulerPlugin``: loaded by
  ``DaskLimits`` itself (``client.register_plugin``, idempotent), or at scheduler
  start with ``dask scheduler --preload aura_nb.shared_limits``;
* :class:`DaskLimits` is the manager side: ``ExecutionManager(limits=DaskLimits(client,
  name="team"))``. It offers the calls a manager makes on its pool; each admission is a
  round trip to the scheduler, and the requests of one moment travel in one message.

Leases. Every token a manager holds is leased: its client renews the lease by polling
the scheduler (every third of ``lease_timeout``, on the client's own loop thread, so a
busy notebook still renews it). A manager that stops renewing (killed, its laptop
closed) loses its lease after ``lease_timeout`` seconds (default
:data:`LEASE_TIMEOUT_S`): its tokens come back and its waiters leave the queue.
A manager that cannot reach the scheduler for ``lease_timeout`` seconds, or learns that
its lease is gone, fails its waiting tasklets with :class:`SharedLimitsLostError`
(and every later one); tasklets already running keep their outcomes. A lost
``DaskLimits`` never comes back: its tokens may already belong to someone else, so a
new manager (with a new ``DaskLimits``) is the way on.

The protocol never leaks a token: requests carry ids; "take" is ignored when repeated,
"give" (a release, or a cancel that raced the grant) releases whatever the request holds
or removes it from the queue; grants are numbered and sent again until the manager has
seen them, and a grant for a request the manager no longer wants is answered by a give.
A give of a granted request whose work never started ("run") also returns its rate
tokens; a manager whose lease expires has its unconfirmed rate tokens counted as used.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import anyio
import distributed
from distributed.diagnostics.plugin import SchedulerPlugin

from .core._checks import shown
from .core._errors import (
    ArgumentError,
    ArgumentTypeError,
    ManagerClosedError,
    ResourceTagError,
    SharedLimitsLostError,
)
from .core._limits import GLOBAL, ResourcePool
from .core._rates import UNLIMITED, Rate
from .core._text import display_text

__all__ = ["LEASE_TIMEOUT_S", "DaskLimits", "SharedLimits", "SharedLimitsLostError", "dask_setup"]

#: Default lease timeout (seconds): how long a silent manager keeps its tokens.
LEASE_TIMEOUT_S = 30.0
#: The plugin's name on the scheduler.
PLUGIN_NAME = "aura-shared-limits"
#: The shared pool's own global limit: never the one that blocks (each manager's
#: max_concurrency is its own resource in the pool).
_UNBOUNDED = 2**62
_now = time.monotonic


# =====================================================================================
# The scheduler side
# =====================================================================================


class _Request:
    __slots__ = ("rid", "keys", "waiter", "task", "granted", "tasklet")

    def __init__(self, rid: int, keys: tuple[str, ...], tasklet: tuple[str, str]) -> None:
        self.rid = rid
        self.keys = keys
        self.tasklet = tasklet  # (id, name), for why() elsewhere
        self.waiter: Any = None
        self.task: asyncio.Task[None] | None = None
        self.granted = False


class _Member:
    """One manager known to a shared pool: its lease, its requests, its unseen grants."""

    def __init__(self, mid: str, hello: dict[str, Any]) -> None:
        self.mid = mid
        self.key = "@" + mid  # its max_concurrency, as a resource of the pool
        self.label = f"{hello.get('host', '?')}:{hello.get('pid', '?')} {hello.get('label') or ''}".strip()
        self.lease_timeout = float(hello.get("lease_timeout", LEASE_TIMEOUT_S))
        self.last_seen = _now()
        self.requests: dict[int, _Request] = {}
        self.grants: list[tuple[int, int]] = []  # (seq, rid) not seen by the manager yet
        self.last_rid = 0  # request ids only grow: a take at or below it was seen already
        self.seq = 0
        self.event = asyncio.Event()


class _SharedPool:
    def __init__(self, name: str) -> None:
        self.name = name
        self.pool = ResourcePool(_UNBOUNDED)
        self.members: dict[str, _Member] = {}
        self.declared_by: dict[str, str] = {}  # resource -> label of who declared its capacity
        self.rates: dict[str, Rate] = {}
        self.rate_by: dict[str, str] = {}  # resource -> label of who declared its rate
        self.wire_rates: dict[str, dict[str, Any]] = {}  # the rates as sent to managers
        self.version = 0  # of the capacities and rates

    def capacities(self) -> dict[str, int]:
        return {k: v for k, v in self.pool.capacity.items() if k != GLOBAL and not k.startswith("@")}

    def rated(self, keys: Any) -> bool:
        """Does a request for ``keys`` take a rate token?"""
        rates = self.rates
        return bool(rates) and any(key in rates for key in keys)

    def limits(self) -> dict[str, Any]:
        """What a manager learns of the pool's limits (with a version: the newest wins)."""
        return {"version": self.version, "capacity": self.capacities(), "rates": self.wire_rates}


class SharedLimits(SchedulerPlugin):
    """The scheduler extension that holds every shared pool (see the module docstring).

    Registers the ``aura_limits_*`` handlers on the scheduler and expires leases.
    """

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self) -> None:
        self.pools: dict[str, _SharedPool] = {}
        self._expiry: asyncio.Task[None] | None = None

    async def start(self, scheduler: Any) -> None:
        scheduler.handlers.update(
            {
                "aura_limits_send": self.send,
                "aura_limits_poll": self.poll,
                "aura_limits_declare": self.declare,
                "aura_limits_rate": self.set_rate,
                "aura_limits_snapshot": self.snapshot,
            }
        )
        if self._expiry is None:
            self._expiry = asyncio.create_task(self._expire_leases())

    async def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        for shared in self.pools.values():
            shared.pool.close()  # its waiters' tasks end, and its rate timer is cancelled

    def _pool(self, name: str) -> _SharedPool:
        pool = self.pools.get(name)
        if pool is None:
            pool = self.pools[name] = _SharedPool(name)
        return pool

    # -- handlers ----------------------------------------------------------------------
    def declare(self, pool: str, name: str, capacity: int, change: bool, who: str) -> dict[str, Any]:
        """Declare a resource's capacity; a contradiction is refused unless ``change``."""
        shared = self._pool(pool)
        known = shared.pool.capacity.get(name)
        if known == UNLIMITED:
            known = None  # a rate-only resource: the first capacity declared is its capacity
        if known is not None and known != capacity and not change:
            return {"ok": False, "known": known, "by": shared.declared_by.get(name, "another manager")}
        if known != capacity:
            shared.pool.declare(name, capacity)
            shared.declared_by[name] = who
            shared.version += 1
        return {"ok": True, **shared.limits()}

    def set_rate(self, pool: str, name: str, rate: dict[str, Any] | None, change: bool, who: str) -> dict[str, Any]:
        """Declare a resource's rate (its :class:`Rate`'s fields; None removes it); a
        contradiction is refused unless ``change``."""
        shared = self._pool(pool)
        known = shared.rates.get(name)
        new = Rate(**rate) if rate is not None else None
        if known is not None and new != known and not change:
            return {"ok": False, "known": shared.wire_rates[name], "by": shared.rate_by.get(name, "another manager")}
        if new != known:
            shared.pool.set_rate(name, new)  # the pool's own quota: its Timer runs on this (asyncio) loop
            if new is None:
                del shared.rates[name], shared.wire_rates[name]
            else:
                shared.rates[name], shared.wire_rates[name] = new, dataclasses.asdict(new)
                shared.rate_by[name] = who
            shared.version += 1
        return {"ok": True, **shared.limits()}

    def send(
        self, pool: str, manager: str, ops: list[Any], seen: int, hello: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Apply a manager's operations in order; reply with its unseen grants."""
        shared = self._pool(pool)
        member = shared.members.get(manager)
        if member is None:
            if hello is None:
                return {"lost": True}
            member = shared.members[manager] = _Member(manager, hello)
            shared.pool.declare(member.key, int(hello["max_concurrency"]))
        member.last_seen = _now()
        for op in ops:
            kind = op[0]
            if kind == "take":
                self._take(shared, member, op[1], op[2], (op[3], op[4]))
            elif kind == "give":
                self._give(shared, member, op[1])
            elif kind == "run":
                self._started(shared, member, op[1])
            elif kind == "max":
                shared.pool.declare(member.key, int(op[1]))
            elif kind == "bye":
                self._forget(shared, member)
                return {"lost": False, "grants": [], "bye": True}
        return self._reply(shared, member, seen)

    async def poll(self, pool: str, manager: str, seen: int, timeout: float) -> dict[str, Any]:
        """Renew the lease; wait (up to ``timeout``) for a grant the manager has not seen."""
        shared = self._pool(pool)
        member = shared.members.get(manager)
        if member is None:
            return {"lost": True}
        member.last_seen = _now()
        self._trim(member, seen)
        if not member.grants:
            member.event.clear()
            try:
                await asyncio.wait_for(member.event.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        if shared.members.get(manager) is not member:
            return {"lost": True}
        return self._reply(shared, member, seen)

    def snapshot(self, pool: str, manager: str | None = None) -> dict[str, Any]:
        """Everything why()/statistics() show, for one manager's point of view."""
        shared = self._pool(pool)
        p = shared.pool
        member = shared.members.get(manager) if manager else None
        names = list(shared.capacities())
        order = []
        for owner, _keys in p.waiters_in_order():
            m, req = owner
            order.append([m.mid, req.rid, req.tasklet[0], req.tasklet[1], m.label, list(req.keys[2:])])
        holders: dict[str, dict[str, int]] = {}
        for m in shared.members.values():
            for req in m.requests.values():
                if req.granted or (req.waiter is not None and req.waiter.admitted):  # admitted: holds its tokens
                    for key in req.keys[2:]:
                        by = holders.setdefault(key, {})
                        by[m.mid] = by.get(m.mid, 0) + 1
        owner, held = p.held_back()
        held_out = None
        if owner is not None:
            m, req = owner
            held_keys = {self._key_for(member, k): 1 for k in held}
            held_out = [m.mid, req.rid, req.tasklet[0], req.tasklet[1], m.label, held_keys]
        blocking = {}
        if member is not None:
            for req in member.requests.values():
                if req.waiter is not None and not req.granted:
                    why = p.blocking(req.waiter).items()
                    blocking[str(req.rid)] = {self._key_for(member, k): v for k, v in why if k != GLOBAL}
        quota = {}
        for name in shared.rates:
            _, used, next_in = p.rate_of(name)  # type: ignore[misc]
            quota[name] = [used, next_in]
        return {
            **shared.limits(),
            "in_use": {k: p.in_use[k] for k in names},
            "waiting": {k: p.waiting[k] for k in names},
            "quota": quota,  # resource -> [rate tokens taken in the window, s until the next is back]
            "order": order,
            "held": held_out,
            "blocking": blocking,
            "holders": holders,
            "managers": {m.mid: m.label for m in shared.members.values()},
        }

    # -- the pool's operations ---------------------------------------------------------
    @staticmethod
    def _key_for(member: _Member | None, key: str) -> str:
        """The pool key as that manager names it: its own slots are its global limit."""
        return GLOBAL if member is not None and key == member.key else key

    def _take(self, shared: _SharedPool, member: _Member, rid: int, names: list[str], tasklet: tuple[str, str]) -> None:
        if rid <= member.last_rid:
            return  # a retried message (even if the request was given back since)
        member.last_rid = rid
        req = member.requests[rid] = _Request(rid, (GLOBAL, member.key, *names), tasklet)
        for name in names:
            if name not in shared.pool.capacity:  # declared before it was taken; never happens
                shared.pool.declare(name, 1)
        pool = shared.pool
        if shared.rated(names):
            # Its rate tokens start their window when the manager says its work starts
            # ("run"), not at this grant: the grant takes a round trip to get there.
            waiter = req.waiter = pool.join(req.keys, (member, req))
            if waiter.admitted:
                self._granted(shared, member, req)
                return
        else:
            waiter = req.waiter = pool.try_acquire(req.keys, (member, req))
            if waiter is None:
                self._granted(shared, member, req)
                return
        req.task = asyncio.create_task(self._wait(shared, member, req))

    async def _wait(self, shared: _SharedPool, member: _Member, req: _Request) -> None:
        try:
            await shared.pool.wait(req.waiter, start=False)  # leaves nothing behind when cancelled
        except (asyncio.CancelledError, ManagerClosedError):
            return
        if member.requests.get(req.rid) is req:  # else: given back, and _give released it
            self._granted(shared, member, req)

    @staticmethod
    def _granted(shared: _SharedPool, member: _Member, req: _Request) -> None:
        req.granted = True
        member.seq += 1
        member.grants.append((member.seq, req.rid, shared.rated(req.keys)))
        member.event.set()

    @staticmethod
    def _started(shared: _SharedPool, member: _Member, rid: int) -> None:
        """The manager started the work of a request with a rate: its window starts now."""
        req = member.requests.get(rid)
        if req is not None and req.granted and req.waiter is not None:
            shared.pool.started(req.waiter)

    @staticmethod
    def _give(shared: _SharedPool, member: _Member, rid: int) -> None:
        req = member.requests.pop(rid, None)
        if req is None:
            return  # given back already (a retried message)
        if req.granted:
            if req.waiter is None:
                shared.pool.release(req.keys)
            else:  # also gives back rate tokens whose work never started
                shared.pool.cancel_waiter(req.waiter)
        elif req.waiter is not None:
            shared.pool.cancel_waiter(req.waiter)  # admitted meanwhile: gives the tokens back
            if req.task is not None:
                req.task.cancel()

    def _forget(self, shared: _SharedPool, member: _Member) -> None:
        """A manager said goodbye or its lease expired: everything it had comes back."""
        if shared.members.get(member.mid) is member:
            del shared.members[member.mid]
        for rid, req in list(member.requests.items()):
            if req.granted and req.waiter is not None:
                shared.pool.started(req.waiter)  # it may have started: its rate tokens count
            self._give(shared, member, rid)
        member.event.set()

    @staticmethod
    def _trim(member: _Member, seen: int) -> None:
        if member.grants and member.grants[0][0] <= seen:
            member.grants = [g for g in member.grants if g[0] > seen]

    def _reply(self, shared: _SharedPool, member: _Member, seen: int) -> dict[str, Any]:
        self._trim(member, seen)
        return {"lost": False, "grants": member.grants[:], **shared.limits()}

    async def _expire_leases(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            now = _now()
            for shared in list(self.pools.values()):
                for member in list(shared.members.values()):
                    if now - member.last_seen > member.lease_timeout:
                        self._forget(shared, member)


def dask_setup(scheduler: Any) -> None:
    """``dask scheduler --preload aura_nb.shared_limits``: load the extension at start."""
    scheduler.add_plugin(SharedLimits(), name=PLUGIN_NAME, idempotent=True)


# =====================================================================================
# The manager side
# =====================================================================================


class _RemoteWaiter:
    """A manager's request, as the manager sees it (``admitted`` once granted)."""

    __slots__ = ("rid", "keys", "owner", "admitted", "closed", "error", "wake", "rated", "ahead")

    def __init__(self, rid: int, keys: tuple[str, ...], owner: Any, ahead: bool) -> None:
        self.rid = rid
        self.keys = keys
        self.owner = owner
        self.admitted = False
        self.closed = False
        self.error: str | None = None
        self.wake: Callable[[], None] | None = None
        self.rated = False  # its grant took a rate token: say when its work starts
        #: Not known to wait yet (its request is on its way): run_many may send the next
        #: of its batch meanwhile, in the same message.
        self.ahead = ahead


class _Elsewhere:
    """A tasklet of another manager, shown by why() and statistics() like a local one."""

    __slots__ = ("tasklet",)

    def __init__(self, tasklet_id: str, name: str, label: str) -> None:
        self.tasklet = SimpleNamespace(id=tasklet_id, name=f"{name} @ {label}")


def _waker(event: anyio.Event) -> Callable[[], None]:
    """A callable that sets ``event`` from any thread (the client's loop thread)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        return wake
    import trio

    token = trio.lowlevel.current_trio_token()

    def wake_trio() -> None:
        try:
            token.run_sync_soon(event.set)
        except trio.RunFinishedError:
            pass

    return wake_trio


def _default_label() -> str:
    for var in ("JPY_SESSION_NAME", "AURA_NB_LABEL"):
        value = os.environ.get(var)
        if value:
            return os.path.basename(value)
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"


class DaskLimits:
    """The limits of a manager, kept on the Dask scheduler and shared with every manager
    that uses the same ``name`` there: ``ExecutionManager(limits=DaskLimits(client))``.

    Tags, ``capacities=``, ``rates=``, ``set_capacity``, ``set_rate``, ``why()`` and
    ``statistics()`` work as with the manager's own limits; resources and their rates
    are shared (one capacity and one rate per name), the manager's ``max_concurrency``
    stays its own. One ``DaskLimits`` serves one manager.

    Args:
        client: a ``distributed.Client`` with ``asynchronous=False`` (the default): its
            loop thread carries the requests and renews the lease, whatever loop
            (asyncio or trio) the manager runs on.
        name: the shared pool on the scheduler; managers with the same name share.
        label: how other managers see this one (with its host and process id); by
            default the notebook's name, or the script's.
        lease_timeout: seconds after which a manager that stopped renewing its lease
            (killed, disconnected) gives back its tokens and leaves the queue; a
            manager that cannot reach the scheduler that long fails its waiting
            tasklets with :class:`SharedLimitsLostError`.
        register: load the scheduler extension now (``client.register_plugin``,
            idempotent). Pass False when the scheduler was started with
            ``--preload aura_nb.shared_limits``.

    Cost: each admission is one round trip to the scheduler (the requests made in the
    same moment share it); ``statistics()`` and ``why()`` take a fresh snapshot from the
    scheduler (at most every 50 ms), which blocks for one round trip.
    """

    def __init__(
        self,
        client: distributed.Client,
        *,
        name: str = "default",
        label: str | None = None,
        lease_timeout: float = LEASE_TIMEOUT_S,
        register: bool = True,
    ) -> None:
        where = "DaskLimits"
        if not isinstance(client, distributed.Client):
            raise ArgumentTypeError(f"{where}(client=...) takes a distributed.Client, not {shown(client)}")
        if client.asynchronous:
            raise ArgumentError(
                f"{where} needs a Client with asynchronous=False (the default): its loop thread carries the "
                "requests and the lease, whatever loop the manager runs on; create it with distributed.Client(...)"
            )
        if not isinstance(name, str) or not name:
            raise ArgumentTypeError(f"{where}(name=...): {shown(name)} must be a non-empty string, e.g. 'team'")
        if label is not None and not isinstance(label, str):  # it travels to the scheduler and every manager
            raise ArgumentTypeError(f"{where}(label=...): {shown(label)} must be a string, e.g. 'training notebook'")
        if isinstance(lease_timeout, bool) or not isinstance(lease_timeout, (int, float)) or not lease_timeout > 0.5:
            raise ArgumentError(f"{where}(lease_timeout={shown(lease_timeout)}) must be a number of seconds above 0.5")
        self.client = client
        self.name = name
        self.lease_timeout = float(lease_timeout)
        self.manager_id = uuid.uuid4().hex[:12]
        self.label = label if label is not None else _default_label()
        self.host = socket.gethostname()
        self.pid = os.getpid()
        #: Capacities as this manager knows them: its own max_concurrency under GLOBAL.
        self.capacity: dict[str, int] = {GLOBAL: 1}
        self.bottleneck = False
        self._lock = threading.Lock()
        self._rids = itertools.count(1)
        self._pending: dict[int, _RemoteWaiter] = {}
        self._granted: dict[tuple[str, ...], list[int]] = {}
        self._held: set[int] = set()  # the rids in _granted
        self._unstarted: set[int] = set()  # granted with a rate token, and the work not started yet
        self._n_granted = 0
        self._ops: list[Any] = []
        self._pumping = False
        self._polling = False
        self._hello = True  # until the scheduler answered once
        self._seen = 0
        self._version = -1
        self._last_ok = _now()
        self._lost: str | None = None
        self._closed = False
        self._bound = False
        self._said_bye = False
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Rate quotas as this manager knows them (the scheduler keeps and enforces them).
        self.rates: dict[str, Rate] = {}
        self._new_limits: dict[str, Any] | None = None  # from the loop thread
        self._spoke = False  # the scheduler may know this manager
        self._snap: dict[str, Any] | None = None
        self._snap_t = -1.0
        self._snap_failed = -1.0  # when the scheduler last did not answer a snapshot
        self._snap_pause = 1.0  # how long to show the last one before asking again (grows while it fails)
        if register:
            client.register_plugin(SharedLimits(), name=PLUGIN_NAME)
        self._update_limits(self._call("aura_limits_snapshot", pool=self.name))

    def __repr__(self) -> str:
        state = "lost" if self._lost else "closed" if self._closed else "open"
        return f"<DaskLimits {self.name!r} {state}: {self.who}, {len(self._pending)} waiting, {self._n_granted} held>"

    @property
    def who(self) -> str:
        """How other managers see this one: ``host:pid label``."""
        return f"{self.host}:{self.pid} {self.label}".strip()

    # -- what the manager calls ----------------------------------------------------------
    def bind(self, max_concurrency: int, *, admission: str) -> DaskLimits:
        """Called by the manager that uses these limits (once)."""
        if self._bound:
            raise ArgumentError("this DaskLimits already serves a manager: create one DaskLimits per manager")
        if admission != "fifo":
            raise ArgumentError(
                f"ExecutionManager(admission={admission!r}, limits=DaskLimits(...)): shared limits admit oldest "
                "first. 'bottleneck' lets a tasklet pass older ones while a global slot is free, at most "
                "max_concurrency times; in a queue shared by managers each with its own max_concurrency there "
                "is no one global slot to watch nor one bound; use admission='fifo'"
            )
        self._bound = True
        self.capacity[GLOBAL] = max_concurrency
        return self

    def declare(self, name: str, capacity: int, *, change: bool = False) -> None:
        """Declare a capacity (the manager's global limit: its own; a resource: shared).

        One that contradicts the shared capacity is refused unless ``change``
        (``set_capacity``): then it changes for every manager of the pool.
        """
        if name == GLOBAL:
            self.capacity[GLOBAL] = capacity
            with self._lock:
                if self._spoke:  # else the first message says it
                    self._send_locked(("max", capacity))
            return
        reply = self._call(
            "aura_limits_declare", pool=self.name, name=name, capacity=capacity, change=change, who=self.who
        )
        if not reply["ok"]:
            raise ResourceTagError(
                f"resource {name!r}: capacity {capacity} contradicts the capacity {reply['known']} shared in "
                f"pool {self.name!r} (declared by {display_text(reply['by'], 80)}); use the bare tag {name!r}, or change it "
                f"deliberately with set_capacity({name!r}, {capacity})"
            )
        self._update_limits(reply)

    def set_rate(self, name: str, rate: Rate | None, *, change: bool = False) -> None:
        """Declare a resource's rate quota, kept and enforced on the scheduler for every manager.

        One that contradicts the shared rate is refused unless ``change``
        (``em.set_rate``): then it changes (or, with None, goes) for every manager.
        """
        wire = dataclasses.asdict(rate) if rate is not None else None  # every field of the Rate
        reply = self._call("aura_limits_rate", pool=self.name, name=name, rate=wire, change=change, who=self.who)
        if not reply["ok"]:
            raise ResourceTagError(
                f"resource {name!r}: rate {rate} contradicts the rate {Rate(**reply['known'])} shared in pool "
                f"{self.name!r} (declared by {display_text(reply['by'], 80)}); leave {name!r} out of rates= to use the shared "
                f"rate, or change it deliberately with set_rate({name!r}, {str(rate)!r})"
            )
        self._update_limits(reply)

    def rate_of(self, name: str) -> tuple[Rate, int, float | None] | None:
        """(rate, tokens taken in its current window by every manager, seconds until the next
        comes back), or None: as the scheduler saw it at the last snapshot."""
        snap = self.snapshot()
        quota = snap["quota"].get(name)
        rate = self.rates.get(name)
        if quota is None or rate is None:
            return None
        return rate, quota[0], quota[1]

    def try_acquire(self, keys: tuple[str, ...], owner: Any) -> _RemoteWaiter:
        """Ask the scheduler for the tokens: always a waiter (admitted after the round trip)."""
        self._check_client()
        if self._new_limits is not None:
            self._apply_new_limits()
        with self._lock:
            # Requests sent ahead (by run_many) stay below this manager's own limit: at
            # most that many more could be admitted by the next grants anyway.
            ahead = len(self._pending) < self.capacity[GLOBAL]
            waiter = _RemoteWaiter(next(self._rids), keys, owner, ahead)  # ids grow in the order sent
            self._spoke = True
            if self._lost is not None:
                waiter.error = self._lost
                return waiter
            self._pending[waiter.rid] = waiter
            tasklet = getattr(owner, "tasklet", None)
            shown_as = (str(getattr(tasklet, "id", "?")), str(getattr(tasklet, "name", "?")))
            self._ops.append(("take", waiter.rid, list(keys[1:]), *shown_as))
            self._kick()
        return waiter

    async def wait(self, waiter: _RemoteWaiter) -> None:
        """Wait until the scheduler admitted ``waiter``; on cancellation leave nothing behind."""
        try:
            if not (waiter.admitted or waiter.closed or waiter.error):
                event = anyio.Event()
                wake = _waker(event)
                with self._lock:
                    ready = waiter.admitted or waiter.closed or waiter.error is not None
                    if not ready:
                        waiter.wake = wake
                while not ready:
                    # The lease and the grants travel on the client's loop: a closed client
                    # stops them without a word, so look at it now and then.
                    with anyio.move_on_after(self.lease_timeout):
                        await event.wait()
                    self._check_client()
                    ready = event.is_set() or waiter.error is not None
        except BaseException:
            self.cancel_waiter(waiter)
            raise
        if waiter.error is not None:
            raise SharedLimitsLostError(waiter.error)
        if waiter.closed:
            raise ManagerClosedError("the manager was closed while this tasklet waited for resources")
        if waiter.rated:  # its rate tokens' window starts now, as with the manager's own limits
            with self._lock:
                if waiter.rid in self._unstarted:
                    self._unstarted.discard(waiter.rid)
                    self._send_locked(("run", waiter.rid))

    def cancel_waiter(self, waiter: _RemoteWaiter) -> None:
        """Forget a waiter whose task will not wait (any more): leaves nothing behind."""
        with self._lock:
            if waiter.admitted:
                waiter.admitted = False
                self._give_keys(waiter.keys, waiter.rid)
            elif not waiter.closed and self._pending.pop(waiter.rid, None) is not None:
                self._send_locked(("give", waiter.rid))
            waiter.closed = True

    def release(self, keys: tuple[str, ...]) -> None:
        with self._lock:
            self._give_keys(keys, None)

    def close(self) -> int:
        """The manager closes: its waiters end with ManagerClosedError; once it holds
        nothing, it leaves the pool."""
        woken = []
        with self._lock:
            self._closed = True
            for rid, waiter in list(self._pending.items()):
                waiter.closed = True
                self._send_locked(("give", rid))
                woken.append(waiter)
            self._pending.clear()
            self._maybe_bye()
        for waiter in woken:
            if waiter.wake is not None:
                waiter.wake()
        return len(woken)

    # -- what why() and statistics() read -------------------------------------------------
    @property
    def n_waiting(self) -> int:
        return len(self._pending)

    @property
    def in_use(self) -> dict[str, int]:
        snap = self.snapshot()
        out = dict(snap["in_use"])
        out[GLOBAL] = self._n_granted
        return out

    @property
    def waiting(self) -> dict[str, int]:
        snap = self.snapshot()
        out = dict(snap["waiting"])
        out[GLOBAL] = len(self._pending)
        return out

    def waiters_in_order(self) -> list[tuple[Any, tuple[str, ...]]]:
        """(owner, keys) of every waiter of the shared pool, oldest first (others' too)."""
        out = []
        for mid, rid, tid, tname, label, names in self.snapshot()["order"]:
            if mid == self.manager_id:
                waiter = self._pending.get(rid)
                if waiter is not None:
                    out.append((waiter.owner, waiter.keys))
            else:
                out.append((_Elsewhere(tid, tname, label), (GLOBAL, *names)))
        return out

    def held_back(self) -> tuple[Any, dict[str, int]]:
        held = self.snapshot()["held"]
        if held is None:
            return None, {}
        mid, rid, tid, tname, label, keys = held
        if mid == self.manager_id:
            waiter = self._pending.get(rid)
            owner = waiter.owner if waiter is not None else None
        else:
            owner = _Elsewhere(tid, tname, label)
        return (owner, keys) if owner is not None else (None, {})

    def blocking(self, waiter: _RemoteWaiter) -> dict[str, str]:
        if waiter.admitted or waiter.closed:
            return {}
        return dict(self.snapshot()["blocking"].get(str(waiter.rid), {}))

    def remote_holders(self) -> dict[str, list[str]]:
        """Who else holds each shared resource: ``{"gpu": ["host:pid label (2 tasklets)"]}``."""
        snap = self.snapshot()
        out: dict[str, list[str]] = {}
        for key, by in snap["holders"].items():
            for mid, n in by.items():
                if mid != self.manager_id:
                    who = snap["managers"].get(mid, mid)
                    out.setdefault(key, []).append(f"{who} ({n} tasklet{'s' if n > 1 else ''})")
        return out

    def statistics(self) -> dict[str, Any]:
        """The shared pool as the scheduler sees it: every manager and what it holds.

        ``{"pool", "managers": {label: {"holds": {resource: n}, "waiting": n}}, "capacity",
        "in_use", "waiting", "rates": {resource: {"rate", "used", "next_token_in"}}}``
        (resources only; each manager's slots are its own).
        """
        snap = self.snapshot(max_age=0.0)
        labels = snap["managers"]
        managers: dict[str, dict[str, Any]] = {label: {"holds": {}, "waiting": 0} for label in labels.values()}
        for key, by in snap["holders"].items():
            for mid, n in by.items():
                managers.setdefault(snap["managers"].get(mid, mid), {"holds": {}, "waiting": 0})["holds"][key] = n
        for mid, *_ in snap["order"]:
            label = snap["managers"].get(mid, mid)
            managers.setdefault(label, {"holds": {}, "waiting": 0})["waiting"] += 1
        return {
            "pool": self.name,
            "managers": managers,
            "capacity": snap["capacity"],
            "in_use": snap["in_use"],
            "waiting": snap["waiting"],
            "rates": {
                name: {"rate": self.rates[name], "used": used, "next_token_in": next_in}
                for name, (used, next_in) in snap["quota"].items()
                if name in self.rates
            },
        }

    def refresh(self) -> None:
        """Learn the capacities and rates declared by other managers since the last reply."""
        self.snapshot(max_age=0.0)

    def snapshot(self, max_age: float = 0.05) -> dict[str, Any]:
        """The scheduler's view (cached ``max_age`` seconds); the last one if it is out of reach."""
        self._check_client()
        now = _now()
        if self._new_limits is not None:
            self._apply_new_limits()
        if self._snap is not None and (
            now - self._snap_t <= max_age or self._lost is not None or now - self._snap_failed < self._snap_pause
        ):
            return self._snap  # fresh enough, or the scheduler is out of reach: do not block again
        try:
            snap = self._call("aura_limits_snapshot", pool=self.name, manager=self.manager_id, timeout=1.0)
        except Exception:  # noqa: BLE001 - out of reach: show what was last known
            # Each try blocks the caller's loop up to 1 s: ask less often while it fails.
            self._snap_failed = _now()
            self._snap_pause = min(self._snap_pause * 2, max(2.0, self.lease_timeout / 3))
            if self._snap is not None:
                return self._snap
            snap = {"version": -1, "capacity": {}, "rates": {}, "in_use": {}, "waiting": {}, "quota": {},
                    "order": [], "held": None, "blocking": {}, "holders": {}, "managers": {}}  # fmt: skip
        else:
            self._snap_pause = 1.0
        for key in self.capacity:
            if key != GLOBAL:
                snap["in_use"].setdefault(key, 0)
                snap["waiting"].setdefault(key, 0)
        self._snap, self._snap_t = snap, now
        self._update_limits(snap)
        return snap

    # -- plumbing (manager thread) ---------------------------------------------------------
    def _call(self, op: str, *, timeout: float = 10.0, **kwargs: Any) -> Any:
        """A blocking call to the scheduler, from the manager's thread."""
        return self.client.sync(getattr(self.client.scheduler, op), callback_timeout=timeout, **kwargs)

    def _apply_new_limits(self) -> None:
        new, self._new_limits = self._new_limits, None
        if new is not None:
            self._update_limits(new)

    def _update_limits(self, reply: dict[str, Any]) -> None:
        """Learn the pool's capacities and rates from a reply (``limits()`` on the scheduler)."""
        version = reply["version"]
        if version >= self._version:
            self._version = version
            capacity, new = self.capacity, False
            for key, value in reply["capacity"].items():
                if key in capacity:
                    capacity[key] = value
                else:
                    new = True
            if new:  # a new dict: the manager may be iterating the old one (statistics())
                self.capacity = {**capacity, **reply["capacity"]}
            if reply["rates"] or self.rates:
                self.rates = {name: Rate(**fields) for name, fields in reply["rates"].items()}

    def _give_keys(self, keys: tuple[str, ...], rid: int | None) -> None:
        """Give back the tokens of one granted request with these keys (lock held)."""
        rids = self._granted.get(keys)
        if not rids:
            return  # the lease was lost: nothing is held any more
        if rid is None or rid not in rids:
            # A release after the work ran: give back a request whose work started (with
            # a rate, the scheduler returns the rate token of one that never started).
            unstarted = self._unstarted
            rid = next((r for r in reversed(rids) if r not in unstarted), rids[-1]) if unstarted else rids[-1]
        rids.remove(rid)
        self._held.discard(rid)
        self._unstarted.discard(rid)
        self._n_granted -= 1
        self._send_locked(("give", rid))
        self._maybe_bye()

    def _send_locked(self, op: Any) -> None:
        if self._lost is None and not self._said_bye:
            self._ops.append(op)
            self._kick()

    def _maybe_bye(self) -> None:
        if self._closed and not self._pending and not self._n_granted and not self._said_bye:
            if self._spoke and self._lost is None:  # the scheduler knows this manager: tell it we are done
                self._ops.append(("bye",))
                self._kick()
            self._said_bye = True

    def _kick(self) -> None:
        """Make sure the pump runs on the client's loop (lock held)."""
        if not self._pumping:
            try:
                self.client.loop.asyncio_loop.call_soon_threadsafe(self._spawn, self._pump)
            except RuntimeError:  # the client's loop is closed: nothing can be sent (see _check_client)
                return
            self._pumping = True

    # -- plumbing (the client's loop thread) ------------------------------------------------
    def _spawn(self, fn: Callable[[], Any]) -> None:
        task = asyncio.ensure_future(fn())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pump(self) -> None:
        """Send the queued operations, in order, one message at a time; retried until the
        lease would have expired (the scheduler ignores what it already applied)."""
        ops: list[Any] = []
        while True:
            with self._lock:
                if not ops:
                    ops, self._ops = self._ops, []
                if not ops or self._lost is not None:
                    self._pumping = False
                    return
                hello = self._hello_msg() if self._hello else None
            try:
                reply = await asyncio.wait_for(
                    self.client.scheduler.aura_limits_send(
                        pool=self.name, manager=self.manager_id, ops=ops, seen=self._seen, hello=hello
                    ),
                    self.lease_timeout,
                )
            except Exception as exc:  # noqa: BLE001 - out of reach: retry until the lease is gone
                if _now() - self._last_ok > self.lease_timeout:
                    self._lose(self._unreachable(exc))
                    return
                await asyncio.sleep(0.1)
                continue
            ops = []
            self._answered(reply)
            with self._lock:
                first, self._hello = self._hello, False
            if first and not reply.get("lost") and not reply.get("bye"):
                self._polling = True
                self._spawn(self._poll)

    def _hello_msg(self) -> dict[str, Any]:
        return {
            "host": self.host, "pid": self.pid, "label": self.label,
            "lease_timeout": self.lease_timeout, "max_concurrency": self.capacity[GLOBAL],
        }  # fmt: skip

    async def _poll(self) -> None:
        """Renew the lease and receive grants, until the manager said goodbye."""
        every = self.lease_timeout / 3
        while self._lost is None and not self._said_bye:
            try:
                reply = await asyncio.wait_for(
                    self.client.scheduler.aura_limits_poll(
                        pool=self.name, manager=self.manager_id, seen=self._seen, timeout=every
                    ),
                    every + self.lease_timeout,
                )
            except Exception as exc:  # noqa: BLE001
                if _now() - self._last_ok > self.lease_timeout:
                    self._lose(self._unreachable(exc))
                    break
                await asyncio.sleep(min(0.2, every))
                continue
            if not self._said_bye:
                self._answered(reply)

    def _answered(self, reply: dict[str, Any]) -> None:
        if reply.get("bye"):
            return
        if reply.get("lost"):
            self._lose(
                f"the Dask scheduler no longer knows this manager in pool {self.name!r}: its lease expired "
                f"(no contact for {self.lease_timeout:g} s) or the scheduler restarted"
            )
            return
        self._last_ok = _now()
        wakes = []
        with self._lock:
            if reply["version"] > self._version:  # applied on the manager's thread (it iterates them)
                self._new_limits = reply
            for seq, rid, rated in reply["grants"]:
                self._seen = max(self._seen, seq)
                waiter = self._pending.pop(rid, None)
                if waiter is None:
                    if rid not in self._held:  # not wanted (any more): make sure it goes back
                        self._send_locked(("give", rid))
                    continue
                waiter.rated = rated  # first: the manager's thread may read admitted without the lock
                waiter.admitted = True
                self._held.add(rid)
                if rated:
                    self._unstarted.add(rid)
                self._granted.setdefault(waiter.keys, []).append(rid)
                self._n_granted += 1
                if waiter.wake is not None:
                    wakes.append(waiter.wake)
        for wake in wakes:
            wake()

    def _unreachable(self, exc: BaseException | None) -> str:
        """Why the scheduler could not be reached, in words (the client closed is the usual cause)."""
        status = str(getattr(self.client, "status", ""))
        if status in ("closing", "closed"):
            return "the Dask client was closed (client.close(), or its `with` block ended) while this manager used it"
        return f"the Dask scheduler was out of reach for over {self.lease_timeout:g} s ({type(exc).__name__}: {exc})"

    def _check_client(self) -> None:
        """A closed client runs neither the lease nor the grants: its limits are lost now."""
        if self._lost is None and str(getattr(self.client, "status", "")) in ("closing", "closed"):
            self._lose(self._unreachable(None))

    def _lose(self, why: str) -> None:
        wakes = []
        with self._lock:
            if self._lost is not None:
                return
            self._lost = why + "; tasklets already running keep their outcomes; create a new manager to go on"
            for waiter in self._pending.values():
                waiter.error = self._lost
                if waiter.wake is not None:
                    wakes.append(waiter.wake)
            self._pending.clear()
            self._granted.clear()
            self._held.clear()
            self._unstarted.clear()
            self._n_granted = 0
            self._ops.clear()
        for wake in wakes:
            wake()
