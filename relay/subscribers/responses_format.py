"""Rendering a session's events as OpenAI Responses API stream events, and folding them
into the Response object. Pure code, no I/O.

The renderer numbers every stream event it renders (`sequence_number` 0, 1, 2 …),
counting from the session's first relay event, so the numbers are a pure function of
the log: a stream resumed with `starting_after=N` is rendered from the start again and
only the events numbered above N are sent. Each SSE frame carries its sequence number
as `id:`, so `Last-Event-ID` resumes at the same point as `starting_after`.

Relay events map onto the Responses stream as follows: the first one opens the response
(`response.created`, `response.in_progress`); text and reasoning open an output item
(a `message` or a `reasoning` item with one content part) that stays open while more of
the same kind arrives; a tool call is a whole `function_call` item; the terminal event
closes the open item and ends the response (`response.completed`, `response.incomplete`
when the output was cut, `response.failed` with status `failed` or `cancelled`).

A stream that relay fails to render ends as OpenAI ends one that fails: an `error`
event, then `response.failed`, numbered on from the last event sent. They carry no
`id:`: they are not frames of the log, and a client that resumes after one of them by
`Last-Event-ID` must get what the log holds after the last real frame.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any, Literal

import msgspec

from relay import sse
from relay.events import ErrorData, Event, EventType
from relay.subscribers.formats import Payload, WireRenderer
from relay.vocabulary import session_suffix
from relay.wire import openai_responses as wire

_json = msgspec.json.Encoder().encode

ItemKind = Literal["message", "reasoning", "function_call"]
_ID_PREFIXES = {"message": "msg", "reasoning": "rs", "function_call": "fc"}


class OutputItem:
    """One item of the response's `output`, as far as it has been rendered."""

    def __init__(
        self, kind: ItemKind, index: int, item_id: str, call_id: str = "", name: str = ""
    ) -> None:
        self.kind = kind
        self.index = index  # its `output_index`
        self.id = item_id
        self.call_id = call_id
        self.name = name
        self.status: wire.ItemStatus = "in_progress"
        self.pieces: list[str] = []  # text, reasoning or arguments, joined when needed

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def as_dict(self, *, opening: bool = False) -> dict[str, Any]:
        """The item now, or (`opening`) as `output_item.added` shows it: still empty."""
        text = None if opening else self.text
        if self.kind == "message":
            return wire.message_item(self.id, text, self.status)
        if self.kind == "reasoning":
            return wire.reasoning_item(self.id, text, self.status)
        return wire.function_call_item(self.id, self.call_id, self.name, text or "", self.status)

    def part(self, *, opening: bool = False) -> dict[str, Any]:
        """The content part of a message or reasoning item (empty when `opening`)."""
        text = "" if opening else self.text
        return wire.output_text(text) if self.kind == "message" else wire.reasoning_text(text)


