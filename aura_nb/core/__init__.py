"""The engine of aura_nb: stdlib + anyio + PyYAML only.

What lives here, bottom up: ``_errors`` (the exception tree), ``_checks`` (argument
checks, how a callable is called, safe error text), ``_tags`` (parsing ``"gpu:1"``),
``_limits`` (the atomic, fair admission over the global and resource limits: the
fairness rule lives there and only there), ``_events`` (the columnar event log and its
SQLite file), ``_hooks``, ``_tasklet`` (Tasklet, TaskletHandle), ``_plan`` /
``_planner`` / ``_statesmap`` (plans, state maps and the shortest-path planner).

The ExecutionManager is split along a tasklet's life: ``_resolve`` (what a tasklet
names, validated before anything waits), ``_walk`` (bringing the system into the
required state), ``_body`` (calling the body: on the loop, in a thread, on an
executor, under its timeout), ``_batch`` (``run_many``) and ``_manager`` (admission,
the lifecycle, hooks and events, statistics, closing) which ties them together.

Nothing here imports the notebook layer, ipywidgets, IPython, graphviz or pandas at
import time (``EventLog.to_frame`` imports pandas when called). A test enforces it.
"""

from ._errors import (
    ArgumentError,
    ArgumentTypeError,
    AuraError,
    EventLogError,
    EventLogLockedError,
    HookError,
    ManagerClosedError,
    ManagerUsageError,
    ResourceTagError,
    StatePlanningError,
    StatesMapError,
    TaskletCancelledError,
    TaskletError,
    TaskletTimeoutError,
    TaskNotFoundError,
    WorkerLostError,
)
from ._events import AURA_HOOKS, COLUMNS, EVENT_NAMES, RUN_COLUMNS, STATUSES, Event, EventLog, LogHealth
from ._hooks import HookBus
from ._limits import ADMISSION_POLICIES
from ._manager import HOOK_GRACE_S, ExecutionManager, Executor, TaskCall
from ._plan import Plan, State, TaskSpec, Transition
from ._batch import Completion, Outcome
from ._rates import Rate
from ._retry import Retry
from ._planner import Path, StatePlanner, Step
from ._stats import LimitStatistics, ManagerStatistics, ResourceWait, WaitReport
from ._tasklet import Tasklet, TaskletHandle

__all__ = [
    "ADMISSION_POLICIES",
    "AURA_HOOKS",
    "COLUMNS",
    "EVENT_NAMES",
    "HOOK_GRACE_S",
    "RUN_COLUMNS",
    "STATUSES",
    "ArgumentError",
    "ArgumentTypeError",
    "Completion",
    "AuraError",
    "Event",
    "EventLog",
    "EventLogError",
    "EventLogLockedError",
    "ExecutionManager",
    "Executor",
    "HookBus",
    "HookError",
    "LimitStatistics",
    "LogHealth",
    "ManagerClosedError",
    "ManagerStatistics",
    "ManagerUsageError",
    "Outcome",
    "Path",
    "Plan",
    "Rate",
    "ResourceTagError",
    "ResourceWait",
    "Retry",
    "State",
    "StatePlanner",
    "StatePlanningError",
    "StatesMapError",
    "Step",
    "TaskCall",
    "TaskNotFoundError",
    "TaskSpec",
    "Tasklet",
    "TaskletCancelledError",
    "TaskletError",
    "TaskletHandle",
    "TaskletTimeoutError",
    "Transition",
    "WaitReport",
    "WorkerLostError",
]
