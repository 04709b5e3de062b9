"""Every user string shown by the dashboard or a drawing is text, never markup.

One hostile string -- a script tag, quotes, braces and a newline -- goes into every
field a user controls: the plan's state names and descriptions, task names, the
tasklet's name, and the error message of a failing task.
"""

from __future__ import annotations

import asyncio
import re

import pytest

import aura_nb as an
from aura_nb.notebook import Workbench, render_path, render_state_map, to_svg

pytestmark = pytest.mark.anyio

EVIL = '<script>alert("x")</script>{a}\n"b\''


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the Workbench lives on the kernel's asyncio loop


def hostile_plan() -> an.Plan:
    plan = an.Plan("evil")

    @plan.task(name="check_start")
    def check_start() -> bool:
        return True

    @plan.task(name="check_goal")
    def check_goal() -> bool:
        return False

    @plan.task(name="go")
    async def go() -> None:
        raise RuntimeError(EVIL)

    plan.add_state("start" + EVIL, check="check_start", description=EVIL)
    plan.add_state("goal" + EVIL, check="check_goal", description=EVIL)
    plan.add_transition("start" + EVIL, "goal" + EVIL, task="go")
    return plan


def assert_inert(markup: str) -> None:
    """No element or attribute came from the hostile string."""
    assert "<script" not in markup.lower()
    assert 'alert("x")' not in markup  # the quotes were escaped
    assert not re.search(r"<[^>]*\bon\w+=", markup)


async def test_the_dashboard_shows_hostile_strings_as_text() -> None:
    plan = hostile_plan()
    wb = Workbench(plans=[plan], capacities={"gpu": 1})

    async def fail() -> None:
        raise ValueError(EVIL)

    handle = wb.submit(an.Tasklet(fail, name=EVIL, resource_tags=["gpu"]))
    with pytest.raises(ValueError):
        await handle
    planned = wb.submit(an.Tasklet("evil/go", name=EVIL, required_initial_state="goal" + EVIL))
    with pytest.raises(an.StatePlanningError):
        await planned
    for _ in range(5):
        await asyncio.sleep(0)
    wb.refresh()
    errors = wb.errors_widget.value
    assert "&lt;script&gt;" in errors  # the message is there, as text
    for widget in (wb.errors_widget, wb.running_table, wb.path_widget, wb.counters, wb.header, wb.why_area):
        assert_inert(widget.value)
    assert "&lt;script&gt;" in wb.path_widget.value or "&amp;lt;script" in wb.path_widget.value
    await wb.aclose()


def test_drawings_show_hostile_strings_as_text() -> None:
    plan = hostile_plan()
    path = plan.find_path("start" + EVIL, "goal" + EVIL)
    for graph in (render_state_map(plan), render_path(plan, path, {0: "failed"})):
        source = graph.source
        assert "<script" not in source.lower()
        svg = to_svg(graph)
        if svg is not None:
            assert_inert(svg)
            assert "&lt;script&gt;" in svg
