"""User text made safe and short for display: one function, used wherever a name is shown.

Names of tasklets, tasks, states and resources come from users, and some are hostile or
merely awkward: a newline forges a line of a report ("gpu: free (0/1)"), a right-to-left
override (U+202E) reverses everything after it on the line, 10,000 characters push a
table sideways. :func:`display_text` turns any such string into one line of plain text
that reads the same in a terminal, an HTML page or a Graphviz label:

* line breaks and other control characters are shown as escapes (``\\n``, ``\\x1b``);
* bidirectional controls (embeddings, overrides, isolates, marks) are shown as escapes
  (``\\u202e``), so they cannot reorder the text around them;
* with ``limit=``, text longer than that is shortened in the middle (``abc…xyz``),
  keeping both ends, which is where names differ; callers keep the full text for a
  hover or a tooltip.

The result is not HTML-escaped: that is the job of the HTML layer.
"""

from __future__ import annotations

import re

__all__ = ["BIDI_CONTROLS", "display_text"]

#: The characters that change the direction of the text around them.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# C0 and C1 controls, DEL, bidi controls, line/paragraph separators, the BOM.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ufeff]")
_ELLIPSIS = "…"


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def display_text(value: object, limit: int | None = None) -> str:
    """*value* as one line of text that cannot forge lines or reorder what follows it.

    Control and bidirectional characters become visible escapes; with *limit* (>= 5),
    text longer than *limit* characters is cut in the middle with ``…``.

    >>> display_text("evil\\nname")
    'evil\\\\nname'
    >>> display_text("x" * 20, limit=9)
    'xxxx…xxxx'
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 5):
        raise ValueError(f"display_text(limit={limit!r}): must be an int >= 5 (or None for no limit)")
    text = value if isinstance(value, str) else str(value)
    if limit is not None and len(text) > 4 * limit:
        # Escaping can only lengthen text: cut the raw ends first so a huge name costs little.
        text = text[: 2 * limit] + text[-2 * limit :]
        cut = True
    else:
        cut = False
    text = _UNSAFE.sub(_escape, text)
    if limit is not None and (cut or len(text) > limit):
        head = (limit - 1) // 2 + (limit - 1) % 2
        tail = limit - 1 - head
        text = text[:head] + _ELLIPSIS + (text[-tail:] if tail else "")
    return text
