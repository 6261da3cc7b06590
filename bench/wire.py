"""What the load generator reads off the wire: HTTP/1.1 chunked bodies and SSE frames.

Pure code, no I/O. The load generator only timestamps and de-chunks bytes while a run
goes on (`ChunkedDecoder`); frames are split and decoded afterwards (`sse_frames`,
`content_of`), so that parsing JSON never competes with the system under test for time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import msgspec

_decode_json = msgspec.json.Decoder().decode


class ResponseHead(NamedTuple):
    status: int
    chunked: bool
    content_length: int | None


def parse_head(head: bytes) -> ResponseHead:
    """The status line and the two headers that say how the body is framed."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    chunked, length = False, None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"content-length":
            length = int(value.strip())
    return ResponseHead(status, chunked, length)


class ChunkedDecoder:
    """Incremental `Transfer-Encoding: chunked` decoding: `feed(bytes) -> payload bytes`."""

    def __init__(self) -> None:
        self._pending = b""
        self._left = 0  # payload bytes still to come in the current chunk
        self._crlf = False  # the CRLF after a chunk's payload is still to come
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        buf = self._pending + data if self._pending else data
        out: list[bytes] = []
        pos = 0
        while not self.finished:
            if self._left:
                take = min(self._left, len(buf) - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._left -= take
                if self._left:
                    break
                self._crlf = True
            if self._crlf:
                if len(buf) - pos < 2:
                    break
                pos, self._crlf = pos + 2, False
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            size = int(buf[pos:end].split(b";", 1)[0], 16)
            pos = end + 2
            if size == 0:
                self.finished = True  # trailers, if any, are ignored
            self._left = size
        self._pending = buf[pos:]
        return b"".join(out)


class Frame(NamedTuple):
    """One SSE message and the time its last byte arrived."""

    at: float
    id: int | None
    event: str
    data: bytes


def sse_frames(reads: Iterable[tuple[float, bytes]]) -> Iterator[Frame]:
    """SSE messages from timestamped body reads, each stamped with its completing read.

    Comments (`: ping`) and `retry:` lines make no message.
    """
    splitter = SseSplitter()
    for at, data in reads:
        yield from splitter.feed(at, data)


class SseSplitter:
    """Incremental SSE splitting: `feed(at, bytes) -> the messages that bytes completed`."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, at: float, data: bytes) -> list[Frame]:
        *complete, self._buffer = (self._buffer + data).split(b"\n\n")
        return [frame for block in complete if (frame := _frame(at, block)) is not None]


def _frame(at: float, block: bytes) -> Frame | None:
    event_id, event, data = None, "message", []
    for line in block.split(b"\n"):
        name, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode()
        elif name == b"id":
            event_id = int(value)
    if not data:
        return None
    return Frame(at, event_id, event, b"\n".join(data))


def content_of(frame: Frame) -> str | None:
    """The text a frame carries: a native `delta`, or an OpenAI chunk's `delta.content`."""
    if frame.event == "delta":
        text: str = _decode_json(frame.data)["text"]
        return text
    if frame.event != "message" or frame.data == b"[DONE]":
        return None
    chunk: dict[str, Any] = _decode_json(frame.data)
    choices = chunk.get("choices") or [{}]
    content: str | None = choices[0].get("delta", {}).get("content")
    return content or None


def token_count(text: str, first: bool) -> int:
    """Mock tokens are words: the first has no leading space, every later one has one."""
    return text.count(" ") + (1 if first else 0)


class Arrival(NamedTuple):
    """A frame that carried text: when it arrived and how many tokens it held."""

    at: float
    tokens: int


def arrivals(reads: Iterable[tuple[float, bytes]]) -> list[Arrival]:
    """The text-carrying frames of one stream, in order."""
    found: list[Arrival] = []
    for frame in sse_frames(reads):
        text = content_of(frame)
        if text:
            found.append(Arrival(frame.at, token_count(text, first=not found)))
    return found
