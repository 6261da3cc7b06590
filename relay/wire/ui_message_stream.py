"""The Vercel AI SDK's UI message stream protocol (v1): its chunks and headers. Pure
code, no I/O.

Builders return the chunks as the AI SDK's `uiMessageChunkSchema` parses them, with only
the keys that every release of ai 5, 6 and 7 knows: ai 5.0's schema is strict (a key it
does not name fails the whole chunk), and later releases added keys (`finish`'s
`finishReason`, `abort`'s `reason`, the `tool-input-error` chunk) that relay therefore
does not send. What they would carry goes in the message metadata instead. The stream
itself is SSE, one `data: <chunk JSON>` per chunk, ending with `data: [DONE]`.
"""

from __future__ import annotations

from typing import Any

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

Chunk = dict[str, Any]


def finish_reason(relays: str) -> str:
    """relay's finish reason as the AI SDK names it; anything else is `other`."""
    return _FINISH_REASONS.get(relays, "other")


def start(message_id: str, metadata: dict[str, Any]) -> Chunk:
    return {"type": "start", "messageId": message_id, "messageMetadata": metadata}


def start_step() -> Chunk:
    return {"type": "start-step"}


def finish_step() -> Chunk:
    return {"type": "finish-step"}


def part_start(kind: str, part_id: str) -> Chunk:
    """`text-start` or `reasoning-start`."""
    return {"type": f"{kind}-start", "id": part_id}


def part_delta(kind: str, part_id: str, delta: str) -> Chunk:
    return {"type": f"{kind}-delta", "id": part_id, "delta": delta}


def part_end(kind: str, part_id: str) -> Chunk:
    return {"type": f"{kind}-end", "id": part_id}


def tool_input(call_id: str, name: str, arguments: str) -> list[Chunk]:
    """A complete tool call: its start, its arguments as one delta, then its input (the
    arguments parsed; arguments that are not JSON are given as their text)."""
    try:
        parsed: Any = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        parsed = arguments
    return [
        {"type": "tool-input-start", "toolCallId": call_id, "toolName": name},
        {"type": "tool-input-delta", "toolCallId": call_id, "inputTextDelta": arguments},
        {"type": "tool-input-available", "toolCallId": call_id, "toolName": name, "input": parsed},
    ]


def finish(metadata: dict[str, Any]) -> Chunk:
    return {"type": "finish", "messageMetadata": metadata}


def error(text: str) -> Chunk:
    return {"type": "error", "errorText": text}


def abort() -> Chunk:
    return {"type": "abort"}


def status(data: dict[str, Any]) -> Chunk:
    return {"type": STATUS_PART, "data": data, "transient": True}


def usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    """Token counts as the AI SDK's `LanguageModelUsage` names them."""
    return {
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens,
    }
