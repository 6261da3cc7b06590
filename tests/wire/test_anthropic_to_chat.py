"""Anthropic Messages input → relay's canonical (Chat) shape, and back through the Anthropic
provider's conversion to the same Anthropic request."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from pydantic import TypeAdapter

from relay.providers.anthropic import anthropic_messages, anthropic_tools, system_prompt
from relay.vocabulary import Message
from relay.wire import anthropic_to_chat
from relay.wire.messages_request import decode_request

CHAT_MESSAGE: TypeAdapter[ChatCompletionMessageParam] = TypeAdapter(ChatCompletionMessageParam)
CHAT_TOOL: TypeAdapter[ChatCompletionToolParam] = TypeAdapter(ChatCompletionToolParam)

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}

# A conversation with every kind of block the conversion handles.
HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "I should look it up.", "signature": "c2ln"},
            {"type": "text", "text": "Let me look."},
            TOOL_USE,
        ],
    },
    {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 °C, sunny"},
            {"type": "text", "text": "And tomorrow?"},
        ],
    },
]


def decoded(system: Any = None, messages: Any = (), **fields: Any) -> Any:
    """A request body with these fields, decoded as the front door decodes it."""
    body = {"model": "m", "max_tokens": 9, "messages": list(messages) or [USER], **fields}
    if system is not None:
        body["system"] = system
    return decode_request(json.dumps(body).encode())


USER = {"role": "user", "content": "hi"}


def chat_messages(system: Any, messages: list[dict[str, Any]]) -> list[Message]:
    """`system` and `messages`, as the client sent them, in relay's canonical shape."""
    converted = anthropic_to_chat.to_relay_messages(decoded(system, messages))
    return converted if messages else converted[:-1]  # without the stand-in user message


def chat_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    return anthropic_to_chat.chat_tools(decoded(tools=tools).tools)


def as_chat(messages: list[Message]) -> list[dict[str, Any]]:
    """The messages as the OpenAI provider sends them, each valid for the SDK's types."""
    sent: list[dict[str, Any]] = msgspec.to_builtins(messages)
    for message in sent:
        CHAT_MESSAGE.validate_python(message)
    return sent


def call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"id": call_id, "type": "function", "function": function}


def test_tool_history_becomes_tool_calls_and_tool_messages() -> None:
    assert as_chat(chat_messages("Answer briefly.", HISTORY)) == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [call("toolu_1", "get_weather", {"city": "Paris"})],
        },
        {"role": "tool", "content": "18 °C, sunny", "tool_call_id": "toolu_1"},
        {"role": "user", "content": "And tomorrow?"},
    ]


def test_tool_results_come_first_in_order_and_a_bare_result_is_only_tool_messages() -> None:
    second = {**TOOL_USE, "id": "toolu_2"}
    messages = [
        {"role": "assistant", "content": [TOOL_USE, second]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "one"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "two"},
            ],
        },
    ]
    chat = as_chat(chat_messages(None, messages))
    assert chat[0] == {
        "role": "assistant",
        "tool_calls": [
            call("toolu_1", "get_weather", {"city": "Paris"}),
            call("toolu_2", "get_weather", {"city": "Paris"}),
        ],
    }
    assert chat[1:] == [
        {"role": "tool", "content": "one", "tool_call_id": "toolu_1"},
        {"role": "tool", "content": "two", "tool_call_id": "toolu_2"},
    ]


def test_tool_result_blocks_are_text_and_their_images_follow_as_user_content() -> None:
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "is_error": False,
        "content": [
            {"type": "text", "text": "the chart:"},
            {"type": "image", "source": PNG},
            {"type": "text", "text": "done"},
        ],
    }
    assert as_chat(chat_messages(None, [{"role": "user", "content": [result]}])) == [
        {"role": "tool", "content": "the chart:\ndone", "tool_call_id": "toolu_1"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ],
        },
    ]


def test_images_become_image_url_parts() -> None:
    content = [
        {"type": "image", "source": PNG},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {"type": "text", "text": "What are these?"},
    ]
    [message] = as_chat(chat_messages(None, [{"role": "user", "content": content}]))
    assert message["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "text", "text": "What are these?"},
    ]


def test_system_blocks_keep_cache_control_and_one_plain_block_is_a_string() -> None:
    cached = {"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}
    [system] = chat_messages([cached], [])
    assert (system.role, system.content) == ("system", [cached])
    [plain] = chat_messages([{"type": "text", "text": "rules", "citations": None}], [])
    assert plain.content == "rules"
    assert chat_messages("", []) == [] and chat_messages(None, []) == []


def test_an_assistant_turn_of_only_thinking_keeps_a_content_string() -> None:
    thinking = {"type": "thinking", "thinking": "hm", "signature": "c2ln"}
    [message] = chat_messages(None, [{"role": "assistant", "content": [thinking]}])
    assert (message.content, message.tool_calls) == ("", None)


def test_blocks_without_a_chat_counterpart_pass_through() -> None:
    source = {"type": "text", "media_type": "text/plain", "data": "A plain document."}
    document = {"type": "document", "source": source, "title": "notes"}
    file_image = {"type": "image", "source": {"type": "file", "file_id": "file_1"}}
    [message] = chat_messages(None, [{"role": "user", "content": [document, file_image]}])
    assert message.content == [document, file_image]


def test_tools_become_function_tools_and_server_tools_pass_through() -> None:
    server_tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    converted = chat_tools([WEATHER_TOOL, server_tool])
    assert converted == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER_TOOL["input_schema"],
                "description": "The weather in a city",
            },
        },
        server_tool,
    ]
    CHAT_TOOL.validate_python(converted[0])
    assert chat_tools(None) is None and chat_tools([]) is None


def test_the_translation_holds_the_canonical_messages_and_tools() -> None:
    body = {
        "model": "m",
        "max_tokens": 9,
        "system": "be brief",
        "messages": HISTORY,
        "tools": [WEATHER_TOOL],
    }
    raw = json.dumps(body).encode()
    request = decode_request(raw)
    translated = anthropic_to_chat.generation_request(raw, request)
    assert translated.messages == chat_messages("be brief", HISTORY)
    assert translated.tools == chat_tools([WEATHER_TOOL])
    assert (translated.model, translated.max_tokens) == ("m", 9)


# --- the round trip: the Anthropic provider rebuilds the same Anthropic request ---------


def test_tool_history_round_trips_to_the_same_anthropic_messages() -> None:
    canonical = chat_messages("Answer briefly.", HISTORY)
    assert system_prompt(canonical) == "Answer briefly."
    assert anthropic_messages(canonical) == [
        {"role": "user", "content": [{"type": "text", "text": "What is the weather in Paris?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Let me look."}, TOOL_USE]},
        HISTORY[2],  # tool_result first, then the text: exactly as sent
    ]


def test_images_cache_control_and_tools_round_trip() -> None:
    cached = {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}
    url_image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    content = [{"type": "image", "source": PNG}, url_image, cached]
    canonical = chat_messages([cached], [{"role": "user", "content": content}])
    assert system_prompt(canonical) == [cached]
    assert anthropic_messages(canonical) == [{"role": "user", "content": content}]
    tools = chat_tools([WEATHER_TOOL])
    assert tools is not None and anthropic_tools(tools) == [WEATHER_TOOL]
