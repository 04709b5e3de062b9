"""Every notebook in notebooks/ is executed, headless, and must show what it promises.

Each notebook runs in a fresh kernel started from this interpreter (a kernelspec made
for the test, so a fresh clone with only the virtualenv works), with notebooks/ as its
working directory. A notebook passes when no cell raised and, for the notebooks checked below, nothing
printed a traceback and the outputs its text talks about are there.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from aura_nb.notebook._render import dot_available

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
TIMEOUT = 600  # seconds per cell at most; each notebook takes a few seconds in total


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JUPYTER_PATH entry whose ``python3`` kernel is this very interpreter."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (aura_nb tests)",
                "language": "python",
            }
        )
    )
    return root


def run_notebook(path: Path, kernel_dir: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_dir))
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # no debugger warning on stderr
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS_DIR)}}
    )
    client.execute()  # raises CellExecutionError, with the traceback, if a cell fails
    return nb


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def data_of(nb: nbformat.NotebookNode, mime: str) -> list[str]:
    return [out["data"][mime] for out in outputs(nb) if mime in out.get("data", {})]


def stdout(nb: nbformat.NotebookNode) -> str:
    return "".join(out["text"] for out in outputs(nb) if out["output_type"] == "stream" and out["name"] == "stdout")


def drawings(nb: nbformat.NotebookNode) -> list[str]:
    """The Graphviz drawings shown: SVG with dot, the DOT-text fallback without it."""
    if dot_available():
        return data_of(nb, "image/svg+xml")
    return [page for page in data_of(nb, "text/html") if "apt-get install graphviz" in page]


def check_01(nb: nbformat.NotebookNode) -> None:
    """Every Workbench output has a static snapshot beside it, readable without widgets."""
    widget = "application/vnd.jupyter.widget-view+json"
    shown = outputs(nb)
    dashboards = [i for i, out in enumerate(shown) if widget in out.get("data", {})
                  and "Workbench" in out["data"].get("text/plain", "")]  # fmt: skip
    assert len(dashboards) == 2, "the tour shows its dashboard twice"
    for i in dashboards:
        snapshot = shown[i + 1].get("data", {}).get("text/html", "")
        assert 'class="aura-snapshot"' in snapshot, f"output {i} has no snapshot after it"
        assert "aura-gauge-global" in snapshot and "aura-gauge-gpu" in snapshot
    # The snapshots were brought up to date: the last state, with the last path drawn.
    last = shown[dashboards[-1] + 1]["data"]["text/html"]
    assert "closed" in last and "<svg" in last and "aura-step-done" in last
    assert "1 error" in last  # the badge of section 5's failure
    first = shown[dashboards[0] + 1]["data"]["text/html"]
    assert "<svg" in first, "the first snapshot was not updated when the manager went idle"
    # The compact gauges are shown where the work happens.
    strips = [i for i, out in enumerate(shown) if widget in out.get("data", {}) and i not in dashboards]
    assert len(strips) >= 2


def check_02(nb: nbformat.NotebookNode) -> None:
    shown = drawings(nb)
    assert len(shown) >= 5  # game map, printer map, planned path, dead end, dry run
    assert any("quick_start" in page and "do_login" in page for page in shown)
    assert any("printer" in page and "out_of_paper" in page for page in shown)
    text = stdout(nb)
    assert "StatesMapError: <text>: transitions[0].to: unknown state 'printting'" in text
    assert "<Path game: logged_out -> logged_in -> in_game_at_home (cost 6)>" in text
    assert "'maintenance' is a dead end" in text and "reason: no_path" in text
    assert "ResourceTagError" in text and "TaskNotFoundError" in text
    assert "device actions: [] | device state: logged_out" in text  # the dry run ran nothing
    assert any("api_key_A" in table and "<table" in table for table in data_of(nb, "text/html"))


def check_03(nb: nbformat.NotebookNode) -> None:
    shown = drawings(nb)
    # Each planned path twice (before, and live), the failure again, the dead-end map.
    assert len(shown) >= 6
    assert any("step 2/2: pending" in page and "step 1/2: pending" in page for page in shown)  # before running
    assert any("step 1/2: done" in page and "step 2/2: done" in page for page in shown)
    assert any("step 1/2: done" in page and "step 2/2: failed" in page for page in shown)
    text = stdout(nb)
    assert "device now shows: in_game_at_home" in text
    assert "reason: transition_failed | failed_step: 1" in text
    assert "reason: no_path | current: maintenance" in text
    assert "'succeeded': 2" in text and "'planning_failed': 2" in text
    assert any("state_path_planned" in table for table in data_of(nb, "text/html"))


def check_04(nb: nbformat.NotebookNode) -> None:
    tables = [page for page in data_of(nb, "text/html") if "<table" in page]
    assert len(tables) >= 10
    assert any("queue_s" in table and "planning_s" in table for table in tables)  # runs()
    assert any("peak in use" in table for table in tables)
    assert len(data_of(nb, "image/png")) >= 1  # the utilization and timeline plots
    text = stdout(nb)
    assert "300 tasklets" in text and "same events: True" in text
    assert "| exists: False" in text  # the temporary SQLite file is gone
    assert not list(NOTEBOOKS_DIR.glob("*.sqlite*"))


def check_07(nb: nbformat.NotebookNode) -> None:
    text = stdout(nb)
    started = re.search(r"api_key_A: at most (\d+) calls started in any 1 s window", text)
    assert started and int(started.group(1)) <= 10, text
    assert "at most 3 in flight at once (capacity 3)" in text
    gaps = re.search(r"gaps between the attempts, as the server saw them: \['(\d\.\d+) s', '(\d\.\d+) s'\]", text)
    assert gaps and float(gaps.group(1)) >= 0.5 and float(gaps.group(2)) >= 0.2, text  # Retry-After, then backoff
    assert "retries so far: 2" in text and "completion order: [1, 3, 2, 4, 0]" in text
    assert re.search(r"api_key_A: quota used \(10/s\), next token in \d\.\d s", text)
    tables = [page for page in data_of(nb, "text/html") if "<table" in page]
    assert any("attempt" in t and "after_task_failure" in t for t in tables)  # the events, attempt by attempt
    assert any("attempts" in t and "succeeded" in t for t in tables)  # runs()
    # The static snapshot beside the dashboard shows the quota rows and the retries.
    snapshot = next(p for p in data_of(nb, "text/html") if 'class="aura-snapshot"' in p)
    assert "aura-quota-api_key_A" in snapshot and "aura-quota-api_key_B" in snapshot
    assert "retries <b>2</b>" in snapshot


# Notebooks not listed here (added by others) are checked for errors only.
CHECKS: dict[str, Callable[[nbformat.NotebookNode], None]] = {
    "01_tour.ipynb": check_01,
    "02_explore_plans.ipynb": check_02,
    "03_visualize_state_paths.ipynb": check_03,
    "04_analyze_execution_logs.ipynb": check_04,
    "07_rates_and_retries.ipynb": check_07,
}


def test_the_notebooks_are_there() -> None:
    names = {path.name for path in NOTEBOOKS}
    assert set(CHECKS) <= names


def test_notebooks_are_saved_without_outputs_and_with_the_python3_kernel() -> None:
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3", path.name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name}: outputs not stripped"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_notebook_runs_and_shows_its_outputs(path: Path, kernel_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = run_notebook(path, kernel_dir, monkeypatch)
    errors = [out for out in outputs(nb) if out["output_type"] == "error"]
    assert not errors, [f"{e['ename']}: {e['evalue']}" for e in errors]
    check = CHECKS.get(path.name)
    if check is not None:
        # A traceback on stderr is an exception nobody saw (e.g. in a background task).
        # Only for these notebooks: others may show libraries' logs of failures on purpose.
        stderr = "".join(o["text"] for o in outputs(nb) if o["output_type"] == "stream" and o["name"] == "stderr")
        assert "Traceback" not in stderr, stderr
        check(nb)
