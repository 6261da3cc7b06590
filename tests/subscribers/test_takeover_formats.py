"""Every provider format across a takeover's seam: the `taken_over` status in the middle
of the log, text and tool calls after it, and usage that says `takeovers`. A reader of
Chat Completions gets one `chat.completion.chunk` stream, of Messages one message (its
content-block indices going on), of Responses one response, of the AI SDK's UI message
stream one message whose text part goes on across the seam (and, after a `restarted`,
a second step holding the answer given again). Pure: no I/O.

The same with the official SDKs reading a live relay is tests/scaleout/test_takeover.py."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from relay.events import Event, EventType
from relay.subscribers.formats import ChatChunkRenderer, MessagesEventRenderer, WireRenderer
from relay.subscribers.responses_format import ResponsesEventRenderer
from relay.subscribers.ui_message_format import UIMessageRenderer
from tests.subscribers.test_ui_message_format import STRICT_KEYS

SESSION = "s_AAAAAAAAAAAAAAAAAAAAAA"
ITEMS: list[tuple[str, dict[str, Any]]] = [
    ("status", {"state": "connecting", "message": "calling the model"}),
    ("status", {"state": "generating", "message": "the model is answering"}),
    ("delta", {"text": "Hel"}),
    ("tool_call", {"index": 0, "id": "call_a", "name": "look", "arguments": "{}"}),
    ("delta", {"text": "lo"}),
    ("status", {"state": "taken_over", "message": "another continues the answer"}),
    ("status", {"state": "connecting", "message": "calling the model"}),
    ("status", {"state": "generating", "message": "the model is answering"}),
    ("delta", {"text": " world"}),
    ("tool_call", {"index": 1, "id": "call_b", "name": "find", "arguments": '{"q":1}'}),
    ("usage", {"input_tokens": 9, "output_tokens": 4, "takeovers": 1}),
    ("done", {"finish_reason": "tool_calls",
              "usage": {"input_tokens": 9, "output_tokens": 4, "takeovers": 1}}),
]  # fmt: skip
# A takeover that asked again from the start: the whole answer after `restarted`.
RESTARTED_ITEMS: list[tuple[str, dict[str, Any]]] = [
    ("status", {"state": "generating", "message": "the model is answering"}),
    ("delta", {"text": "Hel"}),
    ("delta", {"text": "lo"}),
    ("status", {"state": "taken_over", "message": "another answers again"}),
    ("status", {"state": "restarted", "message": "the answer starts again"}),
    ("status", {"state": "generating", "message": "the model is answering"}),
    ("delta", {"text": "Hello"}),
    ("delta", {"text": " world"}),
    ("done", {"finish_reason": "stop",
              "usage": {"input_tokens": 6, "output_tokens": 5, "takeovers": 1}}),
]  # fmt: skip


def log_of(items: list[tuple[str, dict[str, Any]]]) -> list[Event]:
    return [
        Event(n, EventType(kind), msgspec.Raw(msgspec.json.encode(data)))
        for n, (kind, data) in enumerate(items, start=1)
    ]


LOG = log_of(ITEMS)
RESTARTED_LOG = log_of(RESTARTED_ITEMS)


def rendered(
    renderer: WireRenderer, log: list[Event] = LOG
) -> list[tuple[str | None, dict[str, Any] | str]]:
    payloads = [payload for event in log for payload in renderer.payloads(event)]
    return [(name, json.loads(data) if data != b"[DONE]" else "[DONE]") for data, name in payloads]


def test_chat_completions_is_one_chunk_stream() -> None:
    chunks = rendered(ChatChunkRenderer(SESSION, 0, "mock", include_usage=True))
    bodies = [body for _, body in chunks if isinstance(body, dict)]
    assert {body["id"] for body in bodies} == {"chatcmpl-" + SESSION[2:]}
    deltas = [body["choices"][0]["delta"] for body in bodies if body["choices"]]
    assert [d.get("role") for d in deltas].count("assistant") == 1
    assert "".join(d.get("content") or "" for d in deltas) == "Hello world"
    calls = [call for d in deltas for call in d.get("tool_calls", [])]
    assert [(c["index"], c["id"]) for c in calls] == [(0, "call_a"), (1, "call_b")]
    finishes = [b["choices"][0]["finish_reason"] for b in bodies if b["choices"]]
    assert [f for f in finishes if f] == ["tool_calls"]
    assert bodies[-1]["usage"]["prompt_tokens"] == 9 and chunks[-1][1] == "[DONE]"


def test_messages_is_one_message_whose_block_indices_go_on() -> None:
    events = [body for _, body in rendered(MessagesEventRenderer(SESSION, "mock"))]
    assert isinstance(events[0], dict)
    types = [e["type"] for e in events if isinstance(e, dict)]
    assert types.count("message_start") == 1 and types[-1] == "message_stop"
    assert types.count("message_stop") == 1
    starts = [e for e in events if isinstance(e, dict) and e["type"] == "content_block_start"]
    assert [s["index"] for s in starts] == [0, 1, 2, 3]
    assert [s["content_block"]["type"] for s in starts] == ["text", "tool_use", "text", "tool_use"]
    text = "".join(
        e["delta"]["text"]
        for e in events
        if isinstance(e, dict) and e["type"] == "content_block_delta" and "text" in e["delta"]
    )
    assert text == "Hello world"


def test_responses_is_one_response() -> None:
    renderer = ResponsesEventRenderer(SESSION, 0, "mock")
    types = [body["type"] for _, body in rendered(renderer) if isinstance(body, dict)]
    assert types.count("response.created") == 1 and types[-1] == "response.completed"
    response = renderer.response()
    assert response["status"] == "completed"
    texts = [part["text"] for item in response["output"] if item["type"] == "message"
             for part in item["content"]]  # fmt: skip
    assert "".join(texts) == "Hello world"
    calls = [item["call_id"] for item in response["output"] if item["type"] == "function_call"]
    assert calls == ["call_a", "call_b"]


def ui_chunks(log: list[Event]) -> list[dict[str, Any]]:
    renderer = UIMessageRenderer(SESSION, "msg_" + SESSION[2:], "mock")
    chunks = [body for _, body in rendered(renderer, log)]
    assert chunks[-1] == "[DONE]"
    bodies = [chunk for chunk in chunks if isinstance(chunk, dict)]
    for body in bodies:  # what ai 5.0's strict schema takes
        assert set(body) <= STRICT_KEYS[body["type"]], body
    return bodies


def ui_parts(chunks: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The parts a UI message stream makes, as the AI SDK's `processUIMessageStream`
    makes them: a `step-start` per step, a text part per `text-start` (its deltas
    appended), a tool part per call; transient data parts are not kept."""
    parts: list[tuple[str, str]] = []
    texts: dict[str, int] = {}  # a text part's id: its index in `parts`
    for chunk in chunks:
        if chunk["type"] == "start-step":
            parts.append(("step-start", ""))
        elif chunk["type"] == "text-start":
            texts[chunk["id"]] = len(parts)
            parts.append(("text", ""))
        elif chunk["type"] == "text-delta":
            index = texts[chunk["id"]]
            parts[index] = ("text", parts[index][1] + chunk["delta"])
        elif chunk["type"] == "tool-input-available":
            parts.append(("tool-" + chunk["toolName"], chunk["toolCallId"]))
        elif chunk["type"] == "data-relay-status":
            assert chunk["transient"] is True
    return parts


