"""aura_nb: run automation tasklets safely under atomic resource limits, and watch them run.

Layers (each may import only the ones above it):

* :mod:`aura_nb.core` -- the engine (ExecutionManager, Plan, Tasklet, EventLog, ...).
  stdlib + anyio + PyYAML; never imports the notebook layer.
* :mod:`aura_nb.notebook` -- the Jupyter front end (Workbench, Graphviz rendering,
  DataFrames and plots). Uses only the core's public API.
* :mod:`aura_nb.examples` -- ready plans used by the notebooks, the README and the tests.

Everything public is re-exported here. The notebook names are loaded on first use, so
``import aura_nb`` (and ``import aura_nb.core``) stays fast and widget-free.
"""

from __future__ import annotations

from typing import Any

from .core import *  # noqa: F403 - the core's __all__ is the public engine API
from .core import __all__ as _core_all

_NOTEBOOK_NAMES = (
    "Workbench",
    "render_state_map",
    "render_path",
    "display_graph",
    "dot_available",
    "utilization",
    "plot_timeline",
    "plot_utilization",
    "run_sync",
)

__version__ = "0.1.0"
__all__ = [*_core_all, *_NOTEBOOK_NAMES, "__version__"]


def __getattr__(name: str) -> Any:
    if name == "DaskExecutor":  # only when asked for: dask is an optional extra
        from . import dask_executor

        return getattr(dask_executor, name)
    if name in _NOTEBOOK_NAMES:
        from . import notebook

        value = getattr(notebook, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'aura_nb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
