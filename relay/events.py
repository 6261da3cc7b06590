"""The event model: what one session's log holds. Pure code, no I/O.

An event is `{id, type, data}`. Ids are 1, 2, 3 … within a session, with no gaps, and
the last event of every session is exactly one terminal event (`done`, `error`,
`cancelled`). The data is encoded to JSON once, when the event is made; every
subscriber and transport reuses those bytes.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import msgspec

from relay import sse


class EventType(enum.StrEnum):
    STATUS = "status"
    DELTA = "delta"
    REASONING = "reasoning"
    TOOL_CALL = "tool_call"
    USAGE = "usage"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"


TERMINAL_TYPES = frozenset({EventType.DONE, EventType.ERROR, EventType.CANCELLED})
_SSE_HEADS = {event_type: sse.event_head(event_type.value) for event_type in EventType}


class SessionStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self is not SessionStatus.RUNNING


STATUS_AFTER_TERMINAL = {
    EventType.DONE: SessionStatus.COMPLETED,
    EventType.ERROR: SessionStatus.FAILED,
    EventType.CANCELLED: SessionStatus.CANCELLED,
}


class Event(msgspec.Struct, frozen=True, gc=False):
    """One entry of a session's log. `data` holds the JSON bytes of the data object.

    Not tracked by Python's cycle collector (`gc=False`: an event refers only to an int,
    an enum member and bytes, so it can never be part of a cycle). A store holds every
    event of every retained session; were they tracked, each full collection would walk
    them all and pause the whole process, every stream with it.
    """

    id: int
    type: EventType
    data: msgspec.Raw

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_TYPES

    @property
    def sse(self) -> bytes:
        """The SSE frame. Built on each call: a session's live feed builds it once per
        event for all its subscribers (relay/subscribers/feeds.py); a replay builds the
        frames of many events at once (`sse_frames`)."""
        return sse.typed_frame(self.id, _SSE_HEADS[self.type], self.data)

    def decoded_data(self) -> dict[str, Any]:
        data: dict[str, Any] = msgspec.json.decode(self.data)
        return data


def sse_frames(events: Iterable[Event]) -> bytes:
    """The SSE frames of `events` (each one's `Event.sse`), joined. Made as one join of
    every frame's parts, its type's lines made once: neither a formatting nor a bytes
    object per frame (`replay_frames` over 10,000 events, 16 at a time: 4.4 -> 3.65 ms
    on a slow day of the bench machine, against a formatting per frame and a join of
    the frames)."""
    heads, start, end = _SSE_HEADS, sse.ID_FIELD, sse.FRAME_END
    parts: list[Any] = []  # bytes, and the data's msgspec.Raw (joined without a copy)
    add = parts.extend
    for event in events:
        add((start, str(event.id).encode(), heads[event.type], event.data, end))
    return b"".join(parts)


# The data objects of each event type, as CONTRACT.md defines them.


class Usage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0


class TakenOverUsage(Usage, kw_only=True):
    """The usage of a session another instance took over (relay/takeover.py): the sum
    of every call's, and how many takeovers (so how many calls beyond the first)."""

    takeovers: int


# The statuses of a takeover's seam (relay/takeover.py): where another instance's
# generation joins the log, and, when it asks again from the start, that the answer
# restarts (a UI clears the partial text; the UI message stream starts a new step).
TAKEN_OVER = "taken_over"
RESTARTED = "restarted"


class StatusData(msgspec.Struct):
    """Progress for UIs: `queued`, `connecting`, `retrying`, `generating`, a takeover's
    `taken_over` and `restarted`, or a producer's."""

    state: str
    message: str = ""


class RetryingData(StatusData, kw_only=True):
    """The status `retrying`: which retry (from 1), after how many seconds."""

    attempt: int
    delay_s: float


class TextData(msgspec.Struct):
    """The data of `delta` and `reasoning` events."""

    text: str


class ToolCallData(msgspec.Struct):
    index: int
    id: str
    name: str
    arguments: str


class DoneData(msgspec.Struct):
    finish_reason: str
    usage: Usage | None = None


class ErrorData(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    retryable: bool
    # The upstream's HTTP status, when the error came from an upstream's answer.
    upstream_status: int | None = None


class CancelledData(msgspec.Struct, omit_defaults=True):
    reason: str
    # The usage so far, when the generation knew it (as `done` reports it); absent if not.
    usage: Usage | None = None


EventData = StatusData | TextData | ToolCallData | Usage | DoneData | ErrorData | CancelledData

_encode = msgspec.json.Encoder().encode


def make_event(event_id: int, event_type: EventType, data: EventData) -> Event:
    """An event whose data is encoded to JSON here, once."""
    return Event(event_id, event_type, msgspec.Raw(_encode(data)))
