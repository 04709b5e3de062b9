"""The Jupyter front end of aura_nb: widgets, Graphviz drawings, DataFrames and plots.

Built only on the core's public API (``aura_nb.core``): it reads ``statistics()``
snapshots, listens to events through hooks and reads the event log. Nothing in the
core knows this package exists.

* ``_render``    -- pure functions ``(plan, path, progress) -> graphviz.Digraph``
* ``_analysis``  -- utilization over time, timeline and utilization plots (matplotlib)
* ``_loop``      -- running tasklets from plain cells on the kernel's event loop
* ``_dashboard`` -- what the Workbench shows, as HTML (pure functions of snapshots)
* ``_frames``    -- DataFrames displayed with user text literal (``literal_frame``)
* ``_workbench`` -- the ``Workbench`` dashboard
"""

from ._analysis import plot_timeline, plot_utilization, utilization
from ._frames import LiteralFrame, literal_frame
from ._loop import run_sync
from ._render import STYLES, GraphView, StateDiagram, display_graph, dot_available, render_path, render_state_map, to_svg
from ._workbench import Workbench

__all__ = [
    "STYLES",
    "GraphView",
    "LiteralFrame",
    "StateDiagram",
    "Workbench",
    "display_graph",
    "dot_available",
    "literal_frame",
    "plot_timeline",
    "plot_utilization",
    "render_path",
    "render_state_map",
    "run_sync",
    "to_svg",
    "utilization",
]
