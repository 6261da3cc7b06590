"""The producer API's batch (`POST /v1/sessions/{id}/events`): the request body, a numbered
batch of events, each typed by its `type` and its `data` checked against that type's struct
in relay/events.py, and the answer (`AnswerBatch`, which the OpenAPI document describes
too). Pure code, no I/O.

Errors name the path (`events[2].data.text: required`), as every body's do
(relay/wire/decoding.py). Text coalescing, when a batch asks for it, merges each run of
consecutive `delta` (or `reasoning`) events of the batch into one event: a producer that
sends a token per event then costs the log and its subscribers one event per run.
"""

from __future__ import annotations

import itertools
from typing import Annotated

import msgspec

from relay.events import (
    CancelledData,
    DoneData,
    ErrorData,
    EventData,
    EventType,
    StatusData,
    TextData,
    ToolCallData,
    Usage,
)
from relay.wire.decoding import InvalidBody

__all__ = [
    "TERMINAL_EVENTS",
    "AnswerBatch",
    "CancelledEvent",
    "DeltaEvent",
    "DoneEvent",
    "ErrorEvent",
    "EventsBody",
    "ProducerEvent",
    "ReasoningEvent",
    "StatusEvent",
    "ToolCallEvent",
    "UsageEvent",
]

# The most events one batch may carry: a producer streaming faster batches more often.
MAX_BATCH_EVENTS = 1000


class _Event(msgspec.Struct, tag_field="type", forbid_unknown_fields=True):
    pass


class StatusEvent(_Event, tag="status"):
    data: StatusData


class DeltaEvent(_Event, tag="delta"):
    data: TextData


class ReasoningEvent(_Event, tag="reasoning"):
    data: TextData


class ToolCallEvent(_Event, tag="tool_call"):
    data: ToolCallData


class UsageEvent(_Event, tag="usage"):
    data: Usage


class DoneEvent(_Event, tag="done"):
    data: DoneData


class ErrorEvent(_Event, tag="error"):
    data: ErrorData


class CancelledEvent(_Event, tag="cancelled"):
    data: CancelledData


ProducerEvent = (
    StatusEvent
    | DeltaEvent
    | ReasoningEvent
    | ToolCallEvent
    | UsageEvent
    | DoneEvent
    | ErrorEvent
    | CancelledEvent
)
_TEXT_EVENTS = (DeltaEvent, ReasoningEvent)
TERMINAL_EVENTS = (DoneEvent, ErrorEvent, CancelledEvent)

Items = list[tuple[EventType, EventData]]


class EventsBody(msgspec.Struct, forbid_unknown_fields=True):
    """`{"seq": n, "events": [{"type", "data"}, …], "coalesce"?: bool}`."""

    seq: Annotated[int, msgspec.Meta(ge=1, le=2**53)]
    events: Annotated[list[ProducerEvent], msgspec.Meta(min_length=1, max_length=MAX_BATCH_EVENTS)]
    coalesce: bool = False

    def items(self) -> Items:
        """The batch as the log's events; a terminal event anywhere but last is refused
        with `InvalidBody` naming it."""
        for index, event in enumerate(self.events[:-1]):
            if isinstance(event, TERMINAL_EVENTS):
                problem = f"a terminal event ({_type_of(event)!r}) may only be the last of a batch"
                raise InvalidBody(f"events[{index}].type", problem)
        events = _coalesced(self.events) if self.coalesce else self.events
        return [(EventType(_type_of(event)), event.data) for event in events]


def _type_of(event: ProducerEvent) -> str:
    return str(type(event).__struct_config__.tag)


def _coalesced(events: list[ProducerEvent]) -> list[ProducerEvent]:
    """Each run of consecutive text events of one type merged into one."""
    merged: list[ProducerEvent] = []
    for _, run in itertools.groupby(events, key=type):
        group = list(run)
        first = group[0]
        if isinstance(first, _TEXT_EVENTS) and len(group) > 1:
            text = "".join(event.data.text for event in group if isinstance(event, _TEXT_EVENTS))
            merged.append(msgspec.structs.replace(first, data=TextData(text)))
        else:
            merged += group
    return merged


class AnswerBatch(msgspec.Struct):
    """A batch of an external producer: the ids its events were given (`appended` is
    false for a retry of the last batch, which appended nothing)."""

    id: str
    seq: int
    ids: list[int]
    appended: bool
