"""A test-side Server-Sent Events client: a pure parser and a thin reader over aiohttp.

`SseParser` does no I/O: `feed(bytes) -> list[SseEvent]`, and it records what is not an
event (comments such as `: ping`, the `retry:` value, the very first line) so tests can
assert the wire format. `SseReader` wraps it around a real `aiohttp.ClientResponse`.
Parsing follows the WHATWG rules: lines end in CRLF, LF or CR; one space after the
colon is dropped; an event is dispatched at a blank line when it has data.
"""

from __future__ import annotations

import codecs
import json
import re
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

_LINE_END = re.compile(r"\r\n|\r|\n")
TERMINAL_TYPES = frozenset({"done", "error", "cancelled"})


@dataclass(frozen=True)
class SseEvent:
    id: str | None
    event: str
    data: str
    lines: tuple[str, ...]  # the raw field lines of this event, in order

    @property
    def int_id(self) -> int:
        assert self.id is not None, f"event without id: {self.lines}"
        return int(self.id)

    @property
    def is_terminal(self) -> bool:
        return self.event in TERMINAL_TYPES

    def json(self) -> Any:
        return json.loads(self.data)

    def key(self) -> tuple[str | None, str, str]:
        """What identifies an event on the wire: id, type and data."""
        return (self.id, self.event, self.data)


@dataclass
class SseParser:
    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    first_line: str | None = None
    last_event_id: str | None = None
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")()
    )
    _buffer: str = ""
    _fields: list[str] = field(default_factory=list)
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _id_seen: bool = False

    def feed(self, chunk: bytes) -> list[SseEvent]:
        text = self._buffer + self._decoder.decode(chunk)
        # Only CR, LF and CRLF end lines (not str.splitlines' U+2028 and friends). The
        # last piece has no terminator yet; a trailing CR may be half of a CRLF.
        *lines, self._buffer = _LINE_END.split(text)
        if text.endswith("\r") and lines:
            self._buffer = lines.pop() + "\r"
        events: list[SseEvent] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> SseEvent | None:
        if self.first_line is None:
            self.first_line = line
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments.append(line)
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        self._fields.append(line)
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
            self._id_seen = True
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        event = None
        if self._data:
            event = SseEvent(
                id=self.last_event_id if self._id_seen else None,
                event=self._event or "message",
                data="\n".join(self._data),
                lines=tuple(self._fields),
            )
        self._fields, self._data, self._event, self._id_seen = [], [], "", False
        return event


class SseReader:
    """Events of one open SSE response, as they arrive."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.parser = SseParser()
        self.events: list[SseEvent] = []  # every event returned so far
        self.ended = False  # the server closed the stream
        self.aborted = False  # ... without finishing the HTTP response cleanly
        self._pending: deque[SseEvent] = deque()

    @property
    def comments(self) -> list[str]:
        return self.parser.comments

    @property
    def retry(self) -> int | None:
        return self.parser.retry

    async def next_event(self) -> SseEvent | None:
        """The next event, or None once the server has closed the stream."""
        while not self._pending:
            if self.ended:
                return None
            try:
                chunk = await self.response.content.readany()
            except aiohttp.ClientPayloadError:
                self.aborted = True
                chunk = b""
            if not chunk:
                self.ended = True
                return None
            self._pending.extend(self.parser.feed(chunk))
        event = self._pending.popleft()
        self.events.append(event)
        return event

    async def __aiter__(self) -> AsyncIterator[SseEvent]:
        while (event := await self.next_event()) is not None:
            yield event

    async def read_all(self) -> list[SseEvent]:
        """Every event until the server closes the stream (including those read before)."""
        while await self.next_event() is not None:
            pass
        return self.events

    async def read(self, count: int) -> list[SseEvent]:
        """The next `count` events (fewer if the stream ends first)."""
        taken: list[SseEvent] = []
        while len(taken) < count and (event := await self.next_event()) is not None:
            taken.append(event)
        return taken

    def close(self) -> None:
        """Disconnect, as a client that goes away does."""
        self.response.close()
