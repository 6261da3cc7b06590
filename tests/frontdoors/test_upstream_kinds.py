"""relay → the standalone mock upstream over real HTTP, through the openai and anthropic
provider kinds: matching and crossed wire formats, refusals, retries and cancellation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anthropic
import openai
import pytest
from aiohttp.test_utils import TestServer

from tests.frontdoors.conftest import Relay, StartRelay
from tests.frontdoors.test_sdk_front_doors import (
    CHAT,
    MESSAGES,
    QUESTION,
    SYSTEM,
    expected,
)
from tests.mock_upstream_server import mock_stats

MEMORY_ONLY = pytest.mark.parametrize("store_url", ["memory"], indirect=True)
pytestmark = MEMORY_ONLY  # the store is not what these tests are about


@pytest.fixture
def upstream_url(mock_upstream: TestServer) -> str:
    return str(mock_upstream.make_url("")).rstrip("/")


@pytest.fixture
async def relay(start_relay: StartRelay, upstream_url: str) -> Relay:
    upstreams = [
        {"name": "oai", "kind": "openai", "base_url": upstream_url + "/v1", "models": []},
        {"name": "ant", "kind": "anthropic", "base_url": upstream_url, "models": []},
    ]
    return await start_relay(upstreams=upstreams, generation={"idle_timeout_s": 2.0})


async def openai_stream(relay: Relay, model: str) -> tuple[str, str, str | None, Any]:
    stream = await relay.openai_sdk().chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, arguments, finish, usage = "", "", None, None
    async for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for fragment in choice.delta.tool_calls or []:
                arguments += (fragment.function.arguments or "") if fragment.function else ""
    return text, arguments, finish, usage


@pytest.mark.parametrize("upstream", ["oai", "ant"])
@pytest.mark.parametrize("tools", [False, True])
async def test_openai_clients_stream_from_every_upstream_kind(
    relay: Relay, upstream: str, tools: bool
) -> None:
    options = "mock:tokens=12,tps=0,ttft_ms=0" + (",tools" if tools else "")
    text, calls, usage = await expected(options, CHAT)
    got_text, arguments, finish, got_usage = await openai_stream(relay, f"{upstream}/{options}")
    assert got_text == text
    if tools:
        assert json.loads(arguments) == json.loads(calls[0].arguments)
    assert finish == ("tool_calls" if tools else "stop")
    assert (got_usage.prompt_tokens, got_usage.completion_tokens) == (
        usage.input_tokens,
        usage.output_tokens,
    )


@pytest.mark.parametrize("upstream", ["oai", "ant"])
@pytest.mark.parametrize("tools", [False, True])
async def test_anthropic_clients_stream_from_every_upstream_kind(
    relay: Relay, upstream: str, tools: bool
) -> None:
    options = "mock:tokens=12,tps=0,ttft_ms=0" + (",tools" if tools else "")
    text, calls, usage = await expected(options, MESSAGES)
    async with relay.anthropic_sdk().messages.stream(
        model=f"{upstream}/{options}",
        max_tokens=100,
        system=SYSTEM,
        messages=[{"role": "user", "content": QUESTION}],
    ) as stream:
        final = await stream.get_final_message()
    texts = [block.text for block in final.content if block.type == "text"]
    tool_uses = [block for block in final.content if block.type == "tool_use"]
    if tools:
        assert [t.input for t in tool_uses] == [json.loads(calls[0].arguments)]
        assert final.stop_reason == "tool_use"
    else:
        assert texts == [text] and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (
        usage.input_tokens,
        usage.output_tokens,
    )


async def test_an_upstream_refusal_before_output_is_an_http_error(relay: Relay) -> None:
    with pytest.raises(openai.AuthenticationError) as refused:
        await openai_stream(relay, "oai/mock:status=401")
    assert refused.value.status_code == 401
    with pytest.raises(anthropic.NotFoundError):
        await relay.anthropic_sdk().messages.create(
            model="ant/mock:status=404",
            max_tokens=10,
            messages=[{"role": "user", "content": QUESTION}],
        )


async def test_an_upstream_refusal_on_the_native_api_is_an_error_event(relay: Relay) -> None:
    session_id = (await relay.create(model="oai/mock:status=400"))["id"]
    snapshot = await relay.wait_until_ended(session_id)
    assert snapshot["status"] == "failed"
    assert snapshot["error"]["upstream_status"] == 400
    assert snapshot["error"]["retryable"] is False


async def test_overloaded_upstreams_are_retried_before_the_first_token(
    relay: Relay, mock_upstream: TestServer
) -> None:
    session_id = (
        await relay.create(model="oai/mock:tokens=5,tps=0,ttft_ms=0,status=503,fail_first=2")
    )["id"]
    snapshot = await relay.wait_until_ended(session_id)
    assert snapshot["status"] == "completed"
    assert len(snapshot["text"].split(" ")) == 5
    assert (await mock_stats(mock_upstream))["requests"] == 3


@pytest.mark.parametrize("upstream", ["oai", "ant"])
async def test_an_upstream_dropping_mid_stream_ends_with_a_retryable_error(
    relay: Relay, upstream: str
) -> None:
    session_id = (
        await relay.create(model=f"{upstream}/mock:tokens=20,tps=0,ttft_ms=0,disconnect_after=5")
    )["id"]
    snapshot = await relay.wait_until_ended(session_id)
    assert snapshot["status"] == "failed"
    assert snapshot["error"]["retryable"] is True
    assert len(snapshot["text"].split(" ")) == 5  # what came before the drop is kept


@pytest.mark.parametrize("upstream", ["oai", "ant"])
async def test_cancel_closes_the_upstream_request(
    relay: Relay, mock_upstream: TestServer, upstream: str
) -> None:
    session_id = (await relay.create(model=f"{upstream}/mock:tokens=5000,tps=100,ttft_ms=0"))["id"]
    async with asyncio.timeout(5):
        while not (await relay.snapshot(session_id))["text"]:
            await asyncio.sleep(0.02)
    async with relay.http.delete(relay.url(f"/v1/sessions/{session_id}")) as response:
        assert response.status == 202
    snapshot = await relay.wait_until_ended(session_id)
    assert snapshot["status"] == "cancelled"
    async with asyncio.timeout(5):
        while (await mock_stats(mock_upstream))["client_disconnects"] < 1:
            await asyncio.sleep(0.02)
    assert (await mock_stats(mock_upstream))["active"] == 0


async def test_models_lists_the_routable_models(relay: Relay) -> None:
    async with relay.http.get(relay.url("/v1/models")) as response:
        assert response.status == 200
        body = await response.json()
    assert body["object"] == "list"


async def test_default_models_list_names_the_mock(start_relay: StartRelay) -> None:
    relay = await start_relay()
    models = await relay.openai_sdk().models.list()
    assert "mock" in [model.id for model in models.data]


async def test_unknown_upstream_model_lists_what_is_routable(relay: Relay) -> None:
    async with relay.http.post(
        relay.url("/v1/sessions"),
        json={"model": "gpt-nothing", "messages": [{"role": "user", "content": "x"}]},
    ) as response:
        assert response.status == 400
        message = (await response.json())["error"]["message"]
    assert "oai/MODEL" in message and "ant/MODEL" in message
