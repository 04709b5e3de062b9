"""Run task bodies on a Dask cluster while the manager keeps the limits.

Mental model: the :class:`~aura_nb.core.ExecutionManager` stays the single gatekeeper.
It admits a tasklet (global and resource limits), plans its state and fires its hooks
on the machine where it runs; only the *body* (the ``"plan/task"`` the tasklet names)
is shipped to a Dask worker, and the tasklet keeps its permits until that remote body
has really stopped. Checks and transitions run locally: they act on the system the
manager guards.

This module imports ``distributed`` at its top; the core never imports it, and
``aura_nb.DaskExecutor`` loads it only when first used (``pip install aura_nb[dask]``).

How a body runs on a worker (``_run_body``):

* sync bodies are called directly in one of the worker's task threads;
* async bodies run in a fresh asyncio event loop (``asyncio.run``) in one of the worker's
  task threads, *not* on the worker's own event loop: a body that blocks by mistake then
  cannot stall the worker's heartbeats, and each body occupies one of the worker's
  ``nthreads`` like any other Dask task. Async bodies must therefore run on asyncio
  (plain ``asyncio`` or anyio code does; trio-only code does not).

Cancellation and timeouts (timeouts reach :meth:`DaskExecutor.run` as cancellation):
the Dask future is cancelled (a body still queued never starts), then every worker is
told to stop the body if it is running there. An async body is cancelled on the
worker (``CancelledError`` at its current ``await``). A sync body cannot be
interrupted, exactly as in the core: the tasklet keeps its permits until the remote
thread returns, so a limit still holds across the cluster; pass ``stop_timeout=`` to
stop waiting after that many seconds instead. Then the cancellation propagates.

A worker that dies mid-body: Dask retries the task on another worker up to
``distributed.scheduler.allowed-failures`` times (default 3), then fails it with
``KilledWorker``, which :meth:`DaskExecutor.run` turns into :class:`WorkerLostError`.
Bodies with side effects usually want no silent retry: set
``dask.config.set({"distributed.scheduler.allowed-failures": 0})`` *before* the
scheduler starts (for a ``LocalCluster``: before creating it).

Requirements on the cluster: ``aura_nb`` must be importable on the workers (the
wrapper and the stop request live in this module), and task bodies and their params
must pickle (Dask uses cloudpickle: functions defined in a notebook are fine, closures
over locks or open files are not).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import pickle
import secrets
import threading
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import distributed
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker

from .core import TaskCall, WorkerLostError

__all__ = ["DaskExecutor", "WorkerLostError"]

_WORKER_ATTR = "_aura_nb_worker"  # stamped on a body's exception on the worker, removed here


ResourceMap = Mapping[str, str] | Callable[[TaskCall], Mapping[str, float] | None]


class DaskExecutor:
    """Runs tasklet bodies on a Dask cluster: ``ExecutionManager(executor=DaskExecutor(client))``.

    The manager still does admission, planning and hooks; this object only ships each
    body to a worker with ``client.submit(..., pure=False)``, waits for it without
    blocking the event loop (asyncio or trio), and brings back its result or its own
    exception unchanged. The worker lands in the ``detail`` column of the
    ``after_task_success`` / ``after_task_failure`` events by its address and its name,
    e.g. ``worker tcp://127.0.0.1:40123 (name 0)``: the name stays when a nanny restarts
    the worker on a new address. Dask's own retries are off (``retries=0``): the manager
    owns retries, so each attempt is in the log.

    Args:
        client: a ``distributed.Client`` created with ``asynchronous=False`` (the
            default): it runs its own loop thread, which is what lets the manager run on
            any event loop, trio included.
        resources: maps the resources a tasklet holds onto Dask worker resources, so a
            body lands on a worker that has them. A mapping ``{"gpu": "GPU"}``: a
            tasklet holding ``gpu`` is submitted with ``resources={"GPU": 1}`` and runs
            only on workers started with ``resources={"GPU": n}`` (``dask worker
            --resources GPU=1``). Or a callable ``(TaskCall) -> {dask_name: amount}``
            (or None) for anything else. A task whose Dask resources no worker has
            waits in Dask until such a worker joins: give such tasklets a timeout.
        stop_timeout: after a cancellation or timeout, how long to wait for the remote
            body to stop before giving up the permits. None (the default) waits as long
            as it takes, like the core does for sync bodies, so limits hold.

    Concurrency on the cluster is the manager's ``max_concurrency`` and resource
    limits; Dask adds its own (each worker runs at most ``nthreads`` bodies at once, and
    a worker with ``GPU=1`` at most one GPU body), and a body admitted by the manager
    may wait in Dask's queue for a free thread.
    """

    def __init__(
        self,
        client: distributed.Client,
        *,
        resources: ResourceMap | None = None,
        stop_timeout: float | None = None,
    ) -> None:
        if not isinstance(client, distributed.Client):
            raise TypeError(f"DaskExecutor(client=...) takes a distributed.Client, not {type(client).__name__}")
        if client.asynchronous:
            raise ValueError(
                "DaskExecutor needs a Client with asynchronous=False (the default): it runs its own loop thread, "
                "so the manager can run on asyncio or trio; create it with distributed.Client(cluster)"
            )
        if resources is not None and not callable(resources):
            if not isinstance(resources, Mapping):
                raise TypeError(
                    f"DaskExecutor(resources={resources!r}) must be a mapping like {{'gpu': 'GPU'}} or a callable "
                    "(TaskCall) -> {dask_resource: amount}"
                )
            bad = {k: v for k, v in resources.items() if not isinstance(k, str) or not isinstance(v, str) or not v}
            if bad:
                raise TypeError(
                    f"DaskExecutor(resources=...): entries {bad!r} must map an aura_nb resource name to a Dask "
                    "worker resource name, e.g. {'gpu': 'GPU'}"
                )
            resources = dict(resources)
        if stop_timeout is not None and (isinstance(stop_timeout, bool) or not stop_timeout > 0):
            raise ValueError(f"DaskExecutor(stop_timeout={stop_timeout!r}) must be a number of seconds > 0, or None")
        self.client = client
        self.resources = resources
        self.stop_timeout = stop_timeout

    def __repr__(self) -> str:
        scheduler = getattr(self.client.scheduler, "address", None) or "no scheduler"
        extra = f", resources={self.resources!r}" if self.resources is not None else ""
        return f"<DaskExecutor on {scheduler} (client {self.client.status}){extra}>"

    def dask_resources(self, call: TaskCall) -> dict[str, float] | None:
        """The Dask worker resources a call is submitted with (None: any worker)."""
        mapping = self.resources
        if mapping is None:
            return None
        if callable(mapping):
            wanted = mapping(call)
            return dict(wanted) if wanted else None
        wanted = {mapping[name]: 1 for name in call.resources if name in mapping}
        return wanted or None

    async def run(self, call: TaskCall) -> Any:
        """Run ``call``'s body on a worker; return its result or raise its exception."""
        client = self.client
        tasklet = call.tasklet
        key = f"{tasklet.name}-{tasklet.id}-{secrets.token_hex(4)}"
        try:
            future = client.submit(
                _run_body, key, call.fn, dict(call.params), call.is_async,
                key=key, pure=False, resources=self.dask_resources(call), retries=0,  # the manager owns retries
            )  # fmt: skip
        except Exception as exc:
            cause = _pickling_error(exc)
            if cause is not None:
                raise TypeError(
                    f"tasklet {tasklet.id} ({tasklet.name!r}): its body or params cannot be sent to Dask workers: "
                    f"{cause}. Bodies and params must pickle (define the task at module level or in the notebook, "
                    "without closing over locks, sockets or open files)"
                ) from exc
            raise
        # Wait without a thread: the gather runs on the client's loop thread, which
        # wakes this event loop (asyncio or trio) when the body has finished or failed.
        gathered = asyncio.run_coroutine_threadsafe(
            client.gather(future, asynchronous=True), client.loop.asyncio_loop
        )
        done = anyio.Event()
        native = anyio.lowlevel.current_token().native_token
        call_soon = native.call_soon_threadsafe if isinstance(native, asyncio.AbstractEventLoop) else native.run_sync_soon

        def wake(_: Any) -> None:
            try:
                call_soon(done.set)
            except RuntimeError:  # the manager's event loop has already ended
                pass

        gathered.add_done_callback(wake)
        try:
            await done.wait()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._stop(future, key, gathered, call)
            raise
        exc = gathered.exception()
        if exc is None:
            worker, result = gathered.result()
            call.note_worker(worker_detail(*worker))
            return result
        if isinstance(exc, KilledWorker):
            worker = _address(exc.last_worker)
            call.note_worker(worker_detail(worker or "unknown", getattr(exc.last_worker, "name", None)))
            raise WorkerLostError(
                f"tasklet {tasklet.id} ({tasklet.name!r}): the Dask worker {worker or '(unknown)'} died while running "
                f"its body (Dask key {key!r}, tried on {exc.allowed_failures + 1} worker(s)); see that worker's log. "
                "Dask retries such tasks distributed.scheduler.allowed-failures times before giving up",
                worker=worker, key=key, tasklet_id=tasklet.id,
            ) from exc  # fmt: skip
        if isinstance(exc, FutureCancelledError):
            raise WorkerLostError(
                f"tasklet {tasklet.id} ({tasklet.name!r}): its Dask task {key!r} was dropped by the cluster "
                f"({exc}); the body may or may not have run",
                worker=None, key=key, tasklet_id=tasklet.id,
            ) from exc  # fmt: skip
        stamp = _pop_worker(exc)
        if stamp is not None:
            call.note_worker(worker_detail(*stamp))
        raise exc

    async def _stop(
        self, future: distributed.Future, key: str, gathered: concurrent.futures.Future[Any], call: TaskCall
    ) -> None:
        """Cancel the future, then stop the body wherever it runs and wait until it has."""
        client = self.client

        def stop() -> None:
            try:
                # The pending gather then ends by itself with FutureCancelledError;
                # cancelling the gather instead would orphan Dask's inner wait tasks.
                future.cancel()
            except Exception:
                gathered.cancel()
                return  # the client is gone: nothing more can be asked of the cluster
            try:
                found = client.run(_stop_on_worker, key, on_error="ignore")
            except Exception:  # a worker went away meanwhile: so did its body
                return
            for address, stopped in found.items():
                if isinstance(stopped, tuple):  # (True, name): the body ran there
                    call.note_worker(worker_detail(address, stopped[1]))

        if self.stop_timeout is None:
            await anyio.to_thread.run_sync(stop)
        else:
            with anyio.move_on_after(self.stop_timeout):
                await anyio.to_thread.run_sync(stop, abandon_on_cancel=True)


