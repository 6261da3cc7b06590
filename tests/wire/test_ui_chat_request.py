"""DefaultChatTransport's body into relay's `GenerationRequest`. Pure code."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from relay.vocabulary import Message
from relay.wire.decoding import InvalidBody, decode
from relay.wire.ui_chat_request import UIChatRequest, generation_request, response_message_id

SESSION = "s_AbCdEfGhIjKlMnOpQrStUv"


def body(*messages: dict[str, Any], **fields: Any) -> UIChatRequest:
    raw = {"id": "chat", "messages": list(messages), "trigger": "submit-message", **fields}
    return decode(msgspec.json.encode(raw), UIChatRequest)


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"id": "u", "role": "user", "parts": list(parts)}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def translated(request: UIChatRequest, default_model: str = "mock") -> list[Message]:
    return generation_request(b"", request, default_model=default_model).messages


def test_text_parts_are_the_text_and_ui_only_parts_are_left_out() -> None:
    request = body(
        {"id": "s", "role": "system", "parts": [text("Be brief.")]},
        user(text("Where do"), {"type": "data-note", "data": {}}, text("rivers go?")),
        {
            "id": "a",
            "role": "assistant",
            "parts": [{"type": "reasoning", "text": "hmm"}, text("To the sea.")],
        },
    )
    assert translated(request) == [
        Message("system", "Be brief."),
        Message("user", "Where do\nrivers go?"),
        Message("assistant", "To the sea."),
    ]


def test_files_are_content_parts() -> None:
    image = {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AA=="}
    pdf = {"type": "file", "mediaType": "application/pdf", "url": "data:x", "filename": "a.pdf"}
    [message] = translated(body(user(text("look"), image, pdf)))
    assert message.content == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
        {"type": "file", "file": {"file_data": "data:x", "filename": "a.pdf"}},
    ]


def test_answered_tool_parts_are_calls_then_results_per_step() -> None:
    assistant = {
        "id": "a1",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            text("Looking."),
            {
                "type": "tool-search",
                "toolCallId": "c1",
                "state": "output-available",
                "input": {"q": "sea"},
                "output": {"hits": 2},
            },
            {"type": "tool-search", "toolCallId": "c2", "state": "input-streaming"},
            {
                "type": "dynamic-tool",
                "toolName": "fetch",
                "toolCallId": "c3",
                "state": "output-error",
                "input": {},
                "errorText": "timed out",
            },
            {"type": "step-start"},
            text("Two hits."),
        ],
    }
    request = body(user(text("search")), assistant)
    calls = [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "search", "arguments": '{"q":"sea"}'},
        },
        {"id": "c3", "type": "function", "function": {"name": "fetch", "arguments": "{}"}},
    ]
    assert translated(request)[1:] == [
        Message("assistant", "Looking.", tool_calls=calls),
        Message("tool", '{"hits":2}', tool_call_id="c1"),
        Message("tool", "timed out", tool_call_id="c3"),
        Message("assistant", "Two hits."),
    ]
    assert response_message_id(request, SESSION) == "a1"  # the answer continues it


def test_the_body_fields_are_the_requests() -> None:
    request = body(
        user(text("hi")),
        model="mock:tokens=3",
        system="Be brief.",
        maxOutputTokens=50,
        temperature=0.5,
        appField={"anything": True},  # the app's own: ignored
    )
    generation = generation_request(b"", request)
    assert generation.model == "mock:tokens=3"
    assert (generation.max_tokens, generation.temperature) == (50, 0.5)
    assert generation.messages[0] == Message("system", "Be brief.")
    assert response_message_id(request, SESSION) == "msg_AbCdEfGhIjKlMnOpQrStUv"


def test_without_a_model_the_default_or_a_400_naming_model() -> None:
    request = body(user(text("hi")))
    assert generation_request(b"", request, default_model="mock").model == "mock"
    with pytest.raises(InvalidBody) as refused:
        generation_request(b"", request)
    assert refused.value.path == "model"


def test_a_tool_part_without_its_call_id_is_refused_by_path() -> None:
    request = body(
        user(text("hi")),
        {
            "id": "a",
            "role": "assistant",
            "parts": [{"type": "tool-x", "state": "output-available"}],
        },
    )
    with pytest.raises(InvalidBody) as refused:
        translated(request)
    assert refused.value.path == "messages[1].parts[0].toolCallId"
