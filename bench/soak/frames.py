"""What a soak reader takes from each SSE message of a stream, per wire format, and the
error code of an error answer. Pure code, no I/O.

A reader commits what a message carried only when a message with an `id:` arrives: in
the provider formats one event may become several messages and only the last has the
id, so a stream cut between them resumes before that event, and the text of its first
messages comes again.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from bench.soak.traces import Connection, LogEvent, ReaderTrace
from bench.wire import Frame, SseSplitter

_decode = msgspec.json.Decoder().decode
TERMINALS = frozenset({"done", "error", "cancelled"})


class Taken(NamedTuple):
    text: str = ""
    terminal: str = ""  # done, error or cancelled when the message ends the session


def native(frame: Frame) -> Taken:
    if frame.event == "delta":
        return Taken(text=str(_decode(frame.data)["text"]))
    return Taken(terminal=frame.event if frame.event in TERMINALS else "")


def openai(frame: Frame) -> Taken:
    """A Chat Completions chunk; `[DONE]` ends a completed session, an error chunk
    (type `cancelled` for a cancel) any other."""
    if frame.data == b"[DONE]":
        return Taken(terminal="done")
    chunk: dict[str, Any] = _decode(frame.data)
    if "error" in chunk:
        error = chunk["error"]
        return Taken(terminal="cancelled" if error.get("type") == "cancelled" else "error")
    choices = chunk.get("choices") or [{}]
    return Taken(text=choices[0].get("delta", {}).get("content") or "")


def anthropic(frame: Frame) -> Taken:
    if frame.event == "message_stop":
        return Taken(terminal="done")
    data: dict[str, Any] = _decode(frame.data)
    if frame.event == "error":
        cancelled = data.get("error", {}).get("type") == "cancelled"
        return Taken(terminal="cancelled" if cancelled else "error")
    delta = data.get("delta", {}) if frame.event == "content_block_delta" else {}
    return Taken(text=delta.get("text", "") if delta.get("type") == "text_delta" else "")


TAKERS = {"native": native, "slow": native, "openai": openai, "anthropic": anthropic}

# Anthropic's error shape has no code: relay's message says which it was.
_CODE_BY_MESSAGE = {"shutting down": "draining", "store is unreachable": "store_unavailable"}


def error_code(body: bytes) -> str:
    """relay's error code in an error answer of any front door, "" if it has none."""
    try:
        decoded = _decode(body)
    except msgspec.DecodeError:
        return ""
    error = decoded.get("error") if isinstance(decoded, dict) else None
    if not isinstance(error, dict):
        return ""
    if isinstance(error.get("code"), str):
        return str(error["code"])
    message = str(error.get("message", ""))
    return next((code for words, code in _CODE_BY_MESSAGE.items() if words in message), "")


class StreamReading:
    """One connection of a reader: SSE bytes in, the reader's ids, text and terminal
    updated as messages with ids arrive. `feed` says when to stop: `terminal`, or
    `deliberate` once `budget` messages have arrived (a planned hang-up)."""

    def __init__(self, reader: ReaderTrace, connection: Connection, budget: int | None) -> None:
        self._reader, self._connection = reader, connection
        self._take = TAKERS[reader.kind]
        self._splitter = SseSplitter()
        self._pending = ""  # text of messages whose event's id has not arrived yet
        self._budget = budget
        self._seen = 0

    def feed(self, data: bytes) -> str:
        for frame in self._splitter.feed(0.0, data):
            self._seen += 1
            self._take_one(frame)
            if self._reader.terminal:
                return "terminal"
            if self._budget is not None and self._seen >= self._budget:
                return "deliberate"
        return ""

    def _take_one(self, frame: Frame) -> None:
        taken = self._take(frame)
        self._pending += taken.text
        if frame.id is None:
            if taken.terminal:  # relay's own failure mid-stream: not in the log
                self._connection.detail = f"an in-band {frame.event}: {frame.data[:200]!r}"
            return
        reader = self._reader
        reader.ids.append(frame.id)
        reader.text, self._pending = reader.text + self._pending, ""
        reader.terminal = taken.terminal


def log_events(body: bytes) -> list[LogEvent]:
    """A native replay's events: ids, types, and what the checks compare."""
    return [_log_event(frame) for frame in SseSplitter().feed(0.0, body) if frame.id is not None]


def _log_event(frame: Frame) -> LogEvent:
    assert frame.id is not None
    data: dict[str, Any] = _decode(frame.data)
    if frame.event == "delta":
        return LogEvent(frame.id, frame.event, text=str(data["text"]))
    code = data.get("code") if frame.event == "error" else data.get("reason")
    return LogEvent(frame.id, frame.event, code=str(code or ""))
