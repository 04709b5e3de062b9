"""The README tells the truth: its examples run and print what it says, its commands
exist and do what it says, and its figures are the ones in benchmarks/RESULTS.md."""

from __future__ import annotations

import json
import os
import time
import re
import secrets
import shlex
import shutil
import stat
import subprocess
import sys
import tomllib
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)
SH_BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.S)

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def python_block(marker: str) -> str:
    (block,) = [b for b in PYTHON_BLOCKS if marker in b]
    return block


def test_every_python_block_is_run_by_a_test() -> None:
    # One marker per block that a test below runs; a new block needs a new test.
    tested = ["async def render(frame: int) -> str:", "distributed.LocalCluster(", "an.Retry("]
    for block in PYTHON_BLOCKS:
        assert sum(marker in block for marker in tested) == 1, block[:200]
    assert len(PYTHON_BLOCKS) == len(tested)


def test_the_readme_example_runs() -> None:
    code = re.search(r"## Twenty lines\n\n```python\n(.*?)```", README, re.S).group(1)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "frame 0 rendered" in out
    assert out.count(" succeeded") >= 3
    assert "gpu 0/1+0w" in out  # the statistics line: every token back
    assert "tasklet_submitted" in out and "after_task_run" in out


@pytest.mark.slow
def test_the_dask_example_runs_as_a_script(tmp_path: Path) -> None:
    code = python_block("distributed.LocalCluster(")
    assert 'if __name__ == "__main__":' in code  # worker processes import the script again
    script = tmp_path / "dask_example.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    main_pid = int(re.search(r"main process: (\d+)", out).group(1))
    pids = [int(p) for p in re.findall(r"frame \d rendered by process (\d+)", out)]
    assert len(pids) == 6 and main_pid not in pids  # the bodies ran in worker processes
    assert "'succeeded': 6" in out and "gpu 0/2+0w" in out


WORKER_DEATH = """
import os, pathlib, sys
import anyio, dask, distributed
import aura_nb as an

def fragile(marker: str) -> int:  # kills its worker process the first time it runs
    path = pathlib.Path(marker)
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts == 1:
        os._exit(1)
    return attempts

async def main(client, marker):
    async with an.ExecutionManager(executor=an.DaskExecutor(client)) as em:
        try:
            print("result", await em.submit(an.Tasklet(fragile, params={"marker": marker})))
        except an.WorkerLostError as exc:
            print("WorkerLostError", type(exc.__cause__).__name__)

if __name__ == "__main__":
    if sys.argv[1] == "no-retry":
        dask.config.set({"distributed.scheduler.allowed-failures": 0})
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, \\
            distributed.Client(cluster) as client:
        anyio.run(main, client, sys.argv[2])
"""


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["default", "no-retry"])
def test_what_the_readme_says_about_a_worker_that_dies(tmp_path: Path, setting: str) -> None:
    assert "silently runs the task again" in README and "allowed-failures" in README
    script, marker = tmp_path / "worker_death.py", tmp_path / "attempts"
    script.write_text(WORKER_DEATH)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(script), setting, str(marker)], capture_output=True, text=True,
                          timeout=180, cwd=tmp_path, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    if setting == "default":  # Dask ran the body again on the other worker; the tasklet never knew
        assert "result 2" in proc.stdout and marker.read_text() == "2"
    else:  # the first loss fails the tasklet
        assert "WorkerLostError KilledWorker" in proc.stdout and marker.read_text() == "1"


