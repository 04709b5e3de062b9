"""The SQLite side of the event log: the file's schema, opening it, and its writer thread.

Mental model: the file is a second copy of the log, filled from memory by one background
thread. The thread never gives up: a lock held by another program or an I/O error only
delays writing (it retries with backoff and catches up once the cause is gone), and
:meth:`_Sink.health` says how far behind it is. Only a crash loses events, and only those
recorded since the last successful write.

Readers open the file read-only without creating side files where they can (a file
without a ``-wal`` has no writer attached, so it is opened ``immutable``), and through a
private copy where the directory is not theirs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._errors import EventLogError, EventLogLockedError, _EventLogValueError

_logger = logging.getLogger("aura_nb.events")

#: ``PRAGMA application_id`` of an aura_nb log ("AURA"): how a file is told apart from
#: other programs' databases before anything is changed in it.
APPLICATION_ID = 0x41555241
#: ``PRAGMA user_version``: the schema this aura_nb writes and the newest it reads.
SCHEMA_VERSION = 1
_BUSY_S = 0.5  # sqlite's busy timeout per attempt: the writer thread wakes up to retry or stop
_MAX_BACKOFF_S = 1.0  # longest pause between two failed attempts (also the catch-up delay)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session INTEGER PRIMARY KEY, started_at REAL NOT NULL, t0 REAL NOT NULL,
    seq0 INTEGER NOT NULL, tix0 INTEGER NOT NULL,
    host TEXT, pid INTEGER, aura_nb_version TEXT, python_version TEXT);
CREATE TABLE IF NOT EXISTS tasklets (
    tix INTEGER PRIMARY KEY, tasklet_id TEXT, name TEXT, task TEXT, plan TEXT, resource_tags TEXT,
    session INTEGER);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, t REAL, at REAL, code INTEGER, event TEXT, tix INTEGER,
    status TEXT, state_from TEXT, state_to TEXT, step INTEGER, duration_s REAL,
    error_type TEXT, error_message TEXT, detail TEXT, sparse INTEGER, session INTEGER, attempt INTEGER);
"""
# Added to the tables of a file of schema 0 (written before the schema had a version).
_SESSION_COLUMNS = (("tasklets", "session INTEGER"), ("events", "session INTEGER"), ("events", "attempt INTEGER"))
_INDEXES_AND_VIEWS = """
CREATE INDEX IF NOT EXISTS events_by_tasklet ON events (tix, event);
CREATE INDEX IF NOT EXISTS events_by_event ON events (event, seq);
CREATE INDEX IF NOT EXISTS events_by_time ON events (at);
CREATE INDEX IF NOT EXISTS tasklets_by_id ON tasklets (tasklet_id);
CREATE VIEW IF NOT EXISTS runs AS
SELECT k.tix, k.session, k.tasklet_id, k.name, k.task, k.plan, k.resource_tags,
    COALESCE(f.status, 'unfinished') AS status,
    strftime('%Y-%m-%dT%H:%M:%fZ', s.at, 'unixepoch') AS submitted_at,
    a.t - s.t AS queue_s,
    COALESCE(b.t, e.t) - a.t AS planning_s,
    e.t - b.t AS run_s,
    f.t - s.t AS total_s,
    (SELECT COUNT(*) FROM events x WHERE x.tix = k.tix AND x.event = 'state_transition_finished') AS transitions,
    f.error_type, f.error_message,
    (SELECT COALESCE(MAX(x.attempt), 1) FROM events x WHERE x.tix = k.tix) AS attempts
FROM tasklets k
LEFT JOIN events s ON s.tix = k.tix AND s.event = 'tasklet_submitted'
LEFT JOIN events a ON a.tix = k.tix AND a.event = 'resources_acquired'
LEFT JOIN events b ON b.tix = k.tix AND b.event = 'before_task_run'
LEFT JOIN events e ON e.tix = k.tix AND e.event IN ('after_task_success', 'after_task_failure')
LEFT JOIN events f ON f.tix = k.tix AND f.event = 'after_task_run';
"""
_TABLES = {"sessions", "tasklets", "events", "runs"}
_V0_TABLES = {"tasklets", "events"}
_INSERT_TASKLETS = (
    "INSERT INTO tasklets (tix, session, tasklet_id, name, task, plan, resource_tags) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_EVENTS = (
    "INSERT INTO events (seq, session, t, at, code, event, tix, status, state_from, state_to, step, duration_s,"
    " error_type, error_message, detail, attempt, sparse) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def describe(exc: BaseException) -> str:
    """What went wrong writing, in the user's words, then sqlite's own message."""
    if isinstance(exc, EventLogError):  # ours: already in the user's words
        return str(exc)
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        what = "locked by another connection (e.g. a SQL tool with uncommitted changes)"
    elif name.startswith("SQLITE_FULL"):
        what = "disk full"
    elif name.startswith("SQLITE_IOERR"):
        what = "I/O error (disk full or a failing file system)"
    elif name.startswith(("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_CANTOPEN", "SQLITE_AUTH")):
        what = "cannot write the file (permissions or a read-only file system)"
    elif name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        what = "the file is damaged or was replaced"
    elif isinstance(exc, OSError):
        what = "cannot write the file"
    else:
        what = "writing failed"
    return f"{what}: {type(exc).__name__}: {exc}"


def _identity(path: str) -> tuple[int, int] | None:
    """The file a path names now (device, inode), or None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _uri(path: str, **params: str) -> str:
    # as_uri() percent-encodes spaces, '#', '?', '%' and non-ASCII letters: a plain
    # f"file:{path}" would cut the name at '#' or '?' and open (create) another file.
    return Path(path).resolve().as_uri() + "?" + urllib.parse.urlencode(params)


@contextlib.contextmanager
def reading(path: str) -> Iterator[sqlite3.Connection]:
    """A read-only connection that changes nothing on disk, wherever the file is.

    No ``-wal`` means no writer is attached: open ``immutable`` (no ``-shm`` or ``-wal``
    is created, and it works in a directory the reader cannot write). With a ``-wal``
    (a writer running, or left by a crash) it is part of the log: open read-only
    normally, or read a private copy if this directory is not writable.
    """
    real = os.path.realpath(path)
    copy_dir: str | None = None
    if os.path.exists(real + "-wal"):
        uri = _uri(real, mode="ro")
        if not os.access(os.path.dirname(real), os.W_OK) and not os.path.exists(real + "-shm"):
            copy_dir = tempfile.mkdtemp(prefix="aura_nb-read-")
            for suffix in ("", "-wal"):
                shutil.copyfile(real + suffix, os.path.join(copy_dir, "log.sqlite" + suffix))
            uri = _uri(os.path.join(copy_dir, "log.sqlite"), mode="ro")
    else:
        uri = _uri(real, mode="ro", immutable="1")
    try:
        try:
            con = sqlite3.connect(uri, uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise EventLogError(f"{path}: cannot open the event log for reading ({exc})") from exc
        try:
            yield con
        finally:
            con.close()
    finally:
        if copy_dir is not None:
            shutil.rmtree(copy_dir, ignore_errors=True)


def inspect(con: sqlite3.Connection, path: str) -> int | None:
    """The schema version of an aura_nb log, None for an empty database; else refuse.

    Reads only: called before anything in the file is changed.
    """
    try:
        names = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        (app,) = con.execute("PRAGMA application_id").fetchone()
        (version,) = con.execute("PRAGMA user_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise EventLogError(
            f"{path}: not an aura_nb event log: the file is not an SQLite database ({exc}); "
            "pass the path of a new file or of an existing aura_nb log"
        ) from exc
    if not names and app == 0 and version == 0:
        return None
    if app == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise EventLogError(
                f"{path}: written by a newer aura_nb (log schema {version}; this version knows up to "
                f"{SCHEMA_VERSION}); upgrade aura_nb to read or append to it"
            )
        return version
    if app == 0 and version == 0 and names == _V0_TABLES:  # written before the schema was versioned
        columns = {row[1] for row in con.execute("PRAGMA table_info(events)")}
        if {"seq", "t", "at", "code", "tix", "sparse"} <= columns:
            return 0
    found = ", ".join(sorted(names)[:6]) + (", ..." if len(names) > 6 else "") or "no tables"
    raise EventLogError(
        f"{path}: not an aura_nb event log (found tables: {found}; application_id {app}, user_version "
        f"{version}); it was left unchanged. Pass the path of a new file for event_log="
    )


def create_schema(con: sqlite3.Connection, version: int | None) -> None:
    """Create (or bring to :data:`SCHEMA_VERSION`) the tables, indexes and views."""
    if version == SCHEMA_VERSION:
        return
    # One transaction (executescript would commit a pending one first).
    script = ["BEGIN IMMEDIATE;", _SCHEMA]
    for table, column in _SESSION_COLUMNS:
        present = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
        if present and column.split()[0] not in present:  # a file of schema 0
            script.append(f"ALTER TABLE {table} ADD COLUMN {column};")
    script += [_INDEXES_AND_VIEWS, f"PRAGMA application_id = {APPLICATION_ID};",
               f"PRAGMA user_version = {SCHEMA_VERSION};", "COMMIT;"]  # fmt: skip
    try:
        con.executescript("\n".join(script))
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise


def _aura_version() -> str:
    try:
        from importlib.metadata import version

        return version("aura_nb")
    except Exception:  # pragma: no cover - not installed as a distribution
        return "unknown"


# Writers of this process, by real path: fcntl locks are per process, so a second
# manager in the same process must be refused here.
_writers_lock = threading.Lock()
_writers: set[str] = set()


class _Sink:
    """Owns the file: the locks, the writer connection and the thread that flushes.

    ``rows(done_events, done_tasklets)`` is given by the log's writer: it returns the
    rows recorded since (a consistent snapshot, taken under its state lock).
    """

    def __init__(
        self,
        path: str,
        interval: float,
        rows: Callable[[int, int], tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int, int]],
        recorded: Callable[[], int],
        wall0: float,
    ) -> None:
        self.path = path
        self.real = os.path.realpath(path)
        self._interval = interval
        self._rows = rows
        self._recorded = recorded
        if os.path.isdir(self.real):
            raise _EventLogValueError(f"{path}: is a directory; pass the path of a file, e.g. {path!r}/runs.sqlite")
        folder = os.path.dirname(self.real)
        if not os.path.isdir(folder):
            raise EventLogError(f"{path}: the directory {folder!r} does not exist; create it first")
        created: list[str] = []
        existed = os.path.exists(self.real)
        with _writers_lock:
            if self.real in _writers:
                raise EventLogLockedError(
                    f"{path}: another ExecutionManager in this process is writing this event log; "
                    "close it first or use another file"
                )
            _writers.add(self.real)
        self._lockfile: Any = None
        self._con: sqlite3.Connection | None = None
        try:
            version: int | None = None
            if existed and os.path.getsize(self.real) > 0:
                with reading(self.real) as con:  # refuse a foreign file before touching it
                    version = inspect(con, path)
            self._lockfile = self._take_file_lock(path, self.real + ".lock", created)
            sides = (self.real, self.real + "-wal", self.real + "-shm")
            created += [name for name in sides if not os.path.exists(name)]
            con = self._connect()
            create_schema(con, version)
            con.execute("BEGIN IMMEDIATE")
            try:
                (self.seq0,) = con.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM events").fetchone()
                (self.tix0,) = con.execute("SELECT COALESCE(MAX(tix) + 1, 0) FROM tasklets").fetchone()
                first = con.execute("SELECT started_at FROM sessions ORDER BY session LIMIT 1").fetchone()
                #: This session's start on the file's ``t`` axis (seconds since its first session).
                self.t0 = wall0 - first[0] if first else 0.0
                cur = con.execute(
                    "INSERT INTO sessions (started_at, t0, seq0, tix0, host, pid, aura_nb_version, python_version)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (wall0, self.t0, self.seq0, self.tix0, socket.gethostname(), os.getpid(), _aura_version(),
                     sys.version.split()[0]),
                )  # fmt: skip
                self.session = cur.lastrowid
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            self._identity = _identity(self.real)
        except BaseException as exc:
            self._drop_connection()
            self._release_locks()
            for name in created:
                with contextlib.suppress(OSError):
                    os.unlink(name)
            if isinstance(exc, sqlite3.Error | OSError):
                raise EventLogError(f"{path}: cannot write the event log here: {describe(exc)}") from exc
            raise
        self.done_events = 0  # rows of this session in the file (absolute, counted from 0)
        self.done_tasklets = 0
        self.last_ok = time.monotonic()
        self.last_error: str | None = None
        self.failing = False
        self.gone = False  # the file was deleted, moved or replaced under the writer
        self._write_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._stop = threading.Event()
        self.closed = False
        self._thread = threading.Thread(target=self._loop, name=f"aura_nb event log {path}", daemon=True)
        self._thread.start()

    # -- locks and the connection ----------------------------------------------------
    @staticmethod
    def _take_file_lock(path: str, lock_path: str, created: list[str]) -> Any:
        import fcntl

        while True:
            new = not os.path.exists(lock_path)
            try:
                lockfile = open(lock_path, "a+")  # noqa: SIM115 - held for the sink's lifetime
            except OSError as exc:
                raise EventLogError(
                    f"{path}: cannot create its lock file {lock_path!r} ({exc.strerror}); "
                    "the writer needs a directory it can write to"
                ) from exc
            if new:
                created.append(lock_path)
            try:
                fcntl.flock(lockfile.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lockfile.close()
                raise EventLogLockedError(
                    f"{path}: another process is writing this event log; "
                    "use another file, or wait until that manager is closed"
                ) from None
            # The holder before us removes the lock file on close: if we locked a file
            # that was unlinked meanwhile, a third writer could lock a new one. Retry.
            try:
                if os.fstat(lockfile.fileno()).st_ino == os.stat(lock_path).st_ino:
                    return lockfile
            except FileNotFoundError:
                pass
            lockfile.close()

    def _connect(self) -> sqlite3.Connection:
        if self._con is None:
            con = sqlite3.connect(self.real, timeout=_BUSY_S, check_same_thread=False, isolation_level=None)
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")
            except BaseException:
                con.close()
                raise
            self._con = con
        return self._con

    def _drop_connection(self) -> None:
        con, self._con = self._con, None
        if con is not None:
            with contextlib.suppress(sqlite3.Error):
                con.close()

    def _release_locks(self) -> None:
        if self._lockfile is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.real + ".lock")  # while still holding it: see _take_file_lock
            self._lockfile.close()
            self._lockfile = None
        with _writers_lock:
            _writers.discard(self.real)

    # -- writing ---------------------------------------------------------------------
    def _loop(self) -> None:
        delay = self._interval
        while not self._stop.wait(delay):
            try:
                self.flush()
            except Exception:  # kept in last_error; the thread never gives up
                delay = min(max(delay * 2, 0.05), _MAX_BACKOFF_S, max(self._interval, 0.05) * 8)
            else:
                delay = self._interval

    def flush(self) -> None:
        """Write every row recorded so far; raise the cause if that fails (kept in health)."""
        with self._write_lock:
            if self.gone or _identity(self.real) != self._identity:
                # Writing on would go to a file nobody can open by its name any more.
                self.gone = True
                exc = EventLogError(
                    f"the file {self.path} was deleted, moved or replaced while this manager wrote it; "
                    "the events still in memory stay there (em.events.to_frame(), em.events.export(path))"
                )
                self._failed(exc)
                raise exc
            ev_rows, tk_rows, n, n_tk = self._rows(self.done_events, self.done_tasklets)
            if ev_rows or tk_rows:
                try:
                    con = self._connect()
                    con.execute("BEGIN IMMEDIATE")
                    con.executemany(_INSERT_TASKLETS, tk_rows)
                    con.executemany(_INSERT_EVENTS, ev_rows)
                    con.execute("COMMIT")
                except Exception as exc:
                    self._failed(exc)
                    raise
                # A reader of done_* (trimming, frames) sees the rows in the file.
                self.done_tasklets = n_tk
                self.done_events = n
            self.last_ok = time.monotonic()
            if self.failing:
                self.failing = False
                _logger.warning("aura_nb event log %s: writing again, caught up", self.path)

    def moved(self) -> bool:
        """Is the file deleted, moved or replaced (its path no longer names the file this writer opened)?"""
        if not self.gone and _identity(self.real) != self._identity:
            self.gone = True
        return self.gone

    def _failed(self, exc: Exception) -> None:
        con = self._con
        # After disk full or an I/O error sqlite may already have rolled back: a blind
        # ROLLBACK would replace the real error by "cannot rollback - no transaction".
        if con is not None and con.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
        name = getattr(exc, "sqlite_errorname", "") or ""
        if not name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            self._drop_connection()  # start afresh after an I/O error
        self.last_error = describe(exc)
        if not self.failing:
            self.failing = True
            _logger.warning(
                "aura_nb event log %s: cannot write (%s); retrying, events stay in memory meanwhile",
                self.path, self.last_error,
            )  # fmt: skip

    def pending(self) -> int:
        return self._recorded() - self.done_events

    def close(self, timeout: float) -> int:
        """Stop the thread, write what is left (retrying up to ``timeout`` s): events lost."""
        with self._close_lock:
            if self.closed:
                return 0
            self.closed = True
            self._stop.set()
            self._thread.join()
            deadline = time.monotonic() + timeout
            delay = 0.05
            while True:
                try:
                    self.flush()
                    break
                except Exception:
                    left = deadline - time.monotonic()
                    if left <= 0 or self.gone:
                        break
                    time.sleep(min(delay, left))
                    delay = min(delay * 2, _MAX_BACKOFF_S)
            lost = self.pending()
            con = self._con
            if con is not None:
                # Fold the -wal into the main file if no reader holds it; never wait for one.
                with contextlib.suppress(sqlite3.Error):
                    con.execute("PRAGMA busy_timeout = 0")
                    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._drop_connection()
            self._release_locks()
            return lost
