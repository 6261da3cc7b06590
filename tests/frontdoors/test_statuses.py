"""The `status` events of a model generation, over real sockets: relay → the standalone
mock upstream through an `openai`-kind upstream. `queued` while the upstream's one
connection is taken, `connecting`, `retrying` with its attempt and delay, `generating`;
the provider-format streams of the same sessions carry none of them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from tests.frontdoors.conftest import Relay, StartRelay
from tests.mock_upstream_server import mock_stats
from tests.sse_client import SseEvent

MEMORY_ONLY = pytest.mark.parametrize("store_url", ["memory"], indirect=True)

FAST = "oai/mock:tokens=5,tps=0,ttft_ms=0"
SLOW = "oai/mock:tokens=5,tps=10,ttft_ms=0"  # half a second on its connection
FAILS_ONCE = "oai/mock:tokens=5,tps=0,ttft_ms=0,fail_first=1,retry_after=0.2"  # 503 first

ANTHROPIC_EVENTS = {
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
}


async def start(start_relay: StartRelay, mock_upstream: TestServer, **upstream: Any) -> Relay:
    base_url = str(mock_upstream.make_url("/v1"))
    settings = {"name": "oai", "kind": "openai", "base_url": base_url, "models": [], **upstream}
    return await start_relay(upstreams=[settings])


def statuses(events: list[SseEvent]) -> list[dict[str, Any]]:
    return [json.loads(event.data) for event in events if event.event == "status"]


def states(events: list[SseEvent]) -> list[str]:
    return [status["state"] for status in statuses(events)]


async def until_generating(relay: Relay, session_id: str) -> None:
    async with relay.subscribe(session_id) as reader:
        while (event := await reader.next_event()) is not None:
            if event.event == "status" and json.loads(event.data)["state"] == "generating":
                return
    raise AssertionError(f"{session_id} ended without generating")


async def test_a_session_says_connecting_then_generating_before_its_text(
    start_relay: StartRelay, mock_upstream: TestServer
) -> None:
    relay = await start(start_relay, mock_upstream)
    created = await relay.create(FAST)
    events = await relay.events(created["id"])
    kinds = [event.event for event in events]
    assert kinds[:3] == ["status", "status", "delta"]
    assert kinds[-1] == "done"
    assert statuses(events) == [
        {"state": "connecting", "message": "calling the model"},
        {"state": "generating", "message": "the model is answering"},
    ]


@MEMORY_ONLY
async def test_a_session_waiting_for_the_one_connection_is_queued_then_connecting(
    start_relay: StartRelay, mock_upstream: TestServer
) -> None:
    relay = await start(start_relay, mock_upstream, max_connections=1)
    first = await relay.create(SLOW)
    await until_generating(relay, first["id"])  # it holds the one connection now
    second = await relay.create(FAST)
    events = await relay.events(second["id"])
    assert states(events) == ["queued", "connecting", "generating"]
    assert statuses(events)[0]["message"] == "waiting for a connection to the model"
    assert events[-1].event == "done"
    assert (await relay.snapshot(first["id"]))["status"] == "completed"  # it waited for it
    assert states(await relay.events(first["id"])) == ["connecting", "generating"]


@MEMORY_ONLY
async def test_sessions_over_a_free_pool_are_never_queued(
    start_relay: StartRelay, mock_upstream: TestServer
) -> None:
    relay = await start(start_relay, mock_upstream, max_connections=4)
    created = await asyncio.gather(*(relay.create(SLOW) for _ in range(4)))
    for session in created:
        assert states(await relay.events(session["id"])) == ["connecting", "generating"]


@MEMORY_ONLY
async def test_an_upstream_answering_503_then_ok_is_retrying_then_generating(
    start_relay: StartRelay, mock_upstream: TestServer
) -> None:
    relay = await start(start_relay, mock_upstream)
    created = await relay.create(FAILS_ONCE)
    events = await relay.events(created["id"])
    assert states(events) == ["connecting", "retrying", "generating"]
    retrying = statuses(events)[1]
    assert (retrying["attempt"], retrying["delay_s"]) == (1, 0.2)  # as Retry-After asked
    assert retrying["message"] == "the model failed (upstream_unavailable); retry 1 in 0.2 s"
    assert events[-1].event == "done"
    assert (await mock_stats(mock_upstream))["requests"] == 2


@MEMORY_ONLY
async def test_the_openai_stream_of_a_queued_and_retried_session_has_no_status(
    start_relay: StartRelay, mock_upstream: TestServer
) -> None:
    relay = await start(start_relay, mock_upstream, max_connections=1)
    first = await relay.create(SLOW)
    await until_generating(relay, first["id"])
    second = await relay.create(FAILS_ONCE)
    assert states(await relay.events(second["id"])) == [
        "queued",
        "connecting",
        "retrying",
        "generating",
    ]
    events = await relay.events(second["id"], params={"format": "openai"})
    assert [event.event for event in events] == ["message"] * len(events)
    assert events[-1].data == "[DONE]"
    chunks = [json.loads(event.data) for event in events[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}


@MEMORY_ONLY
async def test_the_anthropic_stream_of_a_retried_session_has_no_status(
    start_relay: StartRelay, mock_upstream: TestServer
) -> None:
    relay = await start(start_relay, mock_upstream)
    created = await relay.create(FAILS_ONCE)
    events = await relay.events(created["id"], params={"format": "anthropic"})
    assert {event.event for event in events} <= ANTHROPIC_EVENTS
    assert [events[0].event, events[-1].event] == ["message_start", "message_stop"]
