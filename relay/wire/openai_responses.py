"""The OpenAI Responses API wire format: requests, output items, stream events, the
Response object. Pure code, no I/O.

Builders return plain dicts shaped as OpenAI sends them (and as the official SDK's
`Response` and `ResponseStreamEvent` types parse them). Stream events are built without
their `sequence_number`: `numbered` stamps it, so that exactly one place (the renderer)
counts them. Relay answers with what its log holds; request settings that the log does
not keep (instructions, tools, temperature …) are not echoed in the Response object.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from relay.vocabulary import SESSION_ID_PREFIX, Message, session_suffix

RESPONSE_PREFIX = "resp_"

ResponseStatus = Literal["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]
ItemStatus = Literal["in_progress", "completed", "incomplete"]

# relay's finish reasons that end a response as `incomplete`, with OpenAI's reason.
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}

# Roles of the Responses API; `developer` is what OpenAI now calls `system`.
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


# Requests.


class InputPart(msgspec.Struct, kw_only=True):
    """A text part of an input message; other part types are refused by name."""

    type: Literal["input_text", "output_text"]
    text: str


class InputItem(msgspec.Struct, kw_only=True):
    """One item of `input`: a message (the default), a function call, or its output."""

    type: Literal["message", "function_call", "function_call_output"] = "message"
    role: Literal["user", "assistant", "system", "developer"] | None = None
    content: str | list[InputPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[InputPart] | None = None


class Tool(msgspec.Struct, kw_only=True):
    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ResponsesRequest(msgspec.Struct, kw_only=True):
    """The fields relay reads; SDKs send many more, which are ignored."""

    model: Annotated[str, msgspec.Meta(min_length=1)]
    input: str | Annotated[list[InputItem], msgspec.Meta(min_length=1)]
    instructions: str | None = None
    max_output_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    tools: list[Tool] | None = None
    stream: bool | None = False
    background: bool | None = False
    store: bool | None = None  # accepted: relay keeps every response for its retention


def to_messages(request: ResponsesRequest) -> list[Message]:
    """`instructions` and `input` as chat messages; ValueError names a bad item's field."""
    messages = (
        [Message(role="system", content=request.instructions)] if request.instructions else []
    )
    if isinstance(request.input, str):
        return [*messages, Message(role="user", content=request.input)]
    for index, item in enumerate(request.input):
        _add_item(messages, item, f"input[{index}]")
    return messages


def _add_item(messages: list[Message], item: InputItem, where: str) -> None:
    if item.type == "function_call":
        call = _tool_call(item, where)
        last = messages[-1] if messages else None
        if last is not None and last.role == "assistant" and last.tool_calls is not None:
            last.tool_calls.append(call)  # parallel calls are one chat message
        else:
            messages.append(Message(role="assistant", tool_calls=[call]))
    elif item.type == "function_call_output":
        kind = "a function_call_output item"
        call_id = _required(item.call_id, f"{where}.call_id", kind)
        output = _content(item.output, f"{where}.output", kind)
        messages.append(Message(role="tool", tool_call_id=call_id, content=output))
    else:
        role = _required(item.role, f"{where}.role", "a message item")
        content = _content(item.content, f"{where}.content", "a message item")
        messages.append(Message(role=_ROLES[role], content=content))


def _tool_call(item: InputItem, where: str) -> dict[str, Any]:
    kind = "a function_call item"
    function = {
        "name": _required(item.name, f"{where}.name", kind),
        "arguments": _required(item.arguments, f"{where}.arguments", kind),
    }
    call_id = _required(item.call_id, f"{where}.call_id", kind)
    return {"id": call_id, "type": "function", "function": function}


def _required(value: str | None, field: str, kind: str) -> str:
    if value is None:
        raise _missing(field, kind)
    return value


def _content(
    content: str | list[InputPart] | None, field: str, kind: str
) -> str | list[dict[str, Any]]:
    """Text, or the parts as chat text parts (which every provider reads)."""
    if content is None:
        raise _missing(field, kind)
    if isinstance(content, str):
        return content
    return [{"type": "text", "text": part.text} for part in content]


def _missing(field: str, kind: str) -> ValueError:
    return ValueError(f"{field}: required in {kind}")


def chat_tools(tools: list[Tool] | None) -> list[dict[str, Any]] | None:
    """Function tools in the Chat Completions shape that every provider reads."""
    if not tools:
        return None
    return [_chat_tool(tool, f"tools[{index}]") for index, tool in enumerate(tools)]


def _chat_tool(tool: Tool, where: str) -> dict[str, Any]:
    if tool.type != "function":
        raise ValueError(f"{where}.type: only 'function' tools are supported, got {tool.type!r}")
    function: dict[str, Any] = {"name": _required(tool.name, f"{where}.name", "a function tool")}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.parameters is not None:
        function["parameters"] = tool.parameters
    return {"type": "function", "function": function}


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
