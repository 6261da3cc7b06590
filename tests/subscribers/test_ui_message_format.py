"""The UI message stream renderer (the Vercel AI SDK front door). Pure code.

A resumed stream is rendered from event 1 again, so the chunks after any event must be
those an unbroken rendering gave; every chunk has only keys that ai 5.0's strict schema
(the fewest of any 5.x, 6.x or 7.x release) names; the in-band error has no `id:`.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from relay.events import (
    CancelledData,
    DoneData,
    ErrorData,
    Event,
    EventType,
    StatusData,
    TextData,
    ToolCallData,
    Usage,
    make_event,
)
from relay.subscribers.sse import in_band_error
from relay.subscribers.ui_message_format import UIMessageRenderer
from tests.sse_client import SseParser

SESSION = "s_uiuiuiuiuiuiuiuiuiuiui"
MESSAGE = "msg_uiuiuiuiuiuiuiuiuiuiui"

# ai 5.0.0's `uiMessageChunkSchema`: every chunk is a `z.strictObject` with these keys.
STRICT_KEYS = {
    "start": {"type", "messageId", "messageMetadata"},
    "start-step": {"type"},
    "text-start": {"type", "id", "providerMetadata"},
    "text-delta": {"type", "id", "delta", "providerMetadata"},
    "text-end": {"type", "id", "providerMetadata"},
    "reasoning-start": {"type", "id", "providerMetadata"},
    "reasoning-delta": {"type", "id", "delta", "providerMetadata"},
    "reasoning-end": {"type", "id", "providerMetadata"},
    "tool-input-start": {"type", "toolCallId", "toolName", "providerExecuted", "dynamic"},
    "tool-input-delta": {"type", "toolCallId", "inputTextDelta"},
    "tool-input-available": {
        "type", "toolCallId", "toolName", "input", "providerExecuted", "providerMetadata",
        "dynamic",
    },
    "finish-step": {"type"},
    "finish": {"type", "messageMetadata"},
    "error": {"type", "errorText"},
    "abort": {"type"},
    "data-relay-status": {"type", "id", "data", "transient"},
}  # fmt: skip


def log(*items: tuple[EventType, Any]) -> list[Event]:
    return [make_event(n, kind, data) for n, (kind, data) in enumerate(items, start=1)]


def chunks(body: bytes) -> list[Any]:
    return [e.data if e.data == "[DONE]" else e.json() for e in SseParser().feed(body)]


THINKING = log(
    (EventType.STATUS, StatusData("connecting", "calling the model")),
    (EventType.STATUS, StatusData("generating", "the model is answering")),
    (EventType.REASONING, TextData("hmm")),
    (EventType.DELTA, TextData("Rivers")),
    (EventType.DELTA, TextData(" flow")),
    (EventType.TOOL_CALL, ToolCallData(0, "call_1", "search", '{"q": "sea"}')),
    (EventType.TOOL_CALL, ToolCallData(1, "call_2", "search", "not json")),
    (EventType.DELTA, TextData(" on")),
    (EventType.USAGE, Usage(3, 7)),
    (EventType.DONE, DoneData("tool_calls", Usage(3, 8))),
)
FAILED = log(
    (EventType.DELTA, TextData("Riv")),
    (EventType.ERROR, ErrorData("upstream_error", "the model broke", retryable=True)),
)
CANCELLED = log(
    (EventType.REASONING, TextData("so")), (EventType.CANCELLED, CancelledData("client"))
)


def rendered(events: list[Event]) -> list[bytes]:
    renderer = UIMessageRenderer(SESSION, MESSAGE, "mock")
    return [renderer(event) for event in events]


@pytest.mark.parametrize("events", [THINKING, FAILED, CANCELLED], ids=["done", "error", "cancel"])
def test_after_any_event_a_primed_renderer_goes_on_as_the_unbroken_one(
    events: list[Event],
) -> None:
    whole = rendered(events)
    for split in range(len(events) + 1):
        renderer = UIMessageRenderer(SESSION, MESSAGE, "mock")
        renderer.prime(events[:split])
        assert [renderer(event) for event in events[split:]] == whole[split:]


def test_a_copy_made_at_any_event_goes_on_as_the_original() -> None:
    """A feed shares a deep copy of its first subscriber's renderer (relay.subscribers.feeds):
    the copy, made inside an open part, must go on in that part."""
    whole = rendered(THINKING)
    for split in range(len(THINKING) + 1):
        renderer = UIMessageRenderer(SESSION, MESSAGE, "mock")
        renderer.prime(THINKING[:split])
        shared = copy.deepcopy(renderer)
        assert [shared(event) for event in THINKING[split:]] == whole[split:]


@pytest.mark.parametrize("events", [THINKING, FAILED, CANCELLED], ids=["done", "error", "cancel"])
def test_every_chunk_has_only_the_keys_of_the_strictest_schema(events: list[Event]) -> None:
    for chunk in chunks(b"".join(rendered(events))):
        if chunk != "[DONE]":
            assert set(chunk) <= STRICT_KEYS[chunk["type"]], chunk


def test_a_message_is_its_parts_in_order_then_its_finish() -> None:
    sent = chunks(b"".join(rendered(THINKING)))
    assert [c if c == "[DONE]" else c["type"] for c in sent] == [
        "start", "start-step", "data-relay-status", "data-relay-status",
        "reasoning-start", "reasoning-delta", "reasoning-end",
        "text-start", "text-delta", "text-delta", "text-end",
        "tool-input-start", "tool-input-delta", "tool-input-available",
        "tool-input-start", "tool-input-delta", "tool-input-available",
        "text-start", "text-delta", "text-end",
        "finish-step", "finish", "[DONE]",
    ]  # fmt: skip
    assert sent[0]["messageMetadata"] == {"sessionId": SESSION, "model": "mock"}
    assert [
        c["id"] for c in sent if c != "[DONE]" and c["type"].endswith("-start") and "id" in c
    ] == [
        "reasoning-1",
        "text-2",
        "text-3",
    ]
    inputs = [c["input"] for c in sent if c != "[DONE]" and c["type"] == "tool-input-available"]
    assert inputs == [{"q": "sea"}, "not json"]
    assert sent[-2]["messageMetadata"] == {
        "finishReason": "tool-calls",
        "usage": {"inputTokens": 3, "outputTokens": 8, "totalTokens": 11},
    }


def test_a_failure_and_a_cancel_end_the_open_part_first() -> None:
    failed = chunks(b"".join(rendered(FAILED)))
    assert [c if c == "[DONE]" else c["type"] for c in failed][-3:] == [
        "text-end",
        "error",
        "[DONE]",
    ]
    assert failed[-2] == {"type": "error", "errorText": "the model broke"}
    cancelled = chunks(b"".join(rendered(CANCELLED)))
    types = [c if c == "[DONE]" else c["type"] for c in cancelled]
    assert types[-4:] == ["reasoning-end", "finish-step", "abort", "[DONE]"]


def test_an_unknown_finish_reason_is_other() -> None:
    events = log((EventType.DONE, DoneData("pause_turn")))
    finish = chunks(b"".join(rendered(events)))[-2]
    assert finish["messageMetadata"]["finishReason"] == "other"


def test_the_in_band_error_is_an_error_chunk_and_done_without_an_id() -> None:
    renderer = UIMessageRenderer(SESSION, MESSAGE, "mock")
    renderer.prime(FAILED[:1])
    body = in_band_error(renderer, ErrorData("internal_error", "it broke", retryable=False))
    frames = SseParser().feed(body)
    assert [json.loads(f.data) if f.data != "[DONE]" else f.data for f in frames] == [
        {"type": "error", "errorText": "it broke"},
        "[DONE]",
    ]
    assert all(not line.startswith("id:") for f in frames for line in f.lines)
