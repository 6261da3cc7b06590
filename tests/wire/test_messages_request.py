"""The Anthropic Messages request: decoding (errors name the path and what is allowed)
and the translation into a `GenerationRequest` (tool_choice, passthrough), without a loop."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from relay.vocabulary import Message, NamedFunction, NamedToolChoice
from relay.wire.anthropic_to_chat import generation_request, to_relay_messages
from relay.wire.decoding import InvalidBody
from relay.wire.messages_request import OtherBlock, decode_request

USER = {"role": "user", "content": "hi"}
BLOCKS = "'text', 'image', 'document', 'tool_use', 'tool_result', 'thinking', 'redacted_thinking'"
TOOL = {"name": "f", "input_schema": {"type": "object"}}


def body(**fields: Any) -> bytes:
    return json.dumps({"model": "m", "max_tokens": 10, "messages": [USER], **fields}).encode()


def translated(**fields: Any) -> Any:
    raw = body(**fields)
    return generation_request(raw, decode_request(raw))


def refusal(**fields: Any) -> str:
    with pytest.raises(InvalidBody) as refused:
        translated(**fields)
    return str(refused.value)


def user(*blocks: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": list(blocks)}]}


def test_request_keeps_unknown_fields_and_puts_system_first() -> None:
    request = decode_request(
        body(
            system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            messages=[{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
            thinking={"type": "enabled", "budget_tokens": 1024},
            top_k=5,
            service_tier="auto",
        )
    )
    assert request.max_tokens == 10 and request.thinking is not None
    messages = to_relay_messages(request)
    assert [(message.role, message.text()) for message in messages] == [
        ("system", "be brief"),
        ("user", "hello there"),
    ]
    assert isinstance(messages[0], Message)


def test_empty_messages_are_refused_as_anthropic_refuses_them() -> None:
    """Changed on purpose: `messages: []` used to decode (and reach the upstream)."""
    with pytest.raises(InvalidBody, match=r"^messages: expected `array` of length >= 1$"):
        decode_request(b'{"model": "m", "max_tokens": 5, "messages": []}')


def test_request_errors_name_the_field() -> None:
    with pytest.raises(InvalidBody, match=r"^max_tokens: required$"):
        decode_request(b'{"model": "mock", "messages": [{"role": "user", "content": "x"}]}')


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"messages": [{"content": "x"}]},
            "messages[0].role: required; allowed: 'user', 'assistant', 'system'",
        ),
        (
            {"messages": [{"role": "tool", "content": "x"}]},
            "messages[0].role: got 'tool'; allowed: 'user', 'assistant', 'system'",
        ),
        (
            {"messages": [{"role": "user", "content": 7}]},
            "messages[0].content: expected `str | array`, got `int`",
        ),
        (user({"text": "x"}), f"messages[0].content[0].type: required; allowed: {BLOCKS}"),
        (user(5), "messages[0].content[0]: expected `object`, got `int`"),
        (
            user({"type": "image", "source": "x"}),
            "messages[0].content[0].source: expected `object`, got `str`",
        ),
        (
            user({"type": "image", "source": 5}),
            "messages[0].content[0].source: expected `object`, got `int`",
        ),
        (
            user({"type": "image", "source": {"type": "ftp"}}),
            "messages[0].content[0].source.type: got 'ftp'; allowed: 'base64', 'url', 'file'",
        ),
        (
            user({"type": "image", "source": {"type": "base64", "media_type": "image/bmp"}}),
            "messages[0].content[0].source.media_type: got 'image/bmp';"
            " allowed: 'image/gif', 'image/jpeg', 'image/png', 'image/webp'",
        ),
        (
            user({"type": "tool_result", "tool_use_id": "t", "content": 5}),
            "messages[0].content[0].content: expected `str | array | null`, got `int`",
        ),
        (
            user({"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text"}]}),
            "messages[0].content[0].content[0].text: required",
        ),
        (
            user({"type": "tool_result", "content": "x"}),
            "messages[0].content[0].tool_use_id: required",
        ),
        (
            user({"type": "tool_use", "id": "t", "name": "f", "input": "{}"}),
            "messages[0].content[0].input: expected `object`, got `str`",
        ),
        (
            {"system": [{"type": "image"}]},
            "system[0].type: got 'image'; allowed: 'text'",
        ),
        ({"max_tokens": 0}, "max_tokens: expected `int` >= 1"),
        ({"max_tokens": -1}, "max_tokens: expected `int` >= 1"),
        ({"max_tokens": -(2**63)}, "max_tokens: expected `int` >= 1"),
        ({"temperature": -1}, "temperature: expected `float` >= 0.0"),
        ({"temperature": 1e30}, "temperature: expected `float` <= 1.0"),
        ({"tools": [{"name": "f"}]}, "tools[0].input_schema: required"),
        ({"tools": [5]}, "tools[0]: expected `object`, got `int`"),
        (
            {"tool_choice": {"type": "required"}},
            "tool_choice.type: got 'required'; allowed: 'auto', 'any', 'tool', 'none'",
        ),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name: required"),
        ({"thinking": {"budget_tokens": 5}}, "thinking.type: required"),
        ({"top_k": -1}, "top_k: expected `int` >= 0"),
        ({"metadata": {"user_id": 5}}, "metadata.user_id: expected `str | null`, got `int`"),
    ],
)
def test_bad_fields_are_named_with_what_is_allowed(fields: dict[str, Any], message: str) -> None:
    assert refusal(**fields) == message


def test_server_blocks_and_tools_pass_through_as_they_came() -> None:
    server_use = {"type": "server_tool_use", "id": "srv_1", "name": "web_search", "input": {}}
    result = {"type": "web_search_tool_result", "tool_use_id": "srv_1", "content": []}
    search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    request = decode_request(
        body(
            messages=[USER, {"role": "assistant", "content": [server_use, result]}],
            tools=[TOOL, search],
        )
    )
    assistant = request.messages[1]
    assert all(isinstance(block, OtherBlock) for block in assistant.content)  # type: ignore[attr-defined]
    translated = generation_request(body(), request)
    assert translated.messages[1].content == [server_use, result]
    assert translated.tools == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}},
        search,
    ]


@pytest.mark.parametrize(
    ("choice", "expected", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "none"}, "none", None),
        ({"type": "tool", "name": "f"}, NamedToolChoice(NamedFunction("f")), None),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
        ({"type": "any", "disable_parallel_tool_use": False}, "required", True),
        (
            {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
            NamedToolChoice(NamedFunction("f")),
            False,
        ),
    ],
)
def test_tool_choice_takes_chat_words(choice: Any, expected: Any, parallel: bool | None) -> None:
    request = translated(tools=[TOOL], tool_choice=choice)
    assert (request.tool_choice, request.parallel_tool_calls) == (expected, parallel)


def test_fields_relay_does_not_interpret_pass_through_as_sent() -> None:
    thinking = {"type": "enabled", "budget_tokens": 2048}
    request = translated(
        top_k=5,
        top_p=0.9,
        thinking=thinking,
        metadata={"user_id": "u1"},
        service_tier="standard_only",
        container="c_1",
        temperature=0.2,
        stop_sequences=["END"],
        stream=True,
    )
    assert request.passthrough is not None and request.passthrough.kind == "anthropic"
    fields = {name: msgspec.json.decode(raw) for name, raw in request.passthrough.fields.items()}
    assert fields == {
        "top_k": 5,
        "top_p": 0.9,
        "thinking": thinking,
        "metadata": {"user_id": "u1"},
        "service_tier": "standard_only",
        "container": "c_1",
    }
    assert (request.temperature, request.stop, request.max_tokens) == (0.2, ["END"], 10)
    assert translated().passthrough is None


def test_a_system_message_in_the_conversation_is_a_system_message() -> None:
    messages = [USER, {"role": "system", "content": [{"type": "text", "text": "Now be terse."}]}]
    assert translated(messages=messages).messages[1] == Message("system", "Now be terse.")
