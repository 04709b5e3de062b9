"""Reading and validating Aura's ``states_map.yaml`` format.

Mental model: a states map is untrusted input that is turned into plain records in
two stages, and nothing reaches a :class:`~aura_nb.core.Plan` until both passed:

1. **load** — a mapping is used as is; a file or YAML text is size-checked (512 KiB)
   and parsed with a hardened ``yaml.SafeLoader``: no Python tags (they are refused,
   never run), at most 100 aliases (a "billion laughs" bomb is refused), no duplicate
   keys (YAML would silently keep the last one);
2. **validate** — every key is checked against the format below; the first problem
   raises :class:`StatesMapError` with the source, the key path and what would be
   valid, e.g. ``states_map.yaml: transitions[2].to: unknown state 'loged_in' (known:
   logged_in, logged_out)``.

The format::

    states:                     # a mapping name -> entry, or a list of entries with `name`
      logged_out: {description: "Game started, not logged in", check_task: check_logged_out}
      logged_in:  {check_task: check_logged_in}
    transitions:                # optional
      - {from: logged_out, to: logged_in, transition_task: do_login, cost: 1}

Task references are bare names (``do_login``) or qualified with this plan's name
(``game/do_login``). ``cost`` defaults to 1 and is a finite number >= 0. A state without
outgoing transitions (a dead end) is valid.

The small validators (:func:`resolve_task`, :func:`check_cost`, :func:`check_state_name`)
are shared with ``Plan.add_state``/``Plan.add_transition`` so that both ways of
building a map accept exactly the same things.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import reprlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from ._errors import StatesMapError
from ._planner import format_known, unknown_name

__all__ = [
    "MAX_ALIASES",
    "MAX_BYTES",
    "Invalid",
    "StatesMapData",
    "check_cost",
    "check_state_name",
    "read_states_map",
    "resolve_task",
]

# Real states maps are a few kilobytes. The pure-Python YAML loader needs ~3 s and
# ~100 MiB per MiB of map, so the limit keeps a hostile file to about a second.
MAX_BYTES = 512 * 1024
"""Files and texts larger than this are refused before parsing."""

MAX_ALIASES = 100
"""More aliases (``*name``) than this are refused: a "billion laughs" bomb needs many."""

# Merge keys (`<<: *base`) copy entries, so nested merges could multiply them even
# under the alias limit (PyYAML >= 6.0.2 dedupes, older 6.0 does not).
_MAX_MERGED_KEYS = 10_000
_MERGE_TAG = "tag:yaml.org,2002:merge"

_TOP_KEYS = ("states", "transitions")
_STATE_KEYS = ("check_task", "description")
_STATE_ITEM_KEYS = ("name", "check_task", "description")
_TRANSITION_KEYS = ("from", "to", "transition_task", "cost")

_repr = reprlib.Repr()
# Bounded: an offending value may be a huge (or alias-shared, or recursive) structure.
_repr.maxstring = 80
_repr.maxother = 80
_repr.maxlist = _repr.maxtuple = _repr.maxset = 4
_repr.maxdict = 3
_repr.maxlevel = 2
_MAX_SHOWN = 120


class Invalid(ValueError):
    """A value is not acceptable; the caller adds where it was (source, key path)."""


@dataclass(frozen=True, slots=True)
class StateEntry:
    """A validated state: *check* is the bare name of a task of the plan."""

    name: str
    check: str
    description: str


@dataclass(frozen=True, slots=True)
class TransitionEntry:
    """A validated transition: *task* is the bare name of a task of the plan."""

    from_state: str
    to_state: str
    task: str
    cost: float


@dataclass(frozen=True, slots=True)
class StatesMapData:
    """Everything a states map adds to a plan, validated against that plan."""

    source: str
    states: tuple[StateEntry, ...]
    transitions: tuple[TransitionEntry, ...]


# -- shared validators -------------------------------------------------------------


def show(value: object) -> str:
    """A short description of an offending value: its kind and a bounded repr."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({value!r})"
    text = _repr.repr(value)
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 3] + "..."
    if isinstance(value, str):
        return f"a string {text}"
    if isinstance(value, Mapping):
        return f"a mapping {text}"
    if isinstance(value, (list, tuple)):
        return f"a list {text}"
    return text


