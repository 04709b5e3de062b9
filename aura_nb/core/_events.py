"""The event log: one flat record per event, stored by column.

Mental model: a spreadsheet that only grows. Each event is one row; the columns are
fixed (:data:`COLUMNS`). To keep recording cheap on the hot path, rows are not dicts:
the three columns every event has (time, event name, tasklet) go into typed arrays,
the rarely filled ones (status, states, step, duration, error) go into one sparse side
list, and what is the same for every event of a tasklet (its id, task, plan, tags) is
stored once per tasklet. ``to_frame()`` assembles the pandas DataFrame on demand
(pandas is imported there, never by the core at import time).

Writing and reading are apart: the manager records through a private
:class:`_EventWriter` (plain list appends, nothing else on the hot path); the public
:class:`EventLog` over the same lists only reads. With a path, the writer also copies
the rows to an SQLite file from a background thread (``_sqlite``), so the event loop
never waits for the disk. :meth:`EventLog.open` reads such a file back.

Times: ``t`` is seconds since the log started (its first session, for a file several
sessions appended to), ``at`` the wall-clock time in UTC.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import datetime as _dt
import itertools
import os
import sqlite3
import threading
import time
import weakref
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _sqlite
from ._errors import EventLogError, EventLogLockedError, _EventLogValueError

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
    "EventLogError",
    "EventLogLockedError",
    "LogHealth",
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
#: Columns of :meth:`EventLog.to_frame`. ``detail``: the outcome of a state check, the
#: hook that raised, the planned path as text, the worker that ran a task. ``attempt``:
#: which attempt of a tasklet with a retry policy the event belongs to (1, 2, ...; null
#: for events before its first retry decision and for tasklets without a policy).
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


def _full_x(x: tuple[Any, ...]) -> tuple[Any, ...]:
    """The sparse fields padded to :data:`_SPARSE` (most callers leave ``attempt`` out)."""
    return x if len(x) == len(_SPARSE) else (*x, *(None,) * (len(_SPARSE) - len(x)))
#: ``runs()["status"]`` of a tasklet that never reached ``after_task_run`` (a crash).
UNFINISHED = "unfinished"
_FLUSH_INTERVAL = 0.2
_CLOSE_TIMEOUT = 5.0  # how long close() keeps retrying the final write
_EXIT_TIMEOUT = 1.0  # the same at interpreter exit, for a log nobody closed
_AT_DTYPE = "datetime64[us, UTC]"
_TEXT = "string"  # one missing-value marker: <NA>, in every column


@dataclass(frozen=True, slots=True)
class LogHealth:
    """How the SQLite copy of a log is doing (a snapshot).

    ``pending_events``: recorded but not yet in the file (a crash now would lose
    them). ``lag_s``: seconds since the last successful write while something is
    pending, else 0. ``last_error``: why the last write failed (kept after recovery).
    ``writing``: False while writes fail (they are retried until the log is closed).
    """

    path: str
    pending_events: int
    lag_s: float
    last_error: str | None
    writing: bool


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
        self._tasklet = tasklet
        # The rest stay unset unless given (read with a default): a hook's Event is
        # built three times per tasklet (benchmark rows "1. Throughput"). _row is
        # (t, code, tix), looked up when first asked for.
        if error is not None:
            self._error = error
        if path is not None:
            self._path = path
        if result is not None:
            self._result = result

    def _sparse(self) -> tuple[Any, ...]:
        x = self._x
        if x is None:
            x = self._x = self._log._sparse_of(self._seq)
        return x

    def _r(self) -> tuple[float, int, int]:
        try:
            return self._row
        except AttributeError:
            row = self._row = self._log._row_of(self._seq)
            return row

    def _tk(self, column: int) -> Any:
        tix = self._r()[2]
        return self._log._tasklet_of(tix)[column] if tix >= 0 else None

    seq = property(lambda self: self._seq)
    t = property(lambda self: self._r()[0] - self._log._origin)
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
    error = property(lambda self: getattr(self, "_error", None))
    path = property(lambda self: getattr(self, "_path", None))
    result = property(lambda self: getattr(self, "_result", None))

    @property
    def at(self) -> _dt.datetime:
        """Wall-clock time of the event (UTC)."""
        log = self._log
        if log._at is not None:
            return _dt.datetime.fromtimestamp(log._at[self._seq], _dt.timezone.utc)
        return _dt.datetime.fromtimestamp(log._wall_offset + self._r()[0], _dt.timezone.utc)

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
    """Every event of one manager, in order (``seq`` 0, 1, 2, ...). Read-only.

    Reading: ``len(log)``, ``log.events()`` (Event objects), ``log.to_frame()`` (one
    row per event), ``log.runs()`` (one row per tasklet), ``log.export(path)`` (one
    self-contained SQLite file). ``EventLog.open(path)`` reads a log written to SQLite.
    ``EventLog()`` is an empty log. The manager writes through a private writer.
    """

    def __init__(self) -> None:
        # With keep=N, events older than the newest N that are already in the file
        # leave memory; _base / _tk_base are the seq / tix of the first rows still here.
        self._base = 0
        self._tk_base = 0
        # Plain lists (the writer appends to these very lists): an append to a list
        # costs a third of one to an array, and this is the hot path (about 24 bytes a
        # row: the two events of a pair share one float, codes are small cached ints,
        # the rows of a tasklet share one tix).
        self._t: list[float] = []
        self._code: list[int] = []
        self._tix: list[int] = []
        self._xseq: list[int] = []
        self._xval: list[tuple[Any, ...]] = []
        # per-tasklet table: (tasklet_id, name, task, plan, resource_tags) per tasklet
        self._tk: list[tuple[str, str, str, str | None, str]] = []
        # The stored t is the monotonic clock; t as shown = stored - _origin (seconds
        # since the log started); at = _wall_offset + stored (one formula everywhere,
        # so a log read back from SQLite gives bit-identical timestamps).
        self._origin = 0.0
        self._wall_offset = time.time() - time.monotonic()
        self._at: array[float] | None = None  # explicit wall times, for logs read from a file
        self._sink: _sqlite._Sink | None = None
        self._source: str | None = None  # the file an opened log was read from
        # Held briefly by the writer thread's snapshot and by trimming (never on the hot path).
        self._lock = threading.Lock()

    def wall_time(self, t: float) -> _dt.datetime:
        """The UTC time of ``t`` (seconds since the log started)."""
        return _dt.datetime.fromtimestamp(self._wall_offset + self._origin + t, _dt.timezone.utc)

    def flush(self) -> None:
        """Write the events recorded so far to the SQLite file now (no-op without one).

        The background thread does this every ``flush_interval`` anyway; call it to
        make a point in time durable. It blocks for the write: prefer
        ``await anyio.to_thread.run_sync(log.flush)`` on an event loop. Raises
        :class:`EventLogError` (saying why) if the file cannot be written now; the
        events stay in memory and are retried.
        """
        sink = self._sink
        if sink is not None and not sink.closed:
            try:
                sink.flush()
            except Exception as exc:
                raise EventLogError(
                    f"{sink.path}: {sink.pending()} events not written yet ({_sqlite.describe(exc)}); "
                    + (
                        "they stay in memory; the writer stopped (see em.events.export(path))"
                        if sink.gone
                        else "they stay in memory and the writer keeps retrying"
                    )
                ) from exc

    @property
    def path(self) -> str | None:
        """The SQLite file this log is written to or was read from, if any."""
        return self._sink.path if self._sink is not None else self._source

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

    def _rows(
        self, a: int, a_tk: int, seq0: int, tix0: int, session: int
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int, int]:
        """Rows recorded since event ``a`` / tasklet ``a_tk``, as written to SQLite.

        Called from the writer thread while the loop records: a consistent snapshot.
        """
        with self._lock:
            base, tk_base = self._base, self._tk_base
            # Events first: a tasklet's row is added before its first event, and an
            # event's sparse fields before the event, so every event counted here
            # has its tasklet row and its fields among those read next.
            n = base + len(self._tix)
            n_tk = tk_base + len(self._tk)
            ts = self._t[a - base : n - base]
            codes = self._code[a - base : n - base]
            tixs = self._tix[a - base : n - base]
            tks = self._tk[a_tk - tk_base : n_tk - tk_base]
            sparse = self._sparse(a, n)
        origin, wall = self._origin, self._wall_offset
        tk_rows = [(tix0 + a_tk + i, session, *row) for i, row in enumerate(tks)]
        ev_rows = [
            (seq0 + seq, session, t - origin, wall + t, code, EVENT_NAMES[code], tix0 + tix if tix >= 0 else -1,
             *_full_x(sparse.get(seq) or _EMPTY_X), 1 if seq in sparse else 0)
            for seq, t, code, tix in zip(range(a, n), ts, codes, tixs)
        ]  # fmt: skip
        return ev_rows, tk_rows, n, n_tk

    def _file(self) -> str:
        """The file holding the rows that left memory (``keep=``): refused if it is not that file any more.

        Read by its real path, so a symlink pointed elsewhere meanwhile reads no other log.
        """
        sink = self._sink
        assert sink is not None
        if sink.moved():
            raise EventLogError(
                f"{sink.path}: the file was deleted, moved or replaced while this manager wrote it, so the oldest "
                f"{self._base} events, which had left memory once they were in it (keep=), are lost; the newest "
                f"{len(self._tix)} are still in memory (log.events({self._base}))"
            )
        return sink.real

    def _full(self) -> EventLog:
        """This log's whole history: the rows that left memory, read from its file, then the rest."""
        sink = self._sink
        assert sink is not None
        path = self._file()
        with self._lock:  # trimming waits: the rows from done_events on stay in memory
            done, done_tk = sink.done_events, sink.done_tasklets
            n = self._base + len(self._tix)
            n_tk = self._tk_base + len(self._tk)
            i, i_tk = done - self._base, done_tk - self._tk_base
            ts, codes, tixs = self._t[i : n - self._base], self._code[i : n - self._base], self._tix[i : n - self._base]
            tks = self._tk[i_tk : n_tk - self._tk_base]
            sparse = self._sparse(done, n)
        # Bounded above too: a later session may append to the same file.
        log = EventLog._read(path, sink.seq0, sink.tix0, done, done_tk)
        assert log._at is not None
        log._tk.extend(tks)
        origin, wall = self._origin, self._wall_offset
        for seq, t, code, tix in zip(range(done, n), ts, codes, tixs):
            if seq in sparse:
                log._xseq.append(seq)
                log._xval.append(sparse[seq])
            log._t.append(t - origin)
            log._at.append(wall + t)
            log._code.append(code)
            log._tix.append(tix)
        return log

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
        sink = self._sink  # a row that left memory: it is in the file
        assert sink is not None
        with _sqlite.reading(self._file()) as con:
            row = con.execute(
                "SELECT tasklet_id, name, task, plan, resource_tags FROM tasklets WHERE tix = ?", (sink.tix0 + tix,)
            ).fetchone()
        return tuple(row)

    def _file_row(self, seq: int) -> tuple[Any, ...]:
        sink = self._sink
        assert sink is not None
        with _sqlite.reading(self._file()) as con:
            row = con.execute(
                "SELECT t, code, tix, status, state_from, state_to, step, duration_s, error_type, error_message,"
                " detail, attempt, sparse FROM events WHERE seq = ?",
                (sink.seq0 + seq,),
            ).fetchone()
        t, code, tix, *extra, sparse = row
        # t back on the stored (monotonic) scale of this log
        return t + self._origin, code, tix - sink.tix0 if tix >= 0 else -1, tuple(extra) if sparse else _EMPTY_X

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

        ``t``: seconds since the log started (for a file several sessions appended
        to: since the first one started); ``at``: wall-clock time, UTC. Columns of
        repeated strings (event, tasklet_id, task, plan, status, resource_tags,
        state_from, state_to, error_type, detail) are categoricals; ``error_message``
        is a ``string`` column; ``step`` is ``Int64``, ``attempt`` ``Int32``, ``duration_s`` ``Float64``:
        a missing value is ``<NA>`` in every column. A log that keeps only its tail in
        memory (``keep=``) reads its file.
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
        if self._origin:
            t = t - self._origin
        at_us = np.round(at_s * 1e6).astype(np.int64)
        del at_s
        at = pd.DatetimeIndex(at_us.view("datetime64[us]")).tz_localize("UTC")
        del at_us

        # Repeated strings become categoricals: a small integer per row instead of a
        # pointer (this is what keeps a million-event frame small).
        safe_tix = np.where(tix >= 0, tix, n_tk).astype(np.int32 if n_tk < 2**31 - 1 else np.int64)
        del tix

        def categorical(codes: np.ndarray, uniques: Any) -> pd.Categorical:
            return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(pd.Index(uniques, dtype=_TEXT)))

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
        idx = idx[keep]
        # zip_longest, not padded copies of the rows: most leave the last fields out.
        columns = dict(zip(_SPARSE, itertools.zip_longest(*rows))) if len(idx) else {}
        for name in _SPARSE:
            columns.setdefault(name, (None,) * len(idx))

        def sparse_categorical(name: str, categories: Any = None) -> pd.Categorical:
            values = np.array(columns[name], dtype=object)
            codes = np.full(n, -1, dtype=np.int32)
            if categories is None:
                sub, categories = pd.factorize(values, use_na_sentinel=True)
            else:
                sub = pd.Index(categories).get_indexer(values)
            codes[idx] = sub
            return categorical(codes, categories)

        def sparse_number(name: str) -> Any:  # nullable Float64
            data = np.zeros(n)
            mask = np.ones(n, dtype=bool)
            values = columns[name]
            given = np.array([v is not None for v in values], dtype=bool)
            data[idx[given]] = np.array([v for v in values if v is not None], dtype=np.float64)
            mask[idx[given]] = False
            return pd.arrays.FloatingArray(data, mask)

        def sparse_int(name: str, dtype: Any = np.int64) -> Any:  # nullable ints, built without a float copy
            data = np.zeros(n, dtype=dtype)
            mask = np.ones(n, dtype=bool)
            values = columns[name]
            given = np.array([v is not None for v in values], dtype=bool)
            data[idx[given]] = np.array([v for v in values if v is not None], dtype=dtype)
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
                "error_message": pd.array(messages, dtype=_TEXT),
                "detail": sparse_categorical("detail"),
                "attempt": sparse_int("attempt", np.int32),  # Int32: a column on every row, kept small
            },
            columns=list(COLUMNS),
            copy=False,
        )
        return frame

    def runs(self) -> pandas.DataFrame:
        """One row per tasklet: its status and how long it queued, planned and ran.

        ``queue_s``: submitted -> resources acquired; ``planning_s``: acquired -> the
        body started (0 without a required state); ``run_s``: the body;
        ``total_s``: submitted -> ``after_task_run``. ``<NA>`` where a phase never happened
        (e.g. ``run_s`` of a tasklet cancelled while waiting). ``status`` is
        ``"unfinished"`` for a tasklet that never reached ``after_task_run`` (still
        running, or the writer crashed).
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
        t_all = frame["t"].to_numpy(dtype=np.float64)

        def time_of(event: str) -> np.ndarray:
            out = np.full(n_tk, np.nan)
            mask = (codes == _CODE[event]) & (tix_all >= 0)
            out[tix_all[mask]] = t_all[mask]
            return out

        submitted = time_of("tasklet_submitted")
        acquired = time_of("resources_acquired")
        started = time_of("before_task_run")
        # The end of the last attempt's body (a retried tasklet failed before it succeeded).
        body_end = np.fmax(time_of("after_task_success"), time_of("after_task_failure"))
        finished = time_of("after_task_run")
        run_s = np.where(np.isnan(started), np.nan, body_end - started)
        planning_end = np.where(np.isnan(started), body_end, started)
        planning_s = planning_end - acquired

        done = frame[frame["event"] == "after_task_run"]
        status = np.full(n_tk, UNFINISHED, dtype=object)
        etype = np.full(n_tk, None, dtype=object)
        emsg = np.full(n_tk, None, dtype=object)
        idx = tix_all[done.index.to_numpy()]
        status[idx] = done["status"].astype(object).to_numpy()
        etype[idx] = done["error_type"].astype(object).to_numpy()
        emsg[idx] = done["error_message"].astype(object).to_numpy()
        attempts = np.ones(n_tk, dtype=np.int64)
        attempt = frame["attempt"]
        mask = attempt.notna().to_numpy() & (tix_all >= 0)
        np.maximum.at(attempts, tix_all[mask], attempt[mask].to_numpy(dtype=np.int64))
        transitions = np.zeros(n_tk, dtype=np.int64)
        mask = (codes == _CODE["state_transition_finished"]) & (tix_all >= 0)
        np.add.at(transitions, tix_all[mask], 1)
        mask = (codes == _CODE["tasklet_submitted"]) & (tix_all >= 0)
        submitted_at = pd.Series(pd.NaT, index=range(n_tk), dtype=_AT_DTYPE)
        submitted_at.iloc[tix_all[mask]] = frame["at"].to_numpy()[mask]

        def number(values: np.ndarray) -> Any:
            return pd.array(values, dtype="Float64")

        def text(values: Any) -> Any:
            return pd.array(np.array(list(values), dtype=object), dtype=_TEXT)

        return pd.DataFrame(
            {
                "tasklet_id": text(tk_cols[0]),
                "name": text(tk_cols[1]),
                "task": text(tk_cols[2]),
                "plan": text(tk_cols[3]),
                "resource_tags": text(tk_cols[4]),
                "status": pd.Categorical(
                    status, dtype=pd.CategoricalDtype(pd.Index([*STATUSES, UNFINISHED], dtype=_TEXT))
                ),
                "submitted_at": submitted_at,
                "queue_s": number(acquired - submitted),
                "planning_s": number(planning_s),
                "run_s": number(run_s),
                "total_s": number(finished - submitted),
                "transitions": transitions,
                "error_type": text(etype),
                "error_message": text(emsg),
                "attempts": attempts,
            },
            columns=list(RUN_COLUMNS),
        )

    # -- SQLite -------------------------------------------------------------------
    def _status_of(self, tasklet_id: str) -> str | None:
        """The outcome of a tasklet of this log, for ``why()``: its terminal status,
        ``"unfinished"`` before its terminal event, None if it is not in the log."""
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

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> EventLog:
        """Read a log written with ``ExecutionManager(event_log=path)`` (read-only copy).

        Works while the writer is still running (one consistent snapshot of what was
        flushed so far) and after a crash: WAL mode needs no repair. While a writer
        runs, or after a crash, the ``-wal`` file beside it is part of the log. Changes
        nothing on disk and works in a directory the reader cannot write.
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise EventLogError(f"{path}: no such file; pass the path given as event_log= to the manager")
        log = cls._read(path, 0, 0)
        log._source = path
        return log

    @classmethod
    def _read(cls, path: str, seq0: int, tix0: int, n: int | None = None, n_tk: int | None = None) -> EventLog:
        """The rows from ``seq0`` / ``tix0`` on (``n`` / ``n_tk`` of them), renumbered from 0."""
        seq1 = seq0 + n if n is not None else 2**62
        tix1 = tix0 + n_tk if n_tk is not None else 2**62
        log = cls()
        log._wall_offset = 0.0
        log._at = at = array("d")
        try:
            with _sqlite.reading(path) as con:
                version = _sqlite.inspect(con, path)
                if version is None:
                    wal = os.path.realpath(path) + "-wal"
                    missing = "" if os.path.exists(wal) else f"; its -wal file ({wal!r}) is missing"
                    raise EventLogError(
                        f"{path}: an SQLite file without the tables of an aura_nb log{missing}. While a writer runs "
                        "(or after a crash) the newest rows live in the -wal file: copy it along, or share a file "
                        "made with em.events.export(path)"
                    )
                # One read transaction: tasklets and events from one snapshot, so no
                # event refers to a tasklet row a later flush added.
                con.execute("BEGIN")
                log._tk = [
                    tuple(row)  # type: ignore[misc]
                    for row in con.execute(
                        "SELECT tasklet_id, name, task, plan, resource_tags FROM tasklets"
                        " WHERE tix >= ? AND tix < ? ORDER BY tix",
                        (tix0, tix1),
                    )
                ]
                shared: dict[int, int] = {}  # one int object per tasklet, as when recorded live
                t_, code_, tix_, xseq, xval = log._t, log._code, log._tix, log._xseq, log._xval
                for i, row in enumerate(
                    con.execute(
                        "SELECT t, at, code, tix, status, state_from, state_to, step, duration_s, error_type,"
                        " error_message, detail, attempt, sparse FROM events WHERE seq >= ? AND seq < ? AND tix < ?"
                        " ORDER BY seq",
                        (seq0, seq1, tix0 + len(log._tk)),
                    )
                ):
                    t, at_, code, tix, *extra, sparse = row
                    if sparse:
                        xseq.append(i)
                        xval.append(tuple(extra))
                    t_.append(t)
                    at.append(at_)
                    code_.append(code)
                    tix_.append(shared.setdefault(tix, tix - tix0 if tix >= 0 else -1))
                con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise EventLogError(f"{path}: cannot read the event log ({exc})") from exc
        if at:
            log._wall_offset = at[0] - log._t[0]
        return log

    def export(self, path: str | os.PathLike[str]) -> None:
        """Write this log to one self-contained SQLite file (no ``-wal`` beside it).

        For a log written to or read from a file: that file as it is now, every session
        in it (SQLite's backup API, taken from one snapshot). For a log only in memory,
        or whose file was deleted, moved or replaced under its writer: its events in
        memory. Refuses to overwrite an existing file.
        """
        dst = os.fspath(path)
        if os.path.exists(dst):
            raise EventLogError(f"{dst}: already exists; export writes a new file, pass another path")
        sink = self._sink
        if sink is not None and sink.moved():
            # Its file is not this log's any more: what is in memory is all there is.
            if self._base or self._tk_base:
                self._file()  # raises: the oldest events are lost
            source = None
        else:
            self.flush()
            source = sink.real if sink is not None else self._source
        try:
            con = sqlite3.connect(dst, isolation_level=None)
        except sqlite3.Error as exc:
            raise EventLogError(f"{dst}: cannot create the export ({exc})") from exc
        try:
            if source is not None:
                with _sqlite.reading(source) as src:
                    src.backup(con)
                con.execute("PRAGMA journal_mode=DELETE")  # self-contained: no -wal
            else:
                _sqlite.create_schema(con, None)
                con.execute("BEGIN")
                con.execute(
                    "INSERT INTO sessions (session, started_at, t0, seq0, tix0, pid) VALUES (1, ?, 0, 0, 0, ?)",
                    (self._wall_offset + self._origin, os.getpid()),
                )
                ev_rows, tk_rows, _, _ = self._rows(0, 0, 0, 0, 1)
                con.executemany(_sqlite._INSERT_TASKLETS, tk_rows)
                con.executemany(_sqlite._INSERT_EVENTS, ev_rows)
                con.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            con.close()
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(OSError):
                    os.unlink(dst + suffix)
            raise EventLogError(f"{dst}: export failed ({exc})") from exc
        con.close()


