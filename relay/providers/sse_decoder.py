"""`SSEDecoder`: an upstream's `text/event-stream` body, bytes in, messages out. Pure: no I/O.

Feed it the body as it arrives, in chunks split anywhere (inside a line ending, inside a
UTF-8 sequence); it returns the messages each chunk completes. Lines end in `\\n`, `\\r\\n`
or `\\r`; `data:` lines of one message are joined with `\\n`; `event:` names the message;
comments (`:` …) and the `id:` and `retry:` fields are ignored (relay never reconnects to
an upstream's stream). The body is split on bytes and decoded a whole line at a time,
so a character split between two chunks arrives whole.

It runs once per token: whole buffers are split on `b"\\n"` by `bytes.split`, in C.
"""

from __future__ import annotations

import msgspec

DEFAULT_EVENT = "message"


class SSEMessage(msgspec.Struct, frozen=True):
    data: str
    event: str = DEFAULT_EVENT


class SSEDecoder:
    def __init__(self) -> None:
        self._partial_line = b""
        self._after_cr = False  # the last chunk ended in `\r`: a `\n` next ends no new line
        self._event = DEFAULT_EVENT
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        """The messages `chunk` completes."""
        if not chunk:
            return []
        if self._after_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._after_cr = chunk[-1:] == b"\r"
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._partial_line:
            chunk = self._partial_line + chunk
        lines = chunk.split(b"\n")
        self._partial_line = lines.pop()
        return self._messages(lines)

    def flush(self) -> list[SSEMessage]:
        """What the end of the body completes: its last line, and its last message even
        without the blank line that should end it (a lenient reading, as the spec would
        drop it: a server that closes right after its last `data:` line loses nothing)."""
        lines = [self._partial_line, b""] if self._partial_line else [b""]
        self._partial_line = b""
        self._after_cr = False
        return self._messages(lines)

    def _messages(self, lines: list[bytes]) -> list[SSEMessage]:
        messages: list[SSEMessage] = []
        for line in lines:
            if line.startswith(b"data:"):  # the common case first
                self._data.append(_value(line, 5))
            elif not line:
                if self._data:
                    messages.append(SSEMessage("\n".join(self._data), self._event))
                    self._data = []
                self._event = DEFAULT_EVENT
            elif line.startswith(b"event:"):
                self._event = _value(line, 6) or DEFAULT_EVENT
            elif line == b"data":  # a field name alone has an empty value
                self._data.append("")
        return messages


def _value(line: bytes, start: int) -> str:
    """The field's value: after the colon at `start - 1`, without one leading space."""
    if line[start : start + 1] == b" ":
        start += 1
    return line[start:].decode("utf-8", "replace")