MAX_NAME = 200


def check_state_name(value: object) -> str:
    """*value* if it is usable as a state name (a non-empty string of at most MAX_NAME characters)."""
    if isinstance(value, str) and value:
        if len(value) > MAX_NAME:
            raise Invalid(f"a state name must be at most {MAX_NAME} characters, got {show(value)} ({len(value)} characters)")
        return value
    hint = " (YAML reads yes/no/on/off/true/false as booleans: quote the name)" if isinstance(value, bool) else ""
    raise Invalid(f"a state name must be a non-empty string, got {show(value)}{hint}")


def check_cost(value: object) -> float:
    """*value* as a float if it is a finite real number >= 0 (not a bool, not a string)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"cost must be a finite number >= 0, got {show(value)}")
    try:
        cost = float(value)
    except OverflowError:
        raise Invalid(f"cost must be a finite number >= 0, got {_repr.repr(value)} (too large)") from None
    if not math.isfinite(cost) or cost < 0:
        raise Invalid(f"cost must be a finite number >= 0, got {value!r}")
    return cost


_YAML12_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)")


def _yaml_number(value: object) -> object:
    """A cost PyYAML left as text because YAML 1.1 wants a dot (``1e3``), as a number.

    YAML 1.2 (and every other YAML reader) reads ``1e3`` as 1000.0; only that exact
    scientific form is converted, anything else stays as it is for ``check_cost``.
    """
    if isinstance(value, str) and _YAML12_FLOAT.fullmatch(value.strip()):
        number = float(value)
        if math.isfinite(number):  # "1e309" stays text: refused with what was written
            return number
    return value


def resolve_task(ref: object, *, plan: str, tasks: Collection[str]) -> str:
    """The bare task name *ref* refers to: ``"login"`` or ``"<plan>/login"``."""
    if not isinstance(ref, str) or not ref:
        raise Invalid(f"a task reference must be a task name, got {show(ref)}")
    prefix, slash, bare = ref.partition("/")
    if slash and prefix != plan:
        raise Invalid(
            f"task {ref!r} belongs to plan {prefix!r}, not to plan {plan!r}"
            f" (known tasks of plan {plan!r}: {format_known(tasks)})"
        )
    name = bare if slash else ref
    if name not in tasks:
        raise Invalid(unknown_name("task", ref, tasks, scope=f" in plan {plan!r}"))
    return name


# -- stage 1: load -----------------------------------------------------------------


class _Refused(Exception):
    """Raised inside the loader; carries the YAML position of the refused construct."""

    def __init__(self, message: str, mark: Any, path: str = "") -> None:
        super().__init__(message)
        self.mark = mark
        self.path = path


class _StatesMapLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` plus the refusals a states map needs (see the module docstring).

    It is the pure-Python loader on purpose: the C loader's composer cannot be
    extended, and the alias and duplicate-key checks live there.
    """

    def __init__(self, stream: str | bytes) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._path: list[object] = []

    def compose_node(self, parent: Node | None, index: object) -> Node:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(
                    f"more than {MAX_ALIASES} aliases (*name): refusing what looks like"
                    " a 'billion laughs' alias bomb",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        # `index` is the key node of a mapping value or the position in a sequence;
        # None while composing a key. Tracking it gives key paths to duplicate keys.
        pushed = index is not None
        if pushed:
            self._path.append(index.value if isinstance(index, ScalarNode) else index)
        try:
            return super().compose_node(parent, index)
        finally:
            if pushed:
                self._path.pop()

    def compose_mapping_node(self, anchor: str | None) -> MappingNode:
        return self._reject_duplicate_keys(super().compose_mapping_node(anchor))

    def _reject_duplicate_keys(self, node: MappingNode) -> MappingNode:
        seen: dict[tuple[str, str], ScalarNode] = {}
        for key, _ in node.value:
            if not isinstance(key, ScalarNode) or key.tag == _MERGE_TAG:
                continue
            first = seen.setdefault((key.tag, key.value), key)
            if first is not key:
                path = _key_path([*self._path, key.value])
                what = "state" if self._path == ["states"] else "key"
                raise _Refused(
                    f"duplicate {what} {key.value!r} (line {key.start_mark.line + 1};"
                    f" first on line {first.start_mark.line + 1})",
                    key.start_mark,
                    path,
                )
        return node

    def flatten_mapping(self, node: MappingNode) -> None:
        merges = any(key.tag == _MERGE_TAG for key, _ in node.value)
        super().flatten_mapping(node)
        if merges and len(node.value) > _MAX_MERGED_KEYS:
            raise _Refused(
                f"merge keys (<<) expand to more than {_MAX_MERGED_KEYS} entries in one mapping",
                node.start_mark,
            )

    def _refuse_tag(self, node: Node) -> NoReturn:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!", 1)  # as it was written
        raise _Refused(
            f"tag {tag!r} is not allowed: a states map is plain data"
            " (mappings, lists, strings, numbers); nothing in it is ever executed",
            node.start_mark,
        )


# Every tag SafeLoader does not know (python/*, local !tags) lands here.
_StatesMapLoader.add_constructor(None, _StatesMapLoader._refuse_tag)


def _part(name: object) -> str:
    """A key as it appears in a key path, cut short when absurdly long."""
    text = name if isinstance(name, str) else str(name)
    return text if len(text) <= 60 else text[:40] + f"...({len(text)} characters)"


def _key_path(parts: Sequence[object]) -> str:
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + (_part(part) if isinstance(part, str) else "?")
    return path


def _size(n: int) -> str:
    return f"{n} bytes ({n / 2**20:.1f} MiB)"


def _too_large(label: str, size: int) -> StatesMapError:
    return StatesMapError(
        f"{label}: the states map is too large: {_size(size)}; the limit is {MAX_BYTES // 1024} KiB"
        f" ({MAX_BYTES} bytes)"
    )


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > MAX_BYTES:
                raise _too_large(path, size)
            # Read one byte past the limit: a file may grow, or not report its size.
            data = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise StatesMapError(f"{path}: file not found (looked for {os.path.abspath(path)})") from None
    except OSError as exc:
        raise StatesMapError(f"{path}: cannot read the states map: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise _too_large(path, len(data))
    return data


def _parse(data: str | bytes, label: str) -> object:
    loader = None
    try:
        # Inside the try: PyYAML decodes and checks the whole input when the loader is
        # built, so bytes that are not text fail here (ReaderError).
        loader = _StatesMapLoader(data)
        return loader.get_single_data()
    except _Refused as exc:
        where = exc.path or f"line {exc.mark.line + 1}, column {exc.mark.column + 1}"
        raise StatesMapError(f"{label}: {where}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        # PyYAML's context reads as the start of the sentence: "while scanning ..., could not ..."
        what = ", ".join(part for part in (exc.context, exc.problem) if part)
        raise StatesMapError(f"{label}: {where}invalid YAML: {what}") from None
    except yaml.YAMLError as exc:  # e.g. ReaderError: bytes that are not valid text
        raise StatesMapError(f"{label}: invalid YAML: {exc}") from None
    except RecursionError:
        raise StatesMapError(f"{label}: invalid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _load(source: object) -> tuple[str, object]:
    """``(label, data)``: where the map came from (for messages) and its plain data."""
    if isinstance(source, Mapping):
        return "<dict>", source
    if isinstance(source, os.PathLike):
        path = os.fsdecode(source)
        return path, _parse(_read_file(path), path)
    if isinstance(source, str):
        if "\n" not in source and source.lower().endswith((".yaml", ".yml")):
            return source, _parse(_read_file(source), source)
        # A str is at most 4 bytes a character: encode only when it could be too large.
        if len(source) > MAX_BYTES:
            raise _too_large("<text>", len(source.encode("utf-8", "surrogatepass")))
        if len(source) * 4 > MAX_BYTES:
            size = len(source.encode("utf-8", "surrogatepass"))
            if size > MAX_BYTES:
                raise _too_large("<text>", size)
        return "<text>", _parse(source, "<text>")
    raise TypeError(
        "a states map source must be a mapping, a path (os.PathLike, or a str ending in"
        f" .yaml/.yml) or YAML text, got {type(source).__name__}"
    )


# -- stage 2: validate -------------------------------------------------------------


class _Validator:
    """Walks loaded data in document order and raises on the first problem."""

    def __init__(
        self,
        label: str,
        *,
        plan: str,
        tasks: Collection[str],
        states: Collection[str],
        transitions: Collection[tuple[str, str, str]],
    ) -> None:
        self.label = label
        self.plan = plan
        self.tasks = tasks
        self.existing_states = states
        self.existing_transitions = transitions

    def fail(self, path: str, message: str) -> NoReturn:
        raise StatesMapError(f"{self.label}: {path}: {message}")

    def keys(self, entry: Mapping[Any, Any], path: str, valid: Sequence[str], required: Sequence[str]) -> None:
        for key in entry:
            if key not in valid:
                hint = ""
                if isinstance(key, str):
                    close = difflib.get_close_matches(key, valid, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                sub = f"{path}.{key}" if path else str(key)
                self.fail(sub, f"unknown key {_repr.repr(key)} (valid keys: {', '.join(valid)}){hint}")
        for key in required:
            if key not in entry:
                self.fail(path or key, f"missing required key {key!r} (valid keys: {', '.join(valid)})")

    def run(self, data: object) -> StatesMapData:
        if not isinstance(data, Mapping):
            hint = ""
            if isinstance(data, str) and "\n" not in data.strip():
                hint = " (to load a file, pass a pathlib.Path or a str ending in .yaml/.yml)"
            self.fail(
                "top level",
                f"expected a mapping with the keys {', '.join(_TOP_KEYS)}, got {show(data)}{hint}",
            )
        self.keys(data, "", _TOP_KEYS, ("states",))
        states = self.states(data["states"])
        known = set(self.existing_states).union(entry.name for entry in states)
        transitions = self.transitions(data.get("transitions"), known)
        return StatesMapData(self.label, states, transitions)

    def states(self, raw: object) -> tuple[StateEntry, ...]:
        entries: list[StateEntry] = []
        first_at: dict[str, str] = {}
        if isinstance(raw, Mapping):
            items = [(f"states.{_part(name)}", name, spec, f"states.{_part(name)}") for name, spec in raw.items()]
        elif isinstance(raw, (list, tuple)):
            items = []
            for i, spec in enumerate(raw):
                path = f"states[{i}]"
                if not isinstance(spec, Mapping):
                    self.fail(path, f"expected a mapping with the keys {', '.join(_STATE_ITEM_KEYS)}, got {show(spec)}")
                self.keys(spec, path, _STATE_ITEM_KEYS, ("name",))
                items.append((path, spec["name"], spec, f"{path}.name"))
        else:
            self.fail(
                "states",
                "expected a mapping of state name -> {check_task, description}, or a list of"
                f" mappings with a 'name', got {show(raw)}",
            )

        listed = isinstance(raw, (list, tuple))
        for path, name, spec, name_path in items:
            try:
                check_state_name(name)
            except Invalid as exc:
                self.fail(name_path, str(exc))
            if name in self.existing_states:
                self.fail(name_path, f"duplicate state {name!r}: plan {self.plan!r} already has it")
            if name in first_at:
                self.fail(name_path, f"duplicate state {name!r} (first declared at {first_at[name]})")
            first_at[name] = path
            if spec is None:
                spec = {}
            if not isinstance(spec, Mapping):
                self.fail(path, f"expected a mapping with the keys {', '.join(_STATE_KEYS)}, got {show(spec)}")
            self.keys(spec, path, _STATE_ITEM_KEYS if listed else _STATE_KEYS, ("check_task",))
            try:
                check = resolve_task(spec["check_task"], plan=self.plan, tasks=self.tasks)
            except Invalid as exc:
                self.fail(f"{path}.check_task", str(exc))
            description = spec.get("description")
            if description is None:
                description = ""
            elif not isinstance(description, str):
                self.fail(f"{path}.description", f"a description must be a string, got {show(description)}")
            entries.append(StateEntry(name, check, description))
        return tuple(entries)

    def transitions(self, raw: object, known: Collection[str]) -> tuple[TransitionEntry, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, (list, tuple)):
            self.fail(
                "transitions",
                "expected a list of mappings with the keys"
                f" {', '.join(_TRANSITION_KEYS)}, got {show(raw)}",
            )
        entries: list[TransitionEntry] = []
        first_at: dict[tuple[str, str, str], str] = {}
        for i, spec in enumerate(raw):
            path = f"transitions[{i}]"
            if not isinstance(spec, Mapping):
                self.fail(path, f"expected a mapping with the keys {', '.join(_TRANSITION_KEYS)}, got {show(spec)}")
            self.keys(spec, path, _TRANSITION_KEYS, ("from", "to", "transition_task"))
            ends = []
            for key in ("from", "to"):
                state = spec[key]
                try:
                    check_state_name(state)
                except Invalid as exc:
                    self.fail(f"{path}.{key}", str(exc))
                if state not in known:
                    self.fail(f"{path}.{key}", unknown_name("state", state, known))
                ends.append(state)
            try:
                task = resolve_task(spec["transition_task"], plan=self.plan, tasks=self.tasks)
            except Invalid as exc:
                self.fail(f"{path}.transition_task", str(exc))
            try:
                cost = check_cost(_yaml_number(spec.get("cost", 1)))
            except Invalid as exc:
                self.fail(f"{path}.cost", str(exc))
            triple = (ends[0], ends[1], task)
            what = f"duplicate transition {ends[0]!r} -> {ends[1]!r} via {task!r}"
            if triple in self.existing_transitions:
                self.fail(path, f"{what}: plan {self.plan!r} already has it")
            if triple in first_at:
                self.fail(path, f"{what} (first declared at {first_at[triple]})")
            first_at[triple] = path
            entries.append(TransitionEntry(ends[0], ends[1], task, cost))
        return tuple(entries)


def read_states_map(
    source: object,
    *,
    plan: str,
    tasks: Collection[str],
    states: Collection[str] = (),
    transitions: Collection[tuple[str, str, str]] = (),
) -> StatesMapData:
    """Load and validate a states map for *plan* without changing anything.

    Args:
        source: a mapping, an ``os.PathLike``, or a str: a str without a newline that
            ends in ``.yaml``/``.yml`` (any case) is a file path, any other str is YAML.
        plan: the plan's name (task references may be qualified with it).
        tasks: the bare names of the plan's registered tasks.
        states: the states the plan already has (transitions may use them, the map
            may not redeclare them).
        transitions: the plan's ``(from, to, task)`` triples (the map may not repeat them).

    Raises:
        StatesMapError: the first problem found, naming the source and the key path.
        TypeError: *source* is none of the accepted kinds.
    """
    label, data = _load(source)
    validator = _Validator(label, plan=plan, tasks=tasks, states=states, transitions=transitions)
    return validator.run(data)