class ResponsesEventRenderer(WireRenderer):
    wire_format = "responses"
    """One session as a Responses API stream; `response()` is the Response object so far."""

    def __init__(
        self, session_id: str, created_at: int, model: str, *, starting_after: int | None = None
    ) -> None:
        self.response_id = wire.response_id(session_id)
        self._id_suffix = session_suffix(session_id)  # for item ids
        self._created_at = created_at
        self._model = model
        self._starting_after = -1 if starting_after is None else starting_after
        self.next_sequence_number = 0
        self._status: wire.ResponseStatus = "queued"
        self._items: list[OutputItem] = []
        self._open: OutputItem | None = None
        self._usage: tuple[int, int] | None = None
        self._error: dict[str, Any] | None = None
        self._incomplete_reason: str | None = None

    # Rendering.

    def stream_events(self, event: Event) -> list[dict[str, Any]]:
        """The numbered stream events for `event`, advancing the renderer's state."""
        events = wire.numbered(self._start() + self._events(event), self.next_sequence_number)
        self.next_sequence_number += len(events)
        return events

    def payloads(self, event: Event) -> list[Payload]:
        return [(_json(item), str(item["type"])) for item in self.stream_events(event)]

    def prime(self, events: Iterable[Event]) -> None:
        for event in events:
            self.stream_events(event)

    def share_key(self) -> Hashable | None:
        """Shared once past `starting_after`: from then on it sends every frame."""
        return "responses" if self.next_sequence_number > self._starting_after else None

    def __call__(self, event: Event) -> bytes:
        """Every frame carries its sequence number as `id:`; those the client already has
        (up to `starting_after`) are rendered, to keep the count, but not sent."""
        return b"".join(
            sse.data_frame(_json(item), item["sequence_number"], item["type"])
            for item in self.stream_events(event)
            if item["sequence_number"] > self._starting_after
        )

    def error_payloads(self, error: ErrorData) -> list[Payload]:
        """`error`, then `response.failed`, numbered after the last event the client got
        (rendered and sent, or skipped as up to `starting_after`)."""
        self._error = wire.error(error.message)
        self._status = "failed"
        if self._open is not None:
            self._open.status, self._open = "incomplete", None
        failure = [
            wire.stream_error("server_error", error.code, error.message),
            wire.lifecycle("failed", self.response()),
        ]
        first = max(self.next_sequence_number, self._starting_after + 1)
        self.next_sequence_number = first + len(failure)
        return [(_json(item), str(item["type"])) for item in wire.numbered(failure, first)]

    def response(self) -> dict[str, Any]:
        usage = None if self._usage is None else wire.usage(*self._usage)
        return wire.response(
            self.response_id,
            self._created_at,
            self._model,
            status=self._status,
            output=[item.as_dict() for item in self._items],
            usage=usage,
            error=self._error,
            incomplete_reason=self._incomplete_reason,
        )

    def _start(self) -> list[dict[str, Any]]:
        if self._status != "queued":
            return []
        self._status = "in_progress"
        return [
            wire.lifecycle("created", self.response()),
            wire.lifecycle("in_progress", self.response()),
        ]

    def _events(self, event: Event) -> list[dict[str, Any]]:
        kind = event.type
        if kind is EventType.STATUS:
            return []
        data = event.decoded_data()
        if kind is EventType.DELTA:
            return self._text("message", str(data["text"]))
        if kind is EventType.REASONING:
            return self._text("reasoning", str(data["text"]))
        if kind is EventType.TOOL_CALL:
            return self._function_call(data)
        if kind is EventType.USAGE:
            self._usage = (int(data["input_tokens"]), int(data["output_tokens"]))
            return []
        if kind is EventType.DONE:
            return self._done(data)
        if kind is EventType.ERROR:
            return self._failed("failed", data)
        return self._failed("cancelled", data)

    # Output items.

    def _text(self, kind: ItemKind, text: str) -> list[dict[str, Any]]:
        events = [] if self._open and self._open.kind == kind else self._close("completed")
        if self._open is None:
            events += self._open_item(kind)
        item = self._open
        assert item is not None
        item.pieces.append(text)
        delta = wire.output_text_delta if kind == "message" else wire.reasoning_text_delta
        return events + [delta(item.id, item.index, text)]

    def _open_item(self, kind: ItemKind) -> list[dict[str, Any]]:
        item = self._open = self._add(kind)
        return [
            wire.output_item_added(item.index, item.as_dict(opening=True)),
            wire.content_part_added(item.id, item.index, item.part(opening=True)),
        ]

    def _add(self, kind: ItemKind, call_id: str = "", name: str = "") -> OutputItem:
        index = len(self._items)
        item_id = f"{_ID_PREFIXES[kind]}_{self._id_suffix}_{index}"
        item = OutputItem(kind, index, item_id, call_id, name)
        self._items.append(item)
        return item

    def _close(self, status: wire.ItemStatus) -> list[dict[str, Any]]:
        item, self._open = self._open, None
        if item is None:
            return []
        item.status = status
        done = wire.output_text_done if item.kind == "message" else wire.reasoning_text_done
        return [
            done(item.id, item.index, item.text),
            wire.content_part_done(item.id, item.index, item.part()),
            wire.output_item_done(item.index, item.as_dict()),
        ]

    def _function_call(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        events = self._close("completed")
        item = self._add("function_call", str(data["id"]), str(data["name"]))
        arguments = str(data["arguments"])
        events.append(wire.output_item_added(item.index, item.as_dict(opening=True)))
        item.pieces.append(arguments)
        item.status = "completed"
        return events + [
            wire.function_call_arguments_delta(item.id, item.index, arguments),
            wire.function_call_arguments_done(item.id, item.index, arguments),
            wire.output_item_done(item.index, item.as_dict()),
        ]

    # The end.

    def _done(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        usage = data.get("usage")
        if isinstance(usage, dict):
            self._usage = (int(usage["input_tokens"]), int(usage["output_tokens"]))
        self._incomplete_reason = wire.INCOMPLETE_REASONS.get(str(data["finish_reason"]))
        if self._incomplete_reason is None:
            return self._end("completed", "completed", "completed")
        return self._end("incomplete", "incomplete", "incomplete")

    def _failed(
        self, status: Literal["failed", "cancelled"], data: dict[str, Any]
    ) -> list[dict[str, Any]]:
        if status == "failed":
            rate_limited = data.get("upstream_status") == 429
            self._error = wire.error(str(data["message"]), rate_limited=rate_limited)
        return self._end(status, "failed", "incomplete")

    def _end(
        self, status: wire.ResponseStatus, lifecycle: str, item_status: wire.ItemStatus
    ) -> list[dict[str, Any]]:
        events = self._close(item_status)
        self._status = status
        return events + [wire.lifecycle(lifecycle, self.response())]