def worker_detail(address: str, name: Any = None) -> str:
    """The ``detail`` of an event about a body: ``worker tcp://127.0.0.1:40123 (name 0)``.

    Both, because each alone misleads: a nanny restarts a dead worker on a new address
    under the same name, and names are only unique among the workers alive at once.
    """
    return f"worker {address}" if name is None else f"worker {address} (name {name})"


def _address(worker: Any) -> str | None:
    if worker is None:
        return None
    return worker if isinstance(worker, str) else getattr(worker, "address", None)


def _pop_worker(exc: BaseException) -> tuple[str, Any] | None:
    """Remove the worker stamp ``(address, name)`` ``_run_body`` put on a body's exception."""
    try:
        return exc.__dict__.pop(_WORKER_ATTR, None)
    except AttributeError:
        return None


def _pickling_error(exc: BaseException) -> BaseException | None:
    """If ``client.submit`` failed to pickle the task: the root cause, which says why.

    Dask tries pickle, then cloudpickle, and raises ``TypeError("Could not serialize
    ...") from`` cloudpickle's error: the explicit ``__cause__`` chain ends there.
    """
    chain: list[BaseException] = [exc]
    while chain[-1].__cause__ is not None and chain[-1].__cause__ not in chain:
        chain.append(chain[-1].__cause__)
    if not any(isinstance(e, pickle.PicklingError) or "pickle" in str(e) or "serializ" in str(e) for e in chain):
        return None
    return chain[-1]


