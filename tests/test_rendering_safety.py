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
from aura_nb.notebook import Workbench, dot_available, render_path, render_state_map, to_svg

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


LONG = "x" * 9_990 + "-the-end"
RLO = "render\u202eaiv"  # a right-to-left override: would show "via" as "aiv" after it
FORGE = "intruder\n  gpu: free (0/1)"
MATH = r"$\href{https://example.com}{M}$"


async def test_long_bidi_and_multiline_names_stay_short_one_line_and_in_order() -> None:
    wb = Workbench(max_concurrency=1, capacities={"gpu": 1})
    gate = asyncio.Event()

    async def work() -> None:
        await gate.wait()

    holder = wb.submit(an.Tasklet(work, name=FORGE, resource_tags=["gpu"]))
    waiters = [wb.submit(an.Tasklet(work, name=name, resource_tags=["gpu"])) for name in (LONG, RLO)]
    for _ in range(5):
        await asyncio.sleep(0)
    wb.refresh()
    table = wb.running_table.value
    assert "\u202e" not in table and "\\u202e" in table  # shown escaped: it cannot reorder the row
    assert LONG not in table and "…" in table and "-the-end" in table  # shortened in the middle ...
    assert re.search(r'title="x{900,}…?x*-the-end"', table)  # ... the text on hover (up to 2,000 characters)
    assert len(table) < 40_000
    # why() quotes every user string the same way: a newline cannot forge a line.
    report = str(wb.why(waiters[0]))
    assert "\n  gpu: free" not in report and "intruder\\n  gpu: free (0/1)" in report
    assert all(len(line) < 300 for line in report.splitlines())
    # So does a limit's repr: the tasklet a token is held back for, the managers holding it elsewhere.
    limit = an.LimitStatistics("gpu", 2, 1, 1, 1, f"t-1 ({FORGE})", held_elsewhere=(f"h:1 {RLO}", LONG))
    assert "\n" not in repr(limit) and "\u202e" not in repr(limit) and "intruder\\n  gpu" in repr(limit)
    assert len(repr(limit)) < 400
    wb.tasklet_select.value = waiters[1].id
    wb.why_button.click()
    assert "\u202e" not in wb.why_area.value
    gate.set()
    await asyncio.gather(holder, *waiters)
    await wb.aclose()


async def test_failures_with_hostile_messages_stay_in_their_line_of_the_error_area() -> None:
    wb = Workbench(max_concurrency=1)

    async def fail() -> None:
        raise RuntimeError("disk\n⚠ 00:00:00 tasklet 1 ('x') succeeded" + "\u202e" + "y" * 5000)

    with pytest.raises(RuntimeError):
        await wb.submit(an.Tasklet(fail, name=RLO))
    errors = wb.errors_widget.value
    assert errors.count('<li class="aura-error') == 1
    assert "\u202e" not in errors and "disk\\n⚠" in errors and len(errors) < 3_000
    assert_inert(errors)
    await wb.aclose()


def test_drawings_shorten_long_names_and_escape_bidi_controls() -> None:
    long = "y" * 182 + "-the-end"  # names may have up to 200 characters: unreadable on a path
    plan = an.Plan("long")
    plan.add_task(lambda: True, name="check")
    plan.add_task(lambda: None, name=long)
    plan.add_state(long, check="check")
    plan.add_state(RLO, check="check", description="a description\u202e reversed")
    plan.add_transition(long, RLO, task=long)
    path = plan.find_path(long, RLO)
    source = render_path(plan, path, compact=True).source
    assert f"<B>{long}</B>" not in source and "\u202e" not in source and "\\u202e" in source
    assert source.count(f'tooltip="{long}"') == 2  # the full names on hover, node and edge
    if dot_available():
        svg = to_svg(render_path(plan, path))
        width = float(re.search(r'<svg width="([0-9.]+)pt"', svg).group(1))
        assert width < 1_000, width  # every name at most 40 characters: bounded, whatever the input


def test_frames_show_user_text_literally_without_scientific_notation() -> None:
    import pandas as pd

    from aura_nb.notebook._frames import literal_frame

    frame = literal_frame(pd.DataFrame({"name": [MATH], "duration_s": [0.0000123], "seq": [1]}))
    assert list(frame.columns) == ["seq", "name", "duration_s"]  # the most useful first
    html = frame._repr_html_()
    assert "tex2jax_ignore" in html  # MathJax leaves the table alone: the name is text
    assert "e-05" not in html and "0.000012" in html
    assert type(frame[frame["seq"] == 1]) is type(frame)  # slices keep the display
