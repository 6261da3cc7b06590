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
from typing import Any

import msgspec

from relay.events import RESTARTED, ErrorData, Event, EventType
from relay.subscribers.formats import Payload, WireRenderer
from relay.wire import ui_message_stream as wire

_json = msgspec.json.Encoder().encode

_PART_KINDS = {EventType.DELTA: "text", EventType.REASONING: "reasoning"}


class UIMessageRenderer(WireRenderer):
    wire_format = "ui"
    """One session as the UI message stream of one assistant message."""

    def __init__(self, session_id: str, message_id: str, model: str) -> None:
        self.message_id = message_id
        self._session_id = session_id
        self._model = model
        self._started = False
        self._parts = 0
        self._open: tuple[str, str] | None = None  # the open part's kind and id
        self._usage = (0, 0)

    def share_key(self) -> Hashable:
        return ("ui", self.message_id)

    def payloads(self, event: Event) -> list[Payload]:
        chunks = self._start() + self._chunks(event)
        payloads: list[Payload] = [(_json(chunk), None) for chunk in chunks]
        return payloads + ([(wire.DONE, None)] if event.is_terminal else [])

    def error_payloads(self, error: ErrorData) -> list[Payload]:
        """An `error` chunk, as the AI SDK ends a stream that failed, then `[DONE]`."""
        return [(_json(wire.error(error.message)), None), (wire.DONE, None)]

    def _start(self) -> list[wire.Chunk]:
        if self._started:
            return []
        self._started = True
        metadata = {"sessionId": self._session_id, "model": self._model}
        return [wire.start(self.message_id, metadata), wire.start_step()]

    def _chunks(self, event: Event) -> list[wire.Chunk]:
        kind = event.type
        data = event.decoded_data()
        if kind in _PART_KINDS:
            return self._text(_PART_KINDS[kind], str(data["text"]))
        if kind is EventType.TOOL_CALL:
            arguments = wire.tool_input(str(data["id"]), str(data["name"]), str(data["arguments"]))
            return self._close() + arguments
        if kind is EventType.STATUS:
            return self._status(data)
        if kind is EventType.USAGE:
            self._usage = (int(data["input_tokens"]), int(data["output_tokens"]))
            return []
        if kind is EventType.DONE:
            return self._close() + [wire.finish_step(), wire.finish(self._finish_metadata(data))]
        if kind is EventType.ERROR:
            return self._close() + [wire.error(str(data["message"]))]
        return self._close() + [wire.finish_step(), wire.abort()]

    def _status(self, data: dict[str, Any]) -> list[wire.Chunk]:
        """Transient data, which leaves the open part open (a takeover that continues
        the answer goes on in the same text part). A takeover that asks again from the
        start (`restarted`) ends the step and starts another: the answer given again is
        a part of its own, after a `step-start`, so a UI can tell it from the partial one."""
        if data.get("state") != RESTARTED:
            return [wire.status(data)]
        return self._close() + [wire.finish_step(), wire.status(data), wire.start_step()]

    def _text(self, kind: str, text: str) -> list[wire.Chunk]:
        chunks: list[wire.Chunk] = []
        if self._open is None or self._open[0] != kind:
            chunks = self._close()
            self._parts += 1
            self._open = (kind, f"{kind}-{self._parts}")
            chunks.append(wire.part_start(kind, self._open[1]))
        return chunks + [wire.part_delta(kind, self._open[1], text)]

    def _close(self) -> list[wire.Chunk]:
        if self._open is None:
            return []
        (kind, part_id), self._open = self._open, None
        return [wire.part_end(kind, part_id)]

    def _finish_metadata(self, data: dict[str, Any]) -> dict[str, Any]:
        usage = data.get("usage")
        if isinstance(usage, dict):
            self._usage = (int(usage["input_tokens"]), int(usage["output_tokens"]))
        return {
            "finishReason": wire.finish_reason(str(data["finish_reason"])),
            "usage": wire.usage(*self._usage),
        }
