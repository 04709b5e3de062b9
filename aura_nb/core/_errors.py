"""Every error aura_nb raises on purpose.

    AuraError
    ├── ArgumentError           (also ValueError)   an argument has a wrong value
    │   └── ArgumentTypeError   (also TypeError)    an argument has a wrong type
    ├── ResourceTagError        (also ValueError)   a tag or capacity is wrong
    ├── TaskNotFoundError       (also LookupError)  a tasklet names no known task
    ├── TaskletError            (also ValueError)   a tasklet's fields are wrong
    ├── StatesMapError          (also ValueError)   a states map is malformed
    ├── StatePlanningError                          the system could not be brought into the state
    ├── TaskletTimeoutError     (also TimeoutError) a phase ran over its limit
    ├── TaskletCancelledError                       awaited a handle whose tasklet was cancelled
    ├── HookError               (also ValueError)   a hook registration is wrong
    ├── EventLogError                               the SQLite log file cannot be used
    │   └── EventLogLockedError (also RuntimeError) another manager writes that SQLite log
    ├── WorkerLostError         (also RuntimeError) a Dask worker lost a tasklet's body
    └── ManagerUsageError       (also RuntimeError) the manager cannot do this now
        └── ManagerClosedError                      it no longer accepts work

A task's own exception is never wrapped: it reaches the caller unchanged.
Cancellation of the caller is never turned into one of these: it propagates.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArgumentError",
    "ArgumentTypeError",
    "AuraError",
    "EventLogError",
    "EventLogLockedError",
    "HookError",
    "ManagerClosedError",
    "ManagerUsageError",
    "ResourceTagError",
    "StatePlanningError",
    "StatesMapError",
    "TaskNotFoundError",
    "TaskletError",
    "TaskletCancelledError",
    "TaskletTimeoutError",
    "WorkerLostError",
]


class AuraError(Exception):
    """Base class of every error aura_nb raises on purpose."""


class ArgumentError(AuraError, ValueError):
    """A constructor or method argument has a value that cannot work (the message says which)."""


class ArgumentTypeError(ArgumentError, TypeError):
    """A constructor or method argument has the wrong type (the message says what fits)."""


class ResourceTagError(AuraError, ValueError):
    """A resource tag or a capacity is malformed or contradicts a declared capacity."""


class TaskNotFoundError(AuraError, LookupError):
    """A tasklet or a states map names a task (or plan) that is not registered."""


class TaskletError(AuraError, ValueError):
    """A tasklet's fields are wrong (params not a mapping, a negative timeout, ...)."""


class StatesMapError(AuraError, ValueError):
    """A states map is malformed; the message names the source and the key path."""


class HookError(AuraError, ValueError):
    """A hook was registered for an unknown event or with an unusable callback."""


class EventLogError(AuraError):
    """The event log's file cannot be used: not an aura_nb log, unreadable, not writable."""


class _EventLogValueError(EventLogError, ValueError):
    """A bad value for an event log setting (``flush_interval``, ``keep``, the path)."""


class EventLogLockedError(EventLogError, RuntimeError):
    """Another manager (this process or another) is writing the same SQLite log."""


class WorkerLostError(AuraError, RuntimeError):
    """Dask lost a tasklet's body: its worker died while running it, or the cluster
    dropped the task (a ``client.restart()``, a lost scheduler connection).

    The message names the tasklet, the Dask key and the worker. ``worker`` is the
    worker's address when known, ``key`` the Dask key, ``tasklet_id`` the tasklet. The
    original Dask exception (``KilledWorker`` or ``FutureCancelledError``) is the
    ``__cause__``.
    """

    def __init__(self, message: str, *, worker: str | None, key: str, tasklet_id: str) -> None:
        super().__init__(message)
        self.worker = worker
        self.key = key
        self.tasklet_id = tasklet_id


class ManagerUsageError(AuraError, RuntimeError):
    """The manager cannot do this now (e.g. ``start()`` on trio outside ``async with``)."""


class ManagerClosedError(ManagerUsageError):
    """Work was submitted to an ExecutionManager that is closing or closed."""


class TaskletCancelledError(AuraError):
    """Raised when awaiting a :class:`TaskletHandle` whose tasklet was cancelled.

    The awaiting task itself was not cancelled, so raising the backend's own
    cancellation exception there would be a lie that could confuse its cancel scopes.
    """

    def __init__(self, message: str, *, tasklet_id: str | None = None) -> None:
        super().__init__(message)
        self.tasklet_id = tasklet_id


class TaskletTimeoutError(AuraError, TimeoutError):
    """A tasklet ran over a time limit.

    ``phase`` is ``"planning"`` (the manager's or tasklet's ``planning_timeout``)
    or ``"run"`` (the tasklet's ``timeout`` around the task body); ``limit`` is
    the limit in seconds.
    """

    def __init__(self, message: str, *, phase: str, limit: float, tasklet_id: str | None = None) -> None:
        super().__init__(message)
        self.phase = phase
        self.limit = limit
        self.tasklet_id = tasklet_id


class StatePlanningError(AuraError):
    """The system could not be brought into the state a tasklet requires.

    ``reason`` is one of :attr:`REASONS`; the other attributes say where:
    ``plan`` and ``target`` (always), ``current`` (the detected current state,
    or the tuple of states that all claimed to be current), ``path`` (the
    planned :class:`~aura_nb.core.Path`, when one was found) and ``failed_step``
    (0-based index of the failing transition in ``path``).
    """

    REASONS = (
        "no_current_state",
        "several_current_states",
        "no_path",
        "check_failed",
        "transition_failed",
        "final_check_failed",
        "cost_overflow",
    )

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        plan: str,
        target: str,
        current: Any = None,
        path: Any = None,
        failed_step: int | None = None,
    ) -> None:
        if reason not in self.REASONS:  # a programming error inside aura_nb
            raise ValueError(f"unknown StatePlanningError reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.plan = plan
        self.target = target
        self.current = current
        self.path = path
        self.failed_step = failed_step
