"""Shared fixtures: every async test runs on asyncio and on trio (anyio's plugin)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def require_or_skip(ok: bool, what: str) -> None:
    """Skip when a system tool is missing, except in CI (AURA_NB_REQUIRE_TOOLS=1) where it fails."""
    if ok:
        return
    if os.environ.get("AURA_NB_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{what} is required in CI (AURA_NB_REQUIRE_TOOLS=1) but missing")
    pytest.skip(f"{what} is not installed")


#: Lines a test wants in the run's summary (e.g. the soak test's RSS before and after).
REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("aura_nb measurements")
        for line in REPORT:
            terminalreporter.write_line(line)
