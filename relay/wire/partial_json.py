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
    """`text` cut at its last safe point, with its open string and containers closed."""
    scan = _Scan(text)
    closers = "".join(_CLOSERS[opener] for opener in reversed(scan.stack))
    if scan.in_string and not scan.is_key:
        # An unfinished string keeps what it has, without a cut escape sequence.
        cut = text.rfind("\\", scan.string_start) if scan.in_escape() else len(text)
        return text[:cut] + '"' + closers
    return text[: scan.safe] + closers


class _Scan:
    """One pass over the text. A safe point is just after a container opens or a value
    ends; every container that opens or closes makes one, so the containers open at the
    last safe point are the ones still open at the end of the text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.stack: list[str] = []
        self.safe = 0  # the text up to here can be closed
        self.in_string = self.is_key = self.escaped = False
        self.string_start = 0
        self.last = ""  # the last character outside strings that is not whitespace
        for index, char in enumerate(text):
            if self.in_string:
                self._in_string(char, index)
            else:
                self._between_values(char, index)

    def _in_string(self, char: str, index: int) -> None:
        if self.escaped:
            self.escaped = False
        elif char == "\\":
            self.escaped = True
        elif char == '"':
            self.in_string = False
            if not self.is_key:
                self.safe = index + 1

    def _between_values(self, char: str, index: int) -> None:
        before, self.last = self.last, char if char not in _WHITESPACE else self.last
        if char == '"':
            self.in_string, self.string_start = True, index
            in_object = bool(self.stack) and self.stack[-1] == "{"
            self.is_key = in_object and before in ("{", ",")
        elif char in _CLOSERS:
            self.stack.append(char)
            self.safe = index + 1
        elif char in "}]":
            if self.stack:
                self.stack.pop()
            self.safe = index + 1
        elif char not in _WHITESPACE + ",:" and _value_ends(self.text, index):
            self.safe = index + 1

    def in_escape(self) -> bool:
        """Whether the text ends inside an escape sequence (`\\` or `\\uXXXX`)."""
        return self.escaped or _cut_unicode(self.text)


def _value_ends(text: str, index: int) -> bool:
    """Whether a number or literal ends at `index` (the next character closes it)."""
    following = text[index + 1 : index + 2]
    return following != "" and following in _WHITESPACE + ",}]"


def _cut_unicode(text: str) -> bool:
    """Whether the text ends inside a `\\uXXXX` escape."""
    head = text.rfind("\\u")
    return head >= 0 and len(text) - head < 6 and text[head - 1 : head] != "\\"