@pytest.mark.slow
def test_the_rates_and_retries_example_runs_against_a_stand_in_api(capsys: pytest.CaptureFixture[str]) -> None:
    import anyio
    import httpx

    namespace: dict[str, object] = {}
    exec(compile(python_block("an.Retry("), "README.md", "exec"), namespace)  # defines call() and main(client)
    calls: Counter[str] = Counter()

    def api(request: httpx.Request) -> httpx.Response:  # every 4th call is refused: 429, then 503
        key = request.url.path.strip("/")
        calls[key] += 1
        if calls[key] % 4 == 0:
            return httpx.Response(429 if calls[key] % 8 else 503)
        return httpx.Response(200, json={"key": key})

    async def run() -> float:
        async with httpx.AsyncClient(transport=httpx.MockTransport(api)) as client:
            t0 = time.monotonic()
            await namespace["main"](client)  # type: ignore[operator]
            return time.monotonic() - t0

    elapsed = anyio.run(run)
    lines = capsys.readouterr().out.splitlines()
    outcomes = [line.split(" ", 2) for line in lines[:-1]]
    assert sorted(int(i) for i, _, _ in outcomes) == list(range(70))
    assert all(ok == "True" for _, ok, _ in outcomes), lines  # each refusal was retried
    assert calls["api_key_A"] > 50 and calls["api_key_B"] > 20
    # "10/s": at most 10 calls start in any second, so N calls take at least (N - 10) / 10 s.
    assert elapsed >= (calls["api_key_A"] - 10) / 10 * 0.95, (elapsed, calls)
    assert lines[-1].startswith("<api_key_A") and "per 1s" in lines[-1]


def test_the_commands_without_make_name_what_exists() -> None:
    (block,) = [b for b in SH_BLOCKS if "python3 -m venv .venv" in b]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"])
    for extra in re.findall(r'-e "\.\[(\w+)\]"', block):
        assert extra in extras, extra
    assert {"lab", "test"} <= set(re.findall(r'-e "\.\[(\w+)\]"', block))
    markers = {m.split(":")[0] for m in pyproject["tool"]["pytest"]["ini_options"]["markers"]}
    assert '-m "not slow"' in block and "slow" in markers
    (lab,) = [line for line in block.splitlines() if "jupyter lab" in line]
    assert "--ServerApp.root_dir=notebooks" in lab


@pytest.mark.slow
def test_the_jupyterlab_command_without_make_serves_the_notebooks(tmp_path: Path) -> None:
    from tests.browser.helpers import Server, free_port, jupyter_env

    (block,) = [b for b in SH_BLOCKS if "python3 -m venv .venv" in b]
    (line,) = [line for line in block.splitlines() if "jupyter lab" in line]
    args = shlex.split(line.split("#")[0])
    assert args[:2] == [".venv/bin/jupyter", "lab"]
    port, token = free_port(), secrets.token_hex(16)
    server = Server(
        name="JupyterLab",
        cmd=[sys.executable, "-m", "jupyterlab", *args[2:], "--allow-root", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"],
        # fmt: skip
        env=jupyter_env(tmp_path),
        cwd=ROOT,  # the README's commands run from the checkout
        log_path=tmp_path / "jupyterlab.log",
        port=port,
        token=token,
    )
    server.start(f"/api/status?token={token}")
    try:
        with urllib.request.urlopen(f"{server.base}/api/contents?token={token}", timeout=10) as response:
            names = {item["name"] for item in json.load(response)["content"]}
    finally:
        server.stop()
    assert {"01_tour.ipynb", "05_scale_out_with_dask.ipynb"} <= names


# -- make -----------------------------------------------------------------------------


def test_the_readme_names_every_make_target_it_promises() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("lab", "test", "test-fast", "demo", "bench", "clean", "distclean"):
        assert re.search(rf"^{target}:", makefile, re.M), target
        assert f"make {target}" in README, target
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("make test")


# Not inherited from a `make test` that runs this file: its flags and variables.
MAKE_ENV = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHON", "LAB_ARGS", "RECORD", "PYTEST_ARGS", "BENCH_ARGS")


def make_dry_run(*args: str) -> str:
    """What ``make -n`` would run in the checkout (nothing is executed)."""
    env = {k: v for k, v in os.environ.items() if k not in MAKE_ENV}
    return subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, check=True, env=env).stdout


