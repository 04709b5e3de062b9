"""The tour as a Voilà dashboard, in headless Chromium: code hidden, the Workbench shown.

Voilà runs the whole notebook when the page is asked for, then the page connects to
the kernel and draws the widgets: the dashboard arrives with its final values, so
this test checks that they render (the gauges, settled, and the planned path drawn
done); watching them move is the JupyterLab test's job.
"""

from __future__ import annotations

import re

import pytest

from .helpers import Page, Server, assert_no_errors, expect, inline_svg, path_steps, screenshot, svg_images

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_tour_in_voila(voila_tour: Server, page: Page, focus: list[str]) -> None:
    focus += [".aura-workbench .aura-path"]
    # The answer starts when the notebook starts running: wait for its first bytes only.
    page.goto(f"{voila_tour.base}/?token={voila_tour.token}", wait_until="commit", timeout=120_000)
    workbenches = page.locator(".aura-workbench")
    expect(workbenches).to_have_count(2, timeout=120_000)  # after `wb` and after `aclose()`
    wb = workbenches.first
    expect(wb).to_be_visible()

    # Gauges: one per limit, settled at the end of the tour.
    expect(wb.locator(".aura-gauge .aura-gauge-name")).to_have_text(["global", "gpu", "api_key_A"])
    expect(wb.locator(".aura-gauge-text")).to_have_text([re.compile(r"^0 / \d+ in use · 0 waiting$")] * 3)
    expect(wb.locator(".aura-count-failed b")).to_have_text("1")
    expect(wb.locator(".aura-errors .aura-error-failed")).to_contain_text("ConnectionError")

    # The last planned path, every step drawn done.
    expect(wb.locator(".aura-path .aura-step-done")).to_have_count(2)
    drawing = inline_svg(page, ".aura-workbench .aura-path svg")
    steps = path_steps(drawing)
    assert [(edge.title, status) for edge, status in steps] == [
        ("logged_out->logged_in", "done"),
        ("logged_in->in_game_at_home", "done"),
    ], steps

    # A dashboard: the code is hidden, the outputs are there, nothing failed.
    expect(page.get_by_text("async def call_api")).to_have_count(0)
    expect(page.locator(".jp-InputArea-editor")).to_have_count(0)
    assert svg_images(page), "the state map of section 1 is missing"
    expect(page.locator("table.dataframe")).to_have_count(2)
    assert_no_errors(page)

    shot = screenshot(wb, "voila_workbench.png")
    assert shot.stat().st_size > 10_000
