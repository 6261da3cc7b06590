"""JSON cut short, read as far as it goes. Pure code, no I/O.

An upstream stopped by `max_tokens` in the middle of a tool call leaves its arguments
unfinished (`{"city": "Par`). Anthropic answers such a call with the `input` parsed as far
as it goes, the way its SDKs read partial JSON: an unfinished string keeps what it has
(`{"city": "Par"}`), while a key without its value, or a number, `true`, `false` or
`null` cut short, is left out. `parse_partial` does the same in one pass: it remembers
the last point at which the text could be closed, then closes it there.
"""

from __future__ import annotations

import json
from typing import Any

_CLOSERS = {"{": "}", "[": "]"}
_WHITESPACE = " \t\r\n"


def parse_partial(text: str) -> Any:
    """The value `text` begins, completed where it was cut; None if there is none."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        return json.loads(_closed(text))
    except (ValueError, RecursionError):
        return None


def _closed(text: str) -> str:
    """`text` cut at its last safe point, with its open string and containers closed.

    A safe point is just after a container opens or a value ends. Every container that
    opens or closes makes one, so the containers open at the last safe point are the
    ones still open at the end of the text.
    """
    stack: list[str] = []
    safe = 0  # the text up to here can be closed
    in_string = is_key = escaped = False
    string_start = 0
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
                if not is_key:
                    safe = index + 1
            continue
        if char == '"':
            in_string, string_start = True, index
            is_key = bool(stack) and stack[-1] == "{" and _expects_key(text, index)
        elif char in _CLOSERS:
            stack.append(char)
            safe = index + 1
        elif char in "}]":
            if stack:
                stack.pop()
            safe = index + 1
        elif char not in _WHITESPACE + ",:" and _value_ends(text, index):
            safe = index + 1
    closers = "".join(_CLOSERS[opener] for opener in reversed(stack))
    if in_string and not is_key:
        # An unfinished string keeps what it has, without a cut escape sequence.
        cut = text.rfind("\\", string_start) if escaped or _cut_unicode(text) else len(text)
        return text[:cut] + '"' + closers
    return text[:safe] + closers


def _expects_key(text: str, quote: int) -> bool:
    """Whether the string opening at `quote`, inside an object, is a key."""
    before = text[:quote].rstrip(_WHITESPACE)
    return before.endswith(("{", ","))


def _value_ends(text: str, index: int) -> bool:
    """Whether a number or literal ends at `index` (the next character closes it)."""
    following = text[index + 1 : index + 2]
    return following != "" and following in _WHITESPACE + ",}]"


def _cut_unicode(text: str) -> bool:
    """Whether the text ends inside a `\\uXXXX` escape."""
    head = text.rfind("\\u")
    return head >= 0 and len(text) - head < 6 and text[head - 1 : head] != "\\"