@needs_make
def test_make_passes_lab_args_and_the_fast_marker() -> None:
    (lab,) = [line for line in make_dry_run("lab", "LAB_ARGS=--no-browser --port 8899").splitlines() if "jupyter lab" in line]
    assert lab.endswith("--no-browser --port 8899 01_tour.ipynb"), lab
    (fast,) = [line for line in make_dry_run("test-fast", "PYTEST_ARGS=-x").splitlines() if "pytest" in line]
    assert fast.endswith('pytest -m "not slow" -x'), fast
    (full,) = [line for line in make_dry_run("test").splitlines() if "pytest" in line]
    assert "-m" not in full.split("pytest", 1)[1]  # make test (and so CI) runs everything


@needs_make
def test_make_bench_records_only_when_asked() -> None:
    (plain,) = [line for line in make_dry_run("bench").splitlines() if "-m benchmarks" in line]
    (record,) = [line for line in make_dry_run("bench", "RECORD=1").splitlines() if "-m benchmarks" in line]
    assert "--record" not in plain and "--record" in record


def sandbox(tmp_path: Path) -> Path:
    """A directory with the Makefile and pyproject.toml, so that make's venv logic runs
    without touching the checkout's .venv."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def run_make(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in MAKE_ENV}
    return subprocess.run(["make", *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


@needs_make
def test_a_python_too_old_is_refused_with_the_command_to_run(tmp_path: Path) -> None:
    work = sandbox(tmp_path)
    old = tmp_path / "python3.10"
    old.write_text("#!/bin/sh\nexit 1\n")  # a Python that fails the >= 3.11 check
    old.chmod(old.stat().st_mode | stat.S_IEXEC)
    proc = run_make(work, "test", f"PYTHON={old}")
    assert proc.returncode != 0
    assert "aura_nb needs Python >= 3.11" in proc.stderr
    assert re.search(r"Run: make test PYTHON=python3\.1\d|Install Python 3\.11 or newer", proc.stderr), proc.stderr
    assert not (work / ".venv").exists()  # nothing half-made is left to be reused


@needs_make
@pytest.mark.slow
def test_a_venv_made_by_a_python_too_old_is_rebuilt(tmp_path: Path) -> None:
    work = sandbox(tmp_path)
    (work / ".venv" / "bin").mkdir(parents=True)
    stale = work / ".venv" / "bin" / "python"
    stale.write_text("#!/bin/sh\nexit 1\n")  # what a failed PYTHON=python3.10 run used to leave
    stale.chmod(stale.stat().st_mode | stat.S_IEXEC)
    proc = run_make(work, ".venv/.created", f"PYTHON={sys.executable}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "its Python no longer runs; rebuilding it" in proc.stdout
    version = subprocess.run([str(stale), "-c", "import sys; print(sys.version_info >= (3, 11))"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert version.strip() == "True"
    created = (work / ".venv" / ".created").stat().st_mtime
    again = run_make(work, ".venv/.created", f"PYTHON={sys.executable}")  # a good venv is kept
    assert again.returncode == 0 and "rebuilding" not in again.stdout and "creating" not in again.stdout
    assert (work / ".venv" / ".created").stat().st_mtime == created


@needs_make
def test_make_clean_says_what_it_keeps_and_distclean_removes_the_venv(tmp_path: Path) -> None:
    work = sandbox(tmp_path)
    for d in ("build/benchmarks", ".venv/bin", ".pytest_cache"):
        (work / d).mkdir(parents=True)
    proc = run_make(work, "clean")
    assert proc.returncode == 0 and "kept .venv" in proc.stdout and "make distclean" in proc.stdout
    assert not (work / "build").exists() and not (work / ".pytest_cache").exists() and (work / ".venv").exists()
    assert run_make(work, "distclean").returncode == 0
    assert not (work / ".venv").exists()


# -- the figures ------------------------------------------------------------------------


def results_tables() -> dict[str, list[list[dict[str, str]]]]:
    """benchmarks/RESULTS.md's tables: {section title: [table: [row: {header: cell}]]}."""
    sections: dict[str, list[list[dict[str, str]]]] = {}
    title, header, rows = "", None, None
    for line in (ROOT / "benchmarks" / "RESULTS.md").read_text().splitlines():
        if line.startswith("## "):
            title = line[3:]
            sections[title] = []
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header, rows = cells, []
            sections[title].append(rows)
        elif not set(line) <= set("|-"):
            rows.append(dict(zip(header, cells, strict=True)))
    return sections


