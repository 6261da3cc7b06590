"""Every async generator on a request's path is closed by its owner, none by the garbage
collector: one dropped unclosed is closed later by a task that the event loop schedules
through its thread-safe wake-up (a system call and a loop turn, found on the first-token
path of every streamed request), and its cleanup then runs at no defined time."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.frontdoors.conftest import Relay

MODEL = "mock:tokens=12,tps=0,ttft_ms=0"
SLOW = "mock:tokens=40,tps=100,ttft_ms=0"
MESSAGES = [{"role": "user", "content": "Hello there"}]
UI_MESSAGES = [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "Hello there"}]}]

STREAMED: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", {"model": MODEL, "stream": True, "messages": MESSAGES}),
    "chat-whole": ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES}),
    "responses": ("/v1/responses", {"model": MODEL, "stream": True, "input": "Hello there"}),
    "messages": (
        "/v1/messages",
        {"model": MODEL, "stream": True, "max_tokens": 64, "messages": MESSAGES},
    ),
    "ui-chat": (
        "/v1/ui/chat",
        {"id": "chat-1", "messages": UI_MESSAGES, "trigger": "submit-message", "model": MODEL},
    ),
}


@contextlib.contextmanager
def left_to_the_collector() -> Iterator[list[str]]:
    """The names of the async generators first iterated in the block that were then
    dropped unclosed (the loop's finalizer hook is what closes those)."""
    hooks = sys.get_asyncgen_hooks()
    dropped: list[str] = []

    def finalizer(generator: Any) -> None:
        dropped.append(generator.__qualname__)
        if hooks.finalizer is not None:
            hooks.finalizer(generator)

    sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=finalizer)
    try:
        yield dropped
    finally:
        sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=hooks.finalizer)


async def settle() -> None:
    """Let the relay finish what follows a response (the access line, the feed's end)."""
    for _ in range(5):
        await asyncio.sleep(0.01)
    gc.collect()


@pytest.mark.parametrize("route", sorted(STREAMED))
async def test_a_request_leaves_no_generator_to_the_collector(
    relay_server: Relay, route: str
) -> None:
    path, body = STREAMED[route]
    with left_to_the_collector() as dropped:
        for _ in range(3):
            async with relay_server.http.post(relay_server.url(path), json=body) as response:
                assert response.status == 200, await response.text()
                assert await response.read()
        await settle()
    assert dropped == []


async def test_a_native_stream_leaves_no_generator_to_the_collector(relay_server: Relay) -> None:
    with left_to_the_collector() as dropped:
        created = await relay_server.create(MODEL)
        events = await relay_server.events(created["id"])
        assert events[-1].event == "done"
        replayed = await relay_server.events(created["id"], last_event_id="2")
        assert [event.int_id for event in replayed] == [event.int_id for event in events[2:]]
        await settle()
    assert dropped == []


async def test_a_subscriber_that_leaves_mid_stream_leaves_no_generator_to_the_collector(
    relay_server: Relay,
) -> None:
    with left_to_the_collector() as dropped:
        created = await relay_server.create(SLOW)
        async with relay_server.subscribe(created["id"]) as reader:
            assert len(await reader.read(3)) == 3
        await relay_server.wait_until_ended(created["id"])
        await settle()
    assert dropped == []
