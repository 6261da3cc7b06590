"""The Responses API request: decoding, the translation into chat messages and a
`GenerationRequest` (tool_choice, passthrough), and what relay refuses, without a loop."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest

from relay.vocabulary import Message, NamedFunction, NamedToolChoice
from relay.wire import responses_request as wire
from relay.wire.decoding import InvalidBody


def raw(**fields: Any) -> bytes:
    return json.dumps({"model": "mock", **fields}).encode()


def request(**fields: Any) -> wire.ResponsesRequest:
    return wire.decode_request(raw(**fields))


def translated(**fields: Any) -> Any:
    return wire.generation_request(raw(**fields), request(**fields))


def refused(**fields: Any) -> InvalidBody:
    with pytest.raises(InvalidBody) as refusal:
        translated(**fields)
    return refusal.value


def test_string_input_and_instructions_are_messages() -> None:
    messages = wire.to_messages(request(input="Hi", instructions="Be brief."))
    assert messages == [Message(role="system", content="Be brief."), Message("user", "Hi")]


def test_input_items_become_chat_messages() -> None:
    items = [
        {"role": "developer", "content": "Be brief."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "[]"},
        {"type": "function_call_output", "call_id": "c1", "output": "42"},
    ]
    messages = wire.to_messages(request(input=items))
    assert [m.role for m in messages] == ["system", "user", "assistant", "assistant", "tool"]
    assert messages[1].content == [{"type": "text", "text": "Hi"}]
    calls = messages[3].tool_calls or []
    assert [(c["id"], c["function"]["name"]) for c in calls] == [("c1", "f"), ("c2", "g")]
    assert (messages[4].tool_call_id, messages[4].content) == ("c1", "42")


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"content": "Hi"}, "input[0].role"),
        ({"role": "user"}, "input[0].content"),
        ({"type": "function_call", "name": "f", "arguments": "{}"}, "input[0].call_id"),
        ({"type": "function_call_output", "call_id": "c1"}, "input[0].output"),
    ],
)
def test_incomplete_input_items_name_the_field(item: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(field) + ": required"):
        wire.to_messages(request(input=[item]))


def test_function_tools_take_the_chat_shape() -> None:
    tools = [{"type": "function", "name": "f", "description": "d", "parameters": {}, "strict": 1}]
    assert wire.chat_tools(request(input="x", tools=tools).tools) == [
        {"type": "function", "function": {"name": "f", "description": "d", "parameters": {}}}
    ]
    assert wire.chat_tools(None) is None


def test_other_tools_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"tools\[1\]\.type: only 'function' tools.*'web_search'"):
        wire.chat_tools(
            request(
                input="x", tools=[{"type": "function", "name": "f"}, {"type": "web_search"}]
            ).tools
        )


# What relay cannot honour: it keeps no conversation state.


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"previous_response_id": "resp_abc"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"conversation": {"id": "conv_1"}}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ],
)
def test_server_state_is_refused_as_unsupported(fields: dict[str, Any], path: str) -> None:
    refusal = refused(**{"input": "Hi", **fields})
    assert (refusal.path, refusal.code) == (path, "unsupported_parameter")
    assert "relay keeps no" in refusal.problem or "stored at OpenAI" in refusal.problem


def test_previous_response_id_says_why_and_what_to_do() -> None:
    assert str(refused(input="Hi", previous_response_id="resp_1")) == (
        "previous_response_id: relay keeps no conversation state, so it cannot continue a"
        " response; send the earlier turns in `input`"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"input": []}, "input: expected `array` of length >= 1"),
        ({"input": 5}, "input: expected `str | array`, got `int`"),
        (
            {"input": [{"type": "web_search_call"}]},
            "input[0].type: got 'web_search_call'; allowed: 'message', 'function_call',"
            " 'function_call_output', 'reasoning', 'item_reference'",
        ),
        (
            {"input": [{"role": "tool", "content": "x"}]},
            "input[0].role: got 'tool'; allowed: 'assistant', 'developer', 'system', 'user'",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_video"}]}]},
            "input[0].content[0].type: got 'input_video'; allowed: 'input_text',"
            " 'output_text', 'refusal', 'input_image', 'input_file'",
        ),
        ({"max_output_tokens": 0}, "max_output_tokens: expected `int` >= 1"),
        ({"temperature": 3}, "temperature: expected `float` <= 2.0"),
        (
            {"tool_choice": {"type": "file_search"}},
            "tool_choice.type: got 'file_search'; allowed: 'function'",
        ),
        ({"tools": [{"type": "function"}]}, "tools[0].name: required in a function tool"),
        (
            {"text": {"format": {"type": "yaml"}}},
            "text.format.type: got 'yaml'; allowed: 'text', 'json_object', 'json_schema'",
        ),
    ],
)
def test_bad_fields_are_named_with_what_is_allowed(fields: dict[str, Any], message: str) -> None:
    assert str(refused(**{"input": "Hi", **fields})) == message


def test_images_by_url_and_files_become_chat_parts() -> None:
    content = [
        {"type": "input_image", "image_url": "https://x/cat.png", "detail": "low"},
        {"type": "input_file", "file_id": "file_1", "filename": "a.pdf"},
        {"type": "input_text", "text": "What are these?"},
    ]
    [message] = translated(input=[{"role": "user", "content": content}]).messages
    assert message.content == [
        {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}},
        {"type": "file", "file": {"file_id": "file_1", "filename": "a.pdf"}},
        {"type": "text", "text": "What are these?"},
    ]


@pytest.mark.parametrize(
    ("part", "path"),
    [
        ({"type": "input_image", "file_id": "file_1"}, "input[0].content[0].image_url"),
        ({"type": "input_file", "file_url": "https://x/a.pdf"}, "input[0].content[0].file_url"),
    ],
)
def test_what_chat_cannot_carry_is_refused_by_path(part: dict[str, Any], path: str) -> None:
    refusal = refused(input=[{"role": "user", "content": [part]}])
    assert (refusal.path, refusal.code) == (path, "unsupported_parameter")


def test_reasoning_items_are_dropped_and_outputs_hold_text_only() -> None:
    items = [
        {"role": "user", "content": "Hi"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {
            "type": "function_call_output",
            "call_id": "c1",
            "output": [{"type": "input_text", "text": "42"}],
        },
    ]
    messages = translated(input=items).messages
    assert [message.role for message in messages] == ["user", "assistant", "tool"]
    assert messages[2].content == [{"type": "text", "text": "42"}]
    image = {"type": "input_image", "image_url": "https://x/a.png"}
    output = {"type": "function_call_output", "call_id": "c1", "output": [image]}
    assert refused(input=[output]).path == "input[0].output[0].type"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ({"type": "function", "name": "f"}, NamedToolChoice(NamedFunction("f"))),
    ],
)
def test_tool_choice_takes_chat_shape(choice: Any, expected: Any) -> None:
    tools = [{"type": "function", "name": "f", "parameters": {}}]
    generation = translated(input="Hi", tools=tools, tool_choice=choice, parallel_tool_calls=True)
    assert (generation.tool_choice, generation.parallel_tool_calls) == (expected, True)


def test_fields_with_a_chat_meaning_pass_through_in_chat_words() -> None:
    schema = {"type": "object", "properties": {}}
    generation = translated(
        input="Hi",
        top_p=0.5,
        user="u1",
        metadata={"k": "v"},
        service_tier="flex",
        reasoning={"effort": "low"},
        text={"format": {"type": "json_schema", "name": "s", "schema": schema}, "verbosity": "low"},
        include=["reasoning.encrypted_content"],
        truncation="auto",
        store=False,
    )
    assert generation.passthrough is not None and generation.passthrough.kind == "openai"
    fields = {k: msgspec.json.decode(v) for k, v in generation.passthrough.fields.items()}
    assert fields == {
        "top_p": 0.5,
        "user": "u1",
        "metadata": {"k": "v"},
        "service_tier": "flex",
        "reasoning_effort": "low",
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        "verbosity": "low",
    }
    assert translated(input="Hi", include=[], store=True).passthrough is None
    plain = translated(input="Hi", text={"format": {"type": "json_object"}}).passthrough
    assert plain is not None and msgspec.json.decode(plain.fields["response_format"]) == {
        "type": "json_object"
    }


def test_the_translation_keeps_the_limits() -> None:
    generation = translated(
        input="Hi", instructions="Be brief.", max_output_tokens=7, temperature=1
    )
    assert generation.messages == [Message("system", "Be brief."), Message("user", "Hi")]
    assert (generation.max_tokens, generation.temperature) == (7, 1)