def section(sections: dict[str, list[list[dict[str, str]]]], prefix: str) -> list[list[dict[str, str]]]:
    (tables,) = [t for name, t in sections.items() if name.startswith(prefix)]
    return tables


def column(rows: list[dict[str, str]], starts: str, **where: str) -> list[float]:
    out = []
    for row in rows:
        if all(row[k] == v for k, v in where.items()):
            (key,) = [k for k in row if k.startswith(starts)]
            out.append(float(row[key].replace(",", "")))
    assert out, (starts, where)
    return out


def readme_figures(pattern: str) -> list[float]:
    text = " ".join(README[README.index("## Performance") :].split())
    match = re.search(pattern, text)
    assert match, pattern
    return [float(g) for g in match.groups()]


def close(readme: float, measured: float) -> bool:
    """The README rounds to two significant figures."""
    return abs(readme - measured) <= 0.05 * abs(measured) + 0.005


def test_the_readme_figures_are_the_recorded_results() -> None:
    s = results_tables()
    main, floor = section(s, "1. Throughput")
    (shared,) = section(s, "10. Shared limits")
    expected = {
        r"`run_many` costs ([\d.]+)–([\d.]+)× a `gather`": column(main, "aura_nb / raw"),
        r"Aura-style design costs ([\d.]+)–([\d.]+)× `run_many`": column(main, "Aura-style / aura_nb"),
        r"costs ([\d.]+)–([\d.]+)× without tags": column(floor, "run_many / pool", workload="no tags"),
        r"and ([\d.]+)–([\d.]+)× with two tags": column(floor, "run_many / pool", workload="gpu:4 + db:16"),
        r"a timeout \(the pool pays [^)]*\) it is ([\d.]+)–([\d.]+)×": column(
            floor, "run_many / pool", workload="gpu:4 + db:16 + 30 s timeout"
        ),
        r"per tasklet under `gather` costs ([\d.]+)–([\d.]+)× raw": column(floor, "submit / raw"),
        r"makespan ([\d.]+)× the optimum": column(section(s, "2. Utilization")[0], "aura_nb", **{"submission order": "gpu-first"}),
        r"Aura-style design needs ([\d.]+)×": column(section(s, "2. Utilization")[0], "Aura-style", **{"submission order": "gpu-first"}),
        r"DataFrame in ([\d.]+)× the time": column(section(s, "4. Events")[0], "ratio", **{"1,000,000 events": "time (s)"}),
        r"([\d.]+)× the peak memory": column(section(s, "4. Events")[0], "ratio", **{"1,000,000 events": "peak memory (MiB)"}),
        r"planner takes ([\d.]+)× networkx": column(section(s, "5. Planner")[0], "ratio"),
        r"cost ([\d.]+)–([\d.]+)× plain `client.submit`": column(section(s, "7. Scale-out")[0], "ratio", target="met"),
        r"cost ([\d.]+)–([\d.]+)× one `distributed.Semaphore`": column(shared, "shared / Semaphore"),
        r"and ([\d.]+)–([\d.]+)× the manager's own limits": [
            sh / lo for sh, lo in zip(column(shared, "shared pool"), column(shared, "local pool"), strict=True)
        ],
    }  # fmt: skip
    for pattern, measured in expected.items():
        figures = readme_figures(pattern)
        want = [min(measured), max(measured)] if len(figures) == 2 else [measured[0]]
        assert all(close(f, m) for f, m in zip(figures, want, strict=True)), (pattern, figures, want)


def test_the_readme_assumes_nothing_about_the_readers_machine() -> None:
    assert not re.search(r"these (\S+ )?machines|this machine|your machine is", README, re.I)
