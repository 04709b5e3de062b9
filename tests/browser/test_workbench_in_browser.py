"""The Workbench as a person uses it, in real Chromium: choosing, watching, themes, offline.

One small notebook runs in JupyterLab: a dashboard, two tasklets sharing one GPU with
the compact gauge strip in their cell, a planned path, a state map and a plot. The
person chooses a tasklet in the dashboard's list and watches it end (the choice must
stay put), watches the strip in the later cell move, then switches to the dark theme
(no drawing may stay a white slab). Another test exports the executed tour to HTML,
as ``make demo`` does, and opens it with the network cut off: the static snapshot
must show the gauges and the last path.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import (
    NOTEBOOKS,
    Page,
    Server,
    assert_no_errors,
    background_brightness,
    code_cell_count,
    expect,
    jupyter_env,
    open_notebook,
    run_all,
    screenshot,
    switch_theme,
    wait_all_executed,
    write_notebook,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CELLS = [
    """import asyncio
import aura_nb as an
from aura_nb.examples.game import GameDevice, make_game_plan

device = GameDevice(delay=0.2)
plan = make_game_plan(device)
wb = an.Workbench(plans=[plan], max_concurrency=2, capacities={"gpu": 1})
wb""",
    "an.render_state_map(plan)",
    """async def hold(seconds: float) -> None:
    await asyncio.sleep(seconds)


first = wb.submit(an.Tasklet(hold, params={"seconds": 5}, resource_tags=["gpu"], name="first"))
second = wb.submit(an.Tasklet(hold, params={"seconds": 4}, resource_tags=["gpu"], name="second"))
wb.gauge_strip()""",
    """await asyncio.gather(first, second)
await wb.run(an.Tasklet("game/daily_quests", params={"rounds": 1}, resource_tags=["gpu"],
                        required_initial_state="in_game_at_home"))""",
    """import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(9, 3.5), layout="constrained")
