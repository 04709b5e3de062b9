"""Fixtures of the browser tests: a JupyterLab server, Voilà, a headless Chromium page.

Every test here needs /usr/bin/chromium and Playwright for Python: without them the
tests skip on a laptop and fail in CI (``AURA_NB_REQUIRE_TOOLS=1``, see
``tests/conftest.py``). On a failure, the page's screenshot, a screenshot of each
element the test was looking at, the browser console and the server's log are saved
under ``build/browser/``.
"""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_or_skip

from aura_nb.notebook._render import dot_available

from .helpers import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    Server,
    copy_notebooks,
    expect,
    free_port,
    jupyter_env,
)

#: Playwright's auto-waiting assertions: generous, a notebook takes ~20-40 s end to end.
EXPECT_TIMEOUT_MS = 30_000


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Keep each phase's report on the item (``item.rep_setup``, ``item.rep_call``)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser_tools() -> None:
    require_or_skip(CHROMIUM.exists(), f"Chromium ({CHROMIUM}; apt-get install chromium)")
    require_or_skip(expect is not None, "Playwright for Python (pip install playwright; never `playwright install`)")
    require_or_skip(sys.platform.startswith("linux"), "Linux (the servers' kernels are found through /proc)")
    require_or_skip(dot_available(), "Graphviz's dot program (the tests read its SVG drawings)")


# Package scope, not session: Playwright's sync API keeps an asyncio loop marked as
# running in the main thread while it is open, which would break every async test
# that runs after the browser tests in the same session.
@pytest.fixture(scope="package")
def playwright(browser_tools: None) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="package")
def lab(browser_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """JupyterLab on 127.0.0.1, a free port and a random token, serving a copy of notebooks/."""
    root = tmp_path_factory.mktemp("lab")
    notebooks = copy_notebooks(root)
    port, token = free_port(), secrets.token_hex(16)
    server = Server(
        name="JupyterLab",
        cmd=[
            sys.executable, "-m", "jupyterlab",
            "--allow-root",
            "--ServerApp.open_browser=False",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={notebooks}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],  # fmt: skip
        env=jupyter_env(root),
        cwd=notebooks,
        log_path=root / "jupyterlab.log",
        port=port,
        token=token,
    )
    server.start(f"/api/status?token={token}")
    yield server
    server.stop()


@pytest.fixture
def voila_tour(browser_tools: None, tmp_path: Path) -> Iterator[Server]:
    """Voilà serving a copy of the tour as a dashboard (code cells hidden), own process group."""
    notebooks = copy_notebooks(tmp_path)
    port, token = free_port(), secrets.token_hex(16)
    server = Server(
        name="Voila",
        cmd=[
            sys.executable, "-m", "voila", str(notebooks / "01_tour.ipynb"),
            "--no-browser",
            f"--port={port}",
            "--Voila.ip=127.0.0.1",
            f"--token={token}",
        ],  # fmt: skip
        env=jupyter_env(tmp_path),
        cwd=notebooks,
        log_path=tmp_path / "voila.log",
        port=port,
        token=token,
    )
    # Voilà runs the notebook for each page request: wait only for it to listen.
    server.start(None)
    yield server
    server.stop()


@pytest.fixture
def focus() -> list[str]:
    """Selectors of the elements a test looks at: screenshotted if it fails."""
    return [".aura-workbench"]


@pytest.fixture
def page(playwright, request: pytest.FixtureRequest, tmp_path: Path, focus: list[str]):  # type: ignore[no-untyped-def]
    """A page of a fresh headless Chromium (own profile); artifacts saved if the test fails."""
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 1600},
    )
    page = context.pages[0] if context.pages else context.new_page()
    page.set_default_timeout(EXPECT_TIMEOUT_MS)
    messages: list[str] = []
    page.on("console", lambda msg: messages.append(f"[{msg.type}] {msg.text}"))
    page.on("pageerror", lambda exc: messages.append(f"[pageerror] {exc}"))
    try:
        yield page
    finally:
        node = request.node
        failed = any(getattr(node, f"rep_{when}", None) and getattr(node, f"rep_{when}").failed
                     for when in ("setup", "call"))  # fmt: skip
        if failed:
            _save_failure(node, page, messages, focus)
        context.close()


def _save_failure(node: pytest.Item, page, messages: list[str], focus: list[str]) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", node.name)
    saved = []
    try:
        page.screenshot(path=str(ARTIFACTS / f"{stem}-page.png"))
        saved.append(f"{stem}-page.png")
        for i, selector in enumerate(focus):
            target = page.locator(selector).first
            if target.count():
                name = f"{stem}-element{i}.png"
                target.screenshot(path=str(ARTIFACTS / name), timeout=10_000)
                saved.append(name)
    except Exception as exc:  # the page may be gone: keep what could be saved
        messages.append(f"[test] could not take a screenshot: {exc}")
    (ARTIFACTS / f"{stem}-console.txt").write_text("\n".join(messages) + "\n")
    saved.append(f"{stem}-console.txt")
    for value in getattr(node, "funcargs", {}).values():
        if isinstance(value, Server):
            name = f"{stem}-{value.name.lower()}.log"
            (ARTIFACTS / name).write_text(value.log_tail(200_000))
            saved.append(name)
    print(f"\nbrowser artifacts of {node.nodeid} in {ARTIFACTS}: {', '.join(saved)}")
