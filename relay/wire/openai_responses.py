"""The OpenAI Responses API wire format: output items, stream events, the Response
object. Pure code, no I/O. Requests are `relay.wire.responses_request`'s.

Builders return plain dicts shaped as OpenAI sends them (and as the official SDK's
`Response` and `ResponseStreamEvent` types parse them). Stream events are built without
their `sequence_number`: `numbered` stamps it, so that exactly one place (the renderer)
counts them. Relay answers with what its log holds; request settings that the log does
not keep (instructions, tools, temperature …) are not echoed in the Response object.
"""

from __future__ import annotations

from typing import Any, Literal

from relay.vocabulary import SESSION_ID_PREFIX, session_suffix

RESPONSE_PREFIX = "resp_"

ResponseStatus = Literal["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]
ItemStatus = Literal["in_progress", "completed", "incomplete"]

# relay's finish reasons that end a response as `incomplete`, with OpenAI's reason.
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}

# Ids.


def response_id(session_id: str) -> str:
    return RESPONSE_PREFIX + session_suffix(session_id)


def session_id(response_id: str) -> str | None:
    """The session a response id names; None when it is not a relay response id."""
    if not response_id.startswith(RESPONSE_PREFIX) or len(response_id) == len(RESPONSE_PREFIX):
        return None
    return SESSION_ID_PREFIX + response_id.removeprefix(RESPONSE_PREFIX)


# Output items and their parts.


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def reasoning_text(text: str) -> dict[str, Any]:
    return {"type": "reasoning_text", "text": text}


def message_item(item_id: str, text: str | None, status: ItemStatus) -> dict[str, Any]:
    """An assistant message; `text` None is the empty item that opens a stream."""
    content = [] if text is None else [output_text(text)]
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def reasoning_item(item_id: str, text: str | None, status: ItemStatus) -> dict[str, Any]:
    content = [] if text is None else [reasoning_text(text)]
    return {"id": item_id, "type": "reasoning", "status": status, "summary": [], "content": content}


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: ItemStatus
) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


# The Response object.


def usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def error(message: str, *, rate_limited: bool = False) -> dict[str, Any]:
    """A failed response's `error`; OpenAI's codes name no upstream failure but these two."""
    return {"code": "rate_limit_exceeded" if rate_limited else "server_error", "message": message}


def response(
    response_id: str,
    created_at: int,
    model: str,
    *,
    status: ResponseStatus,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    incomplete_reason: str | None = None,
) -> dict[str, Any]:
    incomplete = None if incomplete_reason is None else {"reason": incomplete_reason}
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": None,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "temperature": None,
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "truncation": "disabled",
        "usage": usage,
        "metadata": {},
    }


# Stream events, without `sequence_number` (see `numbered`).


def lifecycle(kind: str, response: dict[str, Any]) -> dict[str, Any]:
    """`response.created`, `.in_progress`, `.completed`, `.incomplete` or `.failed`."""
    return {"type": f"response.{kind}", "response": response}


def stream_error(error_type: str, code: str, message: str) -> dict[str, Any]:
    """The `error` stream event as OpenAI sends it, the error nested under `error` (the
    reference shows `code` and `message` at the top; recorded OpenAI streams nest them,
    and a nested `error` is what both official SDKs raise their APIError on)."""
    error = {"type": error_type, "code": code, "message": message, "param": None}
    return {"type": "error", "error": error}


def output_item_added(output_index: int, item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "response.output_item.added", "output_index": output_index, "item": item}


def output_item_done(output_index: int, item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "response.output_item.done", "output_index": output_index, "item": item}


def content_part_added(item_id: str, output_index: int, part: dict[str, Any]) -> dict[str, Any]:
    return _in_part("response.content_part.added", item_id, output_index, part=part)


def content_part_done(item_id: str, output_index: int, part: dict[str, Any]) -> dict[str, Any]:
    return _in_part("response.content_part.done", item_id, output_index, part=part)


def output_text_delta(item_id: str, output_index: int, delta: str) -> dict[str, Any]:
    return _in_part("response.output_text.delta", item_id, output_index, delta=delta, logprobs=[])


def output_text_done(item_id: str, output_index: int, text: str) -> dict[str, Any]:
    return _in_part("response.output_text.done", item_id, output_index, text=text, logprobs=[])


def reasoning_text_delta(item_id: str, output_index: int, delta: str) -> dict[str, Any]:
    return _in_part("response.reasoning_text.delta", item_id, output_index, delta=delta)


def reasoning_text_done(item_id: str, output_index: int, text: str) -> dict[str, Any]:
    return _in_part("response.reasoning_text.done", item_id, output_index, text=text)


def _in_part(kind: str, item_id: str, output_index: int, **fields: Any) -> dict[str, Any]:
    """An event about the one content part relay gives an item (`content_index` 0)."""
    return {
        "type": kind,
        "item_id": item_id,
        "output_index": output_index,
        "content_index": 0,
        **fields,
    }


def function_call_arguments_delta(item_id: str, output_index: int, delta: str) -> dict[str, Any]:
    return {
        "type": "response.function_call_arguments.delta",
        "item_id": item_id,
        "output_index": output_index,
        "delta": delta,
    }


def function_call_arguments_done(item_id: str, output_index: int, arguments: str) -> dict[str, Any]:
    return {
        "type": "response.function_call_arguments.done",
        "item_id": item_id,
        "output_index": output_index,
        "arguments": arguments,
    }


def numbered(events: list[dict[str, Any]], first: int) -> list[dict[str, Any]]:
    """The events with `sequence_number` first, first + 1, … (after `type`, as OpenAI)."""
    return [
        {"type": event["type"], "sequence_number": first + offset, **event}
        for offset, event in enumerate(events)
    ]
