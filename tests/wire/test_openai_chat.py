"""OpenAI Chat Completions shapes, checked against the official SDK's own types."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from relay.events import ToolCallData
from relay.providers.base import ToolCall
from relay.wire import openai_chat as wire

HEAD = ("chatcmpl-test", 1_700_000_000, "mock")


def parse_chunk(chunk: dict[str, Any]) -> ChatCompletionChunk:
    """The chunk as the SDK reads it off the wire, with no field it does not know."""
    parsed = ChatCompletionChunk.model_validate(json.loads(json.dumps(chunk)))
    assert not parsed.model_extra
    for choice in parsed.choices:
        assert not choice.model_extra
    return parsed


def test_ids_are_prefixed_and_unique() -> None:
    first, second = wire.new_completion_id(), wire.new_completion_id()
    assert first.startswith("chatcmpl-") and len(first) > 20 and first != second


def test_text_chunk_with_and_without_role() -> None:
    opening = parse_chunk(wire.text_chunk(*HEAD, "Hello", role=True))
    assert opening.id == "chatcmpl-test" and opening.object == "chat.completion.chunk"
    assert opening.choices[0].delta.role == "assistant"
    assert opening.choices[0].delta.content == "Hello"
    assert opening.choices[0].finish_reason is None
    later = parse_chunk(wire.text_chunk(*HEAD, " world"))
    assert later.choices[0].delta.role is None and later.choices[0].delta.content == " world"


def test_role_chunk_has_null_content_before_tool_calls() -> None:
    chunk = wire.role_chunk(*HEAD, content=None)
    assert chunk["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert parse_chunk(chunk).choices[0].delta.role == "assistant"


def test_reasoning_goes_in_reasoning_content() -> None:
    delta = parse_chunk(wire.reasoning_chunk(*HEAD, "thinking")).choices[0].delta
    assert delta.content is None
    assert delta.model_extra == {"reasoning_content": "thinking"}


def test_tool_call_fragments_assemble_into_one_call() -> None:
    first = parse_chunk(wire.tool_call_chunk(*HEAD, 0, call_id="call_1", name="search"))
    call = first.choices[0].delta.tool_calls
    assert call is not None and call[0].id == "call_1" and call[0].type == "function"
    assert call[0].function is not None and call[0].function.name == "search"
    fragments = ['{"query":', ' "fox"}']
    arguments = call[0].function.arguments or ""
    for fragment in fragments:
        later = parse_chunk(wire.tool_call_chunk(*HEAD, 0, arguments=fragment))
        (part,) = later.choices[0].delta.tool_calls or []
        assert part.index == 0 and part.id is None and part.type is None
        assert part.function is not None and part.function.name is None
        arguments += part.function.arguments or ""
    assert json.loads(arguments) == {"query": "fox"}


def test_finish_and_usage_chunks() -> None:
    finish = parse_chunk(wire.finish_chunk(*HEAD, "length"))
    assert finish.choices[0].finish_reason == "length"
    assert finish.choices[0].delta.content is None
    usage = parse_chunk(wire.usage_chunk(*HEAD, 4, 7))
    assert usage.choices == []
    assert usage.usage is not None
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens) == (4, 7)
    assert usage.usage.total_tokens == 11


def test_completion_with_text_and_reasoning() -> None:
    body = wire.completion(
        *HEAD,
        text="Hello world",
        reasoning="hmm",
        tool_calls=[],
        finish_reason="stop",
        prompt_tokens=3,
        completion_tokens=2,
    )
    parsed = ChatCompletion.model_validate(body)
    message = parsed.choices[0].message
    assert message.content == "Hello world" and message.tool_calls is None
    assert message.model_extra == {"reasoning_content": "hmm"}
    assert parsed.choices[0].finish_reason == "stop"
    assert parsed.usage is not None and parsed.usage.total_tokens == 5


def test_completion_with_tool_calls_from_objects_or_event_data() -> None:
    call = ToolCall(index=0, id="call_1", name="search", arguments='{"q": 1}')
    data = msgspec.to_builtins(ToolCallData(index=1, id="call_2", name="fetch", arguments="{}"))
    for tool_calls in ([call], [data], [ToolCallData(0, "call_1", "search", '{"q": 1}')]):
        body = wire.completion(
            *HEAD,
            text="",
            tool_calls=tool_calls,
            finish_reason="tool_calls",
            prompt_tokens=3,
            completion_tokens=2,
        )
        message = ChatCompletion.model_validate(body).choices[0].message
        assert message.content is None
        assert message.tool_calls is not None and len(message.tool_calls) == 1
        assert message.tool_calls[0].type == "function"


def test_error_body_shape() -> None:
    assert wire.error_body("slow down", "rate_limit_error", "rate_limited") == {
        "error": {
            "message": "slow down",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limited",
        }
    }
    assert wire.error_type_for_status(429) == "rate_limit_error"
    assert wire.error_type_for_status(503) == "server_error"
    assert wire.error_type_for_status(418) == "invalid_request_error"


def test_frames() -> None:
    chunk = wire.text_chunk(*HEAD, "a\nb")
    frame = wire.chunk_frame(chunk)
    assert frame.startswith(b"data: {") and frame.endswith(b"}\n\n") and frame.count(b"\n") == 2
    assert json.loads(frame[len(b"data: ") :]) == chunk
    assert wire.chunk_frame(chunk, event_id=7).startswith(b"id: 7\ndata: {")
    assert wire.DONE_FRAME == b"data: [DONE]\n\n"


def test_models_list_shape() -> None:
    body = wire.model_list(["mock", "mock:tools"], 1_700_000_000)
    assert body["object"] == "list"
    assert [model["id"] for model in body["data"]] == ["mock", "mock:tools"]
    model = Model.model_validate(body["data"][0])
    assert (model.id, model.object, model.owned_by) == ("mock", "model", "relay")
