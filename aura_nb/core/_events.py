"""The event log: one flat record per event, stored by column.

Mental model: a spreadsheet that only grows. Each event is one row; the columns are
fixed (:data:`COLUMNS`). To keep recording cheap on the hot path, rows are not dicts:
the three columns every event has (time, event name, tasklet) go into typed arrays,
the rarely filled ones (status, states, step, duration, error) go into one sparse side
list, and what is the same for every event of a tasklet (its id, task, plan, tags) is
stored once per tasklet. ``to_frame()`` assembles the pandas DataFrame on demand
(pandas is imported there, never by the core at import time).

With ``path=`` the log is also written to an SQLite file (WAL mode) by a background
thread every ``flush_interval`` seconds and on close, so the event loop never waits for
the disk. A crash loses at most the events of the last ``flush_interval``.
:meth:`EventLog.open` reads such a file back, in this session or a later one.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as _dt
import itertools
import os
import sqlite3
import threading
import time
from array import array
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import AuraError, EventLogLockedError

if TYPE_CHECKING:  # pragma: no cover
    import pandas

__all__ = [
    "AURA_HOOKS",
    "COLUMNS",
    "EVENT_NAMES",
    "RUN_COLUMNS",
    "STATUSES",
    "Event",
    "EventLog",
    "EventLogLockedError",
]

#: Every event name, in lifecycle order. The index of a name is its code in the log.
EVENT_NAMES: tuple[str, ...] = (
    "tasklet_submitted",
    "resources_acquired",
    "state_check",
    "state_path_planned",
    "state_transition_started",
    "state_transition_finished",
    "state_planning_finished",
    "before_task_run",
    "after_task_success",
    "after_task_failure",
    "resources_released",
    "after_task_run",
    "hook_error",
)
#: The four hooks of the original Aura design.
AURA_HOOKS: tuple[str, ...] = ("before_task_run", "after_task_success", "after_task_failure", "after_task_run")
#: Terminal statuses of a tasklet.
STATUSES: tuple[str, ...] = ("succeeded", "failed", "timeout", "cancelled", "planning_failed")
#: Columns of :meth:`EventLog.to_frame`. ``detail`` extends DESIGN §5: the outcome of a
#: state check, the hook that raised, the planned path as text, the worker that ran a task.
#: ``attempt``: which attempt of a tasklet with a retry policy the event belongs to
#: (1, 2, ...; null for events before its first retry decision and for other tasklets).
COLUMNS: tuple[str, ...] = (
    "seq", "t", "at", "event", "tasklet_id", "task", "plan", "status", "resource_tags",
    "state_from", "state_to", "step", "duration_s", "error_type", "error_message", "detail", "attempt",
)  # fmt: skip
#: Columns of :meth:`EventLog.runs`.
RUN_COLUMNS: tuple[str, ...] = (
    "tasklet_id", "name", "task", "plan", "resource_tags", "status", "submitted_at",
    "queue_s", "planning_s", "run_s", "total_s", "transitions", "error_type", "error_message", "attempts",
)  # fmt: skip

_CODE = {name: code for code, name in enumerate(EVENT_NAMES)}
_SPARSE = ("status", "state_from", "state_to", "step", "duration_s", "error_type", "error_message", "detail",
           "attempt")  # fmt: skip
_EMPTY_X: tuple[Any, ...] = (None,) * len(_SPARSE)
#: Sparse tuples written before ``attempt`` existed (and by callers that never set it)
#: have 8 fields; readers pad them with this.
_NO_ATTEMPT = (None,)


def _full_x(x: tuple[Any, ...]) -> tuple[Any, ...]:
    return x if len(x) == len(_SPARSE) else (*x, *_NO_ATTEMPT * (len(_SPARSE) - len(x)))
_FLUSH_INTERVAL = 0.2
_AT_DTYPE = "datetime64[us, UTC]"


class Event:
    """One event, as hooks receive it and as ``EventLog.events()`` returns it.

    A read-only view of one row of the log: the attributes are the columns of
    :data:`COLUMNS`, read from the log when asked for (so building an Event for a
    hook costs almost nothing). Hooks also get the live objects: ``tasklet``,
    ``error`` (the exception, for failures), ``path`` (the planned path, for state
    events) and ``result`` (for ``after_task_success``).
    """

    __slots__ = ("_log", "_seq", "_x", "_row", "_tasklet", "_error", "_path", "_result")

    def __init__(
        self,
        log: EventLog,
        seq: int,
        x: tuple[Any, ...] | None = None,
        tasklet: Any = None,
        error: BaseException | None = None,
        path: Any = None,
        result: Any = None,
    ) -> None:
        self._log = log
        self._seq = seq
        self._x = x  # the sparse fields, looked up lazily when None
        self._row: tuple[float, int, int] | None = None  # (t, code, tix), looked up lazily
        self._tasklet = tasklet
        self._error = error
        self._path = path
        self._result = result

    def _sparse(self) -> tuple[Any, ...]:
        x = self._x
        if x is None:
            x = self._x = self._log._sparse_of(self._seq)
        return x

    def _r(self) -> tuple[float, int, int]:
        row = self._row
        if row is None:
            row = self._row = self._log._row_of(self._seq)
        return row

    def _tk(self, column: int) -> Any:
        tix = self._r()[2]
        return self._log._tasklet_of(tix)[column] if tix >= 0 else None

    seq = property(lambda self: self._seq)
    t = property(lambda self: self._r()[0])
    event = property(lambda self: EVENT_NAMES[self._r()[1]])
    tasklet_id = property(lambda self: self._tk(0))
    task = property(lambda self: self._tk(2))
    plan = property(lambda self: self._tk(3))
    resource_tags = property(lambda self: self._tk(4))
    status = property(lambda self: self._sparse()[0])
    state_from = property(lambda self: self._sparse()[1])
    state_to = property(lambda self: self._sparse()[2])
    step = property(lambda self: self._sparse()[3])
    duration_s = property(lambda self: self._sparse()[4])
    error_type = property(lambda self: self._sparse()[5])
    error_message = property(lambda self: self._sparse()[6])
    detail = property(lambda self: self._sparse()[7])
    attempt = property(lambda self: _full_x(self._sparse())[8])
    tasklet = property(lambda self: self._tasklet)
    error = property(lambda self: self._error)
    path = property(lambda self: self._path)
    result = property(lambda self: self._result)

    @property
    def at(self) -> _dt.datetime:
        """Wall-clock time of the event (UTC)."""
        log = self._log
        if log._at is not None:
            return _dt.datetime.fromtimestamp(log._at[self._seq], _dt.timezone.utc)
        return log.wall_time(self._r()[0])

    def as_dict(self) -> dict[str, Any]:
        """The row as a dict of :data:`COLUMNS`."""
        return {name: getattr(self, name) for name in COLUMNS}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self._log is other._log and self._seq == other._seq

    def __hash__(self) -> int:
        return hash((id(self._log), self._seq))

    def __repr__(self) -> str:
        bits = [f"#{self.seq}", self.event]
        if self.tasklet_id is not None:
            bits.append(f"tasklet={self.tasklet_id}")
        for name, value in zip(_SPARSE, _full_x(self._sparse())):
            if value is not None:
                bits.append(f"{name}={value!r}")
        return f"<Event {' '.join(bits)}>"


class EventLog:
    """Every event of one manager, in order (``seq`` 0, 1, 2, ...).

    Reading: ``len(log)``, ``log.events()`` (Event objects), ``log.to_frame()`` (one
    row per event), ``log.runs()`` (one row per tasklet). ``EventLog.open(path)`` reads
    a log written to SQLite.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        flush_interval: float = _FLUSH_INTERVAL,
        keep: int | None = None,
    ) -> None:
        if keep is not None:
            if path is None:
                raise ValueError("keep= needs a path: only events already written to a file can leave memory")
            if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
                raise ValueError(f"keep={keep!r} must be a positive number of events, or None to keep all")
        self._keep = keep
        # With keep=N, events older than the newest N that are already in the file
        # leave memory; _base / _tk_base are the seq / tix of the first rows still here.
        self._base = 0
        self._tk_base = 0
        # Plain lists: an append to a list costs a third of one to an array, and this
        # is the hot path (about 24 bytes a row: the two events of a pair share one
        # float, codes are small cached ints, the rows of a tasklet share one tix).
        self._t: list[float] = []
        self._code: list[int] = []
        self._tix: list[int] = []
        self._xseq: list[int] = []
        self._xval: list[tuple[Any, ...]] = []
        # per-tasklet table: (tasklet_id, name, task, plan, resource_tags) per tasklet
        self._tk: list[tuple[str, str, str, str | None, str]] = []
        # Wall time of an event = _wall_offset + its monotonic t (one formula everywhere,
        # so a log read back from SQLite gives bit-identical timestamps).
        self._wall_offset = time.time() - time.monotonic()
        self._at: array[float] | None = None  # explicit wall times, for logs read from a file
        self._sink: _SqliteSink | None = None
        if path is not None:
            self._sink = _SqliteSink(self, os.fspath(path), flush_interval)

    # -- writing (manager side, event loop thread) ----------------------------------
    def add_tasklet(self, tasklet_id: str, name: str, task: str, plan: str | None, tags: str) -> int:
        tk = self._tk
        tk.append((tasklet_id, name, task, plan, tags))
        if self._keep is not None and len(self._tix) >= 2 * self._keep:
            self._trim()
        return self._tk_base + len(tk) - 1

    def add_submitted(self, row: tuple[str, str, str, str | None, str], code: int, t: float) -> tuple[int, int]:
        """:meth:`add_tasklet` and the tasklet's first event in one call: (tix, seq)."""
        if self._keep is None:  # add_tasklet, inline (it only adds trimming for keep=N)
            tix = self._tk_base + len(self._tk)
            self._tk.append(row)
        else:
            tix = self.add_tasklet(*row)
        self._t.append(t)
        self._code.append(code)
        self._tix.append(tix)
        return tix, self._base + len(self._tix) - 1

    def record(self, code: int, tix: int, t: float) -> int:
        """Append an event with no sparse fields; returns its seq."""
        self._t.append(t)
        self._code.append(code)
        self._tix.append(tix)  # appended last: a reader sees complete rows
        return self._base + len(self._tix) - 1

    def record_x(self, code: int, tix: int, t: float, extra: tuple[Any, ...]) -> int:
        """Append an event with the sparse fields of ``_SPARSE`` (in that order)."""
        seq = self._base + len(self._tix)
        self._xseq.append(seq)
        self._xval.append(extra)
        self._t.append(t)
        self._code.append(code)
        self._tix.append(tix)
        return seq

    def record_pair(self, code_a: int, code_b: int, tix: int, t: float, extra_b: tuple[Any, ...] | None = None) -> int:
        """Two events of one tasklet at the same instant (nothing ran between them).

        ``extra_b``: the sparse fields of the second, if any. Returns the second's seq.
        """
        tixs = self._tix
        seq = self._base + len(tixs) + 1
        if extra_b is not None:
            self._xseq.append(seq)
            self._xval.append(extra_b)
        self._t.extend((t, t))
        self._code.extend((code_a, code_b))
        tixs.extend((tix, tix))
        return seq

    def wall_time(self, t: float) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self._wall_offset + t, _dt.timezone.utc)

    def flush(self) -> None:
        """Write the events recorded so far to the SQLite file now (no-op without one).

        The background thread does this every ``flush_interval`` anyway; call it to
        make a point in time durable. It blocks for the write: prefer
        ``await anyio.to_thread.run_sync(log.flush)`` on an event loop.
        """
        if self._sink is not None:
            self._sink.flush()

    def close(self) -> None:
        """Flush and close the SQLite file, if any. Idempotent."""
        if self._sink is not None:
            self._sink.close()

    @property
    def path(self) -> str | None:
        return self._sink.path if self._sink is not None else None

    # -- reading ------------------------------------------------------------------
    def __len__(self) -> int:
        return self._base + len(self._tix)

    def __repr__(self) -> str:
        where = f" -> {self.path}" if self.path else ""
        kept = f", {len(self._tix)} in memory" if self._base else ""
        return f"<EventLog {len(self)} events{kept}, {self._tk_base + len(self._tk)} tasklets{where}>"

    def count(self, event: str) -> int:
        """How many events of this name were recorded."""
        if self._base:
            return self._full().count(event)
        return self._code.count(_CODE[event])

    # -- keeping only the tail in memory (keep=N) ----------------------------------
    def _trim(self) -> None:
        """Drop rows that are in the file and older than the newest ``keep`` (loop thread)."""
        sink = self._sink
        assert sink is not None and self._keep is not None
        if not sink._flush_lock.acquire(blocking=False):
            return  # the writer is busy: trim next time
        try:
            end = self._base + len(self._tix)
            cut = min(sink._done_events, end - self._keep) - self._base
            if cut <= 0:
                return
            del self._t[:cut]
            del self._code[:cut]
            del self._tix[:cut]
            self._base += cut
            i = bisect.bisect_left(self._xseq, self._base)
            del self._xseq[:i]
            del self._xval[:i]
            # Keep the tasklet rows the remaining events refer to (hooks read them).
            oldest = min((tix for tix in self._tix if tix >= 0), default=self._tk_base + len(self._tk))
            tk_cut = min(oldest, sink._done_tasklets) - self._tk_base
            if tk_cut > 0:
                del self._tk[:tk_cut]
                self._tk_base += tk_cut
        finally:
            sink._flush_lock.release()

    def _full(self) -> EventLog:
        """This log's whole history, read back from its file (for a trimmed log)."""
        assert self._sink is not None
        self._sink.flush()
        sink = self._sink
        # Bounded above too: a later session may append to the same file.
        return EventLog._read(sink.path, sink._seq0, sink._tix0, len(self), self._tk_base + len(self._tk))

    def _row_of(self, seq: int) -> tuple[float, int, int]:
        i = seq - self._base
        if i >= 0:
            return self._t[i], self._code[i], self._tix[i]
        return self._file_row(seq)[:3]

    def _sparse_of(self, seq: int) -> tuple[Any, ...]:
        if seq >= self._base:
            return self._sparse(seq, seq + 1).get(seq, _EMPTY_X)
        return self._file_row(seq)[3]

    def _tasklet_of(self, tix: int) -> tuple[Any, ...]:
        i = tix - self._tk_base
        if i >= 0:
            return self._tk[i]
        assert self._sink is not None
        self._sink.flush()
        with contextlib.closing(sqlite3.connect(f"file:{self._sink.path}?mode=ro", uri=True)) as con:
            row = con.execute(
                "SELECT tasklet_id, name, task, plan, resource_tags FROM tasklets WHERE tix = ?",
                (self._sink._tix0 + tix,),
            ).fetchone()
        return tuple(row)

    def _file_row(self, seq: int) -> tuple[Any, ...]:
        assert self._sink is not None
        self._sink.flush()
        with contextlib.closing(sqlite3.connect(f"file:{self._sink.path}?mode=ro", uri=True)) as con:
            row = con.execute(
                "SELECT t, code, tix, status, state_from, state_to, step, duration_s, error_type, error_message,"
                f" detail, {_attempt_column(con)}, sparse FROM events WHERE seq = ?",
                (self._sink._seq0 + seq,),
            ).fetchone()
        t, code, tix, *extra, sparse = row
        return t, code, tix - self._sink._tix0 if tix >= 0 else -1, tuple(extra) if sparse else _EMPTY_X

    def _sparse(self, lo: int, hi: int) -> dict[int, tuple[Any, ...]]:
        xseq = self._xseq
        i = bisect.bisect_left(xseq, lo)
        j = bisect.bisect_left(xseq, hi)
        return dict(zip(xseq[i:j], self._xval[i:j]))

    def events(self, start: int = 0, stop: int | None = None) -> list[Event]:
        """Events ``start <= seq < stop`` as :class:`Event` objects (no pandas needed)."""
        if start < self._base:
            return self._full().events(start, stop)
        n = len(self)
        stop = n if stop is None else min(stop, n)
        start = max(0, start)
        sparse = self._sparse(start, stop)
        return [Event(self, seq, sparse.get(seq, _EMPTY_X)) for seq in range(start, stop)]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events())

    def to_frame(self) -> pandas.DataFrame:
        """One row per event, columns :data:`COLUMNS`, the same dtypes even when empty.

        Columns of repeated strings (event, tasklet_id, task, plan, status,
        resource_tags, state_from, state_to, error_type, detail) are categoricals;
        ``error_message`` is an object column; ``step`` is nullable ``Int64``.
        A log that keeps only its tail in memory (``keep=``) reads its file.
        """
        if self._base or self._tk_base:
            return self._full().to_frame()
        import numpy as np
        import pandas as pd

        n = len(self._tix)
        tk = self._tk
        n_tk = len(tk)
        # fromiter with a count: the first n rows, without copying the lists first
        t = np.fromiter(self._t, dtype=np.float64, count=n)
        tix = np.fromiter(self._tix, dtype=np.int64, count=n)
        code = np.fromiter(self._code, dtype=np.int16, count=n)
        if self._at is not None:
            at_s = np.frombuffer(self._at, dtype=np.float64, count=n)
        else:
            at_s = self._wall_offset + t
        at_us = np.round(at_s * 1e6).astype(np.int64)
        del at_s
        at = pd.DatetimeIndex(at_us.view("datetime64[us]")).tz_localize("UTC")
        del at_us

        # Repeated strings become categoricals: a small integer per row instead of a
        # pointer (this is what keeps a million-event frame small).
        safe_tix = np.where(tix >= 0, tix, n_tk).astype(np.int32 if n_tk < 2**31 - 1 else np.int64)
        del tix

        def categorical(codes: np.ndarray, uniques: Any) -> pd.Categorical:
            return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(pd.Index(uniques, dtype=object)))

        def per_tasklet(column: int) -> pd.Categorical:
            values = np.array([row[column] for row in itertools.islice(tk, n_tk)], dtype=object)
            codes, uniques = pd.factorize(values, use_na_sentinel=True)
            del values
            codes = np.append(codes, -1).astype(safe_tix.dtype)
            return categorical(codes[safe_tix], uniques)

        m = min(len(self._xseq), len(self._xval))
        idx = np.fromiter(self._xseq, dtype=np.int64, count=m)
        keep = idx < n
        rows = [row for row, k in zip(self._xval[:m], keep) if k] if not keep.all() else self._xval[:m]
        rows = [row if len(row) == len(_SPARSE) else _full_x(row) for row in rows]
        idx = idx[keep]
        columns = dict(zip(_SPARSE, zip(*rows))) if len(idx) else {name: () for name in _SPARSE}

        def sparse_categorical(name: str, categories: Any = None) -> pd.Categorical:
            values = np.array(columns[name], dtype=object)
            codes = np.full(n, -1, dtype=np.int32)
            if categories is None:
                sub, categories = pd.factorize(values, use_na_sentinel=True)
            else:
                sub = pd.Index(categories).get_indexer(values)
            codes[idx] = sub
            return categorical(codes, categories)

        def sparse_number(name: str) -> np.ndarray:
            out = np.full(n, np.nan)
            out[idx] = np.array([np.nan if v is None else v for v in columns[name]], dtype=np.float64)
            return out

        def sparse_int(name: str) -> Any:  # nullable Int64, built without a float copy
            data = np.zeros(n, dtype=np.int64)
            mask = np.ones(n, dtype=bool)
            values = columns[name]
            given = np.array([v is not None for v in values], dtype=bool)
            data[idx[given]] = np.array([v for v in values if v is not None], dtype=np.int64)
            mask[idx[given]] = False
            return pd.arrays.IntegerArray(data, mask)

        messages = np.full(n, None, dtype=object)
        messages[idx] = np.array(columns["error_message"], dtype=object)
        frame = pd.DataFrame(
            {
                "seq": np.arange(n, dtype=np.int64),
                "t": t,
                "at": at,
                "event": pd.Categorical.from_codes(code, categories=list(EVENT_NAMES)),
                "tasklet_id": per_tasklet(0),
                "task": per_tasklet(2),
                "plan": per_tasklet(3),
                "status": sparse_categorical("status", list(STATUSES)),
                "resource_tags": per_tasklet(4),
                "state_from": sparse_categorical("state_from"),
                "state_to": sparse_categorical("state_to"),
                "step": sparse_int("step"),
                "duration_s": sparse_number("duration_s"),
                "error_type": sparse_categorical("error_type"),
                "error_message": pd.Series(messages, dtype=object),
                "detail": sparse_categorical("detail"),
                "attempt": sparse_int("attempt"),
            },
            columns=list(COLUMNS),
            copy=False,
        )
        return frame

    def runs(self) -> pandas.DataFrame:
        """One row per tasklet: its status and how long it queued, planned and ran.

        ``queue_s``: submitted -> resources acquired; ``planning_s``: acquired -> the
        body started (0 without a required state); ``run_s``: the body;
        ``total_s``: submitted -> ``after_task_run``. NaN where a phase never happened
        (e.g. ``run_s`` of a tasklet cancelled while waiting).
        """
        if self._base or self._tk_base:
            return self._full().runs()
        import numpy as np
        import pandas as pd

        frame = self.to_frame()
        tk = self._tk[:]
        n_tk = len(tk)
        tk_cols = list(zip(*tk)) if tk else [()] * 5
        codes = frame["event"].cat.codes.to_numpy()
        tix_all = np.fromiter(self._tix, dtype=np.int64, count=len(frame))
        t_all = frame["t"].to_numpy()

        def time_of(event: str) -> np.ndarray:
            out = np.full(n_tk, np.nan)
            mask = (codes == _CODE[event]) & (tix_all >= 0)
            out[tix_all[mask]] = t_all[mask]
            return out

        submitted = time_of("tasklet_submitted")
        acquired = time_of("resources_acquired")
        started = time_of("before_task_run")
        body_end = np.fmin(time_of("after_task_success"), time_of("after_task_failure"))
        finished = time_of("after_task_run")
        run_s = np.where(np.isnan(started), np.nan, body_end - started)
        planning_end = np.where(np.isnan(started), body_end, started)
        planning_s = planning_end - acquired

        done = frame[frame["event"] == "after_task_run"]
        status = np.full(n_tk, None, dtype=object)
        etype = np.full(n_tk, None, dtype=object)
        emsg = np.full(n_tk, None, dtype=object)
        idx = tix_all[done.index.to_numpy()]
        status[idx] = done["status"].astype(object).to_numpy()
        etype[idx] = done["error_type"].to_numpy()
        emsg[idx] = done["error_message"].to_numpy()
        attempts = np.ones(n_tk, dtype=np.int64)
        attempt = frame["attempt"]
        mask = attempt.notna().to_numpy() & (tix_all >= 0)
        np.maximum.at(attempts, tix_all[mask], attempt[mask].to_numpy(dtype=np.int64))
        transitions = np.zeros(n_tk, dtype=np.int64)
        mask = (codes == _CODE["state_transition_finished"]) & (tix_all >= 0)
        np.add.at(transitions, tix_all[mask], 1)
        if self._at is not None:
            at_sub = np.full(n_tk, np.nan)
            mask = codes == _CODE["tasklet_submitted"]
            at_sub[tix_all[mask]] = np.frombuffer(self._at, dtype=np.float64, count=len(frame))[mask]
        else:
            at_sub = self._wall_offset + submitted
        submitted_at = pd.to_datetime(pd.Series(at_sub * 1e6, dtype="float64").round(), unit="us", utc=True)
        return pd.DataFrame(
            {
                "tasklet_id": pd.Series(list(tk_cols[0]), dtype=object),
                "name": pd.Series(list(tk_cols[1]), dtype=object),
                "task": pd.Series(list(tk_cols[2]), dtype=object),
                "plan": pd.Series(list(tk_cols[3]), dtype=object),
                "resource_tags": pd.Series(list(tk_cols[4]), dtype=object),
                "status": pd.Categorical(status, categories=list(STATUSES)),
                "submitted_at": submitted_at.astype(_AT_DTYPE),
                "queue_s": acquired - submitted,
                "planning_s": planning_s,
                "run_s": run_s,
                "total_s": finished - submitted,
                "transitions": transitions,
                "error_type": pd.Series(etype, dtype=object),
                "error_message": pd.Series(emsg, dtype=object),
                "attempts": attempts,
            },
            columns=list(RUN_COLUMNS),
        )

    def _status_of(self, tasklet_id: str) -> str | None:
        """The terminal status of a tasklet of this log (None: not in it; "unfinished")."""
        tk = self._tk
        tix = next((self._tk_base + i for i in range(len(tk) - 1, -1, -1) if tk[i][0] == tasklet_id), None)
        if tix is None:
            return None
        after = _CODE["after_task_run"]
        codes, tixs = self._code, self._tix
        for i in range(len(codes) - 1, -1, -1):
            if tixs[i] == tix and codes[i] == after:
                return self._sparse_of(self._base + i)[0] or "finished"
        return "unfinished"

    # -- SQLite -------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> EventLog:
        """Read a log written with ``ExecutionManager(event_log=path)`` (read-only copy).

        Works while the writer is still running (it sees what was flushed so far) and
        after a crash: WAL mode needs no repair.
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no event log at {path!r}")
        return cls._read(path, 0, 0)

    @classmethod
    def _read(cls, path: str, seq0: int, tix0: int, n: int | None = None, n_tk: int | None = None) -> EventLog:
        """The rows from ``seq0`` / ``tix0`` on (``n`` / ``n_tk`` of them), renumbered from 0."""
        seq1 = seq0 + n if n is not None else 2**62
        tix1 = tix0 + n_tk if n_tk is not None else 2**62
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        except sqlite3.Error as exc:  # pragma: no cover - depends on the file system
            raise AuraError(f"{path}: cannot open the event log: {exc}") from exc
        log = cls()
        log._at = array("d")
        shared: dict[int, int] = {}  # one int object per tasklet, as when recorded live
        try:
            with contextlib.closing(con):
                for row in con.execute(
                    "SELECT tasklet_id, name, task, plan, resource_tags FROM tasklets"
                    " WHERE tix >= ? AND tix < ? ORDER BY tix",
                    (tix0, tix1),
                ):
                    log.add_tasklet(*row)
                for row in con.execute(
                    "SELECT seq, t, at, code, tix, status, state_from, state_to, step, duration_s, error_type,"
                    f" error_message, detail, {_attempt_column(con)}, sparse FROM events WHERE seq >= ? AND seq < ?"
                    " ORDER BY seq",
                    (seq0, seq1),
                ):
                    seq, t, at, code, tix, *extra, sparse = row
                    log._at.append(at)
                    tix = shared.setdefault(tix, tix - tix0 if tix >= 0 else -1)
                    if sparse:
                        log.record_x(code, tix, t, tuple(extra))
                    else:
                        log.record(code, tix, t)
        except sqlite3.DatabaseError as exc:
            raise AuraError(f"{path}: not an aura_nb event log ({exc})") from exc
        return log


def _attempt_column(con: sqlite3.Connection) -> str:
    """``attempt``, or NULL for a file written before that column existed."""
    has = "attempt" in {row[1] for row in con.execute("PRAGMA table_info(events)")}
    return "attempt" if has else "NULL AS attempt"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasklets (
    tix INTEGER PRIMARY KEY, tasklet_id TEXT, name TEXT, task TEXT, plan TEXT, resource_tags TEXT);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, t REAL, at REAL, code INTEGER, event TEXT, tix INTEGER,
    status TEXT, state_from TEXT, state_to TEXT, step INTEGER, duration_s REAL,
    error_type TEXT, error_message TEXT, detail TEXT, sparse INTEGER, attempt INTEGER);
"""

