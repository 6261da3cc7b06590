"""Conversations with tool history crossing wire formats: the unmodified SDKs → relay → the
standalone mock upstream over real HTTP, checking what the upstream received
(`/_mock/stats` `last_request`); and the upstream's `max_tokens_field`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from tests.frontdoors.conftest import Relay, StartRelay
from tests.frontdoors.test_sdk_front_doors import SYSTEM, expected
from tests.mock_upstream_server import mock_stats
from tests.wire.test_anthropic_to_chat import chat_messages

pytestmark = pytest.mark.parametrize("store_url", ["memory"], indirect=True)

MODEL = "mock:tokens=8,tps=0,ttft_ms=0"
QUESTION = "What is the weather in Paris?"
FOLLOW_UP = "And tomorrow?"
RESULT = "18 °C, sunny"
ARGUMENTS = {"city": "Paris"}
LIMIT_FIELDS = ("max_tokens", "max_completion_tokens")
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}

ANTHROPIC_TOOL = {"name": "get_weather", "description": "The weather", "input_schema": SCHEMA}
CHAT_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "The weather", "parameters": SCHEMA},
}
TOOL_USE = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": ARGUMENTS}
TOOL_CALL = {
    "id": "toolu_01",
    "type": "function",
    "function": {"name": "get_weather", "arguments": json.dumps(ARGUMENTS)},
}

# The same conversation as each SDK's client sends it.
ANTHROPIC_HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": QUESTION},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "A tool knows.", "signature": "c2lnbmF0dXJl"},
            {"type": "text", "text": "Let me look."},
            TOOL_USE,
        ],
    },
    {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "content": RESULT},
            {"type": "text", "text": FOLLOW_UP},
        ],
    },
]
CHAT_HISTORY: list[dict[str, Any]] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": QUESTION},
    {"role": "assistant", "content": "Let me look.", "tool_calls": [TOOL_CALL]},
    {"role": "tool", "tool_call_id": "toolu_01", "content": RESULT},
    {"role": "user", "content": FOLLOW_UP},
]

# What an Anthropic upstream must receive for it, from either front door.
ANTHROPIC_SENT: list[dict[str, Any]] = [
    {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
    {"role": "assistant", "content": [{"type": "text", "text": "Let me look."}, TOOL_USE]},
    {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "content": RESULT},
            {"type": "text", "text": FOLLOW_UP},
        ],
    },
]


@pytest.fixture
async def relay(start_relay: StartRelay, mock_upstream: TestServer) -> Relay:
    url = str(mock_upstream.make_url("")).rstrip("/")
    upstreams = [
        {"name": "oai", "kind": "openai", "base_url": url + "/v1"},
        {"name": "ant", "kind": "anthropic", "base_url": url},
        {
            "name": "reasoner",
            "kind": "openai",
            "base_url": url + "/v1",
            "max_tokens_field": "max_completion_tokens",
        },
    ]
    return await start_relay(upstreams=upstreams, generation={"idle_timeout_s": 2.0})


async def last_request(mock_upstream: TestServer) -> dict[str, Any]:
    sent: dict[str, Any] = (await mock_stats(mock_upstream))["last_request"]
    return sent


async def ask_with_anthropic(relay: Relay, upstream: str, max_tokens: int = 100) -> Any:
    async with relay.anthropic_sdk().messages.stream(
        model=f"{upstream}/{MODEL}",
        max_tokens=max_tokens,
        system=SYSTEM,
        messages=ANTHROPIC_HISTORY,  # type: ignore[arg-type]
        tools=[ANTHROPIC_TOOL],  # type: ignore[list-item]
    ) as stream:
        return await stream.get_final_message()


@pytest.mark.parametrize("upstream", ["oai", "ant"])
async def test_anthropic_clients_with_tool_history_reach_every_upstream_kind(
    relay: Relay, upstream: str
) -> None:
    text, _, usage = await expected(MODEL, chat_messages(SYSTEM, ANTHROPIC_HISTORY))
    final = await ask_with_anthropic(relay, upstream)
    assert [block.text for block in final.content if block.type == "text"] == [text]
    assert final.stop_reason == "end_turn"
    # The mock counts the words it received: the whole history arrived, on either kind.
    assert (final.usage.input_tokens, final.usage.output_tokens) == (
        usage.input_tokens,
        usage.output_tokens,
    )


async def test_an_openai_upstream_receives_tool_calls_and_tool_messages(
    relay: Relay, mock_upstream: TestServer
) -> None:
    await ask_with_anthropic(relay, "oai")
    sent = await last_request(mock_upstream)
    assert sent["messages"] == CHAT_HISTORY
    assert sent["tools"] == [CHAT_TOOL]
    assert sent["max_tokens"] == 100


async def test_an_anthropic_upstream_receives_the_same_blocks_back(
    relay: Relay, mock_upstream: TestServer
) -> None:
    await ask_with_anthropic(relay, "ant")
    sent = await last_request(mock_upstream)
    assert sent["system"] == SYSTEM
    assert sent["messages"] == ANTHROPIC_SENT  # thinking dropped, all else as the client sent it
    assert sent["tools"] == [ANTHROPIC_TOOL]


async def test_openai_clients_with_tool_history_reach_an_anthropic_upstream(
    relay: Relay, mock_upstream: TestServer
) -> None:
    completion = await relay.openai_sdk().chat.completions.create(
        model=f"ant/{MODEL}",
        messages=CHAT_HISTORY,  # type: ignore[arg-type]
        tools=[CHAT_TOOL],  # type: ignore[list-item]
    )
    text, _, _ = await expected(MODEL, chat_messages(SYSTEM, ANTHROPIC_HISTORY))
    assert completion.choices[0].message.content == text
    sent = await last_request(mock_upstream)
    assert sent["system"] == SYSTEM
    assert sent["messages"] == ANTHROPIC_SENT
    assert sent["tools"] == [ANTHROPIC_TOOL]


@pytest.mark.parametrize(
    ("upstream", "field"), [("oai", "max_tokens"), ("reasoner", "max_completion_tokens")]
)
async def test_the_output_limit_goes_under_the_upstreams_max_tokens_field(
    relay: Relay, mock_upstream: TestServer, upstream: str, field: str
) -> None:
    final = await ask_with_anthropic(relay, upstream, max_tokens=5)
    sent = await last_request(mock_upstream)
    assert {name: sent[name] for name in LIMIT_FIELDS if name in sent} == {field: 5}
    # The upstream understood the limit: it cut the 8-token answer at 5.
    assert (final.usage.output_tokens, final.stop_reason) == (5, "max_tokens")