# -- worker side ------------------------------------------------------------------------
# Each worker process keeps the bodies it runs now, by Dask key, so a stop request can
# find them; and the keys stopped before their body started, so a late start is a no-op.

_lock = threading.Lock()
_running: dict[str, _Remote] = {}
_stopped: collections.OrderedDict[str, None] = collections.OrderedDict()
_STOPPED_KEPT = 4096


class _Remote:
    """One body running on this worker."""

    __slots__ = ("done", "loop", "stop_requested", "task")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None
        self.stop_requested = False

    def request_stop(self) -> None:
        """Cancel an async body at its current ``await`` (called with ``_lock`` held)."""
        self.stop_requested = True
        if self.task is not None and self.loop is not None:
            try:
                self.loop.call_soon_threadsafe(self.task.cancel)
            except RuntimeError:  # its loop just closed: the body has ended
                pass


def _run_body(
    key: str, fn: Callable[..., Any], params: dict[str, Any], is_async: bool
) -> tuple[tuple[str, Any], Any]:
    """The Dask task: run one body here; return ``((worker address, worker name), result)``."""
    here = distributed.get_worker()
    address = (here.address, here.name)
    with _lock:
        if key in _stopped:  # cancelled while on its way here
            return address, None
        entry = _running[key] = _Remote()
    try:
        if is_async:
            return address, asyncio.run(_main(entry, fn, params))
        return address, fn(**params)
    except asyncio.CancelledError:
        if entry.stop_requested:
            return address, None  # nobody waits for this result any more
        raise
    except BaseException as exc:
        try:
            exc.__dict__[_WORKER_ATTR] = address  # (address, name): travels with the pickled exception
        except AttributeError:
            pass
        raise
    finally:
        with _lock:
            del _running[key]
        entry.done.set()


async def _main(entry: _Remote, fn: Callable[..., Any], params: dict[str, Any]) -> Any:
    with _lock:
        entry.loop = asyncio.get_running_loop()
        entry.task = asyncio.current_task()
        if entry.stop_requested:
            entry.task.cancel()
    return await fn(**params)


async def _stop_on_worker(key: str, dask_worker: Any = None) -> tuple[bool, Any] | bool:
    """Run by ``client.run`` on every worker: stop the body ``key`` if it runs here, and
    wait (on the worker's loop, without blocking it) until it has ended. Returns
    ``(True, this worker's name)`` when it stopped one, else False."""
    with _lock:
        entry = _running.get(key)
        if entry is None:
            _stopped[key] = None
            while len(_stopped) > _STOPPED_KEPT:
                _stopped.popitem(last=False)
            return False
        entry.request_stop()
    while not entry.done.is_set():
        await asyncio.sleep(0.01)
    return True, getattr(dask_worker, "name", None)
