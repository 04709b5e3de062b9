"""DataFrames shown the way a reader expects: user text literal, plain decimal numbers.

A tasklet may be called ``$\\href{https://evil}{M}$``: pandas' HTML display marks its
tables for MathJax by default, and JupyterLab would typeset that name as a link. A
duration of 12 µs shows as ``1.2e-05``. :class:`LiteralFrame` is a plain
``pandas.DataFrame`` (every method works and keeps the type) whose *display* turns
MathJax off for its table and writes floats as fixed decimals; the data are untouched.
:func:`literal_frame` also puts the most useful columns first.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["LiteralFrame", "literal_frame"]

#: Columns a reader looks at first, in this order; the others follow as they were.
FIRST_COLUMNS = (
    "seq", "t", "event", "tasklet_id", "name", "status", "task", "state_from", "state_to", "step",
    "total_s", "queue_s", "planning_s", "run_s", "duration_s", "resource_tags",
)  # fmt: skip


def _decimal(x: float) -> str:
    """Fixed decimals (microseconds for seconds), never scientific notation."""
    return f"{x:,.6f}"


class LiteralFrame(pd.DataFrame):
    """A DataFrame displayed with user text literal (no MathJax) and no scientific notation."""

    @property
    def _constructor(self) -> type[LiteralFrame]:
        return LiteralFrame

    def _repr_html_(self) -> str | None:
        with pd.option_context("display.html.use_mathjax", False, "display.float_format", _decimal):
            return super()._repr_html_()

    def __repr__(self) -> str:
        with pd.option_context("display.float_format", _decimal):
            return super().__repr__()


def literal_frame(frame: Any, *, reorder: bool = True) -> LiteralFrame:
    """*frame* as a :class:`LiteralFrame`, its most useful columns first."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"literal_frame() takes a pandas DataFrame, not {type(frame).__name__}")
    out = LiteralFrame(frame)
    if reorder:
        first = [c for c in FIRST_COLUMNS if c in out.columns]
        out = out[first + [c for c in out.columns if c not in first]]
    return out