an.plot_utilization(wb.manager, ax=ax)
plt.show()""",
]


def test_choice_stays_strip_is_live_and_dark_theme_has_no_white_slab(lab: Server, page: Page, focus: list[str]) -> None:
    focus += [".aura-strip", ".jp-RenderedSVG"]
    name = "dashboard_check.ipynb"
    write_notebook(lab.cwd / name, CELLS)
    open_notebook(page, lab, name)
    try:
        _use_the_dashboard(page, lab, name)
    finally:
        # The server is shared with the other tests: leave it as it was found.
        if page.locator("body[data-jp-theme-light='false']").count():
            switch_theme(page, "JupyterLab Light")
        lab.shut_down_sessions(name)


def _use_the_dashboard(page: Page, lab: Server, name: str) -> None:
    run_all(page)

    wb = page.locator(".aura-workbench").first
    select = wb.locator(".aura-tasklet-select select")
    # Nothing is chosen until the person chooses.
    expect(select.locator("option", has_text="first")).to_have_count(1, timeout=60_000)
    assert select.evaluate("el => el.selectedIndex") == -1
    first_label = select.locator("option", has_text="first").inner_text()
    select.select_option(label=first_label)
    expect(wb.locator(".aura-why-button")).to_be_enabled()

    # The strip in the later cell is live: the GPU full with "second" waiting ...
    strip = page.locator(".aura-strip").first
    expect(strip.locator(".aura-gauge-gpu .aura-gauge-text")).to_have_text("1 / 1 in use · 1 waiting")
    wb.locator(".aura-why-button").click()
    expect(wb.locator(".aura-why-head")).to_contain_text(re.compile(r"asked at \d\d:\d\d:\d\d"))
    # ... and when "first" ends, the choice stays on it, marked ended; nothing to cancel.
    chosen = select.locator("option:checked")
    expect(chosen).to_contain_text("ended (succeeded)", timeout=30_000)
    expect(chosen).to_contain_text("first")
    expect(wb.locator(".aura-cancel")).to_be_disabled()
    # The strip moved on by itself: "second" has the GPU now, then nothing is in use.
    expect(strip.locator(".aura-gauge-gpu .aura-gauge-text")).to_have_text("0 / 1 in use · 0 waiting", timeout=30_000)

    wait_all_executed(page, code_cell_count(lab.cwd / name))
    assert_no_errors(page)
    expect(chosen).to_contain_text("first")  # still, after everything ran
    expect(wb.locator(".aura-path .aura-step-done")).to_have_count(2)
    shots = Path("/tmp/shots")
    shots.mkdir(exist_ok=True)
    wb.screenshot(path=str(shots / "lab_dashboard_light.png"))

    # The dark theme: every drawing and plot shows the page's dark background through.
    switch_theme(page, "JupyterLab Dark")
    drawings = {
        "state map": page.locator(".jp-RenderedSVG img").first,
        "dashboard path": wb.locator(".aura-path svg").first,
        "utilization plot": page.locator(".jp-RenderedImage img").first,
    }
    for what, locator in drawings.items():
        expect(locator).to_be_visible()
        shot = screenshot(locator, f"dark_{what.replace(' ', '_')}.png")
        brightness = background_brightness(shot)
        assert brightness < 110, f"the {what} has a light background in the dark theme ({brightness:.0f}/255)"
    wb.screenshot(path=str(shots / "lab_dashboard_dark.png"))
    page.set_viewport_size({"width": 760, "height": 1400})
    wb.screenshot(path=str(shots / "lab_dashboard_narrow_dark.png"))


def test_the_exported_tour_shows_its_snapshot_offline(browser_tools: None, page: Page, tmp_path: Path) -> None:
    """``make demo``'s HTML, opened with no network: the snapshot stands in for the widgets."""
    target = tmp_path / "tour.html"
    result = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--execute", str(NOTEBOOKS / "01_tour.ipynb"),
         "--output-dir", str(tmp_path), "--output", "tour.html"],
        env=jupyter_env(tmp_path / "jupyter"), cwd=NOTEBOOKS, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    blocked: list[str] = []

    def offline(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", offline)
    page.goto(target.as_uri())
    snapshots = page.locator(".aura-snapshot")
    expect(snapshots).to_have_count(2)
    last = snapshots.last
    expect(last).to_be_visible()
    expect(last.locator(".aura-gauge .aura-gauge-name")).to_have_text(["global", "gpu", "api_key_A"])
    expect(last.locator(".aura-gauge-text")).to_have_text([re.compile(r"^0 / \d+ in use · 0 waiting$")] * 3)
    expect(last.locator(".aura-path svg")).to_be_visible()
    expect(last.locator(".aura-path .aura-step-done")).to_have_count(2)
    expect(last.locator(".aura-header")).to_contain_text("closed")
    # The first one was brought up to date too: gauges and a drawn path, not an empty dashboard.
    expect(snapshots.first.locator(".aura-path svg")).to_be_visible()
    assert blocked, "the page asked for nothing online: the test did not cut anything off"
    shots = Path("/tmp/shots")
    shots.mkdir(exist_ok=True)
    last.screenshot(path=str(shots / "offline_tour_snapshot.png"))


def test_the_gauge_bars_line_up_and_the_counts_stay_in_sight(page: Page) -> None:
    """The gauges alone, in Chromium (no server): every bar starts and ends where the
    others do, a paced quota's long caption included, and where a shared limit's note is
    too long the ellipsis cuts the other managers' labels, not the state or the counts."""
    from aura_nb import LimitStatistics
    from aura_nb.notebook._dashboard import CSS, gauges_html

    evil = "vm:7 " + ("nb\n  gpu: free (0/1)\u202eevil " + "x" * 200)[:200] + " (1 tasklet)"
    limits = [
        LimitStatistics("global", 40, 3, 2088),
        LimitStatistics("gpu", 1, 1, 3, held_elsewhere=(evil,)),
        LimitStatistics("search", 2**63 - 1, 2, 560, rate=10, per=1.0, rate_used=10, next_token_in=0.2,
                        held_elsewhere=(evil, "vm:8 colleague-notebook (1 tasklet)")),
        LimitStatistics("db", 2, 2, 92, rate=10, per=1.0, rate_used=2),
        LimitStatistics("api_key_A", 2**63 - 1, 0, 1443, rate=20, per=1.0, rate_used=15, burst=1),
    ]  # fmt: skip
    stats = type("Stats", (), {"limits": limits})()
    page.set_content(f'{CSS}<div class="aura-workbench" style="width: 832px">{gauges_html(stats)}</div>')
    bars = page.locator(".aura-gauge-bar").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); return [Math.round(r.left), Math.round(r.right)]; })"
    )
    assert len(bars) == 6 and len(set(map(tuple, bars))) == 1, f"bars not aligned: {bars}"
    assert bars[0][1] - bars[0][0] >= 100, f"bars squeezed: {bars}"
    captions = page.locator(".aura-gauge-text")
    expect(captions.nth(5)).to_have_text("15 / 20 per s, paced 1 per 0.05 s · 1443 waiting")
    assert captions.evaluate_all("els => els.every(e => e.scrollWidth <= e.clientWidth)"), "a caption is clipped"
    # The notes: the state (and the count, room permitting) visible in the note's box, the labels last.
    for row, words in (("gpu", ["full", "3 blocked here"]), ("search", ["quota used"])):
        note = page.locator(f".aura-gauge-{row} .aura-gauge-note").first
        right = note.evaluate("e => e.getBoundingClientRect().right")
        for word in words:
            part = note.locator("span", has_text=word).first
            assert part.evaluate("e => e.getBoundingClientRect().right") <= right + 0.5, f"{row}: {word!r} cut off"
        last = note.evaluate("e => e.lastElementChild.className")
        assert last == "aura-gauge-elsewhere", f"{row}: the labels come last, so the ellipsis cuts them ({last})"
        label = note.locator(".aura-gauge-elsewhere .aura-name").first
        assert label.evaluate("e => e.getClientRects().length") >= 1
        assert "\n" not in label.inner_text() and "\u202e" not in label.inner_text()
        assert label.get_attribute("title")


