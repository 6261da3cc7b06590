"""What each front door hands the provider, over real HTTP: `tool_choice` in Chat's shape,
`parallel_tool_calls`, and the fields relay does not interpret as a same-format passthrough."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from relay.vocabulary import GenerationRequest, NamedFunction, NamedToolChoice
from tests.frontdoors.conftest import StartRelay
from tests.frontdoors.test_injection import ScriptedProvider

pytestmark = pytest.mark.parametrize("store_url", ["memory"], indirect=True)

USER = {"role": "user", "content": "hi"}
CHAT_TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


async def handed_over(
    start_relay: StartRelay, path: str, body: dict[str, Any]
) -> GenerationRequest:
    provider = ScriptedProvider(["ok"])
    relay = await start_relay(with_providers={"mock": provider})
    async with relay.http.post(relay.url(path), json={"model": "mock", **body}) as response:
        assert response.status < 300, await response.text()
    [request] = provider.requests
    return request


def passed(request: GenerationRequest) -> tuple[str, dict[str, Any]] | None:
    if request.passthrough is None:
        return None
    fields = {name: msgspec.json.decode(raw) for name, raw in request.passthrough.fields.items()}
    return request.passthrough.kind, fields


async def test_chat(start_relay: StartRelay) -> None:
    request = await handed_over(
        start_relay,
        "/v1/chat/completions",
        {
            "messages": [USER],
            "tools": [CHAT_TOOL],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "parallel_tool_calls": False,
            "seed": 7,
            "top_k": 3,
        },
    )
    assert (request.tool_choice, request.parallel_tool_calls) == (
        NamedToolChoice(NamedFunction("f")),
        False,
    )
    assert request.tools == [CHAT_TOOL]
    assert passed(request) == ("openai", {"seed": 7, "top_k": 3})


async def test_messages(start_relay: StartRelay) -> None:
    thinking = {"type": "enabled", "budget_tokens": 1024}
    request = await handed_over(
        start_relay,
        "/v1/messages",
        {
            "max_tokens": 20,
            "messages": [USER],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "top_k": 3,
            "thinking": thinking,
        },
    )
    assert (request.tool_choice, request.parallel_tool_calls) == ("required", False)
    assert request.tools == [CHAT_TOOL]
    assert passed(request) == ("anthropic", {"top_k": 3, "thinking": thinking})


async def test_responses(start_relay: StartRelay) -> None:
    request = await handed_over(
        start_relay,
        "/v1/responses",
        {
            "input": "hi",
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "tool_choice": "required",
            "parallel_tool_calls": True,
            "reasoning": {"effort": "low"},
            "truncation": "auto",
        },
    )
    assert (request.tool_choice, request.parallel_tool_calls) == ("required", True)
    assert request.tools == [CHAT_TOOL]
    assert passed(request) == ("openai", {"reasoning_effort": "low"})


async def test_native(start_relay: StartRelay) -> None:
    request = await handed_over(
        start_relay,
        "/v1/sessions",
        {"messages": [USER], "tools": [CHAT_TOOL], "tool_choice": "none"},
    )
    assert (request.tool_choice, request.tools, request.passthrough) == ("none", [CHAT_TOOL], None)
