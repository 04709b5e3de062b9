"""Hooks: callbacks that observe events as they happen.

``em.hooks.on("after_task_run", fn)`` calls ``fn(event)`` for every such event, inline,
in the tasklet's own task: whatever it returns that is awaitable is awaited (an
``async def`` hook, a lambda returning a coroutine), as Aura does. The hooks registered
*when an event happens* are called; a hook added or removed while tasklets run counts
from the next event on.
Any event name of :data:`~aura_nb.core.EVENT_NAMES` can be observed, not only Aura's
four. A hook that raises is recorded as a ``hook_error`` event and changes nothing else:
not the tasklet's outcome, not its permits. A hook that is *cancelled* lets the
cancellation propagate, like everything else.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ._errors import HookError
from ._events import EVENT_NAMES

__all__ = ["HookBus"]

Hook = Callable[[Any], Any]


class HookBus:
    """The callbacks registered per event name."""

    def __init__(self) -> None:
        # Indexed by event code: the caller checks ``self.by_code[code]`` (is anyone
        # listening?). Tuples, replaced on every change: the manager iterates the tuple
        # that was registered when the event happened, without copying.
        self.by_code: list[tuple[Hook, ...]] = [() for _ in EVENT_NAMES]

    def on(self, event: str, fn: Hook | None = None) -> Any:
        """Call ``fn(event_obj)`` for every event named ``event``; usable as a decorator.

        Returns ``fn``. Raises HookError for an unknown event name or a callback that
        cannot be called with one positional argument.
        """
        code = self._code(event)
        if fn is None:
            return lambda f: self.on(event, f)
        if not callable(fn):
            raise HookError(f"hook for {event!r}: {fn!r} is not callable")
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have no signature: trust them
            sig = None
        if sig is not None:
            try:
                sig.bind(object())
            except TypeError:
                raise HookError(
                    f"hook {getattr(fn, '__qualname__', fn)!r} for {event!r}: its signature {sig} "
                    "cannot take the one argument (the Event) a hook receives"
                ) from None
        self.by_code[code] = (*self.by_code[code], fn)
        return fn

    def off(self, event: str, fn: Hook) -> None:
        """Stop calling ``fn`` for ``event`` (no error if it was not registered)."""
        code = self._code(event)
        self.by_code[code] = tuple(f for f in self.by_code[code] if f is not fn)

    def clear(self) -> None:
        for code in range(len(self.by_code)):
            self.by_code[code] = ()

    def registered(self, event: str) -> list[Hook]:
        return list(self.by_code[self._code(event)])

    @staticmethod
    def _code(event: str) -> int:
        try:
            return EVENT_NAMES.index(event)
        except ValueError:
            import difflib

            close = difflib.get_close_matches(str(event), EVENT_NAMES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise HookError(f"unknown event name {event!r}{hint} (known: {', '.join(EVENT_NAMES)})") from None

    def __repr__(self) -> str:
        counts = {name: len(h) for name, h in zip(EVENT_NAMES, self.by_code) if h}
        return f"<HookBus {counts}>"
