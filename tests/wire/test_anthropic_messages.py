"""Anthropic Messages shapes, checked against the official SDK's own types."""

from __future__ import annotations

import json
from typing import Any

import pytest
from anthropic.types import Message as AnthropicMessage
from anthropic.types import RawMessageStreamEvent
from pydantic import BaseModel, TypeAdapter

from relay.wire import anthropic_messages as wire

STREAM_EVENT: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)


def parse_event(event: dict[str, Any]) -> RawMessageStreamEvent:
    """The event as the SDK reads it off the wire, with no field it does not know."""
    parsed = STREAM_EVENT.validate_python(json.loads(json.dumps(event)))
    assert_no_extras(parsed)
    return parsed


def assert_no_extras(model: BaseModel) -> None:
    assert not model.model_extra, model.model_extra
    for name in type(model).model_fields:
        value = getattr(model, name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, BaseModel):
                assert_no_extras(item)


def test_ids_are_prefixed_and_unique() -> None:
    first, second = wire.new_message_id(), wire.new_message_id()
    assert first.startswith("msg_") and len(first) > 20 and first != second


def test_message_start_holds_an_empty_message_and_input_usage() -> None:
    event = parse_event(wire.message_start("msg_1", "mock", 12))
    assert event.type == "message_start"
    assert event.message.id == "msg_1" and event.message.role == "assistant"
    assert event.message.content == [] and event.message.stop_reason is None
    assert (event.message.usage.input_tokens, event.message.usage.output_tokens) == (12, 0)


def test_content_block_starts() -> None:
    text = parse_event(wire.content_block_start_text(0))
    assert text.type == "content_block_start" and text.index == 0
    assert text.content_block.type == "text" and text.content_block.text == ""
    thinking = parse_event(wire.content_block_start_thinking(1))
    assert thinking.type == "content_block_start"
    assert thinking.content_block.type == "thinking"
    tool = parse_event(wire.content_block_start_tool_use(2, "toolu_1", "search"))
    assert tool.type == "content_block_start" and tool.content_block.type == "tool_use"
    assert (tool.content_block.id, tool.content_block.name) == ("toolu_1", "search")
    assert tool.content_block.input == {}


def test_deltas() -> None:
    text = parse_event(wire.text_delta(0, "Hello"))
    assert text.type == "content_block_delta" and text.delta.type == "text_delta"
    assert text.delta.text == "Hello"
    thinking = parse_event(wire.thinking_delta(1, "hmm"))
    assert thinking.type == "content_block_delta" and thinking.delta.type == "thinking_delta"
    assert thinking.delta.thinking == "hmm"
    signature = parse_event(wire.signature_delta(1, "sig"))
    assert signature.type == "content_block_delta"
    assert signature.delta.type == "signature_delta"
    partial = parse_event(wire.input_json_delta(2, '{"q": '))
    assert partial.type == "content_block_delta" and partial.delta.type == "input_json_delta"
    assert partial.delta.partial_json == '{"q": '
    assert parse_event(wire.content_block_stop(2)).type == "content_block_stop"


def test_message_delta_carries_stop_reason_and_cumulative_usage() -> None:
    event = parse_event(wire.message_delta("max_tokens", 30, 12))
    assert event.type == "message_delta"
    assert event.delta.stop_reason == "max_tokens" and event.delta.stop_sequence is None
    assert (event.usage.output_tokens, event.usage.input_tokens) == (30, 12)
    without_input = parse_event(wire.message_delta("end_turn", 5))
    assert without_input.type == "message_delta" and without_input.usage.input_tokens is None
    assert parse_event(wire.message_stop()).type == "message_stop"


def test_ping_and_error_events() -> None:
    # The SDK skips `ping` and raises on `error` before its types see them: plain shapes.
    assert wire.ping() == {"type": "ping"}
    assert wire.error_event("overloaded_error", "busy") == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "busy"},
    }
    assert wire.error_body("not_found_error", "no") == wire.error_event("not_found_error", "no")
    assert wire.error_type_for_status(529) == "overloaded_error"
    assert wire.error_type_for_status(503) == "api_error"
    assert wire.error_type_for_status(422) == "invalid_request_error"


def test_whole_message() -> None:
    content = [
        wire.thinking_block("hmm", "sig"),
        wire.text_block("Hello"),
        wire.tool_use_block("toolu_1", "search", {"q": "fox"}),
    ]
    body = wire.message("msg_1", "mock", content, "tool_use", 12, 30)
    parsed = AnthropicMessage.model_validate(body)
    assert_no_extras(parsed)
    assert [block.type for block in parsed.content] == ["thinking", "text", "tool_use"]
    assert parsed.stop_reason == "tool_use"
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens) == (12, 30)


def test_event_frame_names_the_event() -> None:
    event = wire.text_delta(0, "a\nb")
    frame = wire.event_frame(event)
    assert frame.startswith(b"event: content_block_delta\ndata: {") and frame.endswith(b"}\n\n")
    assert frame.count(b"\n") == 3
    assert json.loads(frame.split(b"data: ", 1)[1]) == event
    assert wire.event_frame(event, event_id=3).startswith(b"id: 3\nevent: content_block_delta\n")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"q": "fox"}', {"q": "fox"}),
        ('{"q": "fo', {"q": "fo"}),
        ('{"q": "fox", "limit"', {"q": "fox"}),
        ("", {}),
        ("[1, 2]", {}),
        ("not json", {}),
    ],
)
def test_tool_input_of_cut_arguments_is_what_they_hold(
    arguments: str, expected: dict[str, Any]
) -> None:
    block = wire.tool_use_block("toolu_1", "search", wire.tool_input(arguments))
    assert block["input"] == expected
    body = wire.message("msg_1", "mock", [block], "max_tokens", 1, 2)
    assert AnthropicMessage.model_validate(body).content[0].type == "tool_use"
