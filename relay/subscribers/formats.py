"""Rendering a session's events in a provider's wire format, for live streams and resume.

A renderer is deterministic: the frames of event N depend only on events 1 … N, so a
client resuming after event N gets exactly the frames an unbroken stream would have
continued with. To resume, a renderer is first `prime`d with the events the client
already has (their output is discarded), then renders the rest.

Each relay event becomes zero or more SSE frames; only the last frame of an event
carries `id: N`, so a connection cut between two frames of one event resumes before
that event, never after half of it.

When a stream fails after its headers went out (relay's fault: the log is fine), its
renderer also makes the in-band error that ends it (`error_frame`): each format says
"failed" in its own way, and none of those frames carries an `id:`, since the error is
not an event of the log and must not move a client's resume point.

Because the frames depend only on the session and its log, the live subscribers of one
session that use the same format (`share_key`) can share one renderer: each event is
rendered once for all of them (see `relay.subscribers.feeds`).
"""

from __future__ import annotations

import abc
from collections.abc import Hashable, Iterable
from typing import ClassVar

import msgspec

from relay import sse
from relay.events import ErrorData, Event, EventType
from relay.session import SessionRecord
from relay.vocabulary import anthropic_stop_reason, openai_finish_reason, session_suffix
from relay.wire import anthropic_messages as anthropic
from relay.wire import openai_chat as openai

_json = msgspec.json.Encoder().encode

Payload = tuple[bytes, str | None]  # (JSON or literal data, SSE event name)


class WireRenderer(abc.ABC):
    wire_format: ClassVar[str]  # its name in metrics: openai, anthropic, responses

    @abc.abstractmethod
    def payloads(self, event: Event) -> list[Payload]:
        """The frames' contents for `event`, advancing the renderer's state."""

    @abc.abstractmethod
    def share_key(self) -> Hashable | None:
        """Renderers of one session with equal keys, having rendered the same events,
        render the next ones identically; None when this one's output is its own."""

    @abc.abstractmethod
    def error_payloads(self, error: ErrorData) -> list[Payload]:
        """The frames' contents of an in-band error that ends the stream."""

    def prime(self, events: Iterable[Event]) -> None:
        for event in events:
            self.payloads(event)

    def error_frame(self, error: ErrorData) -> bytes:
        """The in-band error that ends a stream which failed; no `id:` (not in the log)."""
        payloads = self.error_payloads(error)
        return b"".join(sse.data_frame(data, None, name) for data, name in payloads)

    def __call__(self, event: Event) -> bytes:
        payloads = self.payloads(event)
        last = len(payloads) - 1
        return b"".join(
            sse.data_frame(data, event.id if i == last else None, name)
            for i, (data, name) in enumerate(payloads)
        )


class ChatChunkRenderer(WireRenderer):
    wire_format = "openai"
    """OpenAI Chat Completions: `chat.completion.chunk` objects, then `[DONE]`."""

    def __init__(self, session_id: str, created: int, model: str, *, include_usage: bool) -> None:
        self.completion_id = "chatcmpl-" + session_suffix(session_id)
        self._created = created
        self._model = model
        self._include_usage = include_usage
        self._role_sent = False
        self._usage = (0, 0)

    def share_key(self) -> Hashable:
        return ("openai", self._include_usage)

    def payloads(self, event: Event) -> list[Payload]:
        data = event.decoded_data() if event.type is not EventType.STATUS else {}
        chunks = self._chunks(event.type, data)
        return [(_json(chunk), None) for chunk in chunks] + self._closing(event.type)

    def _chunks(self, kind: EventType, data: dict[str, object]) -> list[dict[str, object]]:
        head = (self.completion_id, self._created, self._model)
        if kind is EventType.DELTA:
            return [openai.text_chunk(*head, str(data["text"]), role=self._take_role())]
        if kind is EventType.REASONING:
            return [openai.reasoning_chunk(*head, str(data["text"]), role=self._take_role())]
        if kind is EventType.TOOL_CALL:
            return self._tool_call_chunks(data)
        if kind is EventType.USAGE:
            self._usage = (int(data["input_tokens"]), int(data["output_tokens"]))  # type: ignore[call-overload]
            return []
        if kind is EventType.DONE:
            return self._done_chunks(data)
        if kind in (EventType.ERROR, EventType.CANCELLED):
            return [_openai_error(kind, data)]
        return []

    def error_payloads(self, error: ErrorData) -> list[Payload]:
        """A `data: {"error": …}` chunk, as OpenAI ends a failed stream: no `[DONE]`."""
        kind = openai.error_type_for_status(500)
        return [(_json(openai.error_body(error.message, kind, error.code)), None)]

    def _take_role(self) -> bool:
        first, self._role_sent = not self._role_sent, True
        return first

    def _tool_call_chunks(self, data: dict[str, object]) -> list[dict[str, object]]:
        head = (self.completion_id, self._created, self._model)
        chunks = [openai.text_chunk(*head, "", role=True)] if self._take_role() else []
        chunks.append(
            openai.tool_call_chunk(
                *head,
                int(data["index"]),  # type: ignore[call-overload]
                call_id=str(data["id"]),
                name=str(data["name"]),
                arguments=str(data["arguments"]),
            )
        )
        return chunks

    def _done_chunks(self, data: dict[str, object]) -> list[dict[str, object]]:
        head = (self.completion_id, self._created, self._model)
        usage = data.get("usage")
        if isinstance(usage, dict):
            self._usage = (usage["input_tokens"], usage["output_tokens"])
        chunks = [openai.finish_chunk(*head, openai_finish_reason(str(data["finish_reason"])))]
        if self._include_usage:
            chunks.append(openai.usage_chunk(*head, *self._usage))
        return chunks

    @staticmethod
    def _closing(kind: EventType) -> list[Payload]:
        return [(b"[DONE]", None)] if kind is EventType.DONE else []


