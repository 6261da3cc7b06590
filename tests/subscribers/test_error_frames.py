"""The in-band error that ends a failed stream, in each format. Pure code.

None of these frames has an `id:` line: the error is not an event of the log, so it
must not move a client's resume point.
"""

from __future__ import annotations

from relay.events import ErrorData, EventType, TextData, make_event
from relay.subscribers.formats import ChatChunkRenderer, MessagesEventRenderer
from relay.subscribers.responses_format import ResponsesEventRenderer
from relay.subscribers.sse import STREAM_FAILED, in_band_error, native_error_frame, native_frame
from tests.sse_client import SseEvent, SseParser

SESSION = "s_framesframesframesfram"
EVENTS = [make_event(i, EventType.DELTA, TextData(f" word{i}")) for i in (1, 2)]
FAILED = ErrorData("internal_error", "it broke", retryable=False)


def frames(body: bytes) -> list[SseEvent]:
    parsed = SseParser().feed(body)
    assert all(not line.startswith("id:") for frame in parsed for line in frame.lines)
    return parsed


def test_relays_own_error_event_has_its_data_and_no_id() -> None:
    (frame,) = frames(native_error_frame(FAILED))
    assert (frame.event, frame.json()) == (
        "error",
        {"code": "internal_error", "message": "it broke", "retryable": False},
    )
    assert in_band_error(native_frame, FAILED) == native_error_frame(FAILED)


def test_openai_chat_ends_with_an_error_chunk_and_no_done() -> None:
    renderer = ChatChunkRenderer(SESSION, 0, "mock", include_usage=False)
    renderer.prime(EVENTS)
    (frame,) = frames(in_band_error(renderer, FAILED))
    error = {"message": "it broke", "type": "server_error", "param": None, "code": "internal_error"}
    assert (frame.event, frame.json()) == ("message", {"error": error})


def test_anthropic_ends_with_an_error_event() -> None:
    renderer = MessagesEventRenderer(SESSION, "mock")
    renderer.prime(EVENTS)
    (frame,) = frames(in_band_error(renderer, FAILED))
    body = {"type": "error", "error": {"type": "api_error", "message": "it broke"}}
    assert (frame.event, frame.json()) == ("error", body)
    retryable = ErrorData("upstream_error", "busy", retryable=True)
    (frame,) = frames(renderer.error_frame(retryable))
    assert frame.json()["error"]["type"] == "overloaded_error"


def test_responses_ends_with_error_then_response_failed_numbered_on() -> None:
    renderer = ResponsesEventRenderer(SESSION, 0, "mock")
    sent = SseParser().feed(b"".join(renderer(event) for event in EVENTS))
    error, failed = frames(in_band_error(renderer, STREAM_FAILED))
    assert [error.event, failed.event] == ["error", "response.failed"]
    assert [f.json()["sequence_number"] for f in (error, failed)] == [len(sent), len(sent) + 1]
    assert error.json()["error"] == {
        "type": "server_error",
        "code": "internal_error",
        "message": STREAM_FAILED.message,
        "param": None,
    }
    response = failed.json()["response"]
    assert (response["status"], response["error"]["code"]) == ("failed", "server_error")
    # The message that was open when it failed is in the response, marked incomplete.
    assert [item["status"] for item in response["output"]] == ["incomplete"]
    assert response["output"][0]["content"][0]["text"] == " word1 word2"


def test_responses_numbers_a_failure_after_what_the_client_skipped() -> None:
    renderer = ResponsesEventRenderer(SESSION, 0, "mock", starting_after=100)
    assert b"".join(renderer(event) for event in EVENTS) == b""  # it has all of that
    numbers = [f.json()["sequence_number"] for f in frames(renderer.error_frame(FAILED))]
    assert numbers == [101, 102]
