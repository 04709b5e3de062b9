"""The notebooks in a real JupyterLab, in headless Chromium: what a person sees after *Run All*.

Each test opens a copy of a notebook on a fresh workspace, runs every cell from the
*Run* menu, waits until every prompt shows a number and the kernel is idle, then
checks the page: the Workbench's gauges moved while tasklets ran and settled at 0 in
use, the planned path is drawn with each step in its status' colour, the DataFrames
are HTML tables, and nothing shows an error.
"""

from __future__ import annotations

import re
import sys

import pytest

from .helpers import (
    WATCH_LAYOUT,
    WATCH_WORKBENCH,
    Page,
    Server,
    assert_no_errors,
    code_cell_count,
    expect,
    gauge_numbers,
    inline_svg,
    open_notebook,
    path_statuses,
    path_steps,
    run_all,
    screenshot,
    svg_images,
    wait_all_executed,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: A gauge at rest: nothing in use, nothing waiting.
SETTLED = re.compile(r"^0 / \d+ in use · 0 waiting$")


def run_notebook(page: Page, lab: Server, name: str) -> None:
    open_notebook(page, lab, name)
    run_all(page)
    finish_notebook(page, lab, name)


def finish_notebook(page: Page, lab: Server, name: str) -> None:
    wait_all_executed(page, code_cell_count(lab.cwd / name))
    # The notebook's kernel is this venv's interpreter (the kernelspec the server found).
    kernels = lab.kernels()
    assert kernels and all(argv[0] == sys.executable for argv in kernels), kernels


def test_tour_in_jupyterlab(lab: Server, page: Page, focus: list[str]) -> None:
    focus += [".aura-workbench .aura-gauges", ".aura-workbench .aura-path"]
    open_notebook(page, lab, "01_tour.ipynb")
    page.evaluate(WATCH_WORKBENCH)  # records every change of the dashboard from now on
    page.evaluate(WATCH_LAYOUT)  # ... and what moved on the page
    run_all(page)
    # While the renders share the single GPU, its gauge turns red ("full"): what a
    # person sees mid-run (kept as a picture too).
    busy_gpu = page.locator(".aura-workbench").first.locator(".aura-gauge-gpu.aura-load-full")
    expect(busy_gpu).to_be_visible(timeout=60_000)
    screenshot(page.locator(".aura-workbench").first.locator(".aura-gauges"), "lab_gauges_busy.png")
    finish_notebook(page, lab, "01_tour.ipynb")
    assert_no_errors(page)

    # The dashboard is shown twice (after `wb` and after `await wb.aclose(); wb`): one
    # widget, two views, both with the final values.
    workbenches = page.locator(".aura-workbench")
    expect(workbenches).to_have_count(2)
    wb = workbenches.first
    expect(wb.locator(".aura-state-closed")).to_be_visible()

    # Gauges: the global limit first, then each resource as it was declared.
    names = wb.locator(".aura-gauge .aura-gauge-name")
    expect(names).to_have_text(["global", "gpu", "api_key_A"])
    for gauge in ("global", "gpu", "api_key_A"):
        expect(wb.locator(f".aura-gauge-{gauge}")).to_be_visible()
    # ... settled: nothing in use, nothing waiting, every bar back to "ok".
    captions = workbenches.locator(".aura-gauge-text")
    expect(captions).to_have_count(6)
    expect(captions).to_have_text([SETTLED] * 6)
    expect(workbenches.locator(".aura-gauge.aura-load-ok")).to_have_count(6)

    # ... and they moved while the tasklets ran: every change of the dashboard recorded.
    samples = page.evaluate("window.__auraSamples")
    history: dict[str, list[tuple[int, int, int, str]]] = {}
    for sample in samples:
        for name, gauge in sample["gauges"].items():
            if not gauge["text"]:
                continue  # a gauge's view being built
            row = (*gauge_numbers(gauge["text"]), gauge["level"])
            if not history.setdefault(name, []) or history[name][-1] != row:
                history[name].append(row)
    report = {name: rows[:12] for name, rows in history.items()}
    print(f"{len(samples)} changes of the dashboard recorded; gauges: {report}")
    glob = history["global"]
    assert len(glob) >= 4, f"the global gauge barely changed: {report}"
    busiest = max(range(len(glob)), key=lambda i: glob[i][0])
    assert glob[busiest][0] >= 2, f"the global gauge never showed several tasklets in use: {report}"
    assert glob[-1][0] == 0 and busiest < len(glob) - 1, f"the global gauge did not settle: {report}"
    # Three renders share the single GPU: one runs, the others wait, the gauge is full.
    assert any(in_use == 1 and waiting >= 1 and level == "aura-load-full" for in_use, _, waiting, level in
               history["gpu"]), f"the gpu gauge never showed a full GPU with tasklets waiting: {report}"  # fmt: skip
    assert any(in_use >= 2 for in_use, *_ in history["api_key_A"]), f"api_key_A never in use: {report}"

    # Counters by final status: the failure of section 5, the cancellation of section 6.
    for status, expected in {"waiting": "0", "planning": "0", "running": "0", "failed": "1", "cancelled": "1"}.items():
        expect(wb.locator(f".aura-count-{status} b")).to_have_text(expected)
    expect(wb.locator(".aura-count-succeeded b")).not_to_have_text("0")
    # The background failure surfaced in the dashboard.
    expect(wb.locator(".aura-errors .aura-error-failed")).to_have_count(1)
    expect(wb.locator(".aura-errors .aura-error-failed")).to_contain_text("ConnectionError")

    # The planned path: drawn before it ran (seen pending or running), then all done.
    step_history = [s["steps"] for s in samples if s["steps"]]
    assert step_history, "the path never appeared in the dashboard"
    assert any(set(steps) & {"pending", "running"} for steps in step_history), step_history
    assert set(step_history[-1]) == {"done"}, step_history
    caption = wb.locator(".aura-path .aura-path-caption b")
    expect(caption).to_have_text("logged_out → logged_in → in_game_at_home")
    states = caption.inner_text().split(" → ")
    expect(wb.locator(".aura-path .aura-step")).to_have_count(len(states) - 1)
    expect(wb.locator(".aura-path .aura-step-done")).to_have_count(len(states) - 1)
    drawing = inline_svg(page, ".aura-workbench .aura-path svg")
    steps = path_steps(drawing)
    assert [edge.title for edge, _ in steps] == [f"{a}->{b}" for a, b in zip(states, states[1:])], steps
    assert [status for _, status in steps] == ["done"] * (len(states) - 1), steps
    assert "(2 done)" in drawing.title, drawing.title

    # The state map of section 1 is an SVG image; the events are an HTML table.
    maps = svg_images(page)
    assert maps and any(e.title == "logged_out->logged_in" for e in maps[0].edges), maps
    events = page.locator(".jp-OutputArea-output table.dataframe", has_text="state_path_planned")
    expect(events).to_have_count(1)
    expect(events).to_contain_text("state_transition_finished")
    expect(page.locator(".jp-OutputArea-output table.dataframe")).to_have_count(2)  # events, runs
    expect(page.locator(".jp-RenderedImage img")).to_have_count(1)  # the utilization plot

    # A one-line legend, and every hint a title attribute the browser shows on hover.
    legend = wb.locator(".aura-legend")
    expect(legend).to_be_visible()
    expect(legend).to_contain_text("held for the oldest waiter")
    expect(legend.locator("[title]")).to_have_count(5)
    for hint in (".aura-gauge-text", ".aura-gauge-blocked", ".aura-gauge-bar"):
        expect(wb.locator(f".aura-gauge-global {hint}")).to_have_attribute("title", re.compile(r"\w+ \w+"))
    expect(wb.locator(".aura-why-button")).to_have_attribute("title", re.compile("."))
    # The error badge in the header, the error itself above the paths with its time.
    expect(wb.locator(".aura-header .aura-badge-errors")).to_have_text("⚠ 1 error")
    expect(wb.locator(".aura-errors .aura-error-time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
    # The snapshots for pages without widgets are there, and hidden beside a live dashboard.
    expect(page.locator(".aura-snapshot")).to_have_count(2)
    expect(page.locator(".aura-snapshot").first).to_be_hidden()

    # The page did not jump while the batch ran: the dashboard kept its height and
    # nothing inside it moved (Chrome's layout-shift score; "good" is under 0.1).
    heights = page.evaluate("window.__auraHeights")
    shifts = page.evaluate("window.__auraShifts")
    during = [h["h"] for h in heights if h["batch"]]
    assert during, f"the batch never showed in the progress row: {heights[:20]}"
    inside = sum(s["value"] for s in shifts if s["inside"])
    in_batch = sum(s["value"] for s in shifts if s["batch"])
    print(f"dashboard heights {sorted({h['h'] for h in heights})}; layout shift inside the dashboard {inside:.3f}, "
          f"anywhere during the batch {in_batch:.3f}")
    assert max(during) - min(during) <= 1, f"the dashboard's height changed during the batch: {heights}"
    assert inside < 0.1, shifts
    assert len({h["h"] for h in heights if h["h"] > 200}) <= 2, f"the dashboard's height kept changing: {heights}"

    shot = screenshot(wb, "lab_workbench.png")
    assert shot.stat().st_size > 10_000


def test_state_paths_in_jupyterlab(lab: Server, page: Page, focus: list[str]) -> None:
    focus += [".jp-RenderedSVG"]
    run_notebook(page, lab, "03_visualize_state_paths.ipynb")
    assert_no_errors(page)

    # Section 1: drawn before it runs (every step pending), then redrawn: both done.
    first = ".jp-CodeCell:has-text('result = await em.submit(quests)')"
    expect(page.locator(first).locator(".jp-RenderedSVG img")).to_have_count(2)
    planned, live = svg_images(page, first)
    assert path_statuses(planned) == ["pending", "pending"]
    assert path_statuses(live) == ["done", "done"]
    assert "(2 done)" in live.title, live.title
    expect(page.locator(first).locator(".jp-OutputArea")).to_contain_text("device now shows: in_game_at_home")

    # Section 3: the failing transition is drawn failed (vermillion, a bar at its end).
    broken = ".jp-CodeCell:has-text('device.fail_transitions = {')"
    expect(page.locator(broken).locator(".jp-RenderedSVG img")).to_have_count(2)
    planned, live = svg_images(page, broken)
    assert path_statuses(planned) == ["pending", "pending"]
    steps = path_steps(live)
    assert [status for _, status in steps] == ["done", "failed"], steps
    assert steps[1][0].title == "logged_in->in_game_at_home", steps
    assert "(1 done, 1 failed)" in live.title, live.title
    expect(page.locator(broken)).to_contain_text("reason: transition_failed")
    # ... and drawn again from the error's path, the same way.
    redrawn = ".jp-CodeCell:has-text('done_before = {')"
    expect(page.locator(redrawn).locator(".jp-RenderedSVG img")).to_have_count(1)
    (report,) = svg_images(page, redrawn)
    assert path_statuses(report) == ["done", "failed"]

    # Section 4: the dead end draws the map only, no step of a path.
    stuck = ".jp-CodeCell:has-text('device.state = \"maintenance\"')"
    expect(page.locator(stuck).locator(".jp-RenderedSVG img")).to_have_count(1)
    (dead_end,) = svg_images(page, stuck)
    assert dead_end.edges and not any("step" in edge.text for edge in dead_end.edges)

    # The event logs are HTML tables: three state_events() and the runs.
    tables = page.locator(".jp-OutputArea-output table.dataframe")
    expect(tables).to_have_count(4)
    expect(tables.last).to_contain_text("planning_failed")
