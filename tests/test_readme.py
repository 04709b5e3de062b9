"""The README tells the truth: its example runs and prints what it says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_example_runs() -> None:
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## Twenty lines\n\n```python\n(.*?)```", text, re.S).group(1)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "frame 0 rendered" in out
    assert out.count(" succeeded") >= 3
    assert "gpu 0/1+0w" in out  # the statistics line: every token back
    assert "tasklet_submitted" in out and "after_task_run" in out


def test_the_readme_names_every_make_target_it_promises() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("lab", "test", "demo", "bench"):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("make test")
