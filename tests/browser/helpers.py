"""What the browser tests share: servers in their own process group, SVG reading, page steps.

Mental model: a test is a person at a browser. A :class:`Server` is JupyterLab or Voilà
started like a person would (from this interpreter, so its kernel is this venv's
python), but with every Jupyter directory fresh and empty, on a free port of
127.0.0.1 with a random token. The page helpers do what the person does (open the
notebook, *Run > Run All Cells*, wait until every prompt shows a number), and the
SVG helpers read the drawings the person would look at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aura_nb.notebook._render import PROGRESS, STYLES

try:
    from playwright.sync_api import Locator, Page, expect
except ImportError:  # the fixtures skip (or fail in CI) with a message saying so
    Locator = Page = expect = None  # type: ignore[assignment,misc]

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = REPO / "build" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: The renderer's edge colour of each step status, as dot writes it (lower case).
STEP_COLOURS = {status: STYLES[status]["edge"]["color"].lower() for status in PROGRESS}

# -- servers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def jupyter_env(root: Path) -> dict[str, str]:
    """The environment of a server whose Jupyter directories are all fresh, under *root*.

    The only kernel it can find first is ``python3`` = this interpreter (``JUPYTER_PATH``
    comes first in the kernelspec search), the one the notebooks' metadata names.
    JupyterLab's user settings are set as a test needs them: every cell attached to the
    page (no windowing, so off-screen outputs are real DOM) and no news toast.
    """
    dirs = {
        "JUPYTER_CONFIG_DIR": root / "config",
        "JUPYTER_RUNTIME_DIR": root / "runtime",
        "JUPYTER_DATA_DIR": root / "data",
        "JUPYTERLAB_SETTINGS_DIR": root / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": root / "lab-workspaces",
        "JUPYTER_PATH": root / "path",
        "IPYTHONDIR": root / "ipython",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    spec = dirs["JUPYTER_PATH"] / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
            }
        )
    )
    settings = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab"
    for plugin, values in {
        "notebook-extension/tracker": {"windowingMode": "none"},
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        target = settings / f"{plugin}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY_"))}
    env.update({name: str(path) for name, path in dirs.items()})
    env.update(
        PYDEVD_DISABLE_FILE_VALIDATION="1",  # no debugger warning on the kernel's stderr
        MPLBACKEND="module://matplotlib_inline.backend_inline",
        PYTHONUNBUFFERED="1",
    )
    return env


def copy_notebooks(root: Path) -> Path:
    """A copy of notebooks/ under *root*: autosave and checkpoints never touch the repo."""
    target = root / "notebooks"
    shutil.copytree(NOTEBOOKS, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return target


def _proc_children(ppid: int) -> list[tuple[int, bytes]]:
    """(pid, cmdline) of the live processes whose parent is *ppid* (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        match = re.search(r"^PPid:\s*(\d+)", status, re.MULTILINE)
        if match and int(match.group(1)) == ppid:
            found.append((int(entry.name), cmdline))
    return found


@dataclass
class Server:
    """A JupyterLab or Voilà process in a process group of its own."""

    name: str
    cmd: Sequence[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    port: int
    token: str
    proc: subprocess.Popen[bytes] | None = None
    _kernels: dict[int, bytes] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc else None
        return f"<{self.name} server on {self.base}, pid {pid}, log {self.log_path}>"

    def start(self, ready_path: str | None, timeout: float = 90.0) -> None:
        """Start it and wait until it answers (``ready_path``) or just listens (None)."""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                list(self.cmd),
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as one, alone
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not answer within {timeout:g} s:\n{self.log_tail()}")
            if self._answers(ready_path):
                return
            time.sleep(0.2)  # polling a starting process: nothing to auto-wait on

    def _answers(self, ready_path: str | None) -> bool:
        if ready_path is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False
        try:
            with urllib.request.urlopen(self.base + ready_path, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def shut_down_sessions(self, notebook: str) -> None:
        """Shut down the kernel of every session of *notebook* (REST API, as the UI does)."""
        with urllib.request.urlopen(f"{self.base}/api/sessions?token={self.token}", timeout=10) as response:
            sessions = json.load(response)
        for session in sessions:
            if session.get("path", "").endswith(notebook):
                request = urllib.request.Request(
                    f"{self.base}/api/sessions/{session['id']}?token={self.token}", method="DELETE"
                )
                urllib.request.urlopen(request, timeout=30).close()

    def kernels(self) -> list[list[str]]:
        """The argv of every kernel this server runs now (they run in sessions of their own)."""
        if self.proc is None:
            return []
        out = []
        for pid, cmdline in _proc_children(self.proc.pid):
            if b"ipykernel" in cmdline:
                self._kernels[pid] = cmdline
                out.append([part.decode(errors="replace") for part in cmdline.split(b"\0") if part])
        return out

    def stop(self) -> None:
        """SIGTERM its process group (the server shuts its kernels down), SIGKILL if stuck.

        Kernels run in sessions of their own: any this server started that outlived it
        is ended by its pid (checked against the command line seen when it was found).
        """
        if self.proc is None:
            return
        self.kernels()  # remember the kernels before the server goes
        pgid = self.proc.pid
        if self.proc.poll() is None:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(pgid, signal.SIGKILL)  # whatever is left of the group
        except ProcessLookupError:
            pass
        self.proc.wait()
        for pid, cmdline in self._kernels.items():
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if not _same_process(pid, cmdline):
                    break
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and _same_process(pid, cmdline):
                    time.sleep(0.1)
        self._kernels.clear()


def _same_process(pid: int, cmdline: bytes) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline
    except OSError:
        return False


# -- SVG ------------------------------------------------------------------------------------

_SVG = "{http://www.w3.org/2000/svg}"


@dataclass
class SvgEdge:
    """One ``<g class="edge">`` of a Graphviz drawing."""

    title: str  # "from->to"
    strokes: set[str]
    text: str
    has_bar: bool  # a <polyline>: the "tee" bar Graphviz draws at a failed step's arrow


@dataclass
class SvgDrawing:
    title: str  # the graph's label (text outside every node and edge)
    edges: list[SvgEdge]

    def edge(self, src: str, dst: str) -> list[SvgEdge]:
        return [e for e in self.edges if e.title == f"{src}->{dst}"]


def decode_data_url(src: str) -> str:
    """The text of a ``data:image/svg+xml[;base64],...`` URL."""
    assert src.startswith("data:image/svg+xml"), src[:80]
    head, _, body = src.partition(",")
    if head.endswith(";base64"):
        import base64

        return base64.b64decode(body).decode("utf-8")
    return urllib.parse.unquote(body)


def parse_svg(text: str) -> SvgDrawing:
    """Read a Graphviz SVG: its title and, per edge, stroke colours and label text."""
    root = ET.fromstring(text.strip())
    edges = []
    title_parts: list[str] = []
    for g in root.iter(f"{_SVG}g"):
        css = g.get("class", "")
        if css == "edge":
            title = "".join(g.findtext(f"{_SVG}title") or "")
            strokes = {
                (el.get("stroke") or "").lower()
                for tag in ("path", "polygon", "polyline", "ellipse")
                for el in g.iter(f"{_SVG}{tag}")
            } - {"", "none", "transparent"}
            text_ = " ".join("".join(t.itertext()) for t in g.iter(f"{_SVG}text"))
            has_bar = any(True for _ in g.iter(f"{_SVG}polyline"))
            edges.append(SvgEdge(title, strokes, text_, has_bar))
        elif css == "graph":
            title_parts = ["".join(t.itertext()) for t in g.findall(f"{_SVG}text")]
    return SvgDrawing(" ".join(title_parts), edges)


_STEP_LABEL = re.compile(r"step (\d+)/(\d+): (\w+)")


def path_steps(drawing: SvgDrawing) -> list[tuple[SvgEdge, str]]:
    """The edges of the drawn path, in step order, each with the status its label says.

    Checks on the way that each step is drawn in its status' colour (so a person sees
    it without reading) and that a failed step ends in a bar.
    """
    found: dict[int, tuple[SvgEdge, str]] = {}
    total = 0
    for edge in drawing.edges:
        match = _STEP_LABEL.search(edge.text)
        if not match:
            continue
        number, total, status = int(match.group(1)), int(match.group(2)), match.group(3)
        assert STEP_COLOURS[status] in edge.strokes, f"step {number} is {status} but drawn in {edge.strokes}: {edge}"
        if status == "failed":
            assert edge.has_bar, f"a failed step ends in a bar: {edge}"
        found[number] = (edge, status)
    assert sorted(found) == list(range(1, total + 1)), f"steps drawn: {sorted(found)} of {total}"
    return [found[n] for n in sorted(found)]


def path_statuses(drawing: SvgDrawing) -> list[str]:
    return [status for _, status in path_steps(drawing)]


# -- JupyterLab -------------------------------------------------------------------------------

PROMPTS = ".jp-Notebook .jp-CodeCell .jp-InputArea-prompt"
IDLE = ".jp-Notebook-ExecutionIndicator[data-status='idle']"


def code_cell_count(notebook: Path) -> int:
    return sum(cell["cell_type"] == "code" for cell in json.loads(notebook.read_text())["cells"])


def open_notebook(page: Page, server: Server, name: str) -> None:
    """Open *name* in JupyterLab, on a fresh workspace, and wait for its kernel to be idle."""
    page.goto(f"{server.base}/lab/tree/{urllib.parse.quote(name)}?reset&token={server.token}")
    expect(page.locator(".jp-NotebookPanel .jp-Notebook")).to_be_visible(timeout=60_000)
    expect(page.locator(PROMPTS).first).to_be_visible(timeout=30_000)
    expect(page.locator(IDLE)).to_have_count(1, timeout=60_000)


def run_all(page: Page, attempts: int = 6) -> None:
    """*Run > Run All Cells*, again until a prompt shows ``[*]`` or a number.

    JupyterLab 4 sometimes drops a Run All issued right after the kernel turned idle.
    """
    started = page.locator(PROMPTS).filter(has_text=re.compile(r"\[(\*|\d+)\]"))
    for attempt in range(attempts):
        # Seen on a loaded machine: JupyterLab asks for the kernel the notebook names anyway.
        ask = page.locator(".jp-Dialog", has_text="Select Kernel")
        if ask.count():
            ask.locator(".jp-mod-accept").click()
        page.locator("#jp-MainMenu .lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu .lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        try:
            expect(started).not_to_have_count(0, timeout=5_000)
            return
        except AssertionError:
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")


def wait_all_executed(page: Page, n_code: int, timeout: float = 120_000) -> None:
    """Every code cell's prompt shows a number and the kernel is idle."""
    numbered = page.locator(PROMPTS).filter(has_text=re.compile(r"^\s*\[\d+\]:?\s*$"))
    expect(numbered).to_have_count(n_code, timeout=timeout)
    expect(page.locator(PROMPTS).filter(has_text="[*]")).to_have_count(0)
    expect(page.locator(IDLE)).to_have_count(1, timeout=30_000)


def assert_no_errors(page: Page) -> None:
    """No widget failed to show, no cell raised, nothing printed a traceback."""
    expect(page.get_by_text("Error displaying widget")).to_have_count(0)
    expect(page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")).to_have_count(0)
    stderr = page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']")
    texts = stderr.all_text_contents()
    bad = [t for t in texts if re.search(r"Traceback|\w+(Error|Exception)\b", t)]
    assert not bad, f"error output on the page: {bad}"


def svg_images(page: Page, scope: str = "") -> list[SvgDrawing]:
    """Every ``<img>`` SVG output (``.jp-RenderedSVG``) inside *scope*, decoded and read."""
    srcs = page.locator(f"{scope} .jp-RenderedSVG img".strip()).evaluate_all("els => els.map(e => e.src)")
    return [parse_svg(decode_data_url(src)) for src in srcs]


def inline_svg(page: Page, selector: str) -> SvgDrawing:
    """The inline ``<svg>`` at *selector*, serialised as XML and read."""
    text = page.locator(selector).first.evaluate("el => new XMLSerializer().serializeToString(el)")
    return parse_svg(text)


# -- the Workbench --------------------------------------------------------------------------

#: Records what the first Workbench on the page shows, every time its DOM changes:
#: each gauge's caption and load level, and the status of each step of the path.
WATCH_WORKBENCH = """
() => {
  const samples = [];
  let last = '';
  const snap = () => {
    const wb = document.querySelector('.aura-workbench');
    if (!wb) return;
    const gauges = {};
    for (const g of wb.querySelectorAll('.aura-gauge')) {
      const name = (g.querySelector('.aura-gauge-name') || {}).textContent || '?';
      const text = (g.querySelector('.aura-gauge-text') || {}).textContent || '';
      const level = [...g.classList].find(c => c.startsWith('aura-load-')) || '';
      gauges[name] = {text, level};
    }
    const steps = [...wb.querySelectorAll('.aura-path .aura-step')].map(
      li => ([...li.classList].find(c => c.startsWith('aura-step-') && c !== 'aura-step') || '').slice(10));
    const key = JSON.stringify([gauges, steps]);
    if (key !== last) { last = key; samples.push({t: performance.now(), gauges, steps}); }
  };
  new MutationObserver(snap).observe(document.body,
    {subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ['class']});
  window.__auraSamples = samples;
}
"""

GAUGE_TEXT = re.compile(r"^(\d+) / (\d+) in use · (\d+) waiting$")


def gauge_numbers(text: str) -> tuple[int, int, int]:
    """(in use, capacity, waiting) of a gauge caption."""
    match = GAUGE_TEXT.match(text.strip())
    assert match, f"unexpected gauge caption {text!r}"
    in_use, capacity, waiting = map(int, match.groups())
    return in_use, capacity, waiting


def screenshot(locator: Locator, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    locator.screenshot(path=str(path))
    return path


#: Records, from now on, what moves on the page: Chrome's layout-shift entries (with
#: whether a shifted node lies inside the first dashboard) and the dashboard's height,
#: each sample marked when a run_many batch shows in its progress row.
WATCH_LAYOUT = """
() => {
  const shifts = [], heights = [];
  window.__auraShifts = shifts; window.__auraHeights = heights;
  const inBatch = () => {
    const wb = document.querySelector('.aura-workbench');
    return !!wb && ((wb.querySelector('.aura-batch') || {}).textContent || '').includes(' done · ');
  };
  new PerformanceObserver(list => {
    for (const e of list.getEntries()) {
      if (e.hadRecentInput) continue;
      const wb = document.querySelector('.aura-workbench');
      const inside = (e.sources || []).some(s => s.node && wb && wb.contains(s.node));
      shifts.push({t: e.startTime, value: e.value, inside, batch: inBatch()});
    }
  }).observe({type: 'layout-shift'});
  let last = null;
  const poll = () => {
    const wb = document.querySelector('.aura-workbench');
    if (wb) {
      const h = Math.round(wb.getBoundingClientRect().height);
      const batch = inBatch();
      const key = h + '/' + batch;
      if (key !== last) { last = key; heights.push({t: performance.now(), h, batch}); }
    }
    requestAnimationFrame(poll);
  };
  requestAnimationFrame(poll);
}
"""


def background_brightness(png: Path, border: int = 3) -> float:
    """Mean brightness (0-255) of the outer frame of a screenshot: its background."""
    from PIL import Image

    with Image.open(png) as image:
        grey = image.convert("L")
        width, height = grey.size
        pixels = grey.load()
        frame = [pixels[x, y] for x in range(width) for y in range(height)
                 if x < border or y < border or x >= width - border or y >= height - border]  # fmt: skip
    return sum(frame) / len(frame)


def switch_theme(page: Page, theme: str) -> None:
    """*Settings > Theme > <theme>* in JupyterLab, and wait until the page uses it."""
    page.locator("#jp-MainMenu .lm-MenuBar-item", has_text=re.compile(r"^Settings$")).click()
    page.locator(".lm-Menu .lm-Menu-itemLabel", has_text=re.compile(r"^Theme$")).hover()
    page.locator(".lm-Menu .lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(theme)}$")).click()
    light = "true" if "Light" in theme else "false"
    expect(page.locator(f"body[data-jp-theme-light='{light}']")).to_have_count(1)


def write_notebook(path: Path, cells: Sequence[str]) -> None:
    """A notebook of code cells, saved without outputs, with the python3 kernelspec."""
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
             "source": source}
            for i, source in enumerate(cells)
        ],  # fmt: skip
        "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb, indent=1))