# Writers of this process, by real path: fcntl locks are per process, so a second
# manager in the same process must be refused here.
_writers_lock = threading.Lock()
_writers: set[str] = set()


class _SqliteSink:
    """Writes new rows of an EventLog to SQLite from a thread, every flush interval."""

    def __init__(self, log: EventLog, path: str, flush_interval: float) -> None:
        if not (isinstance(flush_interval, (int, float)) and 0 < flush_interval < 3600):
            raise ValueError(f"flush_interval {flush_interval!r} must be a number of seconds in (0, 3600)")
        self.path = path
        self._log = log
        self._interval = float(flush_interval)
        self._real = os.path.realpath(path)
        with _writers_lock:
            if self._real in _writers:
                raise EventLogLockedError(
                    f"{path}: another ExecutionManager in this process is writing this event log; "
                    "close it first or use another file"
                )
            _writers.add(self._real)
        self._lockfile = None
        try:
            self._lockfile = self._take_file_lock(path)
            self._con = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            self._con.executescript(_SCHEMA)
            if "attempt" not in {row[1] for row in self._con.execute("PRAGMA table_info(events)")}:
                self._con.execute("ALTER TABLE events ADD COLUMN attempt INTEGER")  # a file from before it
            (seq0,) = self._con.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM events").fetchone()
            (tix0,) = self._con.execute("SELECT COALESCE(MAX(tix) + 1, 0) FROM tasklets").fetchone()
        except BaseException:
            self._release_locks()
            raise
        # A file can hold several sessions: this one's rows go after the earlier ones.
        self._seq0, self._tix0 = seq0, tix0
        self._done_events = 0
        self._done_tasklets = 0
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=f"aura_nb event log {path}", daemon=True)
        self._thread.start()

    @staticmethod
    def _take_file_lock(path: str) -> Any:
        import fcntl

        lockfile = open(path + ".lock", "a+")  # noqa: SIM115 - held for the sink's lifetime
        try:
            fcntl.flock(lockfile.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lockfile.close()
            raise EventLogLockedError(
                f"{path}: another process is writing this event log; "
                "use another file, or wait until that manager is closed"
            ) from None
        return lockfile

    def _release_locks(self) -> None:
        if self._lockfile is not None:
            self._lockfile.close()
            self._lockfile = None
        with _writers_lock:
            _writers.discard(self._real)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception as exc:  # keep the error for close(); never kill the loop thread
                self._error = exc
                return

    def flush(self) -> None:
        log = self._log
        with self._flush_lock:
            # Absolute positions: rows before log._base / log._tk_base left memory
            # (keep=N), but only after this method had written them.
            tk_base, base = log._tk_base, log._base
            # Events first: a tasklet's row is added before its first event, so every
            # event counted here has its tasklet row among those counted next.
            n = base + len(log._tix)
            n_tk = tk_base + len(log._tk)
            if n_tk > self._done_tasklets:
                a = self._done_tasklets
                rows = [(self._tix0 + i, *log._tk[i - tk_base]) for i in range(a, n_tk)]
            else:
                rows = []
            if n > self._done_events:
                a = self._done_events
                sparse = log._sparse(a, n)
                empty = (None,) * len(_SPARSE)
                ev_rows = []
                wall = log._wall_offset
                for seq in range(a, n):
                    tix = log._tix[seq - base]
                    t = log._t[seq - base]
                    code = log._code[seq - base]
                    x = sparse.get(seq)
                    ev_rows.append(
                        (self._seq0 + seq, t, wall + t, code, EVENT_NAMES[code],
                         self._tix0 + tix if tix >= 0 else -1, *_full_x(x or empty)[:-1], 1 if x else 0,
                         _full_x(x)[-1] if x else None)  # fmt: skip
                    )
            else:
                ev_rows = []
            if not rows and not ev_rows:
                return
            con = self._con
            con.execute("BEGIN")
            try:
                con.executemany("INSERT INTO tasklets VALUES (?, ?, ?, ?, ?, ?)", rows)
                con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", ev_rows)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            self._done_tasklets = n_tk
            self._done_events = n

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join()
        try:
            self.flush()
            self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._con.close()
        finally:
            self._release_locks()
        if self._error is not None:
            raise AuraError(f"{self.path}: writing the event log failed: {self._error}") from self._error
