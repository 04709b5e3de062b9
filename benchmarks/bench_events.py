"""Workload 4: 1,000,000 events recorded, then turned into a DataFrame.

aura_nb's columnar EventLog (the same calls the manager makes per event) against the
obvious way: a dict per event appended to a list, then ``pandas.DataFrame(list)``.
Targets: <= 0.5x the time and <= 0.25x the peak memory (tracemalloc, which also sees
numpy's and pandas' buffers), measured in separate runs so tracing does not skew time.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import Any

import pandas as pd

from aura_nb.core._events import _CODE, _EventWriter

from ._util import median, table, verdict

N_EVENTS = 1_000_000
PER_TASKLET = 6  # submitted, acquired, before, success, released, after_run
LIFECYCLE = ["tasklet_submitted", "resources_acquired", "before_task_run", "after_task_success",
             "resources_released", "after_task_run"]  # fmt: skip
SUCCEEDED = ("succeeded", None, None, None, None, None, None, None)


def _aura_nb(n: int) -> pd.DataFrame:
    log = _EventWriter()  # what the manager records through
    codes = [_CODE[name] for name in LIFECYCLE]
    now = time.monotonic
    submitted, acquired, before, success, released, after = codes
    for i in range(n // PER_TASKLET):
        row = (f"s-{i}", "daily_quests", "game/daily_quests", "game", "gpu:1,db:4")
        tix, _ = log.add_submitted(row, submitted, now())
        log.record_pair(acquired, before, tix, now())
        log.record(success, tix, now())
        log.record_pair(released, after, tix, now(), SUCCEEDED)
    return log.log.to_frame()


def _dicts(n: int) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    now = time.monotonic
    seq = 0
    for i in range(n // PER_TASKLET):
        for name in LIFECYCLE:
            rows.append({
                "seq": seq, "t": now(), "at": None, "event": name, "tasklet_id": f"s-{i}",
                "task": "game/daily_quests", "plan": "game",
                "status": "succeeded" if name == "after_task_run" else None,
                "resource_tags": "gpu:1,db:4", "state_from": None, "state_to": None, "step": None,
                "duration_s": None, "error_type": None, "error_message": None, "detail": None,
            })  # fmt: skip
            seq += 1
    return pd.DataFrame(rows)


def _time(fn: Any, n: int) -> float:
    gc.collect()
    t0 = time.perf_counter()
    frame = fn(n)
    elapsed = time.perf_counter() - t0
    assert len(frame) == n // PER_TASKLET * PER_TASKLET
    return elapsed


def _peak(fn: Any, n: int) -> float:
    gc.collect()
    tracemalloc.start()
    frame = fn(n)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del frame
    return peak / 2**20


def run(n: int = N_EVENTS, reps: int = 3) -> dict[str, Any]:
    ours_t, theirs_t = [], []
    for _ in range(reps):
        ours_t.append(_time(_aura_nb, n))
        theirs_t.append(_time(_dicts, n))
    ours_m, theirs_m = _peak(_aura_nb, n), _peak(_dicts, n)
    t_ratio = median(ours_t) / median(theirs_t)
    m_ratio = ours_m / theirs_m
    rows = [
        ["time (s)", median(ours_t), median(theirs_t), t_ratio, "≤ 0.5", verdict(t_ratio <= 0.5)],
        ["peak memory (MiB)", ours_m, theirs_m, m_ratio, "≤ 0.25", verdict(m_ratio <= 0.25)],
    ]
    md = table([f"{n:,} events", "aura_nb EventLog", "dicts + DataFrame(list)", "ratio", "target", ""], rows)
    return {"markdown": md, "ok": t_ratio <= 0.5 and m_ratio <= 0.25}


if __name__ == "__main__":
    print(run(reps=1)["markdown"])
