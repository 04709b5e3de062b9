"""The example game plan, mirroring Aura's login example, on a simulated device.

Mental model: :class:`GameDevice` is a fake game client whose only visible thing is
its current screen (``device.state``). The plan's *check* tasks look at the screen, its
*transition* tasks click through it, and its *body* tasks (``daily_quests``,
``collect_rewards``) are what tasklets come to run. Knobs on the device make it slow,
make a transition fail, or make a check hang, so every path of the ExecutionManager can
be exercised without a real game.

The states map lives next to this file, in Aura's format (``game_states_map.yaml``)::

    logged_out --do_login (1)--> logged_in --select_character_and_enter_game (5)--> in_game_at_home
    logged_out --quick_start (10)--> in_game_at_home --logout (1)--> logged_out
    maintenance                                    (a dead end: nothing leaves it)

Checks are sync (the manager runs them in worker threads); transitions and
``daily_quests`` are async; ``collect_rewards`` is sync.
"""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Iterable

import anyio

from ..core import Plan

__all__ = ["GAME_STATES_MAP", "GameDevice", "make_game_plan"]

GAME_STATES_MAP = pathlib.Path(__file__).with_name("game_states_map.yaml")
"""The example's states map, in Aura's ``states_map.yaml`` format."""

HANG_LIMIT = 30.0
"""A hanging check gives up after this many seconds, so a forgotten hang cannot block forever."""


class GameDevice:
    """A simulated game client: the screen the example plan's tasks look at and act on.

    Thread-safe: checks run in worker threads while transitions run on the event loop.

    Args:
        state: the screen at start. Any string: a screen the map does not know makes
            every check answer False (the manager then finds no current state).
        delay: seconds every transition (and each round of ``daily_quests``) takes.
        fail_transitions: transition task names that raise
            ``RuntimeError("simulated failure in <task>")`` after their delay, leaving
            the screen unchanged.
        hang_checks: check task names that block (until :meth:`release_hangs`, or
            :data:`HANG_LIMIT` seconds) before answering, to exercise planning timeouts.
        noop_transitions: transition task names that succeed but leave the screen
            unchanged, like a click that missed (the final check then fails).

    Attributes:
        log: the actions performed, in order: a transition's task name (``"do_login"``),
            ``"do_login failed"``, ``"daily_quests(3)"``, ``"collect_rewards"``. Checks
            only look, so they are not logged.
    """

    def __init__(
        self,
        *,
        state: str = "logged_out",
        delay: float = 0.02,
        fail_transitions: Iterable[str] = (),
        hang_checks: Iterable[str] = (),
        noop_transitions: Iterable[str] = (),
    ) -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay!r}")
        self._lock = threading.Lock()
        self._state = state
        self.delay = delay
        self.fail_transitions: set[str] = set(fail_transitions)
        self.hang_checks: set[str] = set(hang_checks)
        self.noop_transitions: set[str] = set(noop_transitions)
        self.log: list[str] = []
        self._released = threading.Event()
        self._hanging = 0

    def __repr__(self) -> str:
        return f"<GameDevice state={self.state!r}, {len(self.log)} actions>"

    @property
    def state(self) -> str:
        """The current screen."""
        with self._lock:
            return self._state

    @state.setter
    def state(self, value: str) -> None:
        with self._lock:
            self._state = value

    @property
    def hanging(self) -> int:
        """How many checks are blocked in a hang right now."""
        with self._lock:
            return self._hanging

    def release_hangs(self) -> None:
        """Unblock every hanging check and stop hanging (``hang_checks`` is cleared)."""
        with self._lock:
            self.hang_checks.clear()
            released, self._released = self._released, threading.Event()
        released.set()

    def record(self, action: str) -> None:
        """Append *action* to :attr:`log`."""
        with self._lock:
            self.log.append(action)

    def looks_like(self, state: str) -> bool:
        """What the check task ``check_<state>`` does: is *state* on the screen?"""
        with self._lock:
            hang = f"check_{state}" in self.hang_checks
            released = self._released
            if hang:
                self._hanging += 1
        if hang:
            try:
                released.wait(HANG_LIMIT)
            finally:
                with self._lock:
                    self._hanging -= 1
        return self.state == state

    async def transition(self, task: str, to: str) -> None:
        """What a transition task does: take :attr:`delay`, then show *to* (or fail)."""
        await anyio.sleep(self.delay)
        with self._lock:
            if task in self.fail_transitions:
                self.log.append(f"{task} failed")
                raise RuntimeError(f"simulated failure in {task}")
            if task not in self.noop_transitions:
                self._state = to
            self.log.append(task)


def make_game_plan(device: GameDevice | None = None, *, name: str = "game") -> Plan:
    """The example plan on *device* (a new :class:`GameDevice` by default).

    The device is kept in ``plan.context["device"]``. The plan's states and
    transitions are loaded from :data:`GAME_STATES_MAP`.
    """
    device = device if device is not None else GameDevice()
    plan = Plan(name)
    plan.context["device"] = device

    # -- checks: sync, they only look at the screen --------------------------------

    @plan.task
    def check_logged_out() -> bool:
        return device.looks_like("logged_out")

    @plan.task
    def check_logged_in() -> bool:
        return device.looks_like("logged_in")

    @plan.task
    def check_in_game_at_home() -> bool:
        return device.looks_like("in_game_at_home")

    @plan.task
    def check_maintenance() -> bool:
        return device.looks_like("maintenance")

    # -- transitions: async, they take time and may fail ---------------------------

    @plan.task
    async def do_login() -> None:
        await device.transition("do_login", "logged_in")

    @plan.task
    async def select_character_and_enter_game() -> None:
        await device.transition("select_character_and_enter_game", "in_game_at_home")

    @plan.task
    async def quick_start() -> None:
        await device.transition("quick_start", "in_game_at_home")

    @plan.task
    async def logout() -> None:
        await device.transition("logout", "logged_out")

    # -- bodies: what tasklets come to run -----------------------------------------

    @plan.task
    async def daily_quests(rounds: int = 3) -> int:
        """Play *rounds* rounds of daily quests; returns how many were played."""
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise ValueError(f"rounds must be an integer >= 0, got {rounds!r}")
        await anyio.sleep(device.delay * rounds)
        device.record(f"daily_quests({rounds})")
        return rounds

    @plan.task
    def collect_rewards() -> dict[str, int]:
        """Collect the rewards waiting in the mailbox."""
        device.record("collect_rewards")
        return {"gold": 100, "gems": 5}

    plan.load_states_map(GAME_STATES_MAP)
    return plan
