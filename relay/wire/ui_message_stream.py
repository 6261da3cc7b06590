"""The Vercel AI SDK's UI message stream protocol (v1): its chunks and headers. Pure
code, no I/O.

Each chunk type is a Struct, tagged by `type` as the AI SDK's `uiMessageChunkSchema`
tells them apart, with only the keys that every release of ai 5, 6 and 7 knows: ai 5.0's
schema is strict (a key it does not name fails the whole chunk), and later releases
added keys (`finish`'s `finishReason`, `abort`'s `reason`, the `tool-input-error` chunk)
that relay therefore does not send. What they would carry goes in the message metadata
instead. The stream itself is SSE, one `data: <chunk JSON>` per chunk (`encode`), ending
with `data: [DONE]`.

The chunks omit their defaults and decode strictly (`CHUNK` refuses a key it does not
name, as ai 5.0 does), so a field added here with no default is a key on the wire.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import msgspec

# What `createUIMessageStreamResponse` sends besides SSE's own headers.
HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}
DONE = b"[DONE]"

# relay's finish reasons in the AI SDK's words (its `FinishReason`).
_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "content_filter": "content-filter",
}

# The data part that carries relay's `status` events: transient (the AI SDK hands it to
# `onData` and keeps it out of the message).
STATUS_PART = "data-relay-status"


def finish_reason(relays: str) -> str:
    """relay's finish reason as the AI SDK names it; anything else is `other`."""
    return _FINISH_REASONS.get(relays, "other")


class _Wire(msgspec.Struct, rename="camel", omit_defaults=True, forbid_unknown_fields=True):
    """The AI SDK's spelling: camelCase keys, and none that it does not name."""


class Chunk(_Wire, tag_field="type"):
    """A chunk of the stream; its `type` is its class's tag."""


# The message metadata relay sends (the AI SDK's `messageMetadata`, the app's to type).


class StartMetadata(_Wire):
    session_id: str
    model: str


class LanguageModelUsage(_Wire):
    """Token counts as the AI SDK's `LanguageModelUsage` names them."""

    input_tokens: int
    output_tokens: int
    total_tokens: int


class FinishMetadata(_Wire):
    finish_reason: str  # the AI SDK's words (`finish_reason`)
    usage: LanguageModelUsage


# The message and its steps.


class Start(Chunk, tag="start"):
    message_id: str
    message_metadata: StartMetadata


class StartStep(Chunk, tag="start-step"):
    pass


class FinishStep(Chunk, tag="finish-step"):
    pass


class Finish(Chunk, tag="finish"):
    message_metadata: FinishMetadata


class ErrorChunk(Chunk, tag="error"):
    error_text: str


class Abort(Chunk, tag="abort"):
    pass


# Text and reasoning parts: opened with an id, a delta per piece, then closed.


class TextStart(Chunk, tag="text-start"):
    id: str


class TextDelta(Chunk, tag="text-delta"):
    id: str
    delta: str


class TextEnd(Chunk, tag="text-end"):
    id: str


class ReasoningStart(Chunk, tag="reasoning-start"):
    id: str


class ReasoningDelta(Chunk, tag="reasoning-delta"):
    id: str
    delta: str


class ReasoningEnd(Chunk, tag="reasoning-end"):
    id: str


class PartKind(NamedTuple):
    """A kind of streamed part: the name its ids take, and its three chunks."""

    name: str
    start: type[TextStart | ReasoningStart]
    delta: type[TextDelta | ReasoningDelta]
    end: type[TextEnd | ReasoningEnd]


TEXT = PartKind("text", TextStart, TextDelta, TextEnd)
REASONING = PartKind("reasoning", ReasoningStart, ReasoningDelta, ReasoningEnd)


# Tool calls, each complete in relay's log.


class ToolInputStart(Chunk, tag="tool-input-start"):
    tool_call_id: str
    tool_name: str


class ToolInputDelta(Chunk, tag="tool-input-delta"):
    tool_call_id: str
    input_text_delta: str


class ToolInputAvailable(Chunk, tag="tool-input-available"):
    tool_call_id: str
    tool_name: str
    input: Any  # a JSON value: the arguments parsed, or their text


# relay's statuses.


class RelayStatus(Chunk, tag=STATUS_PART):
    data: msgspec.Raw  # the `status` event's data, as the log holds it
    transient: Literal[True]  # no default, so never omitted


UIMessageChunk = (
    Start
    | StartStep
    | FinishStep
    | Finish
    | ErrorChunk
    | Abort
    | TextStart
    | TextDelta
    | TextEnd
    | ReasoningStart
    | ReasoningDelta
    | ReasoningEnd
    | ToolInputStart
    | ToolInputDelta
    | ToolInputAvailable
    | RelayStatus
)

encode = msgspec.json.Encoder().encode
# A chunk read as strictly as ai 5.0 reads it (tests; relay only writes them).
CHUNK = msgspec.json.Decoder(UIMessageChunk)


def tool_input(call_id: str, name: str, arguments: str) -> list[Chunk]:
    """A complete tool call: its start, its arguments as one delta, then its input (the
    arguments parsed; arguments that are not JSON are given as their text)."""
    try:
        parsed: Any = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        parsed = arguments
    return [
        ToolInputStart(call_id, name),
        ToolInputDelta(call_id, arguments),
        ToolInputAvailable(call_id, name, parsed),
    ]


def status(data: msgspec.Raw) -> RelayStatus:
    return RelayStatus(data, transient=True)


def usage(input_tokens: int, output_tokens: int) -> LanguageModelUsage:
    return LanguageModelUsage(input_tokens, output_tokens, input_tokens + output_tokens)
