"""Rendering a session's events as the Vercel AI SDK's UI message stream (v1), for the
front door at `[ui_chat] prefix` (relay/frontdoors/ui_chat.py). Pure code, no I/O.

One session is one assistant message, streamed in one step (two after a takeover that
restarted the answer):

- the first event opens it: `start` (the message's id, and its metadata `sessionId` and
  `model`), then `start-step`;
- `delta` and `reasoning` text are text and reasoning parts: a part opens
  (`text-start`/`reasoning-start` with an id) at the first text of its kind after
  something else, takes a `*-delta` per event, and closes (`*-end`) when something else
  comes; the part ids are `text-N`/`reasoning-N`, N counting the message's parts;
- a `tool_call` (complete in relay's log) is `tool-input-start`, its arguments as one
  `tool-input-delta`, then `tool-input-available`;
- `status` events are transient `data-relay-status` parts (the AI SDK hands them to
  `onData` and keeps them out of the message), which leave the open part open: across a
  takeover's seam (`taken_over`) a continued answer is the same text part. The status
  `restarted` (the new owner asks again from the start) also ends the step
  (`finish-step`) and starts another, so the partial answer and the whole one are two
  parts, the second after a `step-start` part; `usage` is kept for the end;
- `done` closes the open part and the step (`finish-step`), then `finish`, with the
  message metadata `finishReason` (the AI SDK's words) and `usage`
  (`inputTokens`, `outputTokens`, `totalTokens`);
- `error` closes the open part, then `error` with relay's message as `errorText`;
- `cancelled` closes the open part and the step, then `abort`;
- the terminal event's frames end with `[DONE]`, as `createUIMessageStreamResponse` ends.

The chunks depend only on the session, its message id and its log, so the stream a
client resumes (`GET {prefix}/{chatId}/stream`) is rendered from event 1 again and is
the live stream's, chunk for chunk: a resumed message is the whole message once.
"""

from __future__ import annotations

from collections.abc import Hashable

import msgspec

from relay.events import (
    RESTARTED,
    DoneData,
    ErrorData,
    Event,
    EventType,
    StatusData,
    TextData,
    ToolCallData,
    Usage,
)
from relay.subscribers.formats import Payload, WireRenderer
from relay.wire import ui_message_stream as wire

_PART_KINDS = {EventType.DELTA: wire.TEXT, EventType.REASONING: wire.REASONING}

# Each event type's data, decoded into its type (fields a reader here does not use, as
# a `retrying` status's or a takeover's usage count, are skipped).
_text = msgspec.json.Decoder(TextData).decode
_tool_call = msgspec.json.Decoder(ToolCallData).decode
_status = msgspec.json.Decoder(StatusData).decode
_usage = msgspec.json.Decoder(Usage).decode
_done = msgspec.json.Decoder(DoneData).decode
_error = msgspec.json.Decoder(ErrorData).decode


class UIMessageRenderer(WireRenderer):
    wire_format = "ui"
    """One session as the UI message stream of one assistant message."""

    def __init__(self, session_id: str, message_id: str, model: str) -> None:
        self.message_id = message_id
        self._session_id = session_id
        self._model = model
        self._started = False
        self._parts = 0
        self._open: tuple[EventType, str] | None = None  # the open part's event type and id
        self._usage = (0, 0)

    def share_key(self) -> Hashable:
        return ("ui", self.message_id)

    def payloads(self, event: Event) -> list[Payload]:
        chunks = self._start() + self._chunks(event)
        payloads: list[Payload] = [(wire.encode(chunk), None) for chunk in chunks]
        return payloads + ([(wire.DONE, None)] if event.is_terminal else [])

    def error_payloads(self, error: ErrorData) -> list[Payload]:
        """An `error` chunk, as the AI SDK ends a stream that failed, then `[DONE]`."""
        return [(wire.encode(wire.ErrorChunk(error.message)), None), (wire.DONE, None)]

    def _start(self) -> list[wire.Chunk]:
        if self._started:
            return []
        self._started = True
        metadata = wire.StartMetadata(self._session_id, self._model)
        return [wire.Start(self.message_id, metadata), wire.StartStep()]

    def _chunks(self, event: Event) -> list[wire.Chunk]:
        kind, data = event.type, event.data
        if kind in _PART_KINDS:
            return self._text(kind, _text(data).text)
        if kind is EventType.TOOL_CALL:
            call = _tool_call(data)
            return self._close() + wire.tool_input(call.id, call.name, call.arguments)
        if kind is EventType.STATUS:
            return self._status(_status(data).state, data)
        if kind is EventType.USAGE:
            usage = _usage(data)
            self._usage = (usage.input_tokens, usage.output_tokens)
            return []
        if kind is EventType.DONE:
            return self._close() + [wire.FinishStep(), wire.Finish(self._finish(_done(data)))]
        if kind is EventType.ERROR:
            return self._close() + [wire.ErrorChunk(_error(data).message)]
        return self._close() + [wire.FinishStep(), wire.Abort()]

    def _status(self, state: str, data: msgspec.Raw) -> list[wire.Chunk]:
        """Transient data (the event's, as the log holds it), which leaves the open part
        open (a takeover that continues the answer goes on in the same text part). A
        takeover that asks again from the start (`restarted`) ends the step and starts
        another: the answer given again is a part of its own, after a `step-start`, so a
        UI can tell it from the partial one."""
        if state != RESTARTED:
            return [wire.status(data)]
        return self._close() + [wire.FinishStep(), wire.status(data), wire.StartStep()]

    def _text(self, kind: EventType, text: str) -> list[wire.Chunk]:
        part = _PART_KINDS[kind]
        chunks: list[wire.Chunk] = []
        if self._open is None or self._open[0] is not kind:
            chunks = self._close()
            self._parts += 1
            self._open = (kind, f"{part.name}-{self._parts}")
            chunks.append(part.start(self._open[1]))
        return chunks + [part.delta(self._open[1], text)]

    def _close(self) -> list[wire.Chunk]:
        if self._open is None:
            return []
        (kind, part_id), self._open = self._open, None
        return [_PART_KINDS[kind].end(part_id)]

    def _finish(self, done: DoneData) -> wire.FinishMetadata:
        if done.usage is not None:
            self._usage = (done.usage.input_tokens, done.usage.output_tokens)
        return wire.FinishMetadata(wire.finish_reason(done.finish_reason), wire.usage(*self._usage))
