"""Every provider format across a takeover's seam: the `taken_over` status in the middle
of the log, text and tool calls after it, and usage that says `takeovers`. A reader of
Chat Completions gets one `chat.completion.chunk` stream, of Messages one message (its
content-block indices going on), of Responses one response. Pure: no I/O.

The same with the official SDKs reading a live relay is tests/scaleout/test_takeover.py."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from relay.events import Event, EventType
from relay.subscribers.formats import ChatChunkRenderer, MessagesEventRenderer, WireRenderer
from relay.subscribers.responses_format import ResponsesEventRenderer

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
LOG = [
    Event(n, EventType(kind), msgspec.Raw(msgspec.json.encode(data)))
    for n, (kind, data) in enumerate(ITEMS, start=1)
]


def rendered(renderer: WireRenderer) -> list[tuple[str | None, dict[str, Any] | str]]:
    payloads = [payload for event in LOG for payload in renderer.payloads(event)]
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