def test_in_a_narrow_cell_the_gauges_wrap_instead_of_running_off_the_edge(page: Page) -> None:
    """420 px: every part of every row stays inside the cell (the note goes under its bar,
    a long caption wraps), and the bars still line up."""
    from aura_nb import LimitStatistics
    from aura_nb.notebook._dashboard import CSS, gauges_html

    limits = [
        LimitStatistics("global", 40, 3, 1941),
        LimitStatistics("gpu", 1, 1, 3, held_elsewhere=("vm:8 colleague-notebook (1 tasklet)",)),
        LimitStatistics("search", 2**63 - 1, 10, 490, rate=10, per=1.0, rate_used=10, next_token_in=0.2),
        LimitStatistics("api_key_A", 2**63 - 1, 0, 1440, rate=20, per=1.0, rate_used=14, burst=1, margin=0.03),
    ]  # fmt: skip
    stats = type("Stats", (), {"limits": limits})()
    page.set_content(f'{CSS}<div class="aura-workbench" style="width: 420px">{gauges_html(stats)}</div>')
    right = page.locator(".aura-workbench").evaluate("e => e.getBoundingClientRect().right")
    parts = page.locator(".aura-gauge > span").evaluate_all(
        "els => els.map(e => [e.className, e.getBoundingClientRect().right, e.scrollWidth <= e.clientWidth + 1])"
    )
    for css, edge, whole in parts:
        assert edge <= right + 0.5, f"{css} runs off the edge ({edge} > {right})"
        if "aura-gauge-text" in css:
            assert whole, f"a caption is cut: {css}"
    bars = page.locator(".aura-gauge-bar").evaluate_all("els => els.map(e => Math.round(e.getBoundingClientRect().left))")
    assert len(set(bars)) == 1, bars
    expect(page.locator(".aura-gauge-api_key_A .aura-gauge-text")).to_contain_text("paced 1 per 0.05 s")
