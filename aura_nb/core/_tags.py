"""Resource tags: ``"gpu:1"`` (a name and the capacity it declares) or ``"gpu"`` (bare).

A tasklet takes one unit of every resource it tags. The number after the colon is the
resource's *capacity* (how many tasklets may hold it at once), not an amount: this is
the meaning of Aura's tags. Parsing is pure and cached; checking a tag against the
capacities a manager already knows happens in :class:`~aura_nb.core._limits.ResourcePool`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Mapping

from ._errors import ResourceTagError

__all__ = ["parse_tag", "parse_tags", "check_capacity", "check_resource_name"]

# A resource name is what a user would write in a config file: letters, digits and
# ``_ . -``, starting with a letter, digit or underscore. No spaces, no colons.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_VALID_NAME = "letters, digits, '_', '.' or '-', starting with a letter, digit or '_'"

_parsed: dict[str, tuple[str, int | None]] = {}
_parsed_sets: dict[tuple[str, ...], tuple[tuple[str, int | None], ...]] = {}


MAX_NAME = 100


def check_resource_name(name: object, *, where: str) -> str:
    if isinstance(name, str) and len(name) > MAX_NAME:
        raise ResourceTagError(
            f"{where}: resource name {name[:40]!r}... is {len(name)} characters long (at most {MAX_NAME})"
        )
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ResourceTagError(f"{where}: resource name {name!r} is not valid (use {_VALID_NAME})")
    return name


def check_capacity(value: object, *, where: str, what: str = "capacity") -> int:
    """A capacity is a positive integer (numpy integers too; ``bool`` is not: ``True`` is a typo)."""
    try:
        number = operator.index(value) if not isinstance(value, bool) else None  # type: ignore[arg-type]
    except TypeError:
        number = None
    if number is None or number < 1:
        raise ResourceTagError(f"{where}: {what} {value!r} must be a positive integer")
    return number


def parse_tag(tag: object) -> tuple[str, int | None]:
    """``"gpu:2"`` -> ``("gpu", 2)``; ``"gpu"`` -> ``("gpu", None)``. Raises ResourceTagError."""
    if isinstance(tag, str):
        hit = _parsed.get(tag)
        if hit is not None:
            return hit
    else:
        raise ResourceTagError(f"resource tag {tag!r}: a tag must be a string like 'gpu:1' or 'gpu'")
    where = f"resource tag {tag!r}" if len(tag) <= 60 else f"resource tag {tag[:40]!r}... ({len(tag)} characters)"
    if not tag:
        raise ResourceTagError(f"{where}: empty tag (write 'name:capacity', e.g. 'gpu:1')")
    name, sep, cap_text = tag.partition(":")
    if not name:
        raise ResourceTagError(f"{where}: missing resource name before ':' (e.g. 'gpu:{cap_text or 1}')")
    check_resource_name(name, where=where)
    if not sep:
        result: tuple[str, int | None] = (name, None)
    else:
        if not cap_text:
            raise ResourceTagError(f"{where}: missing capacity after ':' (e.g. '{name}:1', or the bare tag '{name}')")
        if not cap_text.isascii() or not cap_text.isdigit():
            raise ResourceTagError(f"{where}: capacity {cap_text!r} must be a positive integer")
        cap = int(cap_text)
        if cap < 1:
            raise ResourceTagError(f"{where}: capacity {cap} must be a positive integer")
        result = (name, cap)
    if len(_parsed) < 10_000:  # bounded: tags are few in practice, hostile input is not
        _parsed[tag] = result
    return result


def parse_tags(tags: Iterable[object]) -> tuple[tuple[str, int | None], ...]:
    """Parse every tag of one tasklet; the same resource twice is an error."""
    if type(tags) is tuple:
        hit = _parsed_sets.get(tags)
        if hit is not None:
            return hit
    if isinstance(tags, Mapping):
        raise ResourceTagError(f"resource_tags {tags!r}: expected a list of tags like ['gpu:1', 'db'], not a mapping")
    if isinstance(tags, (str, bytes)):
        raise ResourceTagError(
            f"resource_tags {tags!r}: expected a list of tags like ['gpu:1', 'db'], not a single string"
        )
    out = tuple(parse_tag(tag) for tag in tags)
    if len(out) > 1:
        seen: set[str] = set()
        for (name, _), tag in zip(out, tags):
            if name in seen:
                raise ResourceTagError(
                    f"resource tag {tag!r}: resource {name!r} is tagged twice in one tasklet "
                    "(a tasklet takes one unit of each resource it names)"
                )
            seen.add(name)
    if type(tags) is tuple and len(_parsed_sets) < 10_000:
        _parsed_sets[tags] = out
    return out
