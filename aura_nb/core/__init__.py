"""The engine of aura_nb: stdlib + anyio + PyYAML only.

What lives here, bottom up: ``_errors`` (the exception tree), ``_tags`` (parsing
``"gpu:1"``), ``_limits`` (the atomic, fair admission over the global and resource
limits), ``_events`` (the columnar event log and its SQLite file), ``_hooks``,
``_tasklet`` (Tasklet, TaskletHandle), ``_plan`` / ``_planner`` / ``_statesmap`` (plans,
state maps and the shortest-path planner) and ``_manager`` (the ExecutionManager that
ties them together).

Nothing here imports the notebook layer, ipywidgets, IPython, graphviz or pandas at
import time (``EventLog.to_frame`` imports pandas when called). A test enforces it.
"""

from ._errors import (
    AuraError,
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
)
from ._events import (
    AURA_HOOKS, COLUMNS, EVENT_NAMES, RUN_COLUMNS, STATUSES, Event, EventLog, EventLogError, EventLogLockedError,
    LogHealth,
)  # fmt: skip
from ._hooks import HookBus
from ._manager import ExecutionManager, Executor, TaskCall
from ._plan import Plan, State, TaskSpec, Transition
from ._planner import Path, StatePlanner, Step
from ._stats import LimitStatistics, ManagerStatistics, ResourceWait, WaitReport
from ._tasklet import Tasklet, TaskletHandle

__all__ = [
    "AURA_HOOKS",
    "COLUMNS",
    "EVENT_NAMES",
    "RUN_COLUMNS",
    "STATUSES",
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
    "Path",
    "Plan",
    "ResourceTagError",
    "ResourceWait",
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
]