def _openai_error(kind: EventType, data: dict[str, object]) -> dict[str, object]:
    if kind is EventType.CANCELLED:
        return openai.error_body(f"the generation was cancelled ({data['reason']})", "cancelled")
    return openai.error_event_body(500, data)


class MessagesEventRenderer(WireRenderer):
    wire_format = "anthropic"
    """Anthropic Messages: `message_start`, content blocks, `message_delta`, `message_stop`."""

    def __init__(self, session_id: str, model: str) -> None:
        self.message_id = "msg_" + session_suffix(session_id)
        self._model = model
        self._started = False
        self._open: tuple[EventType, int] | None = None  # the open block's kind and index
        self._next_index = 0
        self._usage = (0, 0)

    def share_key(self) -> Hashable:
        return "anthropic"

    def payloads(self, event: Event) -> list[Payload]:
        events = self._start() + self._events(event)
        return [(_json(item), str(item["type"])) for item in events]

    def error_payloads(self, error: ErrorData) -> list[Payload]:
        """An `error` event, as Anthropic ends a failed stream."""
        return [(_json(_anthropic_failure(error.retryable, error.message)), "error")]

    def _start(self) -> list[dict[str, object]]:
        if self._started:
            return []
        self._started = True
        return [anthropic.message_start(self.message_id, self._model, 0)]

    def _events(self, event: Event) -> list[dict[str, object]]:
        kind = event.type
        if kind is EventType.STATUS:
            return []
        data = event.decoded_data()
        if kind in (EventType.DELTA, EventType.REASONING):
            return self._text(kind, str(data["text"]))
        if kind is EventType.TOOL_CALL:
            return self._tool_use(data)
        if kind is EventType.USAGE:
            self._usage = (data["input_tokens"], data["output_tokens"])
            return []
        if kind is EventType.DONE:
            return self._close() + self._done(data)
        return self._close() + [_anthropic_error(kind, data)]

    def _text(self, kind: EventType, text: str) -> list[dict[str, object]]:
        items = (
            [] if self._open and self._open[0] is kind else self._close() + [self._open_block(kind)]
        )
        assert self._open is not None
        index = self._open[1]
        delta = anthropic.text_delta if kind is EventType.DELTA else anthropic.thinking_delta
        return items + [delta(index, text)]

    def _open_block(self, kind: EventType) -> dict[str, object]:
        index, self._next_index = self._next_index, self._next_index + 1
        self._open = (kind, index)
        if kind is EventType.DELTA:
            return anthropic.content_block_start_text(index)
        return anthropic.content_block_start_thinking(index)

    def _tool_use(self, data: dict[str, object]) -> list[dict[str, object]]:
        items = self._close()
        index, self._next_index = self._next_index, self._next_index + 1
        return items + [
            anthropic.content_block_start_tool_use(index, str(data["id"]), str(data["name"])),
            anthropic.input_json_delta(index, str(data["arguments"])),
            anthropic.content_block_stop(index),
        ]

    def _close(self) -> list[dict[str, object]]:
        if self._open is None:
            return []
        index, self._open = self._open[1], None
        return [anthropic.content_block_stop(index)]

    def _done(self, data: dict[str, object]) -> list[dict[str, object]]:
        usage = data.get("usage")
        if isinstance(usage, dict):
            self._usage = (usage["input_tokens"], usage["output_tokens"])
        stop = anthropic_stop_reason(str(data["finish_reason"]))
        input_tokens, output_tokens = self._usage
        return [
            anthropic.message_delta(stop, output_tokens, input_tokens),
            anthropic.message_stop(),
        ]


def _anthropic_error(kind: EventType, data: dict[str, object]) -> dict[str, object]:
    if kind is EventType.CANCELLED:
        return anthropic.error_event(
            "cancelled", f"the generation was cancelled ({data['reason']})"
        )
    return _anthropic_failure(bool(data.get("retryable")), str(data["message"]))


def _anthropic_failure(retryable: bool, message: str) -> dict[str, object]:
    return anthropic.error_event("overloaded_error" if retryable else "api_error", message)


# A session's renderers: ids, `created` and `model` come from its record, so every
# rendering of a session (live, resumed, whole) matches.


def chat_renderer(record: SessionRecord, *, include_usage: bool) -> ChatChunkRenderer:
    return ChatChunkRenderer(
        record.id, int(record.created_at), record.model, include_usage=include_usage
    )


def messages_renderer(record: SessionRecord) -> MessagesEventRenderer:
    return MessagesEventRenderer(record.id, record.model)
