"""run_sync: blocking on a coroutine with and without a running event loop.

The nested case patches asyncio for the whole process (nest_asyncio2), so it runs in a
subprocess: the patch must not leak into the other tests.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest

from aura_nb.core import Tasklet
from aura_nb.notebook import Workbench
from aura_nb.notebook._loop import run_sync


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, env=env
    )


async def _add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


def test_without_a_running_loop_it_uses_asyncio_run() -> None:
    assert run_sync(_add(1, 2)) == 3
    assert run_sync(_add, 2, b=3) == 5
    with pytest.raises(ZeroDivisionError):
        run_sync(_divide(1, 0))
    # asyncio.run was enough: nothing was patched.
    assert not hasattr(asyncio, "_nest_patched")


async def _divide(a: int, b: int) -> float:
    await asyncio.sleep(0)
    return a / b


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="not int"):
        run_sync(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not an awaitable"):
        run_sync(lambda: 3)
    coro = _add(1, 2)
    with pytest.raises(TypeError, match="only accepted with a function"):
        run_sync(coro, 1)
    coro.close()


def test_workbench_run_sync_in_a_script() -> None:
    wb = Workbench(max_concurrency=2)
    assert wb.run_sync(Tasklet(_add, params={"a": 20, "b": 22})) == 42
    with pytest.raises(ZeroDivisionError):
        wb.run_sync(Tasklet(_divide, params={"a": 1, "b": 0}))
    assert "ZeroDivisionError" in wb.errors_widget.value
    assert wb.statistics().by_status["succeeded"] == 1
    # Each call ran on its own asyncio.run loop; the pump of the last one is gone.
    assert not wb.pumping
    assert not hasattr(asyncio, "_nest_patched")


def test_importing_patches_nothing() -> None:
    result = _run_python(
        """
        import asyncio, sys
        import aura_nb, aura_nb.notebook
        from aura_nb.notebook import Workbench, _loop
        assert "nest_asyncio2" not in sys.modules, "imported at import time"
        assert not hasattr(asyncio, "_nest_patched")
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_inside_a_running_loop_it_nests_on_that_loop() -> None:
    # What a plain Jupyter cell is: synchronous code running inside the kernel's loop.
    result = _run_python(
        """
        import asyncio
        from aura_nb.core import Tasklet
        from aura_nb.notebook import Workbench
        from aura_nb.notebook._loop import run_sync

        async def add(a, b):
            await asyncio.sleep(0.01)
            return a + b

        async def fail():
            await asyncio.sleep(0)
            raise KeyError("missing")

        def plain_cell(wb, ticks):
            assert not hasattr(asyncio, "_nest_patched"), "patched too early"
            loop = asyncio.get_running_loop()
            assert run_sync(add(1, 2)) == 3
            assert hasattr(asyncio, "_nest_patched"), "not patched"
            assert asyncio.get_running_loop() is loop
            # A background task of the same loop kept running during the blocking call.
            assert ticks, "the loop did not run other tasks meanwhile"
            # The Workbench's blocking convenience, on the same loop.
            assert wb.run_sync(Tasklet(add, params={"a": 40, "b": 2})) == 42
            try:
                wb.run_sync(Tasklet(fail))
            except KeyError as exc:
                assert "missing" in str(exc)
            else:
                raise AssertionError("the failure did not propagate")
            assert "KeyError" in wb.errors_widget.value

        async def kernel():
            ticks = []

            async def background():
                while True:
                    ticks.append(1)
                    await asyncio.sleep(0.001)

            task = asyncio.get_running_loop().create_task(background())
            await asyncio.sleep(0)
            ticks.clear()
            wb = Workbench(max_concurrency=2)
            plain_cell(wb, ticks)
            task.cancel()
            await wb.aclose()

        asyncio.run(kernel())
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_in_a_real_kernel_a_plain_cell_can_block() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    cells = [
        """
        import asyncio
        from aura_nb.core import Tasklet
        from aura_nb.notebook import Workbench

        async def add(a, b):
            await asyncio.sleep(0.05)
            return a + b

        wb = Workbench(max_concurrency=2)
        assert not hasattr(asyncio, "_nest_patched")
        """,
        """
        background = wb.submit(Tasklet(add, params={"a": 1, "b": 1}))
        assert wb.run_sync(Tasklet(add, params={"a": 40, "b": 2})) == 42
        assert hasattr(asyncio, "_nest_patched")
        assert background.done()  # the kernel's loop ran it meanwhile
        """,
        """
        assert await wb.run(Tasklet(add, params={"a": 1, "b": 2})) == 3
        print(wb.statistics().by_status["succeeded"])
        """,
    ]
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(code).strip()) for code in cells]
    nbclient.NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    assert nb.cells[2].outputs[0]["text"].strip() == "3"