def test_the_ui_message_stream_is_one_message_whose_text_part_goes_on() -> None:
    chunks = ui_chunks(LOG)
    types = [chunk["type"] for chunk in chunks]
    assert types.count("start") == types.count("finish") == 1
    assert types.count("start-step") == types.count("finish-step") == 1
    assert ui_parts(chunks) == [
        ("step-start", ""), ("text", "Hel"), ("tool-look", "call_a"),
        ("text", "lo world"), ("tool-find", "call_b"),
    ]  # fmt: skip
    # The seam's statuses come between two deltas of the same part, which they leave open.
    seam = next(i for i, c in enumerate(chunks) if c.get("data", {}).get("state") == "taken_over")
    before = next(c for c in reversed(chunks[:seam]) if c["type"].startswith("text-"))
    after = next(c for c in chunks[seam:] if c["type"].startswith("text-"))
    assert (before["type"], after["type"]) == ("text-delta", "text-delta")
    assert before["id"] == after["id"]
    assert chunks[-1]["messageMetadata"]["usage"] == {
        "inputTokens": 9, "outputTokens": 4, "totalTokens": 13,
    }  # fmt: skip


def test_a_restart_in_the_ui_message_stream_is_a_second_step_holding_the_whole_answer() -> None:
    chunks = ui_chunks(RESTARTED_LOG)
    types = [chunk["type"] for chunk in chunks]
    assert types.count("start") == types.count("finish") == 1
    assert ui_parts(chunks) == [
        ("step-start", ""), ("text", "Hello"), ("step-start", ""), ("text", "Hello world"),
    ]  # fmt: skip
    restarted = types.index("data-relay-status", types.index("text-end"))
    assert types[restarted - 2 : restarted + 2] == [
        "text-end", "finish-step", "data-relay-status", "start-step",
    ]  # fmt: skip
    assert chunks[restarted]["data"]["state"] == "restarted"


@pytest.mark.parametrize("log", [LOG, RESTARTED_LOG], ids=["continued", "restarted"])
def test_a_ui_reader_resuming_anywhere_across_the_seam_gets_the_unbroken_chunks(
    log: list[Event],
) -> None:
    """A reader that resumes is rendered from event 1 again (`prime`): whatever side of
    the seam it joins at, its chunks go on as an unbroken reader's."""
    unbroken = UIMessageRenderer(SESSION, "msg_x", "mock")
    whole = [unbroken(event) for event in log]
    for split in range(len(log) + 1):
        renderer = UIMessageRenderer(SESSION, "msg_x", "mock")
        renderer.prime(log[:split])
        assert [renderer(event) for event in log[split:]] == whole[split:]