# Writers not closed yet: flushed at interpreter exit (best effort, bounded).
_open_writers: weakref.WeakSet[_EventWriter] = weakref.WeakSet()
_atexit_registered = False


def _close_at_exit() -> None:
    for writer in list(_open_writers):
        try:
            writer.close(timeout=_EXIT_TIMEOUT)
        except Exception as exc:  # nobody left to raise to
            _sqlite._logger.error("%s", exc)


class _EventWriter:
    """The one way events are written: appends to the lists its :attr:`log` reads.

    ``path``: also copy the rows to this SQLite file every ``flush_interval`` seconds
    (a background thread); ``keep=N`` then keeps only about the newest N events in
    memory. Closing flushes and checkpoints; so does the interpreter's exit for a
    writer nobody closed (bounded by about a second).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        flush_interval: float = _FLUSH_INTERVAL,
        keep: int | None = None,
    ) -> None:
        if (
            isinstance(flush_interval, bool)
            or not isinstance(flush_interval, (int, float))
            or not 0 < flush_interval < 3600
        ):
            raise _EventLogValueError(f"flush_interval {flush_interval!r} must be a number of seconds in (0, 3600)")
        if keep is not None:
            if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
                raise _EventLogValueError(f"keep={keep!r} must be a positive number of events, or None to keep all")
            if path is None:
                raise _EventLogValueError("keep= needs a path: only events already written to a file can leave memory")
        if path is not None:
            try:
                path = os.fspath(path)
            except TypeError:
                raise _EventLogValueError(f"event log path {path!r} must be a str or os.PathLike") from None
            if not isinstance(path, str) or not path or "\0" in path:
                raise _EventLogValueError(f"event log path {path!r} must be a non-empty file name")
        self._keep = keep
        self.log = log = EventLog()
        mono0 = time.monotonic()
        wall0 = time.time()
        log._wall_offset = wall0 - mono0
        log._origin = mono0
        self._base = self._tk_base = 0  # kept equal to the log's, read on the hot path
        self._t, self._code, self._tix = log._t, log._code, log._tix
        self._xseq, self._xval, self._tk = log._xseq, log._xval, log._tk
        self._sink: _sqlite._Sink | None = None
        if path is not None:
            sink = _sqlite._Sink(
                path, float(flush_interval), self._rows_since, log.__len__, wall0
            )
            log._origin = mono0 - sink.t0  # t continues the file's first session's clock
            self._sink = log._sink = sink
            global _atexit_registered
            if not _atexit_registered:
                atexit.register(_close_at_exit)
                _atexit_registered = True
            _open_writers.add(self)

    def _rows_since(self, a: int, a_tk: int) -> Any:
        sink = self._sink
        assert sink is not None
        return self.log._rows(a, a_tk, sink.seq0, sink.tix0, sink.session)

    # -- the hot path: plain appends (the log reads these lists) --------------------
    def add_submitted(self, row: tuple[str, str, str, str | None, str], code: int, t: float) -> tuple[int, int]:
        """A new tasklet's row and its first event in one call: (tix, seq)."""
        if self._keep is not None and len(self._tix) >= 2 * self._keep:
            self._trim()
        tix = self._tk_base + len(self._tk)
        self._tk.append(row)
        self._t.append(t)
        self._code.append(code)
        self._tix.append(tix)  # appended last: a reader sees complete rows
        return tix, self._base + len(self._tix) - 1

    def record(self, code: int, tix: int, t: float) -> int:
        """Append an event with no sparse fields; returns its seq."""
        self._t.append(t)
        self._code.append(code)
        self._tix.append(tix)
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

    def _trim(self) -> None:
        """Drop rows that are in the file and older than the newest ``keep`` (loop thread).

        Only rows already written leave memory: while the file cannot be written,
        memory grows rather than an event being lost.
        """
        sink, log = self._sink, self.log
        assert sink is not None and self._keep is not None
        if not log._lock.acquire(blocking=False):
            return  # the writer is taking a snapshot: trim next time
        try:
            end = self._base + len(self._tix)
            cut = min(sink.done_events, end - self._keep) - self._base
            if cut <= 0:
                return
            del self._t[:cut]
            del self._code[:cut]
            del self._tix[:cut]
            self._base = log._base = self._base + cut
            i = bisect.bisect_left(self._xseq, self._base)
            del self._xseq[:i]
            del self._xval[:i]
            # Keep the tasklet rows the remaining events refer to (hooks read them).
            tk_base = self._tk_base
            oldest = min((tix for tix in self._tix if tix >= 0), default=tk_base + len(self._tk))
            tk_cut = min(oldest, sink.done_tasklets) - tk_base
            if tk_cut > 0:
                del self._tk[:tk_cut]
                self._tk_base = log._tk_base = tk_base + tk_cut
        finally:
            log._lock.release()

    # -- health and closing ----------------------------------------------------------
    def health(self) -> LogHealth | None:
        """How the file copy is doing (None without a file). Cheap: call it any time."""
        sink = self._sink
        if sink is None:
            return None
        pending = sink.pending()
        lag = max(0.0, time.monotonic() - sink.last_ok) if pending else 0.0
        return LogHealth(sink.path, pending, lag, sink.last_error, not sink.failing)

    def close(self, *, timeout: float = _CLOSE_TIMEOUT) -> None:
        """Write what is left, checkpoint and close the file (blocking; idempotent).

        Retries the final write for up to ``timeout`` seconds; never waits for a reader.
        Raises :class:`EventLogError` only if events were lost: how many, and why.
        """
        sink = self._sink
        if sink is None:
            return
        lost = sink.close(timeout)
        _open_writers.discard(self)
        if lost:
            raise EventLogError(
                f"{sink.path}: {lost} events could not be written ({sink.last_error}); they are not in the "
                "file, but still in memory (em.events.to_frame())"
            )

    async def aclose(self, *, timeout: float = _CLOSE_TIMEOUT) -> None:
        """:meth:`close` in a worker thread: the event loop never waits for the disk."""
        if self._sink is None or self._sink.closed:
            return
        import anyio

        await anyio.to_thread.run_sync(lambda: self.close(timeout=timeout))
