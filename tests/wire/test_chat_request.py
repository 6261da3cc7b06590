"""The Chat Completions request: decoding (errors name the path and what is allowed) and
the translation into a `GenerationRequest` (tool_choice, passthrough), without a loop."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from relay.vocabulary import Message, NamedFunction, NamedToolChoice
from relay.wire import chat_request as wire
from relay.wire.decoding import InvalidBody

USER = {"role": "user", "content": "hi"}
ROLES = "'system', 'developer', 'user', 'assistant', 'tool', 'function'"
CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def body(**fields: Any) -> bytes:
    return json.dumps({"model": "m", "messages": [USER], **fields}).encode()


def translated(**fields: Any) -> Any:
    raw = body(**fields)
    return wire.generation_request(raw, wire.decode_request(raw))


def refusal(**fields: Any) -> str:
    with pytest.raises(InvalidBody) as refused:
        translated(**fields)
    return str(refused.value)


def passed(request: Any) -> dict[str, Any]:
    assert request.passthrough is not None and request.passthrough.kind == "openai"
    return {name: msgspec.json.decode(value) for name, value in request.passthrough.fields.items()}


def test_request_keeps_unknown_fields_and_reads_limits() -> None:
    request = wire.decode_request(
        body(
            messages=[{"role": "user", "content": "hi", "refusal": None}],
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=50,
            max_completion_tokens=20,
            stop="END",
            n=1,
            logprobs=False,
            user="someone",
        )
    )
    assert request.stream and request.include_usage
    assert request.output_limit == 20 and request.stop_list() == ["END"]
    assert wire.to_relay_messages(request) == [Message(role="user", content="hi")]


def test_request_errors_name_the_field() -> None:
    with pytest.raises(InvalidBody, match=r"^max_tokens: expected `int \| null`, got `str`$"):
        wire.decode_request(body(max_tokens="many"))
    with pytest.raises(InvalidBody, match=r"^messages: required$"):
        wire.decode_request(b'{"model": "mock"}')


def test_every_role_becomes_a_canonical_message() -> None:
    messages = [
        {"role": "system", "content": "Be brief.", "name": "rules"},
        {"role": "developer", "content": [{"type": "text", "text": "Really."}]},
        USER,
        {"role": "assistant", "content": None, "tool_calls": [CALL], "refusal": None},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        {"role": "function", "name": "f", "content": "42"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
    ]
    assert translated(messages=messages).messages == [
        Message("system", "Be brief.", "rules"),
        Message("developer", [{"type": "text", "text": "Really."}]),
        Message("user", "hi"),
        Message("assistant", None, tool_calls=[CALL]),
        Message("tool", "42", tool_call_id="call_1"),
        Message("function", "42", "f"),
        Message("assistant", [{"type": "refusal", "refusal": "No."}]),
    ]


def test_user_parts_are_checked_and_other_types_pass_as_they_came() -> None:
    parts = [
        {"type": "text", "text": "What is this?", "cache_control": {"type": "ephemeral"}},
        {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}},
        {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
        {"type": "file", "file": {"file_id": "file_1"}},
        {"type": "video_url", "video_url": {"url": "https://x/a.mp4"}, "extra": [1]},
    ]
    [message] = translated(messages=[{"role": "user", "content": parts}]).messages
    assert message.content == parts


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"messages": [{"content": "x"}]}, f"messages[0].role: required; allowed: {ROLES}"),
        ({"messages": [{"role": "wizard"}]}, f"messages[0].role: got 'wizard'; allowed: {ROLES}"),
        (
            {"messages": [{"role": 5}]},
            f"messages[0].role: expected `str`, got `int`; allowed: {ROLES}",
        ),
        ({"messages": [5]}, "messages[0]: expected `object`, got `int`"),
        ({"messages": []}, "messages: expected `array` of length >= 1"),
        ({"messages": "hi"}, "messages: expected `array`, got `str`"),
        ({"messages": [{"role": "user"}]}, "messages[0].content: required"),
        (
            {"messages": [{"role": "user", "content": 7}]},
            "messages[0].content: expected `str | array`, got `int`",
        ),
        (
            {"messages": [{"role": "user", "content": [{"text": "x"}]}]},
            "messages[0].content[0].type: required;"
            " allowed: 'text', 'image_url', 'input_audio', 'file'",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
            "messages[0].content[0].text: expected `str`, got `int`",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]},
            "messages[0].content[0].image_url: expected `object`, got `str`",
        ),
        (
            {"messages": [{"role": "system", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].type: got 'image_url'; allowed: 'text'",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id: required"),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{**CALL, "type": "custom"}]}]},
            "messages[0].tool_calls[0].type: got 'custom'; allowed: 'function'",
        ),
        ({"max_tokens": 0}, "max_tokens: expected `int` >= 1"),
        ({"max_tokens": -(2**63)}, "max_tokens: expected `int` >= 1"),
        ({"max_completion_tokens": 2**63}, "max_completion_tokens: expected `int` <= 2147483647"),
        ({"temperature": -1}, "temperature: expected `float` >= 0.0"),
        ({"temperature": 1e30}, "temperature: expected `float` <= 2.0"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop: expected `array` of length <= 4"),
        (
            {"tool_choice": "sometimes"},
            "tool_choice: got 'sometimes'; allowed: 'auto', 'none', 'required'",
        ),
        (
            {"tool_choice": {"type": "allowed_tools"}},
            "tool_choice.type: got 'allowed_tools'; allowed: 'function'",
        ),
        ({"tool_choice": {"type": "function"}}, "tool_choice.function: required"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name: required"),
        (
            {"response_format": {"type": "xml"}},
            "response_format.type: got 'xml'; allowed: 'text', 'json_object', 'json_schema'",
        ),
        ({"seed": "x"}, "seed: expected `int | null`, got `str`"),
        ({"top_p": 2}, "top_p: expected `float` <= 1.0"),
        ({"model": ""}, "model: expected `str` of length >= 1"),
        ({"metadata": {"k": 1}}, "metadata[...]: expected `str`, got `int`"),
    ],
)
def test_bad_fields_are_named_with_what_is_allowed(fields: dict[str, Any], message: str) -> None:
    assert refusal(**fields) == message


def test_more_than_one_choice_is_refused_as_unsupported() -> None:
    with pytest.raises(InvalidBody) as refused:
        translated(n=2)
    assert (refused.value.path, refused.value.code) == ("n", "unsupported_parameter")
    assert "one choice" in refused.value.problem
    assert translated(n=1).passthrough is None


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ({"type": "function", "function": {"name": "f"}}, NamedToolChoice(NamedFunction("f"))),
    ],
)
def test_tool_choice_comes_through_in_chat_shape(choice: Any, expected: Any) -> None:
    request = translated(tools=[TOOL], tool_choice=choice, parallel_tool_calls=False)
    assert (request.tool_choice, request.parallel_tool_calls) == (expected, False)
    assert request.tools == [TOOL]


def test_fields_relay_does_not_interpret_pass_through_as_sent() -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    request = translated(
        seed=7,
        top_k=40,
        response_format=schema,
        logprobs=True,
        service_tier="flex",
        repetition_penalty=1.1,
        max_tokens=5,
        temperature=0.5,
        stream=True,
        stop=["x"],
    )
    assert passed(request) == {
        "seed": 7,
        "top_k": 40,
        "response_format": schema,
        "logprobs": True,
        "service_tier": "flex",
        "repetition_penalty": 1.1,
    }
    assert (request.max_tokens, request.temperature, request.stop) == (5, 0.5, ["x"])


def test_passed_fields_keep_their_bytes() -> None:
    raw = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "top_k":  40}'
    request = wire.generation_request(raw, wire.decode_request(raw))
    assert request.passthrough is not None
    assert bytes(request.passthrough.fields["top_k"]) == b"40"
