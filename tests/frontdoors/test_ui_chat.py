"""The Vercel AI SDK front door (`[ui_chat] prefix`, default `/v1/ui/chat`) over real
sockets, on both stores: the UI message chunks of a text answer, of reasoning, of a tool
call, of an upstream failure and of a cancel; a chat's stream resumed from its first
chunk (on another instance, on Redis) is the live one, chunk for chunk; 204 once nothing
streams; chats are each client's; bad bodies are 400s naming the field.

tests/frontdoors/test_ui_chat_sdk.py drives the same routes with the real `ai` packages.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp
import pytest

from relay.config import load_settings
from relay.errors import ConfigError
from relay.providers.base import Finish, Provider, ProviderItem, ReasoningDelta, TextDelta
from relay.vocabulary import GenerationRequest
from tests.frontdoors.conftest import READ_TIMEOUT_S, Relay, StartRelay, keyed_clients
from tests.frontdoors.test_clients import bearer
from tests.sse_client import SseParser

PREFIX = "/v1/ui/chat"
FAST = "mock:tokens=6,tps=0,ttft_ms=0"
SLOW = "mock:tokens=120,tps=60,ttft_ms=0"
WEB_KEY = "rk_web_Ui5Ch4At3Pq9Zx"
MOBILE_KEY = "rk_mobile_Ui8Ch2At6Lm1Wv"
CLIENTS = keyed_clients({"web": WEB_KEY, "mobile": MOBILE_KEY})


def user(text: str, message_id: str = "u1") -> dict[str, Any]:
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}


def transport_body(chat_id: str, model: str, *messages: dict[str, Any]) -> dict[str, Any]:
    """What DefaultChatTransport POSTs with `body: {model}`."""
    return {
        "model": model,
        "id": chat_id,
        "messages": list(messages) or [user("where do rivers go")],
        "trigger": "submit-message",
        "messageId": None,
    }


class Stream:
    """A UI message stream read to its end: its chunks (`[DONE]` as the string)."""

    def __init__(self, status: int, headers: dict[str, str], chunks: list[Any]) -> None:
        self.status = status
        self.headers = headers
        self.chunks = chunks

    @property
    def types(self) -> list[str]:
        return [chunk["type"] if isinstance(chunk, dict) else chunk for chunk in self.chunks]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [c for c in self.chunks if isinstance(c, dict) and c["type"] == kind]

    def text(self, kind: str = "text") -> str:
        return "".join(chunk["delta"] for chunk in self.of_type(f"{kind}-delta"))


async def read_stream(response: aiohttp.ClientResponse, until: str | None = None) -> list[Any]:
    """The chunks of an open stream; with `until`, only up to the first chunk of that
    type (the stream stays open)."""
    parser = SseParser()
    chunks: list[Any] = []
    async with asyncio.timeout(READ_TIMEOUT_S):
        async for piece in response.content.iter_any():
            for event in parser.feed(piece):
                chunks.append(event.data if event.data == "[DONE]" else event.json())
                if until is not None and chunks[-1] != "[DONE]" and chunks[-1]["type"] == until:
                    return chunks
    return chunks


async def post_chat(
    relay: Relay, body: Any, key: str | None = None, prefix: str = PREFIX
) -> Stream:
    headers = bearer(key) if key else {}
    async with relay.http.post(relay.url(prefix), json=body, headers=headers) as response:
        if response.status != 200:
            return Stream(response.status, dict(response.headers), [await response.json()])
        return Stream(200, dict(response.headers), await read_stream(response))


async def resume(relay: Relay, chat_id: str, key: str | None = None) -> Stream:
    headers = bearer(key) if key else {}
    url = relay.url(f"{PREFIX}/{chat_id}/stream")
    async with relay.http.get(url, headers=headers) as response:
        chunks = await read_stream(response) if response.status == 200 else []
        return Stream(response.status, dict(response.headers), chunks)


def assert_one_message(stream: Stream) -> None:
    """The stream's frame: `start`, `start-step` … and `[DONE]` last; every part that
    starts ends, ids unique, no delta outside its part."""
    assert stream.types[:2] == ["start", "start-step"], stream.types
    assert stream.types[-1] == "[DONE]" and stream.types.count("[DONE]") == 1
    open_parts: set[str] = set()
    seen: set[str] = set()
    for chunk in stream.chunks[:-1]:
        kind = chunk["type"]
        if kind.endswith("-start") and kind != "tool-input-start":
            assert chunk["id"] not in seen, chunk
            seen.add(chunk["id"])
            open_parts.add(chunk["id"])
        elif kind.endswith("-delta") and kind != "tool-input-delta":
            assert chunk["id"] in open_parts, chunk
        elif kind.endswith("-end"):
            open_parts.remove(chunk["id"])
    assert not open_parts


@pytest.fixture
async def relay(start_relay: StartRelay) -> Relay:
    return await start_relay()


async def test_a_text_answer_is_one_message_with_the_sessions_text_and_usage(
    relay: Relay,
) -> None:
    stream = await post_chat(relay, transport_body("chat-text", FAST))
    assert stream.status == 200
    assert stream.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert stream.headers["X-Accel-Buffering"] == "no"
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    session_id = stream.headers["X-Relay-Session-Id"]
    snapshot = await relay.wait_until_ended(session_id)
    assert_one_message(stream)
    [start] = stream.of_type("start")
    assert start == {
        "type": "start",
        "messageId": "msg_" + session_id.removeprefix("s_"),
        "messageMetadata": {"sessionId": session_id, "model": FAST},
    }
    body = [t for t in stream.types if t != "data-relay-status"]
    deltas = len(stream.of_type("text-delta"))
    assert body == ["start", "start-step", "text-start"] + ["text-delta"] * deltas + [
        "text-end",
        "finish-step",
        "finish",
        "[DONE]",
    ]
    assert stream.text() == snapshot["text"]
    usage = snapshot["usage"]
    assert stream.of_type("finish") == [
        {
            "type": "finish",
            "messageMetadata": {
                "finishReason": "stop",
                "usage": {
                    "inputTokens": usage["input_tokens"],
                    "outputTokens": usage["output_tokens"],
                    "totalTokens": usage["input_tokens"] + usage["output_tokens"],
                },
            },
        }
    ]
    statuses = stream.of_type("data-relay-status")
    assert statuses and all(s["transient"] is True for s in statuses)
    assert [s["data"]["state"] for s in statuses][-1] == "generating"


class Thinker(Provider):
    """Reasons, answers, reasons again and answers again."""

    def check_model(self, model: str) -> None:
        return None

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        for item in ("think ", "hard"), ("Rivers ",), ("again",), ("go to the sea",):
            for text in item:
                yield ReasoningDelta(text) if item[0] in ("think ", "again") else TextDelta(text)
        yield Finish("stop")


async def test_reasoning_and_text_are_parts_that_open_and_close_in_turn(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(with_providers={"mock": Thinker()})
    stream = await post_chat(relay, transport_body("chat-think", "mock"))
    assert_one_message(stream)
    parts = [
        (c["type"], c.get("id"), c.get("delta"))
        for c in stream.chunks[2:-3]
        if c["type"] != "data-relay-status"
    ]
    assert parts == [
        ("reasoning-start", "reasoning-1", None),
        ("reasoning-delta", "reasoning-1", "think "),
        ("reasoning-delta", "reasoning-1", "hard"),
        ("reasoning-end", "reasoning-1", None),
        ("text-start", "text-2", None),
        ("text-delta", "text-2", "Rivers "),
        ("text-end", "text-2", None),
        ("reasoning-start", "reasoning-3", None),
        ("reasoning-delta", "reasoning-3", "again"),
        ("reasoning-end", "reasoning-3", None),
        ("text-start", "text-4", None),
        ("text-delta", "text-4", "go to the sea"),
        ("text-end", "text-4", None),
    ]


async def test_a_tool_call_is_its_input_start_delta_and_available(relay: Relay) -> None:
    stream = await post_chat(relay, transport_body("chat-tool", "mock:tools=1,tps=0,ttft_ms=0"))
    assert_one_message(stream)
    session_id = stream.headers["X-Relay-Session-Id"]
    [call] = [e.json() for e in await relay.events(session_id) if e.event == "tool_call"]
    tool = [c for c in stream.chunks[2:] if isinstance(c, dict) and c["type"].startswith("tool")]
    assert tool == [
        {"type": "tool-input-start", "toolCallId": call["id"], "toolName": call["name"]},
        {"type": "tool-input-delta", "toolCallId": call["id"], "inputTextDelta": call["arguments"]},
        {
            "type": "tool-input-available",
            "toolCallId": call["id"],
            "toolName": call["name"],
            "input": json.loads(call["arguments"]),
        },
    ]
    [finish] = stream.of_type("finish")
    assert finish["messageMetadata"]["finishReason"] == "tool-calls"


async def test_an_upstream_failure_is_an_error_chunk_with_relays_message(relay: Relay) -> None:
    stream = await post_chat(relay, transport_body("chat-fail", "mock:fail_after=2,ttft_ms=0"))
    snapshot = await relay.wait_until_ended(stream.headers["X-Relay-Session-Id"])
    assert snapshot["status"] == "failed"
    assert stream.types[-4:] == ["text-delta", "text-end", "error", "[DONE]"]
    assert stream.of_type("error") == [{"type": "error", "errorText": snapshot["error"]["message"]}]
    assert stream.text() == snapshot["text"]
    assert not stream.of_type("finish")


async def test_stop_cancels_the_chats_session_and_its_stream_ends_with_abort(
    relay: Relay,
) -> None:
    async with relay.http.post(relay.url(PREFIX), json=transport_body("chat-stop", SLOW)) as live:
        head = await read_stream(live, until="text-delta")
        async with relay.http.post(relay.url(f"{PREFIX}/chat-stop/stop")) as stopped:
            assert stopped.status == 202, await stopped.text()
            answer = await stopped.json()
        rest = await read_stream(live)
    session_id = live.headers["X-Relay-Session-Id"]
    assert answer == {"chat_id": "chat-stop", "session_id": session_id, "status": "cancelled"}
    stream = Stream(200, {}, head + rest)
    assert_one_message(stream)
    assert stream.types[-4:] == ["text-end", "finish-step", "abort", "[DONE]"]
    assert stream.of_type("abort") == [{"type": "abort"}]
    snapshot = await relay.wait_until_ended(session_id)
    assert snapshot["status"] == "cancelled" and stream.text() == snapshot["text"]
    again = await relay.http.post(relay.url(f"{PREFIX}/chat-stop/stop"))
    assert again.status == 202 and (await again.json())["status"] == "cancelled"


async def test_a_resumed_stream_is_the_live_one_chunk_for_chunk_on_any_instance(
    start_relay: StartRelay, store_url: str
) -> None:
    first = await start_relay()
    # On Redis the resume goes to another instance; in memory there is only one.
    second = await start_relay() if store_url != "memory://" else first
    async with first.http.post(first.url(PREFIX), json=transport_body("chat-r", SLOW)) as live:
        head = await read_stream(live, until="text-delta")
        resumed_task = asyncio.create_task(resume(second, "chat-r"))
        rest = await read_stream(live)
    resumed = await resumed_task
    assert resumed.status == 200
    assert resumed.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert resumed.headers["X-Relay-Session-Id"] == live.headers["X-Relay-Session-Id"]
    assert resumed.chunks == head + rest
    assert_one_message(resumed)


async def test_nothing_to_resume_is_204(relay: Relay) -> None:
    assert (await resume(relay, "never-streamed")).status == 204
    await post_chat(relay, transport_body("chat-ended", FAST))
    assert (await resume(relay, "chat-ended")).status == 204
    stop = await relay.http.post(relay.url(f"{PREFIX}/never-streamed/stop"))
    assert stop.status == 404
    assert (await stop.json())["error"]["code"] == "chat_not_found"


async def test_a_chat_streams_its_latest_message(relay: Relay) -> None:
    await post_chat(relay, transport_body("chat-turns", FAST))
    body = transport_body("chat-turns", SLOW, user("first"), user("second", "u2"))
    async with relay.http.post(relay.url(PREFIX), json=body) as live:
        await read_stream(live, until="text-delta")
        resumed = await resume(relay, "chat-turns")
    assert resumed.headers["X-Relay-Session-Id"] == live.headers["X-Relay-Session-Id"]


async def test_an_answer_after_an_assistant_message_continues_it(relay: Relay) -> None:
    assistant = {
        "id": "a1",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            {
                "type": "tool-search",
                "toolCallId": "call_1",
                "state": "output-available",
                "input": {"query": "rivers"},
                "output": {"found": 3},
            },
        ],
    }
    stream = await post_chat(
        relay, transport_body("chat-cont", FAST, user("look it up"), assistant)
    )
    assert stream.of_type("start")[0]["messageId"] == "a1"


async def test_chats_are_each_clients_own(start_relay: StartRelay) -> None:
    relay = await start_relay(clients=CLIENTS)
    assert (await post_chat(relay, transport_body("c", FAST))).status == 401
    body = transport_body("shared-id", SLOW)
    async with relay.http.post(relay.url(PREFIX), json=body, headers=bearer(WEB_KEY)) as live:
        assert live.status == 200
        await read_stream(live, until="text-delta")
        assert (await resume(relay, "shared-id", MOBILE_KEY)).status == 204
        stop = await relay.http.post(
            relay.url(f"{PREFIX}/shared-id/stop"), headers=bearer(MOBILE_KEY)
        )
        assert stop.status == 404
        assert (await resume(relay, "shared-id", WEB_KEY)).status == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": [user("x")], "model": FAST}, "id: required"),
        (transport_body("c", ""), "model: expected `str` of length >= 1"),
        ({**transport_body("c", FAST), "messages": []}, "messages: expected `array` of length"),
        (
            {**transport_body("c", FAST), "messages": [{"role": "robot", "parts": []}]},
            "messages[0].role: got 'robot'",
        ),
        (
            {
                **transport_body("c", FAST),
                "messages": [{"role": "assistant", "parts": [{"type": "tool-x", "state": "s"}]}],
            },
            "messages[0].parts[0].toolCallId: required",
        ),
        ({**transport_body("c", FAST), "id": "x" * 257}, "id: expected `str` of length <= 256"),
        ({k: v for k, v in transport_body("c", FAST).items() if k != "model"}, "model: required"),
    ],
)
async def test_a_bad_body_is_a_400_naming_the_field(
    relay: Relay, body: dict[str, Any], message: str
) -> None:
    answer = await post_chat(relay, body)
    assert answer.status == 400, answer.chunks
    [error] = answer.chunks
    assert error["error"]["message"].startswith(message), error


async def test_a_body_that_is_not_json_is_415_or_400(relay: Relay) -> None:
    async with relay.http.post(relay.url(PREFIX), data=b"{", headers={}) as response:
        assert response.status == 415
    headers = {"Content-Type": "application/json"}
    async with relay.http.post(relay.url(PREFIX), data=b"{", headers=headers) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "invalid_json"


async def test_the_prefix_and_the_default_model_are_configurable(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(ui_chat={"prefix": "/api/chat", "default_model": FAST})
    body = {k: v for k, v in transport_body("c", FAST).items() if k != "model"}
    stream = await post_chat(relay, body, prefix="/api/chat")
    assert stream.status == 200 and stream.types[-2:] == ["finish", "[DONE]"]
    assert (await post_chat(relay, body)).status == 404


@pytest.mark.parametrize("prefix", ["", "/", "api/chat", "/api/chat/", "/api//chat", "/{x}"])
def test_a_prefix_that_is_not_a_path_is_a_config_error(prefix: str) -> None:
    with pytest.raises(ConfigError, match=r"ui_chat\.prefix"):
        load_settings(None, environ={}, overrides={"ui_chat": {"prefix": prefix}})


async def test_a_page_on_a_listed_origin_may_call_it_across_origins(
    start_relay: StartRelay,
) -> None:
    origin = "https://chat.example.com"
    clients = [{**CLIENTS[0], "origins": [origin]}]
    relay = await start_relay(clients=clients)
    for path, method in [
        (PREFIX, "POST"),
        (f"{PREFIX}/c/stream", "GET"),
        (f"{PREFIX}/c/stop", "POST"),
    ]:
        preflight = await relay.http.options(
            relay.url(path),
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status == 204, (path, await preflight.text())
        assert preflight.headers["Access-Control-Allow-Origin"] == origin
        assert method in preflight.headers["Access-Control-Allow-Methods"]
    headers = {**bearer(WEB_KEY), "Origin": origin}
    body = transport_body("c-cors", FAST)
    async with relay.http.post(relay.url(PREFIX), json=body, headers=headers) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == origin
        assert (await read_stream(response))[-1] == "[DONE]"
    elsewhere = {**bearer(WEB_KEY), "Origin": "https://evil.example.com"}
    refused = await relay.http.post(relay.url(PREFIX), json=body, headers=elsewhere)
    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "origin_not_allowed"
