"""OpenAI Responses API shapes and their rendering from a session's log, checked against
the official SDK's own types (`Response`, `ResponseStreamEvent`)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter

from relay.events import (
    CancelledData,
    DoneData,
    ErrorData,
    Event,
    EventData,
    EventType,
    StatusData,
    TextData,
    ToolCallData,
    Usage,
    make_event,
)
from relay.subscribers.responses_format import ResponsesEventRenderer
from relay.wire import openai_responses as wire
from tests.sse_client import SseParser

STREAM_EVENT: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)
SESSION = "s_AAAAAAAAAAAAAAAAAAAAAA"
HEAD = (SESSION, 1_700_000_000, "mock")


def assert_no_extras(model: BaseModel) -> None:
    """Every field relay sends is one the SDK knows, at every depth."""
    assert not model.model_extra, model.model_extra
    for name in type(model).model_fields:
        value = getattr(model, name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, BaseModel):
                assert_no_extras(item)


def parse_event(event: dict[str, Any]) -> ResponseStreamEvent:
    """The event as the SDK reads it off the wire."""
    parsed = STREAM_EVENT.validate_python(json.loads(json.dumps(event)))
    assert_no_extras(parsed)
    return parsed


def parse_response(body: dict[str, Any]) -> Response:
    parsed = Response.model_validate(json.loads(json.dumps(body)))
    assert_no_extras(parsed)
    return parsed


def log(*items: tuple[EventType, EventData]) -> list[Event]:
    return [make_event(index, kind, data) for index, (kind, data) in enumerate(items, 1)]


def render(events: list[Event]) -> tuple[ResponsesEventRenderer, list[dict[str, Any]]]:
    renderer = ResponsesEventRenderer(*HEAD)
    rendered = [item for event in events for item in renderer.stream_events(event)]
    return renderer, rendered


STARTED = [
    (EventType.STATUS, StatusData("connecting")),
    (EventType.STATUS, StatusData("generating")),
]
TEXT_LOG = log(
    *STARTED,
    (EventType.DELTA, TextData("Hello")),
    (EventType.DELTA, TextData(" world")),
    (EventType.USAGE, Usage(3, 2)),
    (EventType.DONE, DoneData("stop", Usage(3, 2))),
)
MIXED_LOG = log(
    *STARTED,
    (EventType.REASONING, TextData("Let me think.")),
    (EventType.DELTA, TextData("Looking it up.")),
    (EventType.TOOL_CALL, ToolCallData(0, "call_1", "search", '{"q": "fox"}')),
    (EventType.DONE, DoneData("tool_calls", Usage(4, 9))),
)


# Ids and shapes.


def test_response_ids_map_to_session_ids() -> None:
    assert wire.response_id(SESSION) == "resp_" + SESSION[2:]
    assert wire.session_id(wire.response_id(SESSION)) == SESSION
    assert wire.session_id("msg_x") is None
    assert wire.session_id("resp_") is None


def test_a_response_object_parses_with_the_sdk() -> None:
    body = wire.response(
        "resp_1",
        1,
        "mock",
        status="completed",
        output=[
            wire.reasoning_item("rs_1", "hmm", "completed"),
            wire.message_item("msg_1", "Hi", "completed"),
            wire.function_call_item("fc_1", "call_1", "f", "{}", "completed"),
        ],
        usage=wire.usage(3, 4),
    )
    parsed = parse_response(body)
    assert parsed.output_text == "Hi"
    assert parsed.usage is not None and parsed.usage.total_tokens == 7
    failed = wire.response("resp_1", 1, "m", status="failed", output=[], error=wire.error("x"))
    assert parse_response(failed).error is not None


def test_every_stream_event_builder_parses_with_the_sdk() -> None:
    body = wire.response("resp_1", 1, "mock", status="in_progress", output=[])
    events = [
        wire.lifecycle("created", body),
        wire.output_item_added(0, wire.message_item("msg_1", None, "in_progress")),
        wire.content_part_added("msg_1", 0, wire.output_text("")),
        wire.output_text_delta("msg_1", 0, "Hi"),
        wire.output_text_done("msg_1", 0, "Hi"),
        wire.content_part_done("msg_1", 0, wire.output_text("Hi")),
        wire.output_item_done(0, wire.message_item("msg_1", "Hi", "completed")),
        wire.content_part_added("rs_1", 1, wire.reasoning_text("")),
        wire.reasoning_text_delta("rs_1", 1, "hmm"),
        wire.reasoning_text_done("rs_1", 1, "hmm"),
        wire.function_call_arguments_delta("fc_1", 2, "{}"),
        wire.function_call_arguments_done("fc_1", 2, "{}"),
        wire.lifecycle("incomplete", body),
    ]
    numbered = wire.numbered(events, 7)
    assert [parse_event(event).sequence_number for event in numbered] == list(range(7, 20))
    assert [event["type"] for event in numbered] == [event["type"] for event in events]


# Rendering a log.


def test_a_text_answer_renders_the_full_event_sequence() -> None:
    renderer, events = render(TEXT_LOG)
    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    parsed = [parse_event(event) for event in events]
    assert [event.sequence_number for event in parsed] == list(range(len(events)))
    assert events[0]["response"]["status"] == "in_progress"
    completed = parsed[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == "Hello world"
    assert completed.response.status == "completed"
    assert completed.response.usage is not None
    assert (completed.response.usage.input_tokens, completed.response.usage.output_tokens) == (3, 2)
    assert renderer.response() == events[-1]["response"]


def test_reasoning_text_and_tool_calls_are_items_in_order() -> None:
    _, events = render(MIXED_LOG)
    for event in events:
        parse_event(event)
    added = [
        (e["output_index"], e["item"]["type"])
        for e in events
        if e["type"].endswith("added") and "item" in e
    ]
    assert added == [(0, "reasoning"), (1, "message"), (2, "function_call")]
    done = [e for e in events if e["type"] == "response.output_item.done"]
    assert [e["output_index"] for e in done] == [0, 1, 2]
    assert all(e["item"]["status"] == "completed" for e in done)
    call = done[2]["item"]
    assert (call["call_id"], call["name"], json.loads(call["arguments"])) == (
        "call_1",
        "search",
        {"q": "fox"},
    )
    final = parse_event(events[-1])
    assert final.type == "response.completed"
    assert [item.type for item in final.response.output] == [
        "reasoning",
        "message",
        "function_call",
    ]


def test_a_cut_output_is_incomplete() -> None:
    _, events = render(
        log(*STARTED, (EventType.DELTA, TextData("a b")), (EventType.DONE, DoneData("length")))
    )
    final = parse_event(events[-1])
    assert final.type == "response.incomplete"
    assert final.response.status == "incomplete"
    assert final.response.incomplete_details is not None
    assert final.response.incomplete_details.reason == "max_output_tokens"
    assert events[-2]["item"]["status"] == "incomplete"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (ErrorData("upstream_error", "boom", True), "server_error"),
        (ErrorData("upstream_rate_limited", "slow down", True, 429), "rate_limit_exceeded"),
    ],
)
def test_an_error_fails_the_response(data: ErrorData, code: str) -> None:
    _, events = render(
        log(*STARTED, (EventType.DELTA, TextData("partial")), (EventType.ERROR, data))
    )
    final = parse_event(events[-1])
    assert final.type == "response.failed"
    assert final.response.status == "failed"
    assert final.response.error is not None
    assert (final.response.error.code, final.response.error.message) == (code, data.message)
    assert final.response.output_text == "partial"


def test_a_cancel_ends_with_status_cancelled() -> None:
    renderer, events = render(
        log(
            *STARTED,
            (EventType.DELTA, TextData("x")),
            (EventType.CANCELLED, CancelledData("client")),
        )
    )
    final = parse_event(events[-1])
    assert final.type == "response.failed"
    assert final.response.status == "cancelled" and final.response.error is None
    assert renderer.response()["status"] == "cancelled"


def test_the_response_object_as_of_now() -> None:
    renderer = ResponsesEventRenderer(*HEAD)
    queued = parse_response(renderer.response())
    assert (queued.status, queued.output, queued.id) == ("queued", [], wire.response_id(SESSION))
    renderer.prime(TEXT_LOG[:3])
    running = parse_response(renderer.response())
    assert running.status == "in_progress"
    assert running.output_text == "Hello"
    assert running.output[0].status == "in_progress"


def test_frames_carry_their_sequence_number_as_id() -> None:
    renderer = ResponsesEventRenderer(*HEAD)
    frames = SseParser().feed(b"".join(renderer(event) for event in TEXT_LOG))
    assert [frame.id for frame in frames] == [str(n) for n in range(len(frames))]
    assert all(frame.event == json.loads(frame.data)["type"] for frame in frames)


@pytest.mark.parametrize("events", [TEXT_LOG, MIXED_LOG], ids=["text", "mixed"])
def test_resuming_after_any_sequence_number_sends_exactly_the_rest(events: list[Event]) -> None:
    unbroken = ResponsesEventRenderer(*HEAD)
    frames = SseParser().feed(b"".join(unbroken(event) for event in events))
    for cut in range(-1, len(frames)):
        resumed = ResponsesEventRenderer(*HEAD, starting_after=None if cut < 0 else cut)
        rest = SseParser().feed(b"".join(resumed(event) for event in events))
        assert [f.key() for f in rest] == [f.key() for f in frames[cut + 1 :]]
